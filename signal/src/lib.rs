//! Signalling sessions.
//!
//! This crate will run one participant's signalling WebSocket (`/rtc` dual peer connection,
//! `/rtc/v1` single peer connection): `SignalRequest` in, `SignalResponse` out, and the
//! join/publish/subscribe state machine that sits between the room model and the media core.
