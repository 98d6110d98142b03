//! WebM (the Matroska subset browsers play) with one track: VP8, VP9 or Opus frames as
//! `SimpleBlock`s in clusters, millisecond timestamps.
//!
//! The header is written with the first frame, when a video track's size is known (video
//! starts on a keyframe). Sizes of the segment and of each cluster are written as 8-byte
//! placeholders and filled in when they close, and the segment's `Duration` when the file
//! is finished, so players and `ffprobe` see a complete file; a file cut short (the process
//! killed) is still readable up to its last whole cluster. A new cluster starts at each
//! video keyframe, and at least every 5 s.

use std::io::{Seek, SeekFrom, Write};

use crate::{Codec, FileError};

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// Longest cluster, ms (a block's timestamp is an i16 offset from its cluster's).
const MAX_CLUSTER_MS: u64 = 5_000;
/// An 8-byte EBML size whose value is filled in later.
const SIZE_PLACEHOLDER: [u8; 8] = [0x01, 0, 0, 0, 0, 0, 0, 0];

fn id_bytes(id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(3);
    b[skip..].to_vec()
}

/// An EBML variable-size integer of the smallest length.
fn size_bytes(n: u64) -> Vec<u8> {
    let len = (1..=8).find(|l| n < (1u64 << (7 * l)) - 1).unwrap_or(8);
    let mut v = n.to_be_bytes()[8 - len..].to_vec();
    v[0] |= 0x80 >> (len - 1);
    v
}

fn element(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = id_bytes(id);
    v.extend(size_bytes(body.len() as u64));
    v.extend_from_slice(body);
    v
}

fn uint(id: u32, n: u64) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(7);
    element(id, &b[skip..])
}

fn float(id: u32, f: f64) -> Vec<u8> {
    element(id, &f.to_be_bytes())
}

/// Writes a WebM file of one track.
pub struct WebmWriter<W: Write + Seek> {
    output: W,
    codec: Codec,
    /// Where the segment's size and its `Duration` value are, once the header is written.
    segment: Option<(u64, u64)>,
    /// The open cluster: where its size is, and its timestamp.
    cluster: Option<(u64, u64)>,
    last_ms: u64,
    finished: bool,
}

impl<W: Write + Seek> WebmWriter<W> {
    /// A writer of `codec` frames (nothing is written before the first frame).
    pub fn new(output: W, codec: Codec) -> Result<Self, FileError> {
        // AV1 in WebM needs its configuration record (`av1C`) up front; IVF carries it.
        if matches!(codec, Codec::H264 | Codec::Av1) {
            return Err(FileError::Unsupported(codec));
        }
        Ok(Self {
            output,
            codec,
            segment: None,
            cluster: None,
            last_ms: 0,
            finished: false,
        })
    }

    fn write_header(&mut self, size: Option<(u16, u16)>) -> Result<(), FileError> {
        let ebml = [
            uint(0x4286, 1),
            uint(0x42F7, 1),
            uint(0x42F2, 4),
            uint(0x42F3, 8),
            element(0x4282, b"webm"),
            uint(0x4287, 4),
            uint(0x4285, 2),
        ]
        .concat();
        self.output.write_all(&element(EBML, &ebml))?;
        self.output.write_all(&id_bytes(SEGMENT))?;
        let segment_size_at = self.output.stream_position()?;
        self.output.write_all(&SIZE_PLACEHOLDER)?;
        let mut info = [
            uint(TIMECODE_SCALE, 1_000_000),
            element(MUXING_APP, b"livekit-server"),
            element(WRITING_APP, b"livekit-server"),
        ]
        .concat();
        info.extend(float(DURATION, 0.0));
        let info = element(INFO, &info);
        let info_start = self.output.stream_position()?;
        // The Duration's value is the last 8 bytes of Info.
        let duration_at = info_start + info.len() as u64 - 8;
        self.output.write_all(&info)?;
        let (codec_id, track_type) = match self.codec {
            Codec::Vp8 => ("V_VP8", 1),
            Codec::Vp9 => ("V_VP9", 1),
            Codec::Opus => ("A_OPUS", 2),
            Codec::Av1 | Codec::H264 => return Err(FileError::Unsupported(self.codec)),
        };
        let mut entry = [
            uint(TRACK_NUMBER, 1),
            uint(TRACK_UID, 1),
            uint(TRACK_TYPE, track_type),
            element(CODEC_ID, codec_id.as_bytes()),
        ]
        .concat();
        if self.codec == Codec::Opus {
            let head = crate::ogg::OpusHead {
                channels: 2,
                pre_skip: 0,
                input_sample_rate: 48_000,
            };
            entry.extend(element(CODEC_PRIVATE, &head.write()));
            entry.extend(element(
                AUDIO,
                &[float(SAMPLING_FREQUENCY, 48_000.0), uint(CHANNELS, 2)].concat(),
            ));
        } else {
            let (w, h) = size.unwrap_or((0, 0));
            entry.extend(element(
                VIDEO,
                &[
                    uint(PIXEL_WIDTH, u64::from(w)),
                    uint(PIXEL_HEIGHT, u64::from(h)),
                ]
                .concat(),
            ));
        }
        self.output
            .write_all(&element(TRACKS, &element(TRACK_ENTRY, &entry)))?;
        self.segment = Some((segment_size_at, duration_at));
        Ok(())
    }

    /// Fills in an 8-byte size placeholder at `at` with the bytes from after it to the end.
    fn close_size(&mut self, at: u64) -> Result<(), FileError> {
        let end = self.output.stream_position()?;
        let n = end - at - 8;
        let mut b = n.to_be_bytes();
        b[0] = 0x01;
        self.output.seek(SeekFrom::Start(at))?;
        self.output.write_all(&b)?;
        self.output.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Adds a frame at `ms` (from the start of the file). `size` is a video track's frame
    /// size, used with its first frame.
    pub fn write_frame(
        &mut self,
        data: &[u8],
        ms: u64,
        keyframe: bool,
        size: Option<(u16, u16)>,
    ) -> Result<(), FileError> {
        if self.segment.is_none() {
            self.write_header(size)?;
        }
        let video = self.codec != Codec::Opus;
        let new_cluster = match self.cluster {
            None => true,
            Some((_, start)) => {
                ms < start || ms - start >= MAX_CLUSTER_MS || (video && keyframe && ms > start)
            }
        };
        if new_cluster {
            if let Some((at, _)) = self.cluster.take() {
                self.close_size(at)?;
            }
            self.output.write_all(&id_bytes(CLUSTER))?;
            let at = self.output.stream_position()?;
            self.output.write_all(&SIZE_PLACEHOLDER)?;
            self.output.write_all(&uint(TIMECODE, ms))?;
            self.cluster = Some((at, ms));
        }
        let start = self.cluster.map_or(ms, |(_, s)| s);
        let rel = i16::try_from(ms - start).unwrap_or(i16::MAX);
        let mut head = Vec::with_capacity(4);
        head.push(0x81); // track 1
        head.extend_from_slice(&rel.to_be_bytes());
        head.push(if keyframe || !video { 0x80 } else { 0 });
        self.output.write_all(&id_bytes(SIMPLE_BLOCK))?;
        self.output
            .write_all(&size_bytes((head.len() + data.len()) as u64))?;
        self.output.write_all(&head)?;
        self.output.write_all(data)?;
        self.last_ms = self.last_ms.max(ms);
        Ok(())
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> Result<(), FileError> {
        self.output.flush()?;
        Ok(())
    }

    /// Closes the last cluster, writes the segment's size and `duration_ms`, and flushes.
    pub fn finish(&mut self, duration_ms: f64) -> Result<(), FileError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if let Some((at, _)) = self.cluster.take() {
            self.close_size(at)?;
        }
        if let Some((segment_at, duration_at)) = self.segment {
            self.close_size(segment_at)?;
            let end = self.output.stream_position()?;
            self.output.seek(SeekFrom::Start(duration_at))?;
            self.output.write_all(&duration_ms.to_be_bytes())?;
            self.output.seek(SeekFrom::Start(end))?;
        }
        self.output.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn ebml_sizes_and_ids() {
        assert_eq!(size_bytes(0), vec![0x80]);
        assert_eq!(size_bytes(126), vec![0xFE]);
        assert_eq!(size_bytes(127), vec![0x40, 0x7F]);
        assert_eq!(size_bytes(300), vec![0x41, 0x2C]);
        assert_eq!(id_bytes(SEGMENT), vec![0x18, 0x53, 0x80, 0x67]);
        assert_eq!(id_bytes(SIMPLE_BLOCK), vec![0xA3]);
        assert_eq!(uint(TRACK_NUMBER, 1), vec![0xD7, 0x81, 0x01]);
    }

    #[test]
    fn a_file_has_its_header_clusters_blocks_and_sizes() {
        let mut w = WebmWriter::new(Cursor::new(Vec::new()), Codec::Vp8).unwrap();
        let key = [0x10u8, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        w.write_frame(&key, 0, true, Some((320, 240))).unwrap();
        w.write_frame(&[0x01, 2, 3], 33, false, None).unwrap();
        w.write_frame(&key, 66, true, None).unwrap();
        w.finish(99.0).unwrap();
        let bytes = w.output.into_inner();
        assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        let find = |pat: &[u8]| bytes.windows(pat.len()).filter(|x| *x == pat).count();
        assert_eq!(find(b"webm"), 1);
        assert_eq!(find(b"V_VP8"), 1);
        assert_eq!(find(&[0x1F, 0x43, 0xB6, 0x75]), 2, "a cluster per keyframe");
        // The segment's size covers the rest of the file.
        let seg = bytes
            .windows(4)
            .position(|x| x == [0x18, 0x53, 0x80, 0x67])
            .unwrap()
            + 4;
        assert_eq!(bytes[seg], 0x01);
        let n = u64::from_be_bytes([
            0,
            bytes[seg + 1],
            bytes[seg + 2],
            bytes[seg + 3],
            bytes[seg + 4],
            bytes[seg + 5],
            bytes[seg + 6],
            bytes[seg + 7],
        ]);
        assert_eq!(n as usize, bytes.len() - seg - 8);
        // The duration was filled in.
        let d = bytes.windows(2).position(|x| x == [0x44, 0x89]).unwrap() + 3;
        let dur = f64::from_be_bytes(bytes[d..d + 8].try_into().unwrap());
        assert_eq!(dur, 99.0);
    }
}
