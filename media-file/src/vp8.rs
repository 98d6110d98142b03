//! VP8 over RTP (RFC 7741): a packetizer writing the payload descriptor with a 15-bit
//! PictureID, and a depacketizer that strips it and joins the partitions of a frame.

/// Splits frames into RTP payloads.
#[derive(Debug)]
pub struct Vp8Packetizer {
    picture_id: u16,
}

impl Default for Vp8Packetizer {
    fn default() -> Self {
        Self {
            picture_id: rand::random::<u16>() & 0x7fff,
        }
    }
}

impl Vp8Packetizer {
    /// The payloads of one frame, each at most `mtu` bytes; the first has S=1, PID=0.
    pub fn packetize(&mut self, frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let room = mtu.max(16) - 4;
        let mut out = Vec::with_capacity(frame.len() / room + 1);
        for (i, chunk) in frame.chunks(room).enumerate() {
            let mut p = Vec::with_capacity(4 + chunk.len());
            // X=1, S on the first packet, PID 0; I=1; M=1 and the 15-bit PictureID.
            p.push(0x80 | if i == 0 { 0x10 } else { 0 });
            p.push(0x80);
            p.push(0x80 | (pid >> 8) as u8);
            p.push(pid as u8);
            p.extend_from_slice(chunk);
            out.push(p);
        }
        out
    }
}

/// Joins RTP payloads back into frames.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    frame: Vec<u8>,
    started: bool,
}

impl Vp8Depacketizer {
    /// Forgets a partly received frame (after loss).
    pub fn reset(&mut self) {
        self.frame.clear();
        self.started = false;
    }

    /// Adds one payload; with `marker` (the last packet of a frame), returns the frame if
    /// its start was seen.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Option<Vec<u8>> {
        let d = lkr_rtp::vp8::parse(payload).ok()?;
        let body = payload.get(d.header_len..)?;
        if d.start_of_partition && d.partition_id == 0 {
            self.frame.clear();
            self.started = true;
        }
        if self.started {
            self.frame.extend_from_slice(body);
        }
        if marker {
            let done = self.started && !self.frame.is_empty();
            self.started = false;
            if done {
                return Some(std::mem::take(&mut self.frame));
            }
            self.frame.clear();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frame: Vec<u8> = (0..2500u32).map(|i| (i % 7) as u8 & 0xfe).collect();
        let mut p = Vp8Packetizer::default();
        let parts = p.packetize(&frame, 1000);
        assert_eq!(parts.len(), 3);
        assert!(lkr_rtp::vp8::is_keyframe(&parts[0]));
        assert!(!lkr_rtp::vp8::is_keyframe(&parts[1]));
        let pid0 = lkr_rtp::vp8::parse(&parts[0]).unwrap().picture_id;
        let next = p.packetize(&[1], 1000);
        assert_eq!(
            lkr_rtp::vp8::parse(&next[0]).unwrap().picture_id,
            pid0.map(|x| (x + 1) & 0x7fff)
        );
        let mut d = Vp8Depacketizer::default();
        assert!(d.push(&parts[0], false).is_none());
        assert!(d.push(&parts[1], false).is_none());
        assert_eq!(d.push(&parts[2], true), Some(frame));
        // A frame whose first packet is missing is not returned.
        assert!(d.push(&parts[1], false).is_none());
        assert!(d.push(&parts[2], true).is_none());
    }
}
