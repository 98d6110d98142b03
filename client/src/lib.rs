//! Our own LiveKit client, used by `livekit-cli` for `room join` and the load tester.
//!
//! Layers, from the wire up:
//!
//! - [`signal`]: the signalling WebSocket: `/rtc/v1` with a base64url `join_request` (single
//!   peer connection, the default) or `/rtc` with query parameters (dual), the token as an
//!   `Authorization: Bearer` header, binary protobuf frames.
//! - [`peer`]: a sans-IO client peer connection over one local UDP socket: the controlling
//!   full ICE agent of `lkr-ice` with USE-CANDIDATE toward the server's host candidate, the
//!   DTLS client of `lkr-dtls-glue` keying SRTP/SRTCP there, and SCTP data channels
//!   (`_reliable`, `_lossy`). The simulation harness builds its clients on it too.
//! - [`sdp`]: the offers and answers we write (with the section writers of `lkr-sdp` that the
//!   server's negotiation uses too) and what we read from the server's.
//! - [`rtp_out`] / [`rtp_in`]: one RTP stream each way, sans-IO: headers with the mid/rid
//!   extensions and a retransmission cache; reordering, NACK and in-order delivery.
//! - [`session`]: the sans-IO session machine: negotiation, publishing, receiving, data,
//!   pings, with `now` in and datagrams, signal requests, events and a timeout polled out.
//! - [`udp`]: a peer connection's UDP socket, which counts the datagrams the kernel dropped
//!   on it (`SO_RXQ_OVFL`) so that a receiver can tell its own drops from loss upstream.
//! - [`room`]: the thin tokio driver around it that owns the sockets and signalling:
//!   [`Room`] takes commands (publish a track, send media or data, subscribe, request
//!   keyframes) and yields [`RoomEvent`]s (participants, subscribed tracks, media packets,
//!   data, keyframe requests).
//!
//! Driver contract of the sans-IO parts: time comes in as `now`, datagrams as byte slices;
//! `poll_transmit`, `poll_event` and `poll_timeout` (and the session's `poll_signal`) tell
//! the driver what to do next.

mod error;

pub mod codec;
pub mod peer;
pub mod room;
pub mod rtp_in;
pub mod rtp_out;
pub mod sdp;
pub mod session;
pub mod signal;
#[cfg(test)]
mod testserver;
pub mod udp;

pub use codec::{Codec, MediaKind};
pub use error::ClientError;
pub use room::{
    LayerSpec, LocalTrack, LocalTrackId, MediaSender, RemoteTrack, Room, RoomEvent, RoomOptions,
    TrackSpec, TrackStats,
};
pub use rtp_in::{MediaPacket, ReceiveStats};
pub use signal::JoinSettings;
pub use udp::SocketDrops;
