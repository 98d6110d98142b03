//! The administrative half of `livekit-cli`: access tokens and the Twirp `livekit.RoomService`.
//!
//! Data flow, one command at a time:
//!
//! 1. [`command`] parses the command line (the `lk` names, plus the hidden legacy forms of the
//!    original livekit-cli) into a [`command::Cli`], and reduces it to an [`command::Action`];
//! 2. [`connection`] turns the global flags and the environment into a [`connection::ServerUrl`]
//!    and [`connection::Credentials`];
//! 3. [`token`] signs access tokens locally, without any server;
//! 4. [`twirp::RoomClient`] sends one RoomService call: it signs a fresh 10-minute token
//!    holding only the grants that call needs, posts the prost-encoded request, and decodes
//!    the protobuf answer or the Twirp `{"code","msg"}` error;
//! 5. [`rooms`] maps each room command onto one call and renders the answer as a [`Report`],
//!    readable text or the message's protobuf-JSON.

pub mod command;
pub mod connection;
mod error;
pub mod output;
pub mod rooms;
pub mod token;
pub mod twirp;

pub use error::Error;
pub use output::Report;
