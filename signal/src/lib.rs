//! Pumps between the outside and the room machine ([`lkr_room::Machine`]).
//!
//! - [`control`]: the one task that owns the machine; every front door sends it inputs
//!   through a bounded channel, and it delivers the machine's outputs (signal responses to
//!   sessions, commands to the media core, room events).
//! - [`join`]: reading a join from `/rtc` (query parameters) or `/rtc/v1` (`join_request`),
//!   with the token checks `/validate` reports.
//! - [`pacing`]: the signalling threads wake on a schedule while they hear only keepalives.
//! - [`session`]: one participant's WebSocket: frames in to the machine, its responses out.
//! - [`whip`]: participants whose signalling is HTTP (WHIP ingest, WHEP playback).
//!
//! - [`agents`]: the LiveKit Agents dispatcher on the control task, and one agent worker's
//!   `/agent` WebSocket.
//!
//! No room logic lives here: the machine decides, the pumps carry.

pub mod agents;
pub mod bounded;
pub mod control;
pub mod join;
pub mod pacing;
pub mod session;
pub mod whip;

pub use control::{Control, ControlGone, Joined, MediaLink, RpcOutcome, ToSession};
pub use pacing::Pacer;
