//! VP9 over RTP (RFC 9628): a packetizer for single-layer streams (non-flexible mode, 15-bit
//! PictureID, no layer indices) and a depacketizer that understands the whole descriptor
//! (flexible mode, layer indices, scalability structure) and rebuilds spatial layers of one
//! picture into a superframe (VP9 bitstream specification, Annex B).

/// Splits frames into RTP payloads.
#[derive(Debug)]
pub struct Vp9Packetizer {
    picture_id: u16,
}

impl Default for Vp9Packetizer {
    fn default() -> Self {
        Self {
            picture_id: rand::random::<u16>() & 0x7fff,
        }
    }
}

impl Vp9Packetizer {
    /// The payloads of one frame, each at most `mtu` bytes.
    pub fn packetize(&mut self, frame: &[u8], keyframe: bool, mtu: usize) -> Vec<Vec<u8>> {
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let room = mtu.max(16) - 3;
        let chunks: Vec<&[u8]> = frame.chunks(room).collect();
        let last = chunks.len().saturating_sub(1);
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                // I, P (inter-picture predicted), B (begins frame), E (ends frame).
                let mut b0 = 0x80;
                if !keyframe {
                    b0 |= 0x40;
                }
                if i == 0 {
                    b0 |= 0x08;
                }
                if i == last {
                    b0 |= 0x04;
                }
                let mut p = Vec::with_capacity(3 + chunk.len());
                p.push(b0);
                p.push(0x80 | (pid >> 8) as u8);
                p.push(pid as u8);
                p.extend_from_slice(chunk);
                p
            })
            .collect()
    }
}

/// The length of a VP9 payload descriptor, or `None` when malformed.
fn descriptor_len(p: &[u8]) -> Option<usize> {
    lkr_rtp::vp9::layer(p).map(|l| l.descriptor_len)
}

/// Joins RTP payloads back into frames (superframes for several spatial layers).
#[derive(Debug, Default)]
pub struct Vp9Depacketizer {
    frames: Vec<Vec<u8>>,
    current: Option<Vec<u8>>,
    damaged: bool,
}

impl Vp9Depacketizer {
    /// Forgets a partly received picture (after loss).
    pub fn reset(&mut self) {
        self.frames.clear();
        self.current = None;
        self.damaged = true;
    }

    /// Adds one payload; with `marker` (the end of a picture), returns it.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Option<Vec<u8>> {
        let Some(len) = descriptor_len(payload) else {
            self.reset();
            return None;
        };
        let b0 = payload[0];
        let body = &payload[len..];
        if b0 & 0x08 != 0 {
            self.current = Some(Vec::new());
        }
        match self.current.as_mut() {
            Some(c) => c.extend_from_slice(body),
            None => self.damaged = true,
        }
        if b0 & 0x04 != 0
            && let Some(c) = self.current.take()
        {
            self.frames.push(c);
        }
        if !marker {
            return None;
        }
        let frames = std::mem::take(&mut self.frames);
        self.current = None;
        if std::mem::take(&mut self.damaged) || frames.is_empty() {
            return None;
        }
        if frames.len() == 1 {
            return frames.into_iter().next();
        }
        Some(superframe(&frames))
    }
}

/// Frames of one picture joined with a superframe index (4-byte sizes).
fn superframe(frames: &[Vec<u8>]) -> Vec<u8> {
    let n = frames.len().min(8);
    let marker = 0xc0 | (3 << 3) | (n as u8 - 1);
    let mut out: Vec<u8> = frames[..n].concat();
    out.push(marker);
    for f in &frames[..n] {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    }
    out.push(marker);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_single_layer() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let parts = Vp9Packetizer::default().packetize(&frame, true, 1000);
        assert_eq!(parts.len(), 3);
        assert!(lkr_rtp::vp9::is_keyframe(&parts[0]));
        let inter = Vp9Packetizer::default().packetize(&frame, false, 1000);
        assert!(!lkr_rtp::vp9::is_keyframe(&inter[0]));
        let mut d = Vp9Depacketizer::default();
        assert!(d.push(&parts[0], false).is_none());
        assert!(d.push(&parts[1], false).is_none());
        assert_eq!(d.push(&parts[2], true), Some(frame));
    }

    #[test]
    fn flexible_mode_with_layers_makes_a_superframe() {
        // I (7-bit pid), L, F, B, E; layer byte with SID 0 then SID 1; no P so no P_DIFF.
        let a = [0xBC, 0x05, 0x00, 1, 2, 3];
        let b = [0xBC, 0x05, 0x02, 4, 5];
        let mut d = Vp9Depacketizer::default();
        assert!(d.push(&a, false).is_none());
        let sf = d.push(&b, true).unwrap();
        assert_eq!(&sf[..5], &[1, 2, 3, 4, 5]);
        assert_eq!(sf.len(), 5 + 2 + 8);
        assert_eq!(sf[5], sf[sf.len() - 1]);
    }

    #[test]
    fn scalability_structure_is_skipped() {
        // I=0, V=1, B, E; SS: N_S=1 (value 0), Y=1, G=0; one 4-byte resolution.
        let p = [0x0E, 0x10, 0x02, 0x80, 0x01, 0xE0, 9, 9];
        assert_eq!(descriptor_len(&p), Some(6));
        let mut d = Vp9Depacketizer::default();
        assert_eq!(d.push(&p, true), Some(vec![9, 9]));
    }
}
