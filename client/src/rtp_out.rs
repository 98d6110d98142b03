//! The sending side of one RTP stream (one track, or one simulcast layer of a track):
//! headers, sequence numbers, the mid/rid header extensions, and a cache of what was sent so
//! that NACKed packets can be sent again (RFC 4585 §6.2.1). Sans-IO.

use std::collections::VecDeque;

use lkr_rtp::RtpWriter;

/// Packets kept for retransmission, per stream.
pub const SEND_CACHE: usize = 1024;

/// Header extension ids we use in every offer (RFC 8285 one-byte form).
pub const EXT_ID_MID: u8 = 1;
/// The rid extension id.
pub const EXT_ID_RID: u8 = 2;

/// One outgoing RTP stream.
#[derive(Debug)]
pub struct RtpStream {
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    mid: String,
    rid: Option<String>,
    cache: VecDeque<(u16, Vec<u8>)>,
    packets: u64,
    octets: u64,
    retransmitted: u64,
}

impl RtpStream {
    /// A stream with `ssrc`, sent as `payload_type` on section `mid` (and simulcast `rid`).
    pub fn new(ssrc: u32, payload_type: u8, mid: String, rid: Option<String>) -> Self {
        Self {
            ssrc,
            payload_type,
            seq: rand::random::<u16>() & 0x7fff,
            mid,
            rid,
            cache: VecDeque::with_capacity(SEND_CACHE),
            packets: 0,
            octets: 0,
            retransmitted: 0,
        }
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sets the payload type negotiated for the section.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.payload_type = pt;
    }

    /// Sets the section's mid (known once the track has a section).
    pub fn set_mid(&mut self, mid: &str) {
        mid.clone_into(&mut self.mid);
    }

    /// Packets and payload octets sent, and packets sent again.
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.packets, self.octets, self.retransmitted)
    }

    /// Writes the next RTP packet (plaintext) around `payload` and remembers it.
    pub fn packetize(&mut self, payload: &[u8], timestamp: u32, marker: bool) -> Vec<u8> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut exts: Vec<(u8, &[u8])> = vec![(EXT_ID_MID, self.mid.as_bytes())];
        if let Some(rid) = &self.rid {
            exts.push((EXT_ID_RID, rid.as_bytes()));
        }
        let mut buf = vec![0u8; 12 + 4 + 40 + payload.len()];
        let n = RtpWriter::write_header(
            &mut buf,
            marker,
            self.payload_type,
            seq,
            timestamp,
            self.ssrc,
            &exts,
        )
        .or_else(|_| {
            RtpWriter::write_header(&mut buf, marker, self.payload_type, seq, timestamp, self.ssrc, &[])
        })
        .expect("the buffer has room for a header with two short extensions");
        buf.truncate(n);
        buf.extend_from_slice(payload);
        self.packets += 1;
        self.octets += payload.len() as u64;
        if self.cache.len() == SEND_CACHE {
            self.cache.pop_front();
        }
        self.cache.push_back((seq, buf.clone()));
        buf
    }

    /// The cached packet with sequence number `seq`, for a retransmission.
    pub fn retransmission(&mut self, seq: u16) -> Option<Vec<u8>> {
        let found = self
            .cache
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, p)| p.clone());
        if found.is_some() {
            self.retransmitted += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_rtp::RtpView;

    #[test]
    fn packets_carry_mid_rid_and_consecutive_sequence_numbers() {
        let mut s = RtpStream::new(0x1234, 96, "1".into(), Some("f".into()));
        let a = s.packetize(b"hello", 1000, false);
        let b = s.packetize(b"world", 1000, true);
        let va = RtpView::parse(&a).unwrap();
        let vb = RtpView::parse(&b).unwrap();
        assert_eq!(va.ssrc(), 0x1234);
        assert_eq!(va.payload_type(), 96);
        assert_eq!(vb.sequence(), va.sequence().wrapping_add(1));
        assert!(vb.marker() && !va.marker());
        assert_eq!(va.payload(), b"hello");
        assert_eq!(va.extension(EXT_ID_MID), Some(&b"1"[..]));
        assert_eq!(va.extension(EXT_ID_RID), Some(&b"f"[..]));
        let seq_b = vb.sequence();
        assert_eq!(s.retransmission(seq_b), Some(b.clone()));
        assert_eq!(s.retransmission(seq_b.wrapping_add(1)), None);
        assert_eq!(s.counters(), (2, 10, 1));
    }
}
