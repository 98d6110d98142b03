//! Ogg (RFC 3533) carrying Opus (RFC 7845): a page reader that yields packets, and a writer.
//!
//! Reading: pages are checked (capture pattern, version, CRC-32) and their lacing values
//! joined into packets, continued packets across pages included. The first two packets of an
//! Opus stream are the `OpusHead` and `OpusTags` headers; every later packet's duration
//! comes from its TOC byte (RFC 6716 §3.1), which matches the granule positions of a
//! well-formed file and keeps working when a page holds several packets.
//!
//! Writing: `OpusHead` and `OpusTags` pages, then one page per audio packet whose granule
//! position is the 48 kHz sample count at the end of that packet; the last page carries the
//! end-of-stream flag (one packet is held back so that it can).

use std::io::{self, Read, Write};

use crate::FileError;

const CAPTURE: &[u8; 4] = b"OggS";
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// The Ogg CRC-32: polynomial 0x04c11db7, no reflection, initial value 0, no final XOR.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04c1_1db7
                } else {
                    r << 1
                };
            }
            *e = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ table[usize::from(((crc >> 24) as u8) ^ b)]
    })
}

/// The `OpusHead` identification header (RFC 7845 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channel count.
    pub channels: u8,
    /// Samples (at 48 kHz) to drop from the start of the decoded stream.
    pub pre_skip: u16,
    /// The original input sample rate, informational.
    pub input_sample_rate: u32,
}

impl OpusHead {
    fn parse(packet: &[u8]) -> Result<Self, FileError> {
        if packet.len() < 19 || &packet[..8] != b"OpusHead" {
            return Err(FileError::Format(
                "the first Ogg packet is not OpusHead".into(),
            ));
        }
        Ok(Self {
            channels: packet[9],
            pre_skip: u16::from_le_bytes([packet[10], packet[11]]),
            input_sample_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
        })
    }

    pub(crate) fn write(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(19);
        v.extend_from_slice(b"OpusHead");
        v.push(1);
        v.push(self.channels);
        v.extend_from_slice(&self.pre_skip.to_le_bytes());
        v.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        v.extend_from_slice(&0i16.to_le_bytes());
        v.push(0);
        v
    }
}

/// Samples (at 48 kHz) in an Opus packet, from its TOC byte (RFC 6716 §3.1); `None` for a
/// malformed packet.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (total > 0 && total <= 5760).then_some(total)
}

/// An Opus audio packet read from an Ogg file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The packet.
    pub data: Vec<u8>,
    /// Its duration in 48 kHz samples.
    pub samples: u32,
    /// Its start, in 48 kHz samples from the start of the stream.
    pub position: u64,
}

/// Reads the Opus packets of an Ogg file.
pub struct OggOpusReader<R> {
    input: R,
    head: OpusHead,
    /// Packets already cut from the current page.
    queue: std::collections::VecDeque<Vec<u8>>,
    partial: Vec<u8>,
    position: u64,
    ended: bool,
}

impl<R: Read> OggOpusReader<R> {
    /// Opens a stream: reads and checks the two header packets.
    pub fn new(input: R) -> Result<Self, FileError> {
        let mut r = Self {
            input,
            head: OpusHead {
                channels: 2,
                pre_skip: 0,
                input_sample_rate: 48_000,
            },
            queue: Default::default(),
            partial: Vec::new(),
            position: 0,
            ended: false,
        };
        let head = r
            .next_raw()?
            .ok_or_else(|| FileError::Format("empty Ogg file".into()))?;
        r.head = OpusHead::parse(&head)?;
        let tags = r
            .next_raw()?
            .ok_or_else(|| FileError::Format("no OpusTags packet".into()))?;
        if !tags.starts_with(b"OpusTags") {
            return Err(FileError::Format(
                "the second Ogg packet is not OpusTags".into(),
            ));
        }
        Ok(r)
    }

    /// The identification header.
    pub fn head(&self) -> OpusHead {
        self.head
    }

    /// The next audio packet, or `None` at the end.
    pub fn next_packet(&mut self) -> Result<Option<OpusPacket>, FileError> {
        loop {
            let Some(data) = self.next_raw()? else {
                return Ok(None);
            };
            let Some(samples) = opus_packet_samples(&data) else {
                continue;
            };
            let position = self.position;
            self.position += u64::from(samples);
            return Ok(Some(OpusPacket {
                data,
                samples,
                position,
            }));
        }
    }

    fn next_raw(&mut self) -> Result<Option<Vec<u8>>, FileError> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return Ok(Some(p));
            }
            if self.ended || !self.read_page()? {
                return Ok(None);
            }
        }
    }

    /// Reads one page into the packet queue; `false` at a clean end of file.
    fn read_page(&mut self) -> Result<bool, FileError> {
        let mut header = [0u8; 27];
        match self.input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.ended = true;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        if &header[..4] != CAPTURE || header[4] != 0 {
            return Err(FileError::Format("not an Ogg page".into()));
        }
        let flags = header[5];
        let mut lacing = vec![0u8; usize::from(header[26])];
        self.input.read_exact(&mut lacing)?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let mut body = vec![0u8; body_len];
        self.input.read_exact(&mut body)?;
        let mut check = Vec::with_capacity(27 + lacing.len() + body.len());
        check.extend_from_slice(&header);
        check[22..26].fill(0);
        check.extend_from_slice(&lacing);
        check.extend_from_slice(&body);
        let carried = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
        if crc32(&check) != carried {
            return Err(FileError::Format("Ogg page CRC mismatch".into()));
        }
        if flags & FLAG_CONTINUED == 0 {
            self.partial.clear();
        }
        let mut at = 0;
        for &l in &lacing {
            let l = usize::from(l);
            self.partial.extend_from_slice(&body[at..at + l]);
            at += l;
            if l < 255 {
                self.queue.push_back(std::mem::take(&mut self.partial));
            }
        }
        if flags & FLAG_EOS != 0 {
            self.ended = true;
        }
        Ok(true)
    }
}

/// Writes an Ogg Opus stream.
pub struct OggOpusWriter<W: Write> {
    output: W,
    serial: u32,
    sequence: u32,
    /// A packet waiting for its page, with its end granule position.
    held: Option<(Vec<u8>, u64)>,
    finished: bool,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the `OpusHead` (with `channels`, no pre-skip) and `OpusTags` pages.
    pub fn new(output: W, channels: u8) -> Result<Self, FileError> {
        let mut w = Self {
            output,
            serial: rand::random(),
            sequence: 0,
            held: None,
            finished: false,
        };
        let head = OpusHead {
            channels,
            pre_skip: 0,
            input_sample_rate: 48_000,
        };
        w.write_page(&head.write(), 0, FLAG_BOS)?;
        let vendor = b"livekit-cli";
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        w.write_page(&tags, 0, 0)?;
        Ok(w)
    }

    /// Adds a packet that ends at 48 kHz sample position `end_granule`.
    pub fn write_packet(&mut self, packet: &[u8], end_granule: u64) -> Result<(), FileError> {
        if let Some((p, g)) = self.held.take() {
            self.write_page(&p, g, 0)?;
        }
        self.held = Some((packet.to_vec(), end_granule));
        Ok(())
    }

    /// Flushes what was written (the latest packet stays held for the end-of-stream page).
    pub fn flush(&mut self) -> Result<(), FileError> {
        self.output.flush()?;
        Ok(())
    }

    /// Writes the held packet with the end-of-stream flag and flushes.
    pub fn finish(&mut self) -> Result<(), FileError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        match self.held.take() {
            Some((p, g)) => self.write_page(&p, g, FLAG_EOS)?,
            None => self.write_page(&[], 0, FLAG_EOS)?,
        }
        self.output.flush()?;
        Ok(())
    }

    fn write_page(&mut self, packet: &[u8], granule: u64, flags: u8) -> Result<(), FileError> {
        // One packet per page: lacing values of 255 and a final one below 255.
        let mut lacing = vec![255u8; packet.len() / 255];
        lacing.push((packet.len() % 255) as u8);
        if lacing.len() > 255 {
            return Err(FileError::Format(
                "Opus packet too large for one Ogg page".into(),
            ));
        }
        let mut page = Vec::with_capacity(27 + lacing.len() + packet.len());
        page.extend_from_slice(CAPTURE);
        page.push(0);
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        page.extend_from_slice(packet);
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.output.write_all(&page)?;
        self.sequence += 1;
        Ok(())
    }
}

impl<W: Write> Drop for OggOpusWriter<W> {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_a_known_value() {
        // The CRC of "OggS" followed by zeros as computed by the reference polynomial.
        assert_eq!(crc32(b""), 0);
        assert_ne!(crc32(b"a"), crc32(b"b"));
    }

    #[test]
    fn toc_durations() {
        // config 31 (CELT 20 ms), one frame.
        assert_eq!(opus_packet_samples(&[31 << 3]), Some(960));
        // config 1 (SILK 20 ms), two frames.
        assert_eq!(opus_packet_samples(&[(1 << 3) | 1]), Some(1920));
        // config 16 (CELT 2.5 ms), code 3 with 4 frames.
        assert_eq!(opus_packet_samples(&[(16 << 3) | 3, 4]), Some(480));
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn write_then_read_back() {
        let mut file = Vec::new();
        {
            let mut w = OggOpusWriter::new(&mut file, 2).unwrap();
            let mut g = 0;
            for i in 0..50u8 {
                let mut p = vec![31 << 3];
                p.extend(std::iter::repeat_n(i, 300 + usize::from(i)));
                g += 960;
                w.write_packet(&p, g).unwrap();
            }
            w.finish().unwrap();
        }
        let mut r = OggOpusReader::new(file.as_slice()).unwrap();
        assert_eq!(r.head().channels, 2);
        let mut n = 0;
        while let Some(p) = r.next_packet().unwrap() {
            assert_eq!(p.samples, 960);
            assert_eq!(p.position, 960 * n);
            assert_eq!(p.data.len(), 301 + n as usize);
            n += 1;
        }
        assert_eq!(n, 50);
        // A flipped byte fails the CRC.
        let mut bad = file.clone();
        let at = bad.len() - 3;
        bad[at] ^= 1;
        let mut r = OggOpusReader::new(bad.as_slice()).unwrap();
        let mut err = false;
        loop {
            match r.next_packet() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    err = true;
                    break;
                }
            }
        }
        assert!(err);
    }
}
