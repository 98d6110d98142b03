//! The `livekit-server` and `livekit-cli` binaries, and the client side they share.
//!
//! - [`admin`]: what `livekit-cli` does without media: signing access tokens locally and
//!   calling a server's Twirp `livekit.RoomService` (rooms, participants, tracks, data).

pub mod admin;
