//! Publishing one file in real time.
//!
//! Each file becomes one track: `.ogg` (Opus) as a microphone track, `.ivf` as a camera
//! track in the FourCC's codec. Packets leave at their media time measured from the start
//! (packet positions for Ogg, presentation times for IVF), so the stream plays at its own
//! speed. With `--loop` the file starts over and the RTP timestamps keep increasing. A
//! keyframe request (PLI from the server) makes an IVF publisher go back to the latest
//! keyframe it read and continue from there, at most once per [`KEYFRAME_GAP`].

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lkr_client::{Codec, LocalTrack, MediaSender, Room, TrackSpec};
use lkr_proto::pb;

use super::av1::Av1Packetizer;
use super::ivf::IvfReader;
use super::ogg::OggOpusReader;
use super::vp8::Vp8Packetizer;
use super::vp9::Vp9Packetizer;
use super::{MediaError, RTP_PAYLOAD_MTU};

/// Shortest time between two keyframe resends.
pub const KEYFRAME_GAP: Duration = Duration::from_millis(500);

/// A media file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFile {
    /// Ogg with Opus.
    Ogg(PathBuf),
    /// IVF with VP8, VP9 or AV1.
    Ivf(PathBuf, Codec, u16, u16),
}

impl MediaFile {
    /// Opens `path` far enough to know its codec (by extension, then by content).
    pub fn probe(path: &Path) -> Result<Self, MediaError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let with_path =
            |e: lkr_media_file::FileError| MediaError::Format(format!("{}: {e}", path.display()));
        match ext.as_str() {
            "ogg" | "opus" | "oga" => {
                OggOpusReader::new(BufReader::new(File::open(path)?)).map_err(with_path)?;
                Ok(Self::Ogg(path.to_owned()))
            }
            "ivf" => {
                let r = IvfReader::new(BufReader::new(File::open(path)?)).map_err(with_path)?;
                let h = r.header();
                Ok(Self::Ivf(
                    path.to_owned(),
                    super::client_codec(r.codec()),
                    h.width,
                    h.height,
                ))
            }
            _ => Err(MediaError::UnsupportedFile(path.display().to_string())),
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Ogg(p) | Self::Ivf(p, ..) => p,
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        match self {
            Self::Ogg(_) => Codec::Opus,
            Self::Ivf(_, c, ..) => *c,
        }
    }

    /// The track to publish it as; the name is the file name.
    pub fn track_spec(&self) -> TrackSpec {
        let name = self
            .path()
            .file_name()
            .map_or_else(|| "track".to_owned(), |n| n.to_string_lossy().into_owned());
        match self {
            Self::Ogg(_) => TrackSpec {
                name,
                codec: Codec::Opus,
                source: pb::TrackSource::Microphone,
                width: 0,
                height: 0,
                layers: Vec::new(),
            },
            Self::Ivf(_, codec, w, h) => TrackSpec {
                name,
                codec: *codec,
                source: pb::TrackSource::Camera,
                width: u32::from(*w),
                height: u32::from(*h),
                layers: Vec::new(),
            },
        }
    }
}

/// What a publisher sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Frames (Opus packets, video frames) sent.
    pub frames: u64,
    /// RTP packets sent.
    pub packets: u64,
    /// Times the file started over.
    pub loops: u64,
    /// Keyframe requests answered by going back to a keyframe.
    pub keyframe_resends: u64,
    /// Media time sent.
    pub media_time: Duration,
}

/// A published file: the track and the flag a keyframe request sets.
#[derive(Debug, Clone)]
pub struct FilePublication {
    /// The file.
    pub file: MediaFile,
    /// The published track.
    pub track: LocalTrack,
    /// Set when the server asks for a keyframe.
    pub keyframe_wanted: Arc<AtomicBool>,
}

/// Publishes `file` as a track and returns the publication; [`stream`] then sends it.
pub async fn publish(room: &Room, file: MediaFile) -> Result<FilePublication, MediaError> {
    let track = room.publish_track(file.track_spec()).await?;
    Ok(FilePublication {
        file,
        track,
        keyframe_wanted: Arc::new(AtomicBool::new(false)),
    })
}

/// Sends the file in real time until it ends (never, with `looping`).
pub async fn stream(
    sender: MediaSender,
    file: MediaFile,
    looping: bool,
    keyframe_wanted: Arc<AtomicBool>,
) -> Result<PublishSummary, MediaError> {
    match file {
        MediaFile::Ogg(path) => stream_ogg(&sender, &path, looping).await,
        MediaFile::Ivf(path, codec, ..) => {
            stream_ivf(&sender, &path, codec, looping, &keyframe_wanted).await
        }
    }
}

async fn sleep_until(start: Instant, media_us: u64) {
    let at = start + Duration::from_micros(media_us);
    tokio::time::sleep_until(at.into()).await;
}

async fn stream_ogg(
    sender: &MediaSender,
    path: &Path,
    looping: bool,
) -> Result<PublishSummary, MediaError> {
    let start = Instant::now();
    let mut summary = PublishSummary::default();
    let ts_base: u32 = rand::random();
    // Samples sent before the current pass over the file.
    let mut offset: u64 = 0;
    loop {
        let mut reader = OggOpusReader::new(BufReader::new(File::open(path)?))?;
        let mut end = offset;
        let mut first = true;
        while let Some(p) = reader.next_packet()? {
            let at = offset + p.position;
            sleep_until(start, at * 1_000_000 / 48_000).await;
            let ts = ts_base.wrapping_add(at as u32);
            sender.send(0, p.data, ts, first && summary.frames == 0)?;
            first = false;
            summary.frames += 1;
            summary.packets += 1;
            end = at + u64::from(p.samples);
        }
        summary.media_time = Duration::from_micros(end * 1_000_000 / 48_000);
        if !looping || end == offset {
            return Ok(summary);
        }
        offset = end;
        summary.loops += 1;
    }
}

enum VideoPacketizer {
    Vp8(Vp8Packetizer),
    Vp9(Vp9Packetizer),
    Av1(Av1Packetizer),
}

impl VideoPacketizer {
    fn new(codec: Codec) -> Result<Self, MediaError> {
        match codec {
            Codec::Vp8 => Ok(Self::Vp8(Vp8Packetizer::default())),
            Codec::Vp9 => Ok(Self::Vp9(Vp9Packetizer::default())),
            Codec::Av1 => Ok(Self::Av1(Av1Packetizer)),
            other => Err(MediaError::Format(format!("cannot packetize {other}"))),
        }
    }

    fn packetize(&mut self, frame: &[u8], keyframe: bool) -> Vec<Vec<u8>> {
        match self {
            Self::Vp8(p) => p.packetize(frame, RTP_PAYLOAD_MTU),
            Self::Vp9(p) => p.packetize(frame, keyframe, RTP_PAYLOAD_MTU),
            Self::Av1(p) => p.packetize(frame, RTP_PAYLOAD_MTU),
        }
    }
}

async fn stream_ivf(
    sender: &MediaSender,
    path: &Path,
    codec: Codec,
    looping: bool,
    keyframe_wanted: &AtomicBool,
) -> Result<PublishSummary, MediaError> {
    let start = Instant::now();
    let mut summary = PublishSummary::default();
    let mut reader = IvfReader::new(BufReader::new(File::open(path)?))?;
    let header = reader.header();
    let mut packetizer = VideoPacketizer::new(codec)?;
    let ts_base: u32 = rand::random();
    // Stream time of the last frame sent, and the file time it came from.
    let mut stream_us: Option<u64> = None;
    let mut last_file_us: u64 = 0;
    let mut frame_us: u64 = 33_333;
    let mut last_resend: Option<Instant> = None;
    loop {
        if keyframe_wanted.swap(false, Ordering::Relaxed)
            && last_resend.is_none_or(|t| t.elapsed() >= KEYFRAME_GAP)
            && reader.seek_to_last_keyframe()?
        {
            last_resend = Some(Instant::now());
            summary.keyframe_resends += 1;
        }
        let frame = match reader.next_frame()? {
            Some(f) => f,
            None if looping && summary.frames > 0 => {
                reader.rewind()?;
                summary.loops += 1;
                continue;
            }
            None => break,
        };
        let file_us = header.pts_micros(frame.pts);
        let t = match stream_us {
            None => 0,
            Some(prev) => {
                let delta = file_us.saturating_sub(last_file_us);
                if file_us > last_file_us && delta <= 1_000_000 {
                    frame_us = delta;
                    prev + delta
                } else {
                    // A loop or a jump back to a keyframe: one frame later.
                    prev + frame_us
                }
            }
        };
        stream_us = Some(t);
        last_file_us = file_us;
        sleep_until(start, t).await;
        let ts = ts_base.wrapping_add((t * 90 / 1000) as u32);
        let parts = packetizer.packetize(&frame.data, frame.keyframe);
        let n = parts.len();
        for (i, payload) in parts.into_iter().enumerate() {
            sender.send(0, payload, ts, i + 1 == n)?;
            summary.packets += 1;
        }
        summary.frames += 1;
        summary.media_time = Duration::from_micros(t + frame_us);
    }
    Ok(summary)
}
