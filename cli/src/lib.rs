//! The `livekit-server` and `livekit-cli` binaries, and the client side they share.
//!
//! - [`admin`]: what `livekit-cli` does without media: signing access tokens locally and
//!   calling a server's Twirp `livekit.RoomService` (rooms, participants, tracks, data).
//! - [`media`]: what it does with media, over our own client (`lkr-client`): `room join`
//!   and `join` (publish Ogg/Opus and IVF files, send data, record), and
//!   `perf load-test`.

pub mod admin;
pub mod media;
