//! The media half of `livekit-cli`: joining a room with our own client (`lkr-client`),
//! publishing Ogg/Opus and IVF (VP8, VP9, AV1) files in real time, recording what the room
//! publishes, and the load tester.
//!
//! - [`ogg`], [`ivf`]: the two file formats, read and written, and [`vp8`], [`vp9`],
//!   [`av1`]: RTP packetizers and depacketizers (from `lkr-media-file`, which the server's
//!   track egress shares).
//! - [`source`]: a paced publisher for one file (`--loop`, keyframe requests answered by
//!   going back to the latest keyframe).
//! - [`record`]: one writer per subscribed track (Opus → `.ogg`, VP8/VP9/AV1 → `.ivf`).
//! - [`join`]: `room join` and the legacy `join`.
//! - [`loadtest`]: `perf load-test`.
//! - [`janus`]: `perf janus-load-test`, the same load against a Janus VideoRoom.
//! - [`relay`]: `perf udp-relay`, a plain UDP relay (`recvmmsg`/`sendmmsg`, no crypto), and
//!   [`relay_load`]: `perf relay-load-test`, the audio load through it: the baseline for
//!   the server's CPU per forwarded packet.

pub mod janus;
pub mod join;
pub mod loadtest;
pub mod record;
pub mod relay;
pub mod relay_load;
pub mod source;

pub use lkr_media_file::{av1, ivf, ogg, vp8, vp9};

/// The client's name for a codec of a file.
pub fn client_codec(c: lkr_media_file::Codec) -> lkr_client::Codec {
    use lkr_client::Codec as C;
    use lkr_media_file::Codec as F;
    match c {
        F::Opus => C::Opus,
        F::Vp8 => C::Vp8,
        F::Vp9 => C::Vp9,
        F::Av1 => C::Av1,
        F::H264 => C::H264,
    }
}

/// The file codec of a client codec.
pub fn file_codec(c: lkr_client::Codec) -> lkr_media_file::Codec {
    use lkr_client::Codec as C;
    use lkr_media_file::Codec as F;
    match c {
        C::Opus => F::Opus,
        C::Vp8 => F::Vp8,
        C::Vp9 => F::Vp9,
        C::Av1 => F::Av1,
        C::H264 => F::H264,
    }
}

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
    /// A media file could not be read or written.
    #[error(transparent)]
    File(#[from] lkr_media_file::FileError),
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
