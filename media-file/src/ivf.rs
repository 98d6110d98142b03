//! IVF, the simple container of VP8, VP9 and AV1 frames: a 32-byte file header (`DKIF`,
//! FourCC, size, time base, frame count) and frames of a 12-byte header (size, 64-bit
//! presentation time in time-base units) and data.
//!
//! The reader streams frames and remembers where every keyframe starts, so that a keyframe
//! request can be answered by going back to the latest one.
//!
//! Bytes 24..32 of the header are read two ways: libvpx writes the frame count in the first
//! four, while ffmpeg reads (and writes, as 64 bits) the stream's length in time-base
//! units. The two agree for the usual 1/fps time base. Our writer uses a 1/90000 time base
//! (RTP's video clock) and writes the length as ffmpeg does, so `ffprobe` reports the right
//! duration: frames × the mean frame interval.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::Codec;

use crate::FileError;

const SIGNATURE: &[u8; 4] = b"DKIF";
const HEADER_LEN: u64 = 32;

/// The IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// The FourCC, e.g. `VP80`.
    pub fourcc: [u8; 4],
    /// Frame width.
    pub width: u16,
    /// Frame height.
    pub height: u16,
    /// Time base denominator (ticks per second).
    pub timebase_den: u32,
    /// Time base numerator.
    pub timebase_num: u32,
    /// The frame count (libvpx) or the length in time-base units (ffmpeg, and our writer).
    pub frames: u32,
}

impl IvfHeader {
    /// The codec named by the FourCC.
    pub fn codec(&self) -> Option<Codec> {
        match &self.fourcc {
            b"VP80" => Some(Codec::Vp8),
            b"VP90" => Some(Codec::Vp9),
            b"AV01" => Some(Codec::Av1),
            _ => None,
        }
    }

    /// The FourCC of a codec, if IVF can carry it.
    pub fn fourcc_of(codec: Codec) -> Option<[u8; 4]> {
        match codec {
            Codec::Vp8 => Some(*b"VP80"),
            Codec::Vp9 => Some(*b"VP90"),
            Codec::Av1 => Some(*b"AV01"),
            Codec::Opus | Codec::H264 => None,
        }
    }

    /// A presentation time in microseconds.
    pub fn pts_micros(&self, pts: u64) -> u64 {
        let den = u128::from(self.timebase_den.max(1));
        (u128::from(pts) * u128::from(self.timebase_num) * 1_000_000 / den) as u64
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvfFrame {
    /// Presentation time in time-base units.
    pub pts: u64,
    /// The compressed frame (a temporal unit for AV1).
    pub data: Vec<u8>,
    /// Whether it is a keyframe (a frame decodable on its own).
    pub keyframe: bool,
}

/// Whether a compressed frame of `codec` is a keyframe: the VP8 frame tag's P bit, the VP9
/// uncompressed header's frame type, or an AV1 temporal unit with a sequence header.
pub fn is_keyframe(codec: Codec, frame: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => frame.first().is_some_and(|b| b & 0x01 == 0),
        Codec::Vp9 => vp9_keyframe(frame),
        Codec::Av1 => {
            crate::av1::obus(frame).any(|o| o.obu_type == crate::av1::OBU_SEQUENCE_HEADER)
        }
        Codec::Opus | Codec::H264 => false,
    }
}

fn vp9_keyframe(frame: &[u8]) -> bool {
    let Some(&b) = frame.first() else {
        return false;
    };
    // frame_marker(2) profile_low(1) profile_high(1) [reserved(1) if profile 3]
    // show_existing_frame(1) frame_type(1)
    if b >> 6 != 0b10 {
        return false;
    }
    let profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1);
    let mut bit = 4;
    if profile == 3 {
        bit -= 1;
    }
    let show_existing = (b >> (bit - 1)) & 1;
    if show_existing == 1 {
        return false;
    }
    let frame_type = (b >> (bit - 2)) & 1;
    frame_type == 0
}

/// Reads an IVF file frame by frame.
pub struct IvfReader<R> {
    input: R,
    header: IvfHeader,
    codec: Codec,
    /// File offset and pts of the latest keyframe read.
    last_keyframe: Option<u64>,
    offset: u64,
}

impl<R: Read + Seek> IvfReader<R> {
    /// Opens a file: reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, FileError> {
        let mut h = [0u8; 32];
        input.read_exact(&mut h)?;
        if &h[..4] != SIGNATURE {
            return Err(FileError::Format(
                "not an IVF file (no DKIF signature)".into(),
            ));
        }
        let header_len = u64::from(u16::from_le_bytes([h[6], h[7]]));
        let header = IvfHeader {
            fourcc: [h[8], h[9], h[10], h[11]],
            width: u16::from_le_bytes([h[12], h[13]]),
            height: u16::from_le_bytes([h[14], h[15]]),
            timebase_den: u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
            timebase_num: u32::from_le_bytes([h[20], h[21], h[22], h[23]]),
            frames: u32::from_le_bytes([h[24], h[25], h[26], h[27]]),
        };
        let codec = header.codec().ok_or_else(|| {
            FileError::Format(format!(
                "IVF FourCC {:?} is not VP8, VP9 or AV1",
                String::from_utf8_lossy(&header.fourcc)
            ))
        })?;
        if header.timebase_den == 0 || header.timebase_num == 0 {
            return Err(FileError::Format("IVF time base is zero".into()));
        }
        let offset = header_len.max(HEADER_LEN);
        input.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            input,
            header,
            codec,
            last_keyframe: None,
            offset,
        })
    }

    /// The file header.
    pub fn header(&self) -> IvfHeader {
        self.header
    }

    /// The codec, from the FourCC.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The next frame, or `None` at the end (a truncated last frame counts as the end).
    pub fn next_frame(&mut self) -> Result<Option<IvfFrame>, FileError> {
        let start = self.offset;
        let mut fh = [0u8; 12];
        match self.input.read_exact(&mut fh) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let size = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]) as usize;
        if size > 64 << 20 {
            return Err(FileError::Format(format!("IVF frame of {size} bytes")));
        }
        let pts = u64::from_le_bytes([fh[4], fh[5], fh[6], fh[7], fh[8], fh[9], fh[10], fh[11]]);
        let mut data = vec![0u8; size];
        match self.input.read_exact(&mut data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.offset = start + 12 + size as u64;
        let keyframe = is_keyframe(self.codec, &data);
        if keyframe {
            self.last_keyframe = Some(start);
        }
        Ok(Some(IvfFrame {
            pts,
            data,
            keyframe,
        }))
    }

    /// Goes back to the latest keyframe read, so that the next frame is that keyframe.
    /// Returns `false` when no keyframe was read yet.
    pub fn seek_to_last_keyframe(&mut self) -> Result<bool, FileError> {
        let Some(at) = self.last_keyframe else {
            return Ok(false);
        };
        self.input.seek(SeekFrom::Start(at))?;
        self.offset = at;
        Ok(true)
    }

    /// Goes back to the first frame.
    pub fn rewind(&mut self) -> Result<(), FileError> {
        self.input.seek(SeekFrom::Start(HEADER_LEN))?;
        self.offset = HEADER_LEN;
        self.last_keyframe = None;
        Ok(())
    }
}

/// Writes an IVF file.
pub struct IvfWriter<W: Write + Seek> {
    output: W,
    frames: u32,
    first_pts: Option<u64>,
    last_pts: u64,
    finished: bool,
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Writes the header: `codec`'s FourCC, the size, and a time base of 1/`timebase_den`.
    pub fn new(
        mut output: W,
        codec: Codec,
        width: u16,
        height: u16,
        timebase_den: u32,
    ) -> Result<Self, FileError> {
        let fourcc = IvfHeader::fourcc_of(codec)
            .ok_or_else(|| FileError::Format(format!("IVF cannot carry {codec}")))?;
        let mut h = Vec::with_capacity(32);
        h.extend_from_slice(SIGNATURE);
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&32u16.to_le_bytes());
        h.extend_from_slice(&fourcc);
        h.extend_from_slice(&width.to_le_bytes());
        h.extend_from_slice(&height.to_le_bytes());
        h.extend_from_slice(&timebase_den.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        output.write_all(&h)?;
        Ok(Self {
            output,
            frames: 0,
            first_pts: None,
            last_pts: 0,
            finished: false,
        })
    }

    /// Adds a frame with presentation time `pts`.
    pub fn write_frame(&mut self, data: &[u8], pts: u64) -> Result<(), FileError> {
        let size = u32::try_from(data.len())
            .map_err(|_| FileError::Format("frame too large for IVF".into()))?;
        self.output.write_all(&size.to_le_bytes())?;
        self.output.write_all(&pts.to_le_bytes())?;
        self.output.write_all(data)?;
        self.frames += 1;
        self.first_pts.get_or_insert(pts);
        self.last_pts = self.last_pts.max(pts);
        Ok(())
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> Result<(), FileError> {
        self.output.flush()?;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The stream's length in time-base units: frames × the mean frame interval (one unit
    /// for a single frame).
    pub fn length(&self) -> u64 {
        match (self.first_pts, self.frames) {
            (Some(first), n) if n > 1 => {
                u64::from(n) * (self.last_pts - first) / (u64::from(n) - 1)
            }
            (Some(_), _) => 1,
            (None, _) => 0,
        }
    }

    /// Writes the length into the header (and, when given, the frame size) and flushes.
    pub fn finish(&mut self, size: Option<(u16, u16)>) -> Result<(), FileError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let end = self.output.stream_position()?;
        if let Some((w, h)) = size {
            self.output.seek(SeekFrom::Start(12))?;
            self.output.write_all(&w.to_le_bytes())?;
            self.output.write_all(&h.to_le_bytes())?;
        }
        self.output.seek(SeekFrom::Start(24))?;
        self.output.write_all(&self.length().to_le_bytes())?;
        self.output.seek(SeekFrom::Start(end))?;
        self.output.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn write_read_and_seek_back_to_a_keyframe() {
        let mut w = IvfWriter::new(Cursor::new(Vec::new()), Codec::Vp8, 64, 48, 30).unwrap();
        // Frame tags: bit 0 clear = keyframe.
        w.write_frame(&[0x10, 1, 2], 0).unwrap();
        w.write_frame(&[0x11, 3], 1).unwrap();
        w.write_frame(&[0x10, 4], 2).unwrap();
        w.write_frame(&[0x11, 5], 3).unwrap();
        w.finish(None).unwrap();
        let file = w.output.into_inner();
        assert_eq!(u32::from_le_bytes(file[24..28].try_into().unwrap()), 4);
        let mut r = IvfReader::new(Cursor::new(file)).unwrap();
        assert_eq!(r.codec(), Codec::Vp8);
        assert_eq!((r.header().width, r.header().height), (64, 48));
        assert_eq!(r.header().pts_micros(3), 100_000);
        let frames: Vec<IvfFrame> = std::iter::from_fn(|| r.next_frame().unwrap()).collect();
        assert_eq!(frames.len(), 4);
        assert!(frames[0].keyframe && !frames[1].keyframe && frames[2].keyframe);
        assert!(r.seek_to_last_keyframe().unwrap());
        assert_eq!(r.next_frame().unwrap().unwrap().pts, 2);
        r.rewind().unwrap();
        assert_eq!(r.next_frame().unwrap().unwrap().pts, 0);
    }

    #[test]
    fn vp9_frame_types() {
        // frame_marker 2, profile 0, show_existing 0, frame_type 0 (key).
        assert!(vp9_keyframe(&[0b1000_0000]));
        // frame_type 1 (inter).
        assert!(!vp9_keyframe(&[0b1000_0100]));
        // show_existing_frame.
        assert!(!vp9_keyframe(&[0b1000_1000]));
        assert!(!vp9_keyframe(&[]));
    }

    #[test]
    fn refuses_other_files() {
        assert!(IvfReader::new(Cursor::new(vec![0u8; 40])).is_err());
        let mut h = vec![0u8; 32];
        h[..4].copy_from_slice(b"DKIF");
        h[8..12].copy_from_slice(b"H264");
        h[16] = 30;
        h[20] = 1;
        assert!(IvfReader::new(Cursor::new(h)).is_err());
    }
}
