//! What was sent to a subscriber, by transport-wide sequence number, for matching feedback.

use std::time::Instant;

/// Packets remembered; feedback for older ones is ignored. At 2 000 packets/s this is four
/// seconds, more than any feedback delay worth acting on.
const CAPACITY: usize = 1 << 13;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Unwrapped sequence number stored here (to reject stale lookups).
    seq: u64,
    /// Send time, µs since the history's epoch.
    sent_us: i64,
    size: u32,
    /// Probe cluster this packet belongs to, 0 for none.
    probe: u32,
    state: State,
}

/// What feedback said of a packet so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum State {
    #[default]
    Unreported,
    Lost,
    Received,
}

/// One packet as the subscriber's feedback describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacketResult {
    /// Unwrapped transport-wide sequence number.
    pub seq: u64,
    /// Send time, µs since the history's epoch.
    pub sent_us: i64,
    /// Receive time in the subscriber's clock (µs, arbitrary origin); `None` if lost.
    pub arrival_us: Option<i64>,
    /// Bytes on the wire (RTP packet size).
    pub size: u32,
    /// Probe cluster, 0 for media.
    pub probe: u32,
}

/// A fixed ring of sent packets keyed by transport-wide sequence number.
#[derive(Debug)]
pub struct SendHistory {
    epoch: Instant,
    slots: Box<[Slot]>,
    /// The next unwrapped sequence number to hand out.
    next: u64,
}

impl SendHistory {
    /// An empty history; times are kept relative to `epoch`.
    pub fn new(epoch: Instant) -> Self {
        SendHistory {
            epoch,
            slots: vec![Slot::default(); CAPACITY].into_boxed_slice(),
            next: 1,
        }
    }

    /// µs since the epoch.
    pub fn micros(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    /// Records a packet about to be sent and returns the transport-wide sequence number to
    /// stamp on it. `probe` is the probe cluster it belongs to (0 for media).
    pub fn on_send(&mut self, now: Instant, size: u32, probe: u32) -> u16 {
        let seq = self.next;
        self.next += 1;
        let sent_us = self.micros(now);
        self.slots[(seq as usize) & (CAPACITY - 1)] = Slot {
            seq,
            sent_us,
            size,
            probe,
            state: State::Unreported,
        };
        seq as u16
    }

    /// Marks the packet `seq` (wire form) as reported with this arrival time and returns what
    /// was sent; `None` for a number not sent lately or already reported as received.
    pub fn on_report(&mut self, seq: u16, arrival_us: Option<i64>) -> Option<PacketResult> {
        let back = (self.next as u16).wrapping_sub(seq);
        if back == 0 || usize::from(back) > CAPACITY || u64::from(back) > self.next {
            return None;
        }
        let full = self.next - u64::from(back);
        let slot = &mut self.slots[(full as usize) & (CAPACITY - 1)];
        if slot.seq != full {
            return None;
        }
        // Feedback packets may overlap: a number reported lost can be reported received
        // later; a second report of either kind is ignored.
        let result = PacketResult {
            seq: full,
            sent_us: slot.sent_us,
            arrival_us,
            size: slot.size,
            probe: slot.probe,
        };
        match (slot.state, arrival_us) {
            (State::Received, _) | (State::Lost, None) => None,
            (_, None) => {
                slot.state = State::Lost;
                Some(result)
            }
            (_, Some(_)) => {
                slot.state = State::Received;
                Some(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_match_sends_and_reject_stale_or_unknown() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(t0);
        let a = h.on_send(t0 + Duration::from_millis(1), 1200, 0);
        let b = h.on_send(t0 + Duration::from_millis(2), 800, 7);
        let r = h.on_report(b, Some(5000)).unwrap();
        assert_eq!(
            (r.sent_us, r.size, r.probe, r.arrival_us),
            (2000, 800, 7, Some(5000))
        );
        // Second report of the same received packet: ignored.
        assert!(h.on_report(b, Some(5000)).is_none());
        // Lost, then received later.
        assert_eq!(h.on_report(a, None).unwrap().arrival_us, None);
        assert!(h.on_report(a, None).is_none());
        assert_eq!(h.on_report(a, Some(4000)).unwrap().size, 1200);
        // Never sent.
        assert!(h.on_report(b.wrapping_add(1), Some(1)).is_none());
        assert!(h.on_report(b.wrapping_add(100), Some(1)).is_none());
    }

    #[test]
    fn wraps_and_forgets_beyond_capacity() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(t0);
        let first = h.on_send(t0, 100, 0);
        for _ in 0..9_000 {
            h.on_send(t0, 100, 0);
        }
        // 9 000 packets later the first one is forgotten.
        assert!(h.on_report(first, Some(1)).is_none());
        for _ in 0..70_000 {
            h.on_send(t0, 100, 0);
        }
        let last = h.on_send(t0, 321, 0);
        assert_eq!(h.on_report(last, Some(1)).unwrap().size, 321);
    }
}
