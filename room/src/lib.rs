//! Rooms and participants of one node: the sans-IO participant and room machine, the room
//! model beneath it, and the offer/answer policy of participants' transports.
//!
//! - [`machine`]: the one owner of room and participant state. Signal requests, media
//!   events, API calls and timeouts go in, each with `now`; signal responses, media commands
//!   and room events come out, polled.
//! - [`rooms`]: the room model: rooms by name, their LiveKit records, participants and the
//!   instants that decide when an empty room closes. Plain data, no clock, no I/O.
//! - [`negotiation`]: what the server accepts in a client's offer and what it writes in its
//!   answers and subscriber offers.
//! - [`error`]: typed failures, whose fault they are, and their wire forms.

pub mod error;
pub mod machine;
pub mod negotiation;
pub mod rooms;

pub use error::{Fault, RoomError};
pub use machine::{
    Config, JOIN_LATENCY_BUCKETS_MS, Join, JoinReply, Limits, Machine, Output, PlayOffer,
    RoomEvent, Stats, TokenSigner, TrackOffer, TurnIce,
};
pub use machine::{
    EgressEnd, EgressTrack, PublishedTrack, RPC_ACK_WITHIN, RPC_DEFAULT_TIMEOUT, RPC_MAX_TIMEOUT,
    RpcFailure, StartEgress,
};
pub use rooms::*;
