//! Rooms and participants of one node, and the offer/answer policy of their transports.
//!
//! - [`rooms`]: the room model: rooms by name, their LiveKit records, participants and the
//!   instants that decide when an empty room closes. Plain data, no clock, no I/O.
//! - [`negotiation`]: what the server accepts in a client's offer and what it writes in its
//!   answers and subscriber offers.

pub mod negotiation;
pub mod rooms;

pub use rooms::*;
