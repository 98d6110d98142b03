//! Probing: send at a target rate for a short cluster (media plus padding) and see what the
//! link delivered. A link that keeps up proves the target at once; one that does not shows
//! its capacity in the delivered rate.

use crate::history::PacketResult;

/// A cluster lasts at least this long (µs)...
const DURATION_US: i64 = 100_000;
/// ...and holds at least this many packets.
const MIN_PACKETS: u32 = 8;
/// Between the end of one cluster and the start of the next (µs); doubled after each probe
/// the link could not carry (or that the link carried only in a burst: the queue grew right
/// after, see [`ProbeController::penalize`]), up to the maximum, and back to the minimum
/// once a raise held.
const COOLDOWN_MIN_US: i64 = 1_000_000;
const COOLDOWN_MAX_US: i64 = 8_000_000;
/// A cluster whose feedback has not completed this long after it ended is abandoned (µs).
const RESULT_TIMEOUT_US: i64 = 1_500_000;
/// Received at this share of the sent rate or more: the link kept up.
const KEPT_UP: f64 = 0.8;
/// Less than this share of a cluster's packets received: no result.
const MIN_RECEIVED: f64 = 0.8;

/// What a finished cluster measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// The rate the cluster was sent at, bit/s.
    pub sent_bps: f64,
    /// The rate it arrived at, bit/s.
    pub received_bps: f64,
}

impl ProbeResult {
    /// Whether the link carried the cluster about as fast as it was sent (short clusters
    /// measure rates within some 10–15%).
    pub fn kept_up(&self) -> bool {
        self.received_bps >= KEPT_UP * self.sent_bps
    }

    /// What the probe proves the link carries: what both ends saw when the link kept up,
    /// otherwise (the link saturated) a little under the delivered rate.
    pub fn capacity_bps(&self) -> f64 {
        if self.kept_up() {
            self.sent_bps.min(self.received_bps)
        } else {
            0.95 * self.received_bps
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    id: u32,
    target_bps: f64,
    start_us: i64,
    end_us: Option<i64>,
    sent_packets: u32,
    sent_bytes: u64,
    reported: u32,
    received: u32,
    first_send_us: i64,
    last_send_us: i64,
    first_send_size: u32,
    first_arrival_us: i64,
    last_arrival_us: i64,
    last_arrival_size: u32,
    received_bytes: u64,
}

/// Runs one probe cluster at a time.
#[derive(Debug, Clone, Default)]
pub struct ProbeController {
    next_id: u32,
    cluster: Option<Cluster>,
    last_end_us: Option<i64>,
    cooldown_us: i64,
    /// The backoff failed probes and failed raises built up (the cooldown returns to it
    /// when a raise does not hold).
    backoff_us: i64,
}

impl ProbeController {
    /// Starts a cluster at `target_bps` unless one is running or one ended less than the
    /// cooldown ago. Returns its id.
    pub fn start(&mut self, now_us: i64, target_bps: u64) -> Option<u32> {
        // A cluster whose feedback never completed is given up.
        let _ = self.check_timeout(now_us);
        let cooldown = self.cooldown_us.max(COOLDOWN_MIN_US);
        if self.cluster.is_some() || self.last_end_us.is_some_and(|t| now_us - t < cooldown) {
            return None;
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.cluster = Some(Cluster {
            id: self.next_id,
            target_bps: target_bps as f64,
            start_us: now_us,
            end_us: None,
            sent_packets: 0,
            sent_bytes: 0,
            reported: 0,
            received: 0,
            first_send_us: 0,
            last_send_us: 0,
            first_send_size: 0,
            first_arrival_us: 0,
            last_arrival_us: 0,
            last_arrival_size: 0,
            received_bytes: 0,
        });
        Some(self.next_id)
    }

    /// Whether a cluster is sending or waiting for its feedback.
    pub fn busy(&self) -> bool {
        self.cluster.is_some()
    }

    /// The cluster a packet sent now belongs to (0 for none).
    pub fn sending(&self) -> u32 {
        self.cluster
            .filter(|c| c.end_us.is_none())
            .map_or(0, |c| c.id)
    }

    /// Notes a packet of the sending cluster.
    pub fn on_send(&mut self, now_us: i64, size: u32) {
        let Some(c) = self.cluster.as_mut().filter(|c| c.end_us.is_none()) else {
            return;
        };
        if c.sent_packets == 0 {
            c.first_send_us = now_us;
            c.first_send_size = size;
        }
        c.sent_packets += 1;
        c.sent_bytes += u64::from(size);
        c.last_send_us = now_us;
    }

    /// Padding bytes to send now to keep the cluster at its target rate (0 when none is
    /// sending). Ends the cluster when its time and packet count are reached.
    pub fn padding_due(&mut self, now_us: i64) -> usize {
        let Some(c) = self.cluster.as_mut().filter(|c| c.end_us.is_none()) else {
            return 0;
        };
        let elapsed = now_us - c.start_us;
        if elapsed >= DURATION_US && c.sent_packets >= MIN_PACKETS {
            c.end_us = Some(now_us);
            return 0;
        }
        // Bytes the target rate allows by now, with one 5 ms step ahead so packets go out
        // in small bursts rather than one per call.
        let allowed = c.target_bps * (elapsed + 5_000) as f64 / 8e6;
        (allowed - c.sent_bytes as f64).max(0.0) as usize
    }

    /// One reported packet; returns the cluster's result once its feedback is complete.
    pub fn on_report(&mut self, now_us: i64, r: &PacketResult) -> Option<ProbeResult> {
        let c = self.cluster.as_mut()?;
        if r.probe != c.id {
            return self.check_timeout(now_us);
        }
        c.reported += 1;
        if let Some(at) = r.arrival_us {
            if c.received == 0 || at < c.first_arrival_us {
                c.first_arrival_us = at;
            }
            if c.received == 0 || at >= c.last_arrival_us {
                c.last_arrival_us = at;
                c.last_arrival_size = r.size;
            }
            c.received += 1;
            c.received_bytes += u64::from(r.size);
        }
        if c.end_us.is_some() && c.reported >= c.sent_packets {
            return self.finish();
        }
        None
    }

    fn check_timeout(&mut self, now_us: i64) -> Option<ProbeResult> {
        let c = self.cluster?;
        if c.end_us.is_some_and(|e| now_us - e > RESULT_TIMEOUT_US) {
            return self.finish();
        }
        None
    }

    fn finish(&mut self) -> Option<ProbeResult> {
        let c = self.cluster.take()?;
        self.last_end_us = c.end_us;
        let longer = (self.backoff_us.max(COOLDOWN_MIN_US) * 2).min(COOLDOWN_MAX_US);
        if c.sent_packets < 2 || f64::from(c.received) < MIN_RECEIVED * f64::from(c.sent_packets) {
            self.backoff_us = longer;
            self.cooldown_us = longer;
            return None;
        }
        let send_span = (c.last_send_us - c.first_send_us).max(1000) as f64;
        let recv_span = (c.last_arrival_us - c.first_arrival_us).max(1000) as f64;
        let sent_bps = (c.sent_bytes - u64::from(c.first_send_size)) as f64 * 8e6 / send_span;
        let received_bps =
            (c.received_bytes - u64::from(c.last_arrival_size)) as f64 * 8e6 / recv_span;
        let r = ProbeResult {
            sent_bps,
            received_bps,
        };
        // A cluster the link kept up with may be followed soon (a link that came back is
        // climbed quickly); whether its raise held decides the backoff (`reward`,
        // `penalize`).
        if r.kept_up() {
            self.cooldown_us = COOLDOWN_MIN_US;
        } else {
            self.backoff_us = longer;
            self.cooldown_us = longer;
        }
        Some(r)
    }

    /// The raise a probe brought did not hold (the queue grew soon after: a token bucket
    /// carried the cluster, not the link): wait twice as long before the next.
    pub fn penalize(&mut self) {
        self.backoff_us = (self.backoff_us.max(COOLDOWN_MIN_US) * 2).min(COOLDOWN_MAX_US);
        self.cooldown_us = self.backoff_us;
    }

    /// The raise a probe brought held: probe again soon.
    pub fn reward(&mut self) {
        self.backoff_us = COOLDOWN_MIN_US;
        self.cooldown_us = COOLDOWN_MIN_US;
    }
}
