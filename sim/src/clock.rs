//! Virtual time: a fixed `Instant` base plus an offset that only the simulation advances.

use std::time::{Duration, Instant};

/// The simulation's clock. Every component is handed [`Clock::now`]; nothing reads the real
/// clock after [`Clock::new`] took the base.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    /// A clock at offset zero. The base is the one real clock reading of a run; only
    /// differences from it matter.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.base + self.offset
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// The instant `d` after the start.
    pub fn at(&self, d: Duration) -> Instant {
        self.base + d
    }

    /// Moves to `t`; time never goes backwards, so an earlier `t` is ignored.
    pub fn advance_to(&mut self, t: Instant) {
        let offset = t.saturating_duration_since(self.base);
        if offset > self.offset {
            self.offset = offset;
        }
    }

    /// Moves forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.offset += d;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
