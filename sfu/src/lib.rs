//! The sans-IO media core.
//!
//! This crate routes media: demultiplexing the shared UDP port (RFC 7983 first-byte rules,
//! then peer address), per-peer transports (ICE-lite, DTLS, SRTP, SCTP), published tracks,
//! per-subscriber forwarders (SSRC, sequence and timestamp rewriting, simulcast layer
//! choice), RTCP feedback (NACK with a retransmission cache, PLI) and data channels.
//!
//! Driver contract ([`Engine`]): `handle_receive(now, source, &mut [u8])`,
//! `handle_command(now, cmd)` and `handle_timeout(now)` in; `poll_transmit`, `poll_event`
//! and `poll_timeout` out. The engine never reads a clock, takes a lock or touches a socket;
//! the `lkr-driver` crate is the thin thread that does. `poll_timeout` is the earliest real
//! deadline of the engine's parts (each peer's ICE consent, DTLS and SCTP timers; NACK
//! retries, congestion feedback, report and audio-level intervals), so an idle engine
//! sleeps.

mod api;
pub mod engine;
pub mod forward;
pub mod svc;

pub use api::*;
pub use engine::{
    Drops, EARLY_CHECK_AGE, EARLY_CHECK_BYTES, EARLY_CHECKS, Engine, Relay, Traffic, Transmit,
};
