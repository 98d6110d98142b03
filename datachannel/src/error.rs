//! Why a data channel call was refused.

use thiserror::Error;

/// Why a call on [`SctpTransport`](crate::SctpTransport) was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DataChannelError {
    /// The SCTP association is not established yet; wait for
    /// [`DataChannelEvent::Established`](crate::DataChannelEvent::Established).
    #[error("SCTP association not established")]
    NotEstablished,
    /// The SCTP association is gone.
    #[error("SCTP association closed")]
    Closed,
    /// No channel lives on this stream.
    #[error("no data channel on stream {0}")]
    UnknownChannel(u16),
    /// The channel is being closed; nothing more may be sent on it.
    #[error("data channel on stream {0} is closing")]
    ChannelClosing(u16),
    /// The message exceeds the peer's `a=max-message-size`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Size of the refused message.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A label or protocol longer than 65535 bytes cannot be sent in DATA_CHANNEL_OPEN.
    #[error("data channel label or protocol too long")]
    LabelTooLong,
    /// The association already carries as many channels as its limit allows.
    #[error("too many data channels (limit {0})")]
    TooManyChannels(usize),
    /// The send buffer holds as much as its limit allows; the message was dropped.
    #[error("data channel send buffer full ({buffered} bytes queued, limit {limit})")]
    BufferFull {
        /// Bytes queued when the message was refused.
        buffered: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Every stream id of our parity is in use.
    #[error("no free SCTP stream id")]
    NoStreamAvailable,
    /// The SCTP stack refused the operation.
    #[error("SCTP: {0}")]
    Sctp(#[from] sctp_proto::Error),
}
