//! Signalling sessions.
//!
//! - [`join`]: reading a join from `/rtc` (query parameters) or `/rtc/v1` (`join_request`),
//!   with the token checks `/validate` reports.
//! - [`hub`]: rooms, sessions and published tracks shared by all sessions and the Twirp API.
//! - [`session`]: one participant's WebSocket: `SignalRequest` in, `SignalResponse` out, and
//!   the offer/answer state of its peer connections.
//!
//! Media is driven through [`lkr_sfu::Command`]s sent to the media core; its
//! [`lkr_sfu::Event`]s come back through the hub to the session owning the peer.

pub mod hub;
pub mod join;
pub mod session;

pub use hub::{Hub, HubConfig, MediaHandle};
