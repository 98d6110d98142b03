//! `--record DIR`: every subscribed track written to a file as it arrives.
//!
//! Opus goes to `<identity>-<track sid>.ogg` (granule positions from the RTP timestamps,
//! so gaps keep their length); VP8, VP9 and AV1 go to `<identity>-<track sid>.ivf` with a
//! 1/90000 time base and the RTP timestamp (from the first frame) as presentation time.
//! Video starts at a keyframe; after loss the damaged frames are skipped up to the next
//! keyframe, which is requested from the publisher (again every second while frames are
//! being skipped). Other codecs are reported and skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lkr_client::{Codec, MediaPacket, RemoteTrack};
use lkr_rtp::TimestampUnwrapper;

use super::MediaError;
use super::av1::Av1Depacketizer;
use super::ivf::{IvfWriter, is_keyframe};
use super::ogg::{OggOpusWriter, opus_packet_samples};
use super::vp8::Vp8Depacketizer;
use super::vp9::Vp9Depacketizer;

enum Depacketizer {
    Vp8(Vp8Depacketizer),
    Vp9(Vp9Depacketizer),
    Av1(Av1Depacketizer),
}

impl Depacketizer {
    fn new(codec: Codec) -> Option<Self> {
        match codec {
            Codec::Vp8 => Some(Self::Vp8(Vp8Depacketizer::default())),
            Codec::Vp9 => Some(Self::Vp9(Vp9Depacketizer::default())),
            Codec::Av1 => Some(Self::Av1(Av1Depacketizer::default())),
            Codec::Opus | Codec::H264 => None,
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Vp8(d) => d.reset(),
            Self::Vp9(d) => d.reset(),
            Self::Av1(d) => d.reset(),
        }
    }

    fn push(&mut self, payload: &[u8], marker: bool) -> Option<Vec<u8>> {
        match self {
            Self::Vp8(d) => d.push(payload, marker),
            Self::Vp9(d) => d.push(payload, marker),
            Self::Av1(d) => d.push(payload, marker),
        }
    }
}

enum Writer {
    Ogg {
        writer: OggOpusWriter<BufWriter<File>>,
    },
    Ivf {
        writer: IvfWriter<BufWriter<File>>,
        codec: Codec,
        depacketizer: Depacketizer,
        waiting_for_keyframe: bool,
        size: Option<(u16, u16)>,
    },
}

struct TrackRecording {
    track: RemoteTrack,
    path: Option<PathBuf>,
    writer: Option<Writer>,
    timestamps: TimestampUnwrapper,
    first_ts: Option<i64>,
    /// The unsupported codec, once reported.
    skipped: Option<Codec>,
    frames: u64,
    /// The latest presentation time written, in the track's clock.
    last_pts: u64,
    clock_rate: u32,
    last_keyframe_request: Option<std::time::Instant>,
}

/// Shortest time between two keyframe requests for one track.
const KEYFRAME_REQUEST_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// What the recorder tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordNote {
    /// A file was started.
    Started {
        /// Track sid.
        track_sid: String,
        /// The file.
        path: PathBuf,
    },
    /// The track's codec cannot be recorded.
    Unsupported {
        /// Track sid.
        track_sid: String,
        /// The codec.
        codec: Codec,
    },
    /// Frames were lost: ask the publisher for a keyframe.
    NeedKeyframe {
        /// Track sid.
        track_sid: String,
    },
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFile {
    /// Track sid.
    pub track_sid: String,
    /// The file.
    pub path: PathBuf,
    /// Frames (Opus packets or video frames) written.
    pub frames: u64,
    /// Media time covered, seconds.
    pub seconds: f64,
}

/// Writes every subscribed track into a directory.
pub struct Recorder {
    dir: PathBuf,
    tracks: HashMap<Arc<str>, TrackRecording>,
}

fn file_stem(track: &RemoteTrack) -> String {
    let who = if track.participant_identity.is_empty() {
        track.participant_sid.as_str()
    } else {
        track.participant_identity.as_str()
    };
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}", clean(who), clean(&track.sid))
}

/// The frame size from a keyframe: VP8's frame header, or VP9's uncompressed header.
fn keyframe_size(codec: Codec, frame: &[u8]) -> Option<(u16, u16)> {
    match codec {
        Codec::Vp8 => {
            if frame.len() < 10 || frame[3..6] != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
            let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
            Some((w, h))
        }
        Codec::Vp9 => vp9_keyframe_size(frame),
        _ => None,
    }
}

fn vp9_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut bits = BitReader { data: frame, at: 0 };
    if bits.read(2)? != 2 {
        return None;
    }
    let profile = bits.read(1)? | (bits.read(1)? << 1);
    if profile == 3 {
        bits.read(1)?;
    }
    if bits.read(1)? == 1 || bits.read(1)? != 0 {
        return None; // show_existing_frame, or not a keyframe
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    if bits.read(24)? != 0x49_8342 {
        return None;
    }
    if profile >= 2 {
        bits.read(1)?; // ten_or_twelve_bit
    }
    let color_space = bits.read(3)?;
    if color_space != 7 {
        bits.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            bits.read(3)?; // subsampling_x, subsampling_y, reserved
        }
    } else if profile == 1 || profile == 3 {
        bits.read(1)?;
    }
    let w = bits.read(16)? + 1;
    let h = bits.read(16)? + 1;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(v)
    }
}

impl Recorder {
    /// A recorder writing into `dir`, which is created if needed.
    pub fn new(dir: &Path) -> Result<Self, MediaError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            tracks: HashMap::new(),
        })
    }

    /// Notes a subscribed track; its file starts with its first packet.
    pub fn add_track(&mut self, track: RemoteTrack) {
        let clock_rate = if track.kind == lkr_client::MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        self.tracks.insert(
            Arc::from(track.sid.as_str()),
            TrackRecording {
                track,
                path: None,
                writer: None,
                timestamps: TimestampUnwrapper::new(),
                first_ts: None,
                skipped: None,
                frames: 0,
                last_pts: 0,
                clock_rate,
                last_keyframe_request: None,
            },
        );
    }

    /// Writes one packet of `track_sid`.
    pub fn handle_packet(
        &mut self,
        track_sid: &str,
        codec: Option<Codec>,
        packet: &MediaPacket,
    ) -> Result<Option<RecordNote>, MediaError> {
        let Some(rec) = self.tracks.get_mut(track_sid) else {
            return Ok(None);
        };
        let Some(codec) = codec else {
            return Ok(None);
        };
        if packet.payload.is_empty() {
            return Ok(None);
        }
        let mut note = None;
        if rec.writer.is_none() {
            if rec.skipped.is_some() {
                return Ok(None);
            }
            let stem = file_stem(&rec.track);
            let writer = match codec {
                Codec::Opus => {
                    let path = self.dir.join(format!("{stem}.ogg"));
                    let w = OggOpusWriter::new(BufWriter::new(File::create(&path)?), 2)?;
                    rec.path = Some(path);
                    Writer::Ogg { writer: w }
                }
                Codec::Vp8 | Codec::Vp9 | Codec::Av1 => {
                    let path = self.dir.join(format!("{stem}.ivf"));
                    let w =
                        IvfWriter::new(BufWriter::new(File::create(&path)?), codec, 0, 0, 90_000)?;
                    rec.path = Some(path);
                    Writer::Ivf {
                        writer: w,
                        codec,
                        depacketizer: Depacketizer::new(codec)
                            .expect("VP8, VP9 and AV1 have depacketizers"),
                        waiting_for_keyframe: true,
                        size: None,
                    }
                }
                Codec::H264 => {
                    rec.skipped = Some(codec);
                    return Ok(Some(RecordNote::Unsupported {
                        track_sid: track_sid.to_owned(),
                        codec,
                    }));
                }
            };
            rec.writer = Some(writer);
            if let Some(path) = &rec.path {
                note = Some(RecordNote::Started {
                    track_sid: track_sid.to_owned(),
                    path: path.clone(),
                });
            }
        }
        let ts = rec.timestamps.unwrap(packet.timestamp);
        match rec.writer.as_mut() {
            Some(Writer::Ogg { writer }) => {
                let first = *rec.first_ts.get_or_insert(ts);
                let start = u64::try_from(ts - first).unwrap_or(0);
                let samples = opus_packet_samples(&packet.payload).unwrap_or(960);
                let end = start + u64::from(samples);
                writer.write_packet(&packet.payload, end)?;
                rec.frames += 1;
                rec.last_pts = rec.last_pts.max(end);
            }
            Some(Writer::Ivf {
                writer,
                codec,
                depacketizer,
                waiting_for_keyframe,
                size,
            }) => {
                if packet.lost_before > 0 {
                    depacketizer.reset();
                    if !*waiting_for_keyframe {
                        *waiting_for_keyframe = true;
                        rec.last_keyframe_request = Some(std::time::Instant::now());
                        note = note.or(Some(RecordNote::NeedKeyframe {
                            track_sid: track_sid.to_owned(),
                        }));
                    }
                }
                if let Some(frame) = depacketizer.push(&packet.payload, packet.marker) {
                    let key = is_keyframe(*codec, &frame);
                    if *waiting_for_keyframe && !key {
                        // Ask again (at most every KEYFRAME_REQUEST_GAP): the start of the
                        // stream, or the request after a loss, may have gone missing.
                        let due = rec
                            .last_keyframe_request
                            .is_none_or(|at| at.elapsed() >= KEYFRAME_REQUEST_GAP);
                        if due {
                            rec.last_keyframe_request = Some(std::time::Instant::now());
                            note = note.or(Some(RecordNote::NeedKeyframe {
                                track_sid: track_sid.to_owned(),
                            }));
                        }
                        return Ok(note);
                    }
                    *waiting_for_keyframe = false;
                    if key && size.is_none() {
                        *size = keyframe_size(*codec, &frame);
                    }
                    let first = *rec.first_ts.get_or_insert(ts);
                    let pts = u64::try_from(ts - first).unwrap_or(0);
                    writer.write_frame(&frame, pts)?;
                    rec.frames += 1;
                    rec.last_pts = rec.last_pts.max(pts);
                }
            }
            None => {}
        }
        Ok(note)
    }

    /// Closes the file of a track that stopped.
    pub fn remove_track(&mut self, track_sid: &str) -> Result<Option<RecordedFile>, MediaError> {
        match self.tracks.remove(track_sid) {
            Some(rec) => finish(rec),
            None => Ok(None),
        }
    }

    /// Closes every file.
    pub fn finish(&mut self) -> Result<Vec<RecordedFile>, MediaError> {
        let mut out = Vec::new();
        for (_, rec) in self.tracks.drain() {
            if let Some(f) = finish(rec)? {
                out.push(f);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn finish(mut rec: TrackRecording) -> Result<Option<RecordedFile>, MediaError> {
    let units = match rec.writer.as_mut() {
        Some(Writer::Ogg { writer }) => {
            writer.finish()?;
            rec.last_pts
        }
        Some(Writer::Ivf { writer, size, .. }) => {
            writer.finish(*size)?;
            writer.length()
        }
        None => return Ok(None),
    };
    let Some(path) = rec.path else {
        return Ok(None);
    };
    Ok(Some(RecordedFile {
        track_sid: rec.track.sid,
        path,
        frames: rec.frames,
        seconds: units as f64 / f64::from(rec.clock_rate),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_and_vp9_sizes() {
        let vp8 = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(keyframe_size(Codec::Vp8, &vp8), Some((640, 480)));
        // VP9 profile 0 keyframe: marker 10, profile 00, show_existing 0, type 0, show 1,
        // error_res 0, sync code, color space 0 (3 bits), range 0, then 16-bit w-1, h-1.
        let mut bits: Vec<u8> = Vec::new();
        let mut push = |v: u32, n: usize| {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        };
        push(2, 2);
        push(0, 2);
        push(0, 1);
        push(0, 1);
        push(1, 1);
        push(0, 1);
        push(0x49_8342, 24);
        push(0, 3);
        push(0, 1);
        push(319, 16);
        push(179, 16);
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |a, (i, b)| a | (b << (7 - i)))
            })
            .collect();
        assert_eq!(keyframe_size(Codec::Vp9, &bytes), Some((320, 180)));
    }
}
