//! Media files from and to RTP, shared by `livekit-cli` (publishing files, `--record`) and
//! the server's track egress.
//!
//! - [`ogg`], [`ivf`]: the two file formats, read and written (Ogg/Opus, RFC 7845; IVF for
//!   VP8, VP9 and AV1), and [`webm`], written (VP8, VP9, Opus).
//! - [`vp8`], [`vp9`], [`av1`]: RTP packetizers and depacketizers (Opus needs neither: one
//!   packet per RTP payload).
//! - [`track`]: [`track::TrackWriter`], one track's RTP payloads into a file (Opus → Ogg,
//!   VP8/VP9/AV1 → IVF), starting video on a keyframe and asking for one after loss; and
//!   [`track::SeqGate`], which turns raw RTP sequence numbers into loss counts and drops
//!   late or repeated packets.
//!
//! Nothing here spawns, locks or reads a clock: writers take any `Write + Seek`, and the
//! caller passes the time where pacing needs it.

pub mod av1;
pub mod ivf;
pub mod ogg;
pub mod track;
pub mod vp8;
pub mod vp9;
pub mod webm;

use std::fmt;

/// A codec a file of this crate can carry, or that a track may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    Av1,
    /// H.264: known, but no file format here carries it.
    H264,
}

impl Codec {
    /// The codec of an SDP encoding name or MIME type (`opus`, `video/VP8`), any case.
    pub fn from_name(name: &str) -> Option<Codec> {
        let name = name.rsplit('/').next().unwrap_or(name);
        [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::H264]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::Av1 => "AV1",
            Codec::H264 => "H264",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        if self == Codec::Opus { 48_000 } else { 90_000 }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of file a track is written to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Container {
    /// The codec's own simple format: Ogg for Opus, IVF for VP8, VP9 and AV1.
    #[default]
    Native,
    /// WebM (VP8, VP9, Opus).
    Webm,
}

/// What can go wrong reading or writing a media file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written (a full disk, a path that cannot be written).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file is not in the format its name says.
    #[error("{0}")]
    Format(String),
    /// No file format here carries this codec.
    #[error("no file format for {0}")]
    Unsupported(Codec),
}
