//! LiveKit wire types, identifiers and access tokens.
//!
//! - [`pb`] re-exports the published `livekit-protocol` crate (prost types with pbjson serde),
//!   so no `.proto` file is copied into this project.
//! - [`id`] makes the `RM_`, `PA_` and `TR_` identifiers and the API keys and secrets that
//!   `livekit-server generate-keys` prints.
//! - [`token`] signs and verifies HS256 access tokens with LiveKit's claim names and grant
//!   defaults, for the server (verify) and the CLI (sign).

pub mod id;
pub mod token;

pub use livekit_protocol as pb;
