//! WebRTC data channels: SCTP over DTLS (RFC 8261, RFC 8831) with the Data Channel
//! Establishment Protocol (DCEP, RFC 8832).
//!
//! # Data flow
//!
//! Once DTLS is connected, the peer's transport creates one [`SctpTransport`]. Each DTLS
//! application-data record carries exactly one SCTP packet:
//!
//! - in: [`SctpTransport::handle_receive`] with the decrypted record;
//! - out: [`SctpTransport::poll_transmit`] yields packets to encrypt as DTLS records;
//! - events: [`SctpTransport::poll_event`] yields [`DataChannelEvent`]s: the association
//!   established, channels opened by either side, complete messages, channels closed.
//!
//! The SCTP state machine is `sctp-proto` (sans-IO). DCEP is ours: the peer's
//! DATA_CHANNEL_OPEN on a stream creates a channel, answered with DATA_CHANNEL_ACK;
//! [`SctpTransport::open_channel`] sends our own OPEN on an even stream id from the DTLS
//! client, odd from the DTLS server (RFC 8832 §6). Messages use the PPIDs of RFC 8831 §8:
//! 51 string, 53 binary, 56/57 empty string/binary (sent as one padding byte), 50 DCEP.
//!
//! LiveKit clients open `_reliable` (ordered, reliable), `_lossy` and `_data_track`
//! (unordered, no retransmissions); both SDPs say `a=sctp-port:5000` and
//! `a=max-message-size:262144` ([`SCTP_PORT`], [`MAX_MESSAGE_SIZE`]).
//!
//! # Driver contract
//!
//! Sans-IO: time comes in as `now`. After every input (receive, timeout, open, send) drain
//! `poll_transmit` and `poll_event`, then arm a timer for [`SctpTransport::poll_timeout`] and
//! call [`SctpTransport::handle_timeout`] when it fires. Malformed packets from the peer are
//! dropped; nothing it sends can panic this crate, and nothing it sends or fails to
//! acknowledge grows without bound ([`SctpLimits`]: channels, label size, send buffer).

mod dcep;
mod error;
mod transport;

pub use error::DataChannelError;
pub use transport::{
    ChannelInfo, DataChannelEvent, MAX_MESSAGE_SIZE, RTO_MAX_MS, SCTP_PORT, SctpLimits,
    SctpTransport,
};

#[cfg(test)]
mod tests;
