//! One track's RTP payloads into a file: Opus into Ogg (granule positions from the RTP
//! timestamps, so gaps keep their length), VP8, VP9 and AV1 into IVF with a 1/90000 time
//! base and the RTP timestamp (from the first frame) as presentation time.
//!
//! Video starts at a keyframe; after loss the damaged frames are skipped up to the next
//! keyframe, which the writer asks for (again every second while it waits).

use std::io::{Seek, Write};
use std::time::{Duration, Instant};

use lkr_rtp::TimestampUnwrapper;

use crate::av1::Av1Depacketizer;
use crate::ivf::{IvfWriter, is_keyframe};
use crate::ogg::{OggOpusWriter, opus_packet_samples};
use crate::vp8::Vp8Depacketizer;
use crate::vp9::Vp9Depacketizer;
use crate::webm::WebmWriter;
use crate::{Codec, Container, FileError};

/// Shortest time between two keyframe requests.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_secs(1);

/// The file extension (without the dot) a track of `codec` is written with.
pub fn extension(codec: Codec) -> Option<&'static str> {
    extension_in(codec, Container::Native)
}

/// The file extension of a track of `codec` in `container`; `None` when it cannot hold it.
pub fn extension_in(codec: Codec, container: Container) -> Option<&'static str> {
    match (container, codec) {
        (Container::Native, Codec::Opus) => Some("ogg"),
        (Container::Native, Codec::Vp8 | Codec::Vp9 | Codec::Av1) => Some("ivf"),
        (Container::Webm, Codec::Opus | Codec::Vp8 | Codec::Vp9) => Some("webm"),
        _ => None,
    }
}

enum Depacketizer {
    Vp8(Vp8Depacketizer),
    Vp9(Vp9Depacketizer),
    Av1(Av1Depacketizer),
}

impl Depacketizer {
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

enum Inner<W: Write + Seek> {
    Ogg(OggOpusWriter<W>),
    Ivf {
        writer: IvfWriter<W>,
        depacketizer: Depacketizer,
        waiting_for_keyframe: bool,
        size: Option<(u16, u16)>,
    },
    Webm {
        writer: WebmWriter<W>,
        /// `None` for Opus (one packet, one block).
        depacketizer: Option<Depacketizer>,
        waiting_for_keyframe: bool,
    },
}

fn depacketizer(codec: Codec) -> Depacketizer {
    match codec {
        Codec::Vp8 => Depacketizer::Vp8(Vp8Depacketizer::default()),
        Codec::Vp9 => Depacketizer::Vp9(Vp9Depacketizer::default()),
        _ => Depacketizer::Av1(Av1Depacketizer::default()),
    }
}

/// One RTP packet's part in a file.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
    /// Packets known to be missing just before this one.
    pub lost_before: u64,
}

/// What a packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing complete yet (a frame's first packets), or nothing to write.
    Nothing,
    /// A packet or frame went into the file.
    Written,
    /// Frames are being skipped until a keyframe: ask the publisher for one.
    NeedKeyframe,
}

/// Writes one track's media into `W`.
pub struct TrackWriter<W: Write + Seek> {
    inner: Inner<W>,
    codec: Codec,
    timestamps: TimestampUnwrapper,
    first_ts: Option<i64>,
    frames: u64,
    /// The latest presentation time written, in the track's clock.
    last_pts: u64,
    last_keyframe_request: Option<Instant>,
    finished: bool,
}

impl<W: Write + Seek> TrackWriter<W> {
    /// Starts a file of `codec` in `output`, Ogg or IVF (its header is written at once).
    pub fn new(output: W, codec: Codec) -> Result<Self, FileError> {
        Self::with_container(output, codec, Container::Native)
    }

    /// Starts a file of `codec` in `output` as `container` (a WebM header waits for the
    /// first frame).
    pub fn with_container(
        output: W,
        codec: Codec,
        container: Container,
    ) -> Result<Self, FileError> {
        let inner = match (container, codec) {
            (Container::Native, Codec::Opus) => Inner::Ogg(OggOpusWriter::new(output, 2)?),
            (Container::Native, Codec::Vp8 | Codec::Vp9 | Codec::Av1) => Inner::Ivf {
                writer: IvfWriter::new(output, codec, 0, 0, 90_000)?,
                depacketizer: depacketizer(codec),
                waiting_for_keyframe: true,
                size: None,
            },
            (Container::Webm, _) => Inner::Webm {
                writer: WebmWriter::new(output, codec)?,
                depacketizer: (codec != Codec::Opus).then(|| depacketizer(codec)),
                waiting_for_keyframe: codec != Codec::Opus,
            },
            (Container::Native, Codec::H264) => return Err(FileError::Unsupported(codec)),
        };
        Ok(Self {
            inner,
            codec,
            timestamps: TimestampUnwrapper::new(),
            first_ts: None,
            frames: 0,
            last_pts: 0,
            last_keyframe_request: None,
            finished: false,
        })
    }

    /// The codec written.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Opus packets or video frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Media time covered so far.
    pub fn duration(&self) -> Duration {
        let units = match &self.inner {
            Inner::Ogg(_) => self.last_pts,
            Inner::Ivf { writer, .. } => writer.length(),
            Inner::Webm { depacketizer, .. } => match (depacketizer, self.frames) {
                // Audio: the end of the last packet; video: frames x the mean interval.
                (None, _) => self.last_pts,
                (Some(_), n) if n > 1 => n * self.last_pts / (n - 1),
                (Some(_), _) => 0,
            },
        };
        Duration::from_nanos(
            (u128::from(units) * 1_000_000_000 / u128::from(self.codec.clock_rate())) as u64,
        )
    }

    fn keyframe_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_keyframe_request
            .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_REQUEST_GAP);
        if due {
            self.last_keyframe_request = Some(now);
        }
        due
    }

    /// Writes one packet's payload.
    pub fn push(&mut self, p: &Packet<'_>, now: Instant) -> Result<Pushed, FileError> {
        if p.payload.is_empty() || self.finished {
            return Ok(Pushed::Nothing);
        }
        let ts = self.timestamps.unwrap(p.timestamp);
        match &mut self.inner {
            Inner::Ogg(writer) => {
                let first = *self.first_ts.get_or_insert(ts);
                let start = u64::try_from(ts - first).unwrap_or(0);
                let samples = opus_packet_samples(p.payload).unwrap_or(960);
                let end = start + u64::from(samples);
                writer.write_packet(p.payload, end)?;
                self.frames += 1;
                self.last_pts = self.last_pts.max(end);
                Ok(Pushed::Written)
            }
            Inner::Ivf {
                writer,
                depacketizer,
                waiting_for_keyframe,
                size,
            } => {
                let mut need = false;
                if p.lost_before > 0 {
                    depacketizer.reset();
                    if !*waiting_for_keyframe {
                        *waiting_for_keyframe = true;
                        need = true;
                    }
                }
                let Some(frame) = depacketizer.push(p.payload, p.marker) else {
                    if need {
                        self.last_keyframe_request = Some(now);
                        return Ok(Pushed::NeedKeyframe);
                    }
                    return Ok(Pushed::Nothing);
                };
                let key = is_keyframe(self.codec, &frame);
                if *waiting_for_keyframe && !key {
                    // Ask again (at most every KEYFRAME_REQUEST_GAP): the start of the
                    // stream, or the request after a loss, may have gone missing.
                    return Ok(if need || self.keyframe_due(now) {
                        Pushed::NeedKeyframe
                    } else {
                        Pushed::Nothing
                    });
                }
                *waiting_for_keyframe = false;
                if key && size.is_none() {
                    *size = keyframe_size(self.codec, &frame);
                }
                let first = *self.first_ts.get_or_insert(ts);
                let pts = u64::try_from(ts - first).unwrap_or(0);
                writer.write_frame(&frame, pts)?;
                self.frames += 1;
                self.last_pts = self.last_pts.max(pts);
                Ok(Pushed::Written)
            }
            Inner::Webm {
                writer,
                depacketizer: None,
                ..
            } => {
                let first = *self.first_ts.get_or_insert(ts);
                let start = u64::try_from(ts - first).unwrap_or(0);
                let samples = opus_packet_samples(p.payload).unwrap_or(960);
                writer.write_frame(p.payload, start / 48, true, None)?;
                self.frames += 1;
                self.last_pts = self.last_pts.max(start + u64::from(samples));
                Ok(Pushed::Written)
            }
            Inner::Webm {
                writer,
                depacketizer: Some(depacketizer),
                waiting_for_keyframe,
            } => {
                let mut need = false;
                if p.lost_before > 0 {
                    depacketizer.reset();
                    if !*waiting_for_keyframe {
                        *waiting_for_keyframe = true;
                        need = true;
                    }
                }
                let Some(frame) = depacketizer.push(p.payload, p.marker) else {
                    if need {
                        self.last_keyframe_request = Some(now);
                        return Ok(Pushed::NeedKeyframe);
                    }
                    return Ok(Pushed::Nothing);
                };
                let key = is_keyframe(self.codec, &frame);
                if *waiting_for_keyframe && !key {
                    return Ok(if need || self.keyframe_due(now) {
                        Pushed::NeedKeyframe
                    } else {
                        Pushed::Nothing
                    });
                }
                *waiting_for_keyframe = false;
                let size = if key {
                    keyframe_size(self.codec, &frame)
                } else {
                    None
                };
                let first = *self.first_ts.get_or_insert(ts);
                let pts = u64::try_from(ts - first).unwrap_or(0);
                writer.write_frame(&frame, pts / 90, key, size)?;
                self.frames += 1;
                self.last_pts = self.last_pts.max(pts);
                Ok(Pushed::Written)
            }
        }
    }

    /// Flushes what was written so far to the output.
    pub fn flush(&mut self) -> Result<(), FileError> {
        match &mut self.inner {
            Inner::Ogg(writer) => writer.flush(),
            Inner::Ivf { writer, .. } => writer.flush(),
            Inner::Webm { writer, .. } => writer.flush(),
        }
    }

    /// Completes the file (Ogg's end-of-stream page; IVF's length and frame size) and
    /// flushes it. Later pushes write nothing.
    pub fn finish(&mut self) -> Result<(), FileError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let ms = self.duration().as_secs_f64() * 1000.0;
        match &mut self.inner {
            Inner::Ogg(writer) => writer.finish(),
            Inner::Ivf { writer, size, .. } => writer.finish(*size),
            Inner::Webm { writer, .. } => writer.finish(ms),
        }
    }
}

/// Turns the sequence numbers of one RTP stream into loss counts, and drops packets older
/// than the newest one seen (late retransmissions, duplicates): a file is written in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqGate {
    last: Option<u16>,
}

impl SeqGate {
    /// `Some(lost_before)` for a packet to write, `None` for one to drop.
    pub fn accept(&mut self, seq: u16) -> Option<u64> {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return Some(0);
        };
        let d = seq.wrapping_sub(last) as i16;
        if d <= 0 {
            return None;
        }
        self.last = Some(seq);
        Some(u64::from(d as u16 - 1))
    }
}

/// The frame size from a keyframe: VP8's frame header, or VP9's uncompressed header.
pub fn keyframe_size(codec: Codec, frame: &[u8]) -> Option<(u16, u16)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::IvfReader;
    use crate::ogg::OggOpusReader;
    use crate::vp8::Vp8Packetizer;
    use std::fs::File;
    use std::io::Cursor;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("lkr-track-{}-{name}", std::process::id()))
    }

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

    #[test]
    fn seq_gate_counts_gaps_and_drops_late_packets() {
        let mut g = SeqGate::default();
        assert_eq!(g.accept(65534), Some(0));
        assert_eq!(g.accept(65535), Some(0));
        assert_eq!(g.accept(2), Some(2)); // 0 and 1 missing, across the wrap
        assert_eq!(g.accept(1), None); // late
        assert_eq!(g.accept(2), None); // repeated
        assert_eq!(g.accept(3), Some(0));
    }

    #[test]
    fn opus_packets_make_an_ogg_file_with_their_duration() {
        let path = tmp("opus.ogg");
        let mut w = TrackWriter::new(File::create(&path).unwrap(), Codec::Opus).unwrap();
        let now = Instant::now();
        // 20 ms CELT packets (TOC config 31: 20 ms), one lost in the middle.
        for i in 0..50u32 {
            if i == 20 {
                continue;
            }
            let p = Packet {
                timestamp: 1000 + i * 960,
                marker: false,
                payload: &[0xf8, 0x01, 0x02],
                lost_before: u64::from(i == 21),
            };
            assert_eq!(w.push(&p, now).unwrap(), Pushed::Written);
        }
        assert_eq!(w.frames(), 49);
        assert_eq!(w.duration(), Duration::from_secs(1));
        w.finish().unwrap();
        drop(w);
        let mut r = OggOpusReader::new(File::open(&path).unwrap()).unwrap();
        let mut n = 0;
        while r.next_packet().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 49);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn video_starts_on_a_keyframe_and_asks_for_one_after_loss() {
        let path = tmp("vp8.ivf");
        let mut w = TrackWriter::new(File::create(&path).unwrap(), Codec::Vp8).unwrap();
        let mut pk = Vp8Packetizer::default();
        let now = Instant::now();
        let key: Vec<u8> = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
            .into_iter()
            .chain(std::iter::repeat_n(7u8, 300))
            .collect();
        let delta: Vec<u8> = std::iter::once(0x01)
            .chain(std::iter::repeat_n(9u8, 300))
            .collect();
        let mut ts = 0u32;
        let mut send = |w: &mut TrackWriter<_>, frame: &[u8], lost: u64, at: Instant| {
            ts += 3000;
            let parts = pk.packetize(frame, 120);
            let n = parts.len();
            let mut last = Pushed::Nothing;
            for (i, part) in parts.iter().enumerate() {
                let p = Packet {
                    timestamp: ts,
                    marker: i + 1 == n,
                    payload: part,
                    lost_before: if i == 0 { lost } else { 0 },
                };
                let r = w.push(&p, at).unwrap();
                if last != Pushed::NeedKeyframe {
                    last = r;
                }
            }
            last
        };
        // A delta frame before any keyframe is skipped, and a keyframe asked for.
        assert_eq!(send(&mut w, &delta, 0, now), Pushed::NeedKeyframe);
        assert_eq!(send(&mut w, &key, 0, now), Pushed::Written);
        assert_eq!(send(&mut w, &delta, 0, now), Pushed::Written);
        // Loss: the next delta frame is skipped and a keyframe asked for at once.
        assert_eq!(send(&mut w, &delta, 3, now), Pushed::NeedKeyframe);
        // Not again within a second...
        assert_eq!(send(&mut w, &delta, 0, now), Pushed::Nothing);
        // ...but after one.
        let later = now + Duration::from_millis(1100);
        assert_eq!(send(&mut w, &delta, 0, later), Pushed::NeedKeyframe);
        assert_eq!(send(&mut w, &key, 0, later), Pushed::Written);
        assert_eq!(w.frames(), 3);
        w.finish().unwrap();
        drop(w);
        let mut r = IvfReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!((r.header().width, r.header().height), (320, 240));
        let mut keys = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            keys.push(f.keyframe);
        }
        assert_eq!(keys, vec![true, false, true]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn h264_has_no_file() {
        assert!(matches!(
            TrackWriter::new(Cursor::new(Vec::new()), Codec::H264),
            Err(FileError::Unsupported(Codec::H264))
        ));
        assert_eq!(extension(Codec::Vp9), Some("ivf"));
    }
}
