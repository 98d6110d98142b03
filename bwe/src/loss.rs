//! The loss-based estimate: heavy loss lowers it, light loss lets it grow, moderate loss
//! holds it while the delay trend also says the path is loaded (loss that comes with a
//! growing queue is congestion; loss on a path whose delay is steady is taken as random, as
//! on radio links, and treated as light).

/// A window is judged once it has this many packets...
const MIN_PACKETS: u32 = 20;
/// ...and spans this long (µs).
const MIN_SPAN_US: i64 = 300_000;
/// Above this loss the estimate is cut; below the lower one it grows.
const HEAVY: f64 = 0.10;
const LIGHT: f64 = 0.02;
/// Growth per judged window with light loss.
const GROWTH: f64 = 1.05;

/// Loss over windows of feedback, and the estimate it allows.
#[derive(Debug, Clone)]
pub struct LossBased {
    start_us: Option<i64>,
    received: u32,
    lost: u32,
    estimate: f64,
    max: f64,
    last_loss: f64,
}

impl LossBased {
    /// Starts at `initial` bit/s, never above `max`.
    pub fn new(initial: u64, max: u64) -> Self {
        LossBased {
            start_us: None,
            received: 0,
            lost: 0,
            estimate: initial as f64,
            max: max as f64,
            last_loss: 0.0,
        }
    }

    /// The loss-based estimate, bit/s.
    pub fn estimate(&self) -> u64 {
        self.estimate as u64
    }

    /// Lifts the estimate to at least `bps` (a probe proved it).
    pub fn raise_to(&mut self, bps: u64) {
        self.estimate = self.estimate.max(bps as f64).min(self.max);
    }

    /// Drops the window in progress: the next one starts with the next feedback.
    pub fn restart(&mut self) {
        self.start_us = None;
        self.received = 0;
        self.lost = 0;
    }

    /// The loss share of the last judged window.
    pub fn last_loss(&self) -> f64 {
        self.last_loss
    }

    /// Adds one feedback's counts at `now_us`; `rate` is the estimate in force and `loaded`
    /// whether the delay detector reads anything but normal. Returns the loss share when a
    /// window was judged.
    pub fn on_feedback(
        &mut self,
        now_us: i64,
        received: u32,
        lost: u32,
        rate: u64,
        loaded: bool,
    ) -> Option<f64> {
        let start = *self.start_us.get_or_insert(now_us);
        self.received = self.received.saturating_add(received);
        self.lost = self.lost.saturating_add(lost);
        let total = self.received + self.lost;
        if total < MIN_PACKETS || now_us - start < MIN_SPAN_US {
            return None;
        }
        let loss = f64::from(self.lost) / f64::from(total);
        self.start_us = Some(now_us);
        self.received = 0;
        self.lost = 0;
        self.last_loss = loss;
        if loss > HEAVY {
            self.estimate = self.estimate.min(rate as f64) * (1.0 - 0.5 * loss);
        } else if loss < LIGHT || !loaded {
            // Grow from what is in force, not from a figure far above it.
            self.estimate = (self.estimate.min(rate as f64 * 1.5) * GROWTH).min(self.max);
        }
        Some(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_loss_cuts_moderate_holds_light_grows() {
        let mut l = LossBased::new(1_000_000, 10_000_000);
        // Not judged before 20 packets and 300 ms.
        assert_eq!(l.on_feedback(0, 10, 0, 1_000_000, true), None);
        assert_eq!(l.on_feedback(100_000, 10, 0, 1_000_000, true), None);
        assert_eq!(l.on_feedback(300_000, 0, 0, 1_000_000, true), Some(0.0));
        assert_eq!(l.estimate(), 1_050_000);
        // 20% loss: cut by 10% from the rate in force.
        l.on_feedback(400_000, 80, 20, 1_000_000, true);
        assert_eq!(l.on_feedback(700_000, 0, 0, 1_000_000, true), Some(0.2));
        assert_eq!(l.estimate(), 900_000);
        // 5% with a loaded path: held.
        l.on_feedback(800_000, 95, 5, 900_000, true);
        l.on_feedback(1_100_000, 0, 0, 900_000, true);
        assert_eq!(l.estimate(), 900_000);
        // 5% on a path whose delay is steady: random loss, grows.
        l.on_feedback(1_200_000, 95, 5, 900_000, false);
        l.on_feedback(1_500_000, 0, 0, 900_000, false);
        assert_eq!(l.estimate(), 945_000);
    }
}
