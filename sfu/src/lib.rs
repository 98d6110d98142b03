//! The sans-IO media core.
//!
//! This crate routes media: demultiplexing the shared UDP port (RFC 7983 first-byte rules,
//! then peer address), per-peer transports, published tracks, per-subscriber forwarders
//! (SSRC, sequence and timestamp rewriting, simulcast layer choice), RTCP feedback (NACK with
//! a retransmission cache, PLI) and data fan-out.
//!
//! Driver contract: `handle_receive(now, source, &mut [u8])`, `handle_command(now, cmd)` and
//! `handle_timeout(now)` in; `poll_transmit`, `poll_event` and `poll_timeout` out. The core
//! never reads a clock, takes a lock or touches a socket.

mod api;

pub use api::*;
