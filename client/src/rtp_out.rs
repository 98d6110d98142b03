//! The sending side of one RTP stream (one track, or one simulcast layer of a track):
//! headers, sequence numbers, the mid/rid header extensions, a cache of what was sent so
//! that NACKed packets can be sent again (RFC 4585 §6.2.1), and sender reports that tie the
//! RTP clock to wall-clock time (RFC 3550 §6.4.1). Sans-IO.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    clock_rate: u32,
    /// The latest timestamp sent and when.
    last: Option<(u32, Instant)>,
}

impl RtpStream {
    /// A stream with `ssrc` and an RTP clock of `clock_rate` Hz, sent as `payload_type` on
    /// section `mid` (and simulcast `rid`).
    pub fn new(
        ssrc: u32,
        clock_rate: u32,
        payload_type: u8,
        mid: String,
        rid: Option<String>,
    ) -> Self {
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
            clock_rate,
            last: None,
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

    /// Writes the next RTP packet (plaintext) around `payload`, sent at `now`, and remembers
    /// it.
    pub fn packetize(
        &mut self,
        now: Instant,
        payload: &[u8],
        timestamp: u32,
        marker: bool,
    ) -> Vec<u8> {
        self.last = Some((timestamp, now));
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
            RtpWriter::write_header(
                &mut buf,
                marker,
                self.payload_type,
                seq,
                timestamp,
                self.ssrc,
                &[],
            )
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

    /// A sender report for `now` (`wall` on the wall clock): the RTP timestamp of that
    /// instant, extrapolated from the latest packet, and the counters. `None` before the
    /// first packet.
    pub fn sender_report(&self, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        let (ts, at) = self.last?;
        let elapsed = now.saturating_duration_since(at);
        let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        let since_unix = wall.duration_since(UNIX_EPOCH).ok()?;
        // NTP time: seconds since 1900 and a 32-bit fraction (RFC 3550 §4).
        let secs = since_unix.as_secs() + 2_208_988_800;
        let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        let ntp = (secs << 32) | frac;
        let mut buf = [0u8; 28];
        let n = lkr_rtp::write_sender_report(
            &mut buf,
            self.ssrc,
            ntp,
            ts.wrapping_add(ticks),
            self.packets as u32,
            self.octets as u32,
            &[],
        )
        .ok()?;
        Some(buf[..n].to_vec())
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
        let t0 = Instant::now();
        let mut s = RtpStream::new(0x1234, 90_000, 96, "1".into(), Some("f".into()));
        assert!(s.sender_report(t0, SystemTime::now()).is_none());
        let a = s.packetize(t0, b"hello", 1000, false);
        let b = s.packetize(t0, b"world", 1000, true);
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
        let sr = s
            .sender_report(
                t0 + std::time::Duration::from_millis(100),
                SystemTime::now(),
            )
            .unwrap();
        match lkr_rtp::rtcp_packets(&sr).next() {
            Some(Ok(lkr_rtp::RtcpPacket::SenderReport {
                ssrc,
                rtp_ts,
                packet_count,
                octet_count,
                ..
            })) => {
                assert_eq!((ssrc, rtp_ts), (0x1234, 1000 + 9000));
                assert_eq!((packet_count, octet_count), (2, 10));
            }
            other => panic!("not a sender report: {other:?}"),
        }
    }
}
