//! What can go wrong while joining a room, negotiating or sending.

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL could not be turned into a signalling URL.
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The WebSocket could not be opened; `status` is the HTTP answer when there was one.
    #[error("could not open the signalling connection to {url}: {reason}")]
    Connect {
        url: String,
        status: Option<u16>,
        reason: String,
    },
    /// The server refused the join with a leave message.
    #[error("the server refused the join: {0}")]
    JoinRefused(String),
    /// Nothing (or not a JoinResponse) arrived in time.
    #[error("no join response from the server within {0} s")]
    JoinTimeout(u64),
    /// The first message was not a JoinResponse.
    #[error("unexpected first signalling message: {0}")]
    UnexpectedMessage(String),
    /// The peer connection did not connect in time.
    #[error("the peer connection did not connect within {0} s")]
    ConnectTimeout(u64),
    /// The server said no to a track publication.
    #[error("the server refused to publish {name:?}: {reason}")]
    PublishRefused { name: String, reason: String },
    /// The server never answered a track publication.
    #[error("no track_published answer for {0:?}")]
    PublishTimeout(String),
    /// The server's SDP could not be used.
    #[error("unusable session description: {0}")]
    Sdp(String),
    /// A local UDP socket could not be opened or used.
    #[error("UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    /// DTLS, SRTP or the certificate failed.
    #[error("DTLS/SRTP: {0}")]
    Dtls(String),
    /// A data channel could not carry the message.
    #[error("data channel: {0}")]
    DataChannel(String),
    /// The session ended before the peer connections were up.
    #[error("the session ended while connecting: {0}")]
    SessionEnded(String),
    /// The room session has ended; nothing more can be sent.
    #[error("the room session has ended")]
    Closed,
}
