//! The media half of `livekit-cli`: joining a room with our own client (`lkr-client`),
//! publishing Ogg/Opus and IVF (VP8, VP9, AV1) files in real time, recording what the room
//! publishes, and the load tester.
//!
//! - [`ogg`], [`ivf`]: the two file formats, read and written.
//! - [`vp8`], [`vp9`], [`av1`]: RTP packetizers and depacketizers (Opus needs neither: one
//!   packet per RTP payload).
//! - [`source`]: a paced publisher for one file (`--loop`, keyframe requests answered by
//!   going back to the latest keyframe).
//! - [`record`]: one writer per subscribed track (Opus → `.ogg`, VP8/VP9/AV1 → `.ivf`).
//! - [`join`]: `room join` and the legacy `join`.
//! - [`loadtest`]: `perf load-test`.

pub mod av1;
pub mod ivf;
pub mod join;
pub mod loadtest;
pub mod ogg;
pub mod record;
pub mod source;
pub mod vp8;
pub mod vp9;

/// Largest RTP payload we write.
pub const RTP_PAYLOAD_MTU: usize = 1100;

/// What can go wrong with media files and sessions.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file is not in the format its name says.
    #[error("{0}")]
    Format(String),
    /// A file type we cannot publish.
    #[error("cannot publish {0}: use .ogg (Opus) or .ivf (VP8, VP9, AV1)")]
    UnsupportedFile(String),
    /// The client failed.
    #[error(transparent)]
    Client(#[from] lkr_client::ClientError),
    /// A flag's value, or a combination of flags, that the command cannot use.
    #[error("{0}")]
    BadArgument(String),
    /// The server ended the session.
    #[error("{0}")]
    Disconnected(String),
}
