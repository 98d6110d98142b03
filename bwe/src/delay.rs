//! Delay-based congestion detection: is the queue on the path growing?
//!
//! Packets are grouped by send time into bursts (a group is what was sent within
//! `GROUP_SPAN_US` of its first packet). Between consecutive groups, the difference of
//! arrival spacing and send spacing is how much longer the second group waited in queues than
//! the first. Those differences are summed into an accumulated delay, smoothed, and a
//! least-squares line over the last `WINDOW` points (accumulated delay against arrival time)
//! gives the trend: a positive slope means the queue grows. The trend, scaled by the number
//! of points and a gain, is compared with a threshold that itself adapts slowly to the
//! trend's usual size, so that a path whose delay merely jitters is not read as congested.

/// Packets sent within this span of a group's first packet belong to that group.
const GROUP_SPAN_US: i64 = 5_000;
/// Points of the trend line.
const WINDOW: usize = 20;
/// Smoothing of the accumulated delay (weight of the previous value).
const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before comparing with the threshold.
const TREND_GAIN: f64 = 4.0;
/// Threshold adaptation rates when the trend is below and above it (per ms).
const K_DOWN: f64 = 0.039;
const K_UP: f64 = 0.0087;
/// Overuse must last this long (ms of sending) before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;
/// A jump in arrival spacing this large means the receiver's clock or path was reset.
const RESET_MS: f64 = 3_000.0;

/// What the delay trend says of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The queue is not growing.
    Normal,
    /// The queue is growing: send less.
    Over,
    /// The queue is draining: hold the rate until it is empty.
    Under,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

/// The delay-based detector for one path. Feed it received packets in send order.
#[derive(Debug, Clone)]
pub struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    first_arrival_ms: Option<f64>,
    accumulated: f64,
    smoothed: f64,
    points: [(f64, f64); WINDOW],
    len: usize,
    head: usize,
    deltas: u32,
    threshold: f64,
    last_threshold_ms: Option<f64>,
    overuse_ms: f64,
    overuse_count: u32,
    prev_trend: f64,
    trend: f64,
    usage: Usage,
}

impl Default for DelayDetector {
    fn default() -> Self {
        DelayDetector {
            current: None,
            previous: None,
            first_arrival_ms: None,
            accumulated: 0.0,
            smoothed: 0.0,
            points: [(0.0, 0.0); WINDOW],
            len: 0,
            head: 0,
            deltas: 0,
            threshold: 12.5,
            last_threshold_ms: None,
            overuse_ms: -1.0,
            overuse_count: 0,
            prev_trend: 0.0,
            trend: 0.0,
            usage: Usage::Normal,
        }
    }
}

impl DelayDetector {
    /// The current reading.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The last scaled trend and the threshold it was compared with (for diagnostics).
    pub fn trend(&self) -> (f64, f64) {
        (self.trend, self.threshold)
    }

    /// One received packet: its send time (sender's clock) and arrival time (receiver's
    /// clock), both µs.
    pub fn on_packet(&mut self, sent_us: i64, arrival_us: i64) {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send_us: sent_us,
                last_send_us: sent_us,
                first_arrival_us: arrival_us,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if sent_us < cur.first_send_us {
            // Reordered from an earlier group: ignored.
            return;
        }
        let in_group = sent_us - cur.first_send_us <= GROUP_SPAN_US;
        // A burst: arrived right after the group and no later than its send spacing says
        // (delivered together after a pause on the path).
        let burst = arrival_us - cur.last_arrival_us <= GROUP_SPAN_US
            && (arrival_us - cur.last_arrival_us) < (sent_us - cur.last_send_us)
            && arrival_us - cur.first_arrival_us < 100_000;
        if in_group || burst {
            cur.last_send_us = cur.last_send_us.max(sent_us);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return;
        }
        let done = *cur;
        if let Some(prev) = self.previous {
            let send_delta = (done.last_send_us - prev.last_send_us) as f64 / 1000.0;
            let arrival_delta = (done.last_arrival_us - prev.last_arrival_us) as f64 / 1000.0;
            if (arrival_delta - send_delta).abs() > RESET_MS || arrival_delta < 0.0 {
                self.reset();
            } else {
                self.on_delta(
                    arrival_delta,
                    send_delta,
                    done.last_arrival_us as f64 / 1000.0,
                );
            }
        }
        self.previous = Some(done);
        self.current = Some(Group {
            first_send_us: sent_us,
            last_send_us: sent_us,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        });
    }

    fn reset(&mut self) {
        let threshold = self.threshold;
        *self = DelayDetector {
            threshold,
            ..DelayDetector::default()
        };
    }

    fn on_delta(&mut self, arrival_delta: f64, send_delta: f64, arrival_ms: f64) {
        self.deltas = (self.deltas + 1).min(1000);
        self.accumulated += arrival_delta - send_delta;
        self.smoothed = SMOOTHING * self.smoothed + (1.0 - SMOOTHING) * self.accumulated;
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.points[self.head] = (arrival_ms - first, self.smoothed);
        self.head = (self.head + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        if self.len == WINDOW
            && let Some(slope) = self.slope()
        {
            self.trend = f64::from(self.deltas.min(60)) * slope * TREND_GAIN;
        }
        self.detect(send_delta, arrival_ms);
    }

    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let pts = &self.points[..self.len];
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut num, mut den) = (0.0, 0.0);
        for &(x, y) in pts {
            num += (x - mx) * (y - my);
            den += (x - mx) * (x - mx);
        }
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, send_delta: f64, now_ms: f64) {
        if self.deltas < 2 {
            return;
        }
        let trend = self.trend;
        if trend > self.threshold {
            if self.overuse_ms < 0.0 {
                self.overuse_ms = send_delta / 2.0;
            } else {
                self.overuse_ms += send_delta;
            }
            self.overuse_count += 1;
            if self.overuse_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.prev_trend
            {
                self.overuse_ms = 0.0;
                self.overuse_count = 0;
                self.usage = Usage::Over;
            }
        } else if trend < -self.threshold {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Under;
        } else {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(trend, now_ms);
    }

    fn adapt_threshold(&mut self, trend: f64, now_ms: f64) {
        let last = *self.last_threshold_ms.get_or_insert(now_ms);
        let magnitude = trend.abs();
        if magnitude > self.threshold + 15.0 {
            // A spike: do not let it raise the threshold.
            self.last_threshold_ms = Some(now_ms);
            return;
        }
        let k = if magnitude < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold = (self.threshold + k * (magnitude - self.threshold) * dt).clamp(6.0, 600.0);
        self.last_threshold_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets every 10 ms; each arrives `queue(i)` µs after it was sent (plus 20 ms).
    fn run(packets: usize, queue: impl Fn(usize) -> i64) -> Vec<Usage> {
        let mut d = DelayDetector::default();
        (0..packets)
            .map(|i| {
                let sent = i as i64 * 10_000;
                d.on_packet(sent, sent + 20_000 + queue(i));
                d.usage()
            })
            .collect()
    }

    #[test]
    fn constant_delay_is_normal() {
        let u = run(300, |_| 0);
        assert!(u.iter().all(|&u| u == Usage::Normal));
    }

    #[test]
    fn jitter_without_growth_is_normal() {
        // ±3 ms of jitter, no trend.
        let u = run(600, |i| ((i * 7919) % 7) as i64 * 1000 - 3000);
        let over = u.iter().filter(|&&u| u == Usage::Over).count();
        assert!(over < 10, "jitter read as overuse {over} times");
    }

    #[test]
    fn growing_queue_is_overuse_quickly() {
        // Normal for 2 s, then the queue grows by 1 ms per packet (10% over capacity).
        let u = run(400, |i| if i < 200 { 0 } else { (i as i64 - 200) * 1000 });
        assert!(u[..200].iter().all(|&u| u == Usage::Normal));
        let first = u
            .iter()
            .position(|&u| u == Usage::Over)
            .expect("overuse detected");
        // Within 300 ms (30 packets, 30 ms of queue).
        assert!(first - 200 <= 30, "overuse after {} packets", first - 200);
    }

    #[test]
    fn draining_queue_is_underuse() {
        // A 500 ms queue drains by 1 ms per packet.
        let u = run(400, |i| {
            if i < 100 {
                500_000
            } else {
                (500_000 - (i as i64 - 100) * 1000).max(0)
            }
        });
        assert!(u[100..500.min(u.len())].contains(&Usage::Under));
    }
}
