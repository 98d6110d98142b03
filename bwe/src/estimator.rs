//! One subscriber's estimate: history, delay detector, rate control, loss bound and probes.

use std::time::{Duration, Instant};

use crate::delay::{DelayDetector, Usage};
use crate::history::SendHistory;
use crate::loss::LossBased;
use crate::probe::{ProbeController, ProbeResult};
use crate::rate::RateControl;

/// Window of the delivered-rate measurement (µs of arrival time).
const DELIVERED_WINDOW_US: i64 = 250_000;
/// Slots of the delivered-rate ring (one per feedback packet).
const DELIVERED_SLOTS: usize = 32;
/// After a probe starts, overuse within this long is taken as the probe's own queue (µs).
const PROBE_GUARD_US: i64 = 1_000_000;
/// After a probe raised the estimate, overuse within this long means the raise did not hold
/// (µs).
const RAISE_WATCH_US: i64 = 3_000_000;
/// Most statuses read from one feedback packet.
const MAX_STATUSES: usize = 4096;
/// Sending with no feedback for this long (µs) means the feedback, or the path, is lost:
/// the estimate backs off, as libwebrtc's does when its feedback times out.
const FEEDBACK_TIMEOUT_US: i64 = 3_000_000;
/// While feedback stays away, the estimate drops by this factor at most once per
/// [`FEEDBACK_BACKOFF_US`].
const FEEDBACK_BACKOFF: f64 = 0.8;
const FEEDBACK_BACKOFF_US: i64 = 500_000;
/// The feedback timeout backs off only while the receiver itself was heard this recently:
/// a path that swallows our packets while the receiver's reports and checks come through is
/// congested; one where nothing comes either is down, and its estimate is held for when it
/// comes back. A receiver heard again after this long is back from such an outage
/// ([`Estimator::on_receiver_back`]).
pub const HEARD_WITHIN: Duration = Duration::from_secs(2);
const HEARD_WITHIN_US: i64 = HEARD_WITHIN.as_micros() as i64;

/// What one feedback packet changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackSummary {
    /// Packets of ours it reported received and lost.
    pub received: u32,
    pub lost: u32,
    /// The delay detector's reading after it.
    pub usage: Usage,
    /// The estimate after it, bit/s.
    pub estimate_bps: u64,
    /// A probe cluster finished with it.
    pub probe: Option<ProbeResult>,
}

/// Send-side bandwidth estimate for one subscriber.
#[derive(Debug)]
pub struct Estimator {
    history: SendHistory,
    delay: DelayDetector,
    rate: RateControl,
    loss: LossBased,
    probe: ProbeController,
    /// (arrival end µs, bytes, send end µs) per feedback packet, for the delivered rate
    /// and the rate the same packets were sent at.
    delivered: [(i64, u64, i64); DELIVERED_SLOTS],
    delivered_head: usize,
    delivered_len: usize,
    estimate: u64,
    min: u64,
    max: u64,
    /// Until when, and to what floor, overuse is taken as the running probe's own queue.
    probe_guard: Option<(i64, u64)>,
    /// When feedback last reported a packet received (µs).
    last_received_us: Option<i64>,
    /// Until when a raise from a probe is watched for overuse.
    raise_watch: Option<i64>,
    /// When feedback last arrived, and when the estimate last backed off for the lack of it
    /// (µs).
    last_feedback_us: Option<i64>,
    last_backoff_us: i64,
    /// When the first packet sent since the last feedback left (µs).
    unanswered_since_us: Option<i64>,
    /// Packets sent before this (µs) and reported lost were lost to an outage, not to
    /// congestion ([`Estimator::on_receiver_back`]).
    excused_before_us: i64,
}

impl Estimator {
    /// An estimator starting at `initial` bit/s, kept within `min..=max`.
    pub fn new(now: Instant, initial: u64, min: u64, max: u64) -> Self {
        Estimator {
            history: SendHistory::new(now),
            delay: DelayDetector::default(),
            rate: RateControl::new(initial, min, max),
            loss: LossBased::new(initial, max),
            probe: ProbeController::default(),
            delivered: [(0, 0, 0); DELIVERED_SLOTS],
            delivered_head: 0,
            delivered_len: 0,
            estimate: initial,
            min,
            max,
            probe_guard: None,
            last_received_us: None,
            raise_watch: None,
            last_feedback_us: None,
            last_backoff_us: 0,
            unanswered_since_us: None,
            excused_before_us: 0,
        }
    }

    /// Whether packets have been sent since the last feedback (what a receiver heard again
    /// after a silence would have had to answer).
    pub fn awaiting_feedback(&self) -> bool {
        self.unanswered_since_us.is_some()
    }

    /// The receiver is heard again after a silence (an outage of the whole path, a client
    /// moving between networks). What was sent into the silence and is now reported lost
    /// is the outage's loss, not the path's: it does not cut the estimate, and neither
    /// the loss window, the delay trend nor the delivered rate spans the gap. The feedback
    /// timeout counts from now, so that the return itself is not taken for feedback that
    /// stopped; but only once per feedback: a receiver back again with no feedback since
    /// its last return (one whose downlink starves, heard only by its consent checks, which
    /// come further apart than a silence) has had its time to answer, and the timeout goes
    /// on counting from that return. The estimate held through the outage stays in force.
    /// Returns whether the receiver had answered since its previous return (feedback came):
    /// only then was its silence an outage of a path that worked.
    pub fn on_receiver_back(&mut self, now: Instant) -> bool {
        let now_us = self.history.micros(now);
        let answered_since_last_return = self
            .last_feedback_us
            .is_some_and(|f| f >= self.excused_before_us);
        self.excused_before_us = now_us;
        self.loss.restart();
        self.delay = DelayDetector::default();
        self.delivered_len = 0;
        if self.unanswered_since_us.is_some() && answered_since_last_return {
            self.unanswered_since_us = Some(now_us);
        }
        answered_since_last_return
    }

    /// Backs the estimate off when packets have been sent and no feedback has come for
    /// `FEEDBACK_TIMEOUT_US` (since the later of the last feedback and the first packet
    /// sent after it) while the receiver was heard otherwise (`heard`: when anything last
    /// came from it) within [`HEARD_WITHIN`]: 20% down at most every half second, to
    /// the minimum. A receiver not heard at all is cut off both ways (an outage, a moving
    /// client): its estimate is held, so that its media resumes at once when the path comes
    /// back instead of climbing back from the floor. Does nothing before the first feedback
    /// (a peer that never sends any is not estimated). Returns whether the estimate moved.
    pub fn on_feedback_timeout(&mut self, now: Instant, heard: Option<Instant>) -> bool {
        let now_us = self.history.micros(now);
        let (Some(fed), Some(sent)) = (self.last_feedback_us, self.unanswered_since_us) else {
            return false;
        };
        let heard_us = heard.map(|h| self.history.micros(h));
        if heard_us.is_none_or(|h| now_us - h > HEARD_WITHIN_US)
            || now_us - fed.max(sent) < FEEDBACK_TIMEOUT_US
            || now_us - self.last_backoff_us < FEEDBACK_BACKOFF_US
            || self.estimate <= self.min
        {
            return false;
        }
        self.last_backoff_us = now_us;
        let lower = ((self.estimate as f64 * FEEDBACK_BACKOFF) as u64).max(self.min);
        self.rate.set_rate(lower);
        self.refresh_estimate();
        true
    }

    /// The estimate from its parts: the delay-based rate bounded by the loss-based one,
    /// within `min..=max`.
    fn refresh_estimate(&mut self) {
        self.estimate = self
            .rate
            .rate()
            .min(self.loss.estimate())
            .clamp(self.min, self.max);
    }

    /// The estimate, bit/s.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// The delay detector's reading.
    pub fn usage(&self) -> Usage {
        self.delay.usage()
    }

    /// The delay trend and its threshold (for diagnostics).
    pub fn trend(&self) -> (f64, f64) {
        self.delay.trend()
    }

    /// The delivered rate over the last quarter second of feedback, bit/s.
    pub fn delivered_bps(&self) -> Option<f64> {
        self.window_rates().map(|w| w.0)
    }

    /// (delivered, sent) rates of the packets of the last quarter second of feedback:
    /// bytes over their arrival span and over their send span. Delivered well below sent
    /// means the packets queued on the way: the path is saturated.
    fn window_rates(&self) -> Option<(f64, f64)> {
        if self.delivered_len < 2 {
            return None;
        }
        let at = |k: usize| {
            self.delivered[(self.delivered_head + 2 * DELIVERED_SLOTS - 1 - k) % DELIVERED_SLOTS]
        };
        let (newest_end, _, newest_send) = at(0);
        let (mut bytes, mut span, mut send_span) = (0u64, 0i64, 0i64);
        for k in 0..self.delivered_len - 1 {
            bytes += at(k).1;
            span = newest_end - at(k + 1).0;
            send_span = newest_send - at(k + 1).2;
            if span >= DELIVERED_WINDOW_US {
                break;
            }
        }
        (span >= 50_000).then(|| {
            let bits = bytes as f64 * 8e6;
            (bits / span as f64, bits / send_span.max(1000) as f64)
        })
    }

    /// The round trip (from receiver reports), for the rate control's step sizes.
    pub fn set_rtt_ms(&mut self, rtt: f64) {
        self.rate.set_rtt_ms(rtt);
    }

    /// Records a packet about to be sent (`size` bytes on the wire) and returns the
    /// transport-wide sequence number to stamp on it.
    pub fn on_send(&mut self, now: Instant, size: u32) -> u16 {
        let us = self.history.micros(now);
        self.unanswered_since_us.get_or_insert(us);
        let cluster = self.probe.sending();
        self.probe.on_send(us, size);
        self.history.on_send(now, size, cluster)
    }

    /// Starts a probe towards `target_bps` (at most twice the estimate: a step up is
    /// proven before the next) if none is running and the last ended long enough ago.
    /// Returns whether one started.
    pub fn start_probe(&mut self, now: Instant, target_bps: u64) -> bool {
        let target = target_bps
            .min(self.estimate.saturating_mul(2))
            .clamp(self.min, self.max);
        let us = self.history.micros(now);
        // A stale reading (nothing heard for a second, as when everything is paused) does
        // not hold probes back.
        let fresh = self.last_received_us.is_some_and(|t| us - t < 1_000_000);
        let loaded = fresh && self.delay.usage() != Usage::Normal;
        if target <= self.estimate || loaded || self.rate.decreased_within(us, 1_000_000) {
            return false;
        }
        if self.probe.start(us, target).is_none() {
            return false;
        }
        let floor = self
            .delivered_bps()
            .map_or(0, |d| (d as u64).min(self.estimate));
        self.probe_guard = Some((us + PROBE_GUARD_US, floor));
        true
    }

    /// Whether a probe is running or awaiting its feedback.
    pub fn probing(&self) -> bool {
        self.probe.busy()
    }

    /// Padding bytes to send now for the running probe (0 when none).
    pub fn padding_due(&mut self, now: Instant) -> usize {
        let us = self.history.micros(now);
        self.probe.padding_due(us)
    }

    /// Applies one transport-cc feedback: `reference_us` is the feedback's reference time in
    /// µs and `packets` its `(sequence, delta µs)` statuses in order (delta `None` for lost).
    pub fn on_feedback(
        &mut self,
        now: Instant,
        reference_us: i64,
        packets: impl Iterator<Item = (u16, Option<i64>)>,
    ) -> FeedbackSummary {
        let now_us = self.history.micros(now);
        let mut arrival = reference_us;
        let (mut received, mut lost) = (0u32, 0u32);
        let mut bytes = 0u64;
        let mut last_arrival = None;
        let mut last_send = 0i64;
        let mut probe_result = None;
        for (seq, delta) in packets.take(MAX_STATUSES) {
            let at = delta.map(|d| {
                arrival += d;
                arrival
            });
            let Some(r) = self.history.on_report(seq, at) else {
                continue;
            };
            if let Some(res) = self.probe.on_report(now_us, &r) {
                probe_result = Some(res);
            }
            match r.arrival_us {
                Some(a) => {
                    received += 1;
                    bytes += u64::from(r.size);
                    last_arrival = Some(last_arrival.map_or(a, |l: i64| l.max(a)));
                    last_send = last_send.max(r.sent_us);
                    self.delay.on_packet(r.sent_us, a);
                }
                None if r.sent_us < self.excused_before_us => {}
                None => lost += 1,
            }
        }
        if let Some(end) = last_arrival {
            self.delivered[self.delivered_head] = (end, bytes, last_send);
            self.delivered_head = (self.delivered_head + 1) % DELIVERED_SLOTS;
            self.delivered_len = (self.delivered_len + 1).min(DELIVERED_SLOTS);
        }
        let usage = self.delay.usage();
        if received + lost > 0 {
            let rates = self.window_rates();
            self.rate
                .update(now_us, usage, rates.map(|r| r.0), rates.map(|r| r.1));
            if let Some(p) = probe_result {
                let cap = p.capacity_bps() as u64;
                if cap > self.rate.rate() {
                    self.rate.set_rate(cap);
                    if p.kept_up() {
                        self.raise_watch = Some(now_us + RAISE_WATCH_US);
                    }
                }
                self.loss.raise_to(cap);
            }
            // A raise followed by a growing queue did not hold: probe less often.
            match self.raise_watch {
                Some(_) if usage == Usage::Over => {
                    self.raise_watch = None;
                    self.probe.penalize();
                }
                Some(until) if now_us >= until => {
                    self.raise_watch = None;
                    self.probe.reward();
                }
                _ => {}
            }
            // The queue a probe built is not a reason to fall below what flowed before it.
            if let Some((until, floor)) = self.probe_guard
                && now_us < until
                && self.rate.rate() < floor
            {
                self.rate.set_rate(floor);
            }
            self.loss.on_feedback(
                now_us,
                received,
                lost,
                self.estimate,
                usage != Usage::Normal,
            );
        }
        if received > 0 {
            self.last_received_us = Some(now_us);
        }
        self.last_feedback_us = Some(now_us);
        self.unanswered_since_us = None;
        self.refresh_estimate();
        FeedbackSummary {
            received,
            lost,
            usage,
            estimate_bps: self.estimate,
            probe: probe_result,
        }
    }
}
