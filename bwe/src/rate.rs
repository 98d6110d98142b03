//! The delay-based rate: additive increase near the last congestion point, multiplicative
//! far from it, and a decrease to below the delivered rate on overuse.

use crate::delay::Usage;

/// Multiplicative growth per second far from the last congestion point.
const GROWTH_PER_S: f64 = 1.08;
/// On overuse the rate drops to this share of the delivered rate.
const BACKOFF: f64 = 0.85;
/// Delivered below this share of the sent rate: the path is saturated.
const SATURATED: f64 = 0.9;
/// On overuse of a path that kept up, the rate drops by this factor.
const GENTLE: f64 = 0.95;
/// Growth never takes the rate past the delivered rate by more than this factor (plus
/// 10 kbit/s): a rate that nothing has carried yet is proven by a probe, not assumed.
const MAX_OVER_DELIVERED: f64 = 1.1;
/// Bits of the packet the additive increase adds per response time.
const PACKET_BITS: f64 = 1200.0 * 8.0;

/// The delay-driven rate controller.
#[derive(Debug, Clone)]
pub struct RateControl {
    rate: f64,
    min: f64,
    max: f64,
    holding: bool,
    last_update_us: Option<i64>,
    last_decrease_us: Option<i64>,
    /// Running mean and variance (normalised) of the delivered rate at congestion points,
    /// kbit/s: where the link's capacity was last found.
    capacity_kbps: Option<f64>,
    capacity_var: f64,
    rtt_ms: f64,
}

impl RateControl {
    /// A controller starting at `initial` bit/s, kept within `min..=max`.
    pub fn new(initial: u64, min: u64, max: u64) -> Self {
        RateControl {
            rate: initial as f64,
            min: min as f64,
            max: max as f64,
            holding: false,
            last_update_us: None,
            last_decrease_us: None,
            capacity_kbps: None,
            capacity_var: 0.4,
            rtt_ms: 100.0,
        }
    }

    /// The rate, bit/s.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Sets the rate (a probe measured more), clearing the remembered congestion point when
    /// the new rate is well above it.
    pub fn set_rate(&mut self, bps: u64) {
        self.rate = (bps as f64).clamp(self.min, self.max);
        if self
            .capacity_kbps
            .is_some_and(|c| self.rate / 1000.0 > c * 1.5)
        {
            self.capacity_kbps = None;
        }
    }

    /// Whether the rate was lowered for overuse within `span_us` before `now_us`.
    pub fn decreased_within(&self, now_us: i64, span_us: i64) -> bool {
        self.last_decrease_us.is_some_and(|t| now_us - t < span_us)
    }

    /// The round trip, for the additive step and the decrease spacing.
    pub fn set_rtt_ms(&mut self, rtt: f64) {
        self.rtt_ms = rtt.clamp(10.0, 2000.0);
    }

    /// Applies the detector's reading at `now_us`, with the delivered rate (bit/s) measured
    /// from feedback and the rate the same packets were sent at, when known. Returns the new
    /// rate.
    pub fn update(
        &mut self,
        now_us: i64,
        usage: Usage,
        delivered: Option<f64>,
        sent: Option<f64>,
    ) -> u64 {
        let dt_s = self
            .last_update_us
            .map_or(0.0, |t| ((now_us - t) as f64 / 1e6).clamp(0.0, 1.0));
        self.last_update_us = Some(now_us);
        match usage {
            Usage::Over => {
                let spaced = self
                    .last_decrease_us
                    .is_none_or(|t| (now_us - t) as f64 / 1000.0 >= self.rtt_ms.max(100.0));
                if spaced {
                    // Delivered well below sent: the packets queued, and the delivered rate
                    // is what the path carries. Otherwise the path kept up with what was
                    // sent (a delay blip, or a sender far below the estimate): step down
                    // gently from the estimate rather than to what happened to be sent.
                    let saturated = match (delivered, sent) {
                        (Some(d), Some(s)) => d < SATURATED * s,
                        _ => true,
                    };
                    let target = match delivered {
                        Some(d) if saturated => BACKOFF * d,
                        Some(d) => (GENTLE * self.rate).max(BACKOFF * d),
                        None => BACKOFF * self.rate,
                    };
                    if target < self.rate {
                        self.rate = target;
                    }
                    if let Some(d) = delivered.filter(|_| saturated) {
                        self.note_capacity(d / 1000.0);
                    }
                    self.last_decrease_us = Some(now_us);
                }
                self.holding = true;
            }
            Usage::Under => self.holding = true,
            Usage::Normal => {
                if self.holding {
                    // Start growing from the next reading.
                    self.holding = false;
                } else {
                    self.increase(dt_s, delivered);
                }
            }
        }
        self.rate = self.rate.clamp(self.min, self.max);
        self.rate()
    }

    fn increase(&mut self, dt_s: f64, delivered: Option<f64>) {
        if let (Some(c), Some(d)) = (self.capacity_kbps, delivered) {
            let std = (self.capacity_var * c).sqrt();
            if d / 1000.0 > c + 3.0 * std {
                // Well past the old congestion point: the link changed.
                self.capacity_kbps = None;
            }
        }
        let near = self.capacity_kbps.is_some();
        let next = if near {
            let response_s = (self.rtt_ms + 100.0) / 1000.0;
            self.rate + (PACKET_BITS / response_s).max(4000.0) * dt_s
        } else {
            self.rate * GROWTH_PER_S.powf(dt_s)
        };
        let cap = delivered.map_or(f64::MAX, |d| MAX_OVER_DELIVERED * d + 10_000.0);
        // Never lowered by the cap (the rate may already be above it after a probe).
        if self.rate < cap {
            self.rate = next.min(cap);
        }
    }

    fn note_capacity(&mut self, kbps: f64) {
        let c = match self.capacity_kbps {
            None => kbps,
            Some(c) => {
                if (kbps - c).abs() > 3.0 * (self.capacity_var * c).sqrt() {
                    // A different link than before: start over.
                    self.capacity_var = 0.4;
                    kbps
                } else {
                    0.95 * c + 0.05 * kbps
                }
            }
        };
        let norm = c.max(1.0);
        let err = c - kbps;
        self.capacity_var = (0.95 * self.capacity_var + 0.05 * err * err / norm).clamp(0.4, 2.5);
        self.capacity_kbps = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overuse_drops_below_delivered_and_is_spaced() {
        let mut r = RateControl::new(2_000_000, 50_000, 10_000_000);
        assert_eq!(r.update(0, Usage::Over, Some(1_000_000.0), None), 850_000);
        // A second overuse reading 20 ms later does not compound.
        assert_eq!(
            r.update(20_000, Usage::Over, Some(800_000.0), None),
            850_000
        );
        // A later one does.
        assert_eq!(
            r.update(200_000, Usage::Over, Some(800_000.0), None),
            680_000
        );
    }

    #[test]
    fn overuse_on_a_path_that_kept_up_steps_down_gently() {
        // Sending 300 kbit/s under a 2 Mbit/s estimate, everything delivered as sent: a
        // delay blip costs 5%, not a fall to 85% of 300 kbit/s.
        let mut r = RateControl::new(2_000_000, 50_000, 10_000_000);
        assert_eq!(
            r.update(0, Usage::Over, Some(300_000.0), Some(300_000.0)),
            1_900_000
        );
        // Queued (delivered 20% under sent): down to 85% of delivered.
        assert_eq!(
            r.update(500_000, Usage::Over, Some(800_000.0), Some(1_000_000.0)),
            680_000
        );
    }

    #[test]
    fn grows_multiplicatively_then_additively_near_capacity() {
        let mut r = RateControl::new(500_000, 50_000, 10_000_000);
        r.update(0, Usage::Normal, None, None);
        let mut t = 0;
        for _ in 0..10 {
            t += 100_000;
            r.update(t, Usage::Normal, None, None);
        }
        // About 8% in one second.
        let grown = r.rate() as f64 / 500_000.0;
        assert!((1.07..1.09).contains(&grown), "{grown}");
        // After a congestion point, growth is a few kbit/s per second.
        r.update(t + 1, Usage::Over, Some(600_000.0), None);
        let after = r.rate();
        t += 200_000;
        r.update(t, Usage::Normal, Some(560_000.0), None);
        for _ in 0..10 {
            t += 100_000;
            r.update(t, Usage::Normal, Some(560_000.0), None);
        }
        let step = r.rate() - after;
        assert!((20_000..80_000).contains(&step), "additive step {step}");
    }

    #[test]
    fn never_far_above_what_was_delivered() {
        let mut r = RateControl::new(200_000, 50_000, 10_000_000);
        let mut t = 0;
        for _ in 0..200 {
            t += 100_000;
            r.update(t, Usage::Normal, Some(200_000.0), None);
        }
        assert_eq!(r.rate(), 230_000);
    }
}
