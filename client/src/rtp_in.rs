//! The receiving side of one RTP stream: reordering, loss detection and NACK (RFC 4585
//! §6.2.1), and in-order delivery. Sans-IO.
//!
//! Packets are delivered in sequence order. A gap is NACKed at once and again every
//! [`NACK_INTERVAL`]; a packet still missing after [`MAX_WAIT`] (or [`MAX_NACKS`] requests,
//! or when the buffer grows past [`MAX_BUFFERED`]) is given up, counted as lost, and the
//! next delivered packet says how many were skipped before it, so a depacketizer knows to
//! drop a damaged frame.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use lkr_rtp::{RtpView, SeqUnwrapper};

/// Time between NACKs for the same missing packet.
pub const NACK_INTERVAL: Duration = Duration::from_millis(60);
/// NACKs sent for one missing packet before it is given up.
pub const MAX_NACKS: u8 = 6;
/// Longest a missing packet holds back delivery.
pub const MAX_WAIT: Duration = Duration::from_millis(500);
/// Most packets held back behind a gap.
pub const MAX_BUFFERED: usize = 1000;

/// A received RTP packet, delivered in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPacket {
    /// Sequence number.
    pub sequence: u16,
    /// Sequence number extended across wraps.
    pub extended_sequence: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// The payload, without header or padding.
    pub payload: Vec<u8>,
    /// Packets given up just before this one (0 when nothing was lost).
    pub lost_before: u64,
    /// When the datagram arrived (wall clock, for latency measurements).
    pub arrival: SystemTime,
}

/// Receive counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Distinct packets received.
    pub packets: u64,
    /// Payload octets of those packets.
    pub octets: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets given up.
    pub lost: u64,
    /// NACK requests made (one per missing packet per request).
    pub nacked: u64,
    /// Packets that arrived after a NACK.
    pub recovered: u64,
}

#[derive(Debug)]
struct Missing {
    since: Instant,
    last_nack: Option<Instant>,
    nacks: u8,
}

/// One incoming stream's reorder buffer and NACK state.
#[derive(Debug, Default)]
pub struct ReceiveStream {
    unwrapper: SeqUnwrapper,
    next: Option<u64>,
    buffer: BTreeMap<u64, MediaPacket>,
    missing: BTreeMap<u64, Missing>,
    highest: Option<u64>,
    stats: ReceiveStats,
    ready: Vec<MediaPacket>,
    pending_loss: u64,
}

impl ReceiveStream {
    /// An empty stream; the first packet received sets where delivery starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters.
    pub fn stats(&self) -> ReceiveStats {
        self.stats
    }

    /// Takes a decrypted RTP packet that arrived at `now` (`arrival` on the wall clock).
    pub fn handle_packet(&mut self, now: Instant, arrival: SystemTime, view: &RtpView<'_>) {
        let ext = self.unwrapper.unwrap(view.sequence());
        let Some(next) = self.next else {
            self.next = Some(ext);
            self.highest = Some(ext);
            self.accept(ext, view, arrival);
            self.drain();
            return;
        };
        if ext < next || self.buffer.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if self.missing.remove(&ext).is_some() {
            self.stats.recovered += 1;
        }
        let highest = self.highest.unwrap_or(ext);
        if ext > highest {
            // Everything between the old highest and this one is missing.
            let gap = ext - highest - 1;
            if gap as usize > MAX_BUFFERED {
                // A jump this large is a new stream position, not loss to repair.
                self.stats.lost += ext - next;
                self.pending_loss += ext - next;
                self.buffer.clear();
                self.missing.clear();
                self.next = Some(ext);
            } else {
                for s in highest + 1..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            since: now,
                            last_nack: None,
                            nacks: 0,
                        },
                    );
                }
            }
            self.highest = Some(ext);
        }
        self.accept(ext, view, arrival);
        self.drain();
        while self.buffer.len() > MAX_BUFFERED {
            self.skip_to_first_buffered();
        }
    }

    fn accept(&mut self, ext: u64, view: &RtpView<'_>, arrival: SystemTime) {
        self.stats.packets += 1;
        self.stats.octets += view.payload().len() as u64;
        self.buffer.insert(
            ext,
            MediaPacket {
                sequence: view.sequence(),
                extended_sequence: ext,
                timestamp: view.timestamp(),
                marker: view.marker(),
                payload_type: view.payload_type(),
                payload: view.payload().to_vec(),
                lost_before: 0,
                arrival,
            },
        );
    }

    fn drain(&mut self) {
        while let Some(next) = self.next {
            let Some(mut p) = self.buffer.remove(&next) else {
                break;
            };
            p.lost_before = std::mem::take(&mut self.pending_loss);
            self.ready.push(p);
            self.next = Some(next + 1);
        }
    }

    fn skip_to_first_buffered(&mut self) {
        let (Some(next), Some((&first, _))) = (self.next, self.buffer.iter().next()) else {
            return;
        };
        if first > next {
            let skipped = first - next;
            self.stats.lost += skipped;
            self.pending_loss += skipped;
            self.missing.retain(|s, _| *s >= first);
            self.next = Some(first);
        }
        self.drain();
    }

    /// Gives up packets that waited too long. Returns nothing; see [`Self::poll_packet`].
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let Some(next) = self.next else { return };
            let Some(m) = self.missing.get(&next) else {
                if !self.buffer.is_empty() && !self.buffer.contains_key(&next) {
                    self.skip_to_first_buffered();
                }
                return;
            };
            let expired = now.saturating_duration_since(m.since) >= MAX_WAIT
                || (m.nacks >= MAX_NACKS
                    && m.last_nack
                        .is_some_and(|at| now.saturating_duration_since(at) >= NACK_INTERVAL));
            if !expired {
                return;
            }
            self.missing.remove(&next);
            self.stats.lost += 1;
            self.pending_loss += 1;
            self.next = Some(next + 1);
            self.drain();
        }
    }

    /// The sequence numbers to NACK now; each counts as one request.
    pub fn poll_nacks(&mut self, now: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        for (seq, m) in self.missing.iter_mut() {
            if m.nacks >= MAX_NACKS {
                continue;
            }
            if m.last_nack
                .is_none_or(|at| now.saturating_duration_since(at) >= NACK_INTERVAL)
            {
                m.last_nack = Some(now);
                m.nacks += 1;
                self.stats.nacked += 1;
                out.push(*seq as u16);
            }
        }
        out
    }

    /// The next packet ready for delivery, in sequence order.
    pub fn poll_packet(&mut self) -> Option<MediaPacket> {
        if self.ready.is_empty() {
            None
        } else {
            Some(self.ready.remove(0))
        }
    }

    /// When [`Self::handle_timeout`] or [`Self::poll_nacks`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing
            .values()
            .map(|m| match m.last_nack {
                Some(at) if m.nacks < MAX_NACKS => (at + NACK_INTERVAL).min(m.since + MAX_WAIT),
                Some(at) => (at + NACK_INTERVAL).min(m.since + MAX_WAIT),
                None => m.since,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_rtp::RtpWriter;

    fn packet(seq: u16) -> Vec<u8> {
        let mut buf = vec![0u8; 16];
        let n =
            RtpWriter::write_header(&mut buf, false, 96, seq, u32::from(seq) * 10, 7, &[]).unwrap();
        buf.truncate(n);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf
    }

    fn push(r: &mut ReceiveStream, now: Instant, seq: u16) {
        let p = packet(seq);
        r.handle_packet(now, SystemTime::now(), &RtpView::parse(&p).unwrap());
    }

    fn delivered(r: &mut ReceiveStream) -> Vec<(u16, u64)> {
        std::iter::from_fn(|| r.poll_packet())
            .map(|p| (p.sequence, p.lost_before))
            .collect()
    }

    #[test]
    fn reorders_and_nacks_a_gap_then_recovers() {
        let t0 = Instant::now();
        let mut r = ReceiveStream::new();
        push(&mut r, t0, 65534);
        push(&mut r, t0, 65535);
        push(&mut r, t0, 2);
        assert_eq!(delivered(&mut r), vec![(65534, 0), (65535, 0)]);
        assert_eq!(r.poll_nacks(t0), vec![0, 1]);
        assert!(r.poll_nacks(t0).is_empty(), "not again before the interval");
        assert_eq!(r.poll_nacks(t0 + NACK_INTERVAL), vec![0, 1]);
        push(&mut r, t0, 1);
        push(&mut r, t0, 0);
        assert_eq!(delivered(&mut r), vec![(0, 0), (1, 0), (2, 0)]);
        let s = r.stats();
        assert_eq!((s.packets, s.lost, s.recovered, s.nacked), (5, 0, 2, 4));
        push(&mut r, t0, 1);
        assert_eq!(r.stats().duplicates, 1);
    }

    #[test]
    fn gives_up_after_the_wait_and_reports_the_loss() {
        let t0 = Instant::now();
        let mut r = ReceiveStream::new();
        push(&mut r, t0, 10);
        push(&mut r, t0, 13);
        push(&mut r, t0, 14);
        assert_eq!(delivered(&mut r), vec![(10, 0)]);
        assert!(r.poll_timeout().is_some());
        r.handle_timeout(t0 + MAX_WAIT / 2);
        assert!(delivered(&mut r).is_empty());
        r.handle_timeout(t0 + MAX_WAIT);
        assert_eq!(delivered(&mut r), vec![(13, 2), (14, 0)]);
        assert_eq!(r.stats().lost, 2);
        assert!(r.poll_timeout().is_none());
    }
}
