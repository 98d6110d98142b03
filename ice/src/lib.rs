//! ICE for both roles.
//!
//! This crate will hold the ICE-lite responder the server runs on its one UDP port (STUN
//! binding requests checked against short-term credentials, USE-CANDIDATE nomination,
//! consent freshness) and the controlling full-ICE agent our own client uses, plus the
//! candidate lines written into SDP and trickled over signalling. Sans-IO: datagrams and time
//! in, datagrams and events out.
