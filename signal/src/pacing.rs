//! Pacing the signalling threads while they hear nothing but keepalives.
//!
//! A connected, idle participant's client pings its signal connection every few seconds;
//! with a thousand of them the signalling threads wake hundreds of times a second, one
//! ping each, and on a virtual machine the wake-up (the context switch out of `epoll_wait`
//! and back) costs more than answering the ping. While a whole window ([`WINDOW`]) passes
//! with nothing but keepalives, and at least the threshold of them a second
//! (`rtc.idle_signal_pacing`), the runtime's threads stop waking for each connection: one
//! of them wakes every [`PERIOD`] and serves whatever arrived meanwhile
//! (the others every [`REST`]), as the media shards read their sockets on a schedule for
//! idle peers' consent checks. Anything else (a signal request, a message to a client, an
//! HTTP request, a media event for the control plane) ends pacing at once: the first such
//! message waits up to [`PERIOD`], the ones after it not at all.
//!
//! The runtime calls [`Pacer::park`] before each of its threads parks
//! (`tokio::runtime::Builder::on_thread_park`); the sessions call [`Pacer::keepalive`] for
//! a wake-up that only answered pings, and [`Pacer::busy`] is called for anything else: by
//! the control task (for its inputs, and once per round of messages to clients), the HTTP
//! service and the media core's event hook.

use std::cell::Cell;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Keepalive-only wake-ups a second at or past which the signalling threads pace; the
/// default of `rtc.idle_signal_pacing`.
pub const PACE_KEEPALIVES: f64 = 50.0;
/// How long a window without anything but keepalives must be before pacing starts (one
/// ping interval of LiveKit's clients): the decisions are made once per window.
pub const WINDOW: Duration = Duration::from_secs(5);
/// How often the pacing thread wakes: a ping is answered up to this late (clients allow a
/// ping timeout of seconds) and so is the first message of anything else.
pub const PERIOD: Duration = Duration::from_millis(50);
/// How long the other threads rest while one paces; [`Pacer::busy`] wakes them earlier.
pub const REST: Duration = Duration::from_secs(1);

/// The pacing state shared by the runtime's threads, the sessions and the control task.
#[derive(Debug)]
pub struct Pacer {
    /// Keepalive-only wake-ups a second past which pacing starts (0: never).
    threshold: f64,
    start: Instant,
    /// Milliseconds since `start` at which the next decision is due.
    next_decision: AtomicU64,
    keepalives: AtomicU32,
    busy: AtomicU32,
    pacing: AtomicBool,
    /// The runtime's threads, numbered in the order they first parked.
    threads: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

thread_local! {
    /// This thread's number among the paced runtime's threads.
    static THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Pacer {
    /// A pacer that starts pacing at `threshold` keepalive-only wake-ups a second (0, or
    /// anything not a positive number: never).
    pub fn new(threshold: f64) -> Self {
        let threshold = if threshold.is_finite() && threshold > 0.0 {
            threshold
        } else {
            0.0
        };
        Pacer {
            threshold,
            start: Instant::now(),
            next_decision: AtomicU64::new(WINDOW.as_millis() as u64),
            keepalives: AtomicU32::new(0),
            busy: AtomicU32::new(0),
            pacing: AtomicBool::new(false),
            threads: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// A pacer that never paces.
    pub fn never() -> Self {
        Self::new(0.0)
    }

    /// Whether the threads pace now.
    pub fn is_pacing(&self) -> bool {
        self.pacing.load(Relaxed)
    }

    /// A session woke and only answered pings.
    pub fn keepalive(&self) {
        if self.threshold > 0.0 {
            self.keepalives.fetch_add(1, Relaxed);
        }
    }

    /// Something other than a keepalive happened: pacing ends now and resting threads wake.
    pub fn busy(&self) {
        if self.threshold == 0.0 {
            return;
        }
        self.busy.fetch_add(1, Relaxed);
        if self.pacing.load(Relaxed) && self.pacing.swap(false, AcqRel) {
            tracing::debug!("signalling: busy again, pacing stops");
            let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    /// Called by each runtime thread before it parks: decides whether to pace when a
    /// window has passed and, while pacing, keeps the thread from its park for one
    /// [`PERIOD`] (the first thread) or [`REST`] (the others), or until [`Pacer::busy`].
    pub fn park(&self) {
        if self.threshold == 0.0 {
            return;
        }
        self.decide(self.start.elapsed());
        if !self.pacing.load(Acquire) {
            return;
        }
        let first = THREAD.with(|t| {
            let n = t.get().unwrap_or_else(|| {
                let n = self.threads.fetch_add(1, Relaxed);
                t.set(Some(n));
                n
            });
            n == 0
        });
        self.rest(if first { PERIOD } else { REST });
    }

    /// Waits up to `wait` while pacing lasts.
    fn rest(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pacing.load(Acquire) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            held = match self.wake.wait_timeout(held, until - now) {
                Ok((h, _)) => h,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Once a [`WINDOW`] (`now` since the pacer started): starts pacing after a window of
    /// nothing but keepalives, at least `threshold` a second; stops it when they fell below
    /// two fifths of that (pacing would then wake the threads more often than the
    /// keepalives did). Returns whether the threads pace after it.
    fn decide(&self, now: Duration) -> bool {
        let now = now.as_millis() as u64;
        let due = self.next_decision.load(Relaxed);
        if now < due
            || self
                .next_decision
                .compare_exchange(due, now + WINDOW.as_millis() as u64, Relaxed, Relaxed)
                .is_err()
        {
            return self.pacing.load(Relaxed);
        }
        let keepalives = f64::from(self.keepalives.swap(0, Relaxed));
        let busy = self.busy.swap(0, Relaxed);
        let per_second = keepalives / WINDOW.as_secs_f64();
        let pacing = self.pacing.load(Relaxed);
        if !pacing && self.threshold > 0.0 && busy == 0 && per_second >= self.threshold {
            tracing::debug!(per_second, "signalling: keepalives only, pacing");
            self.pacing.store(true, Release);
            true
        } else if pacing && per_second < self.threshold * 2.0 / 5.0 {
            tracing::debug!(per_second, "signalling: few keepalives, pacing stops");
            self.pacing.store(false, Release);
            false
        } else {
            pacing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    fn window(n: u64) -> Duration {
        WINDOW * n as u32
    }

    /// A pacer at one keepalive a second that paces after its first window.
    fn pacing() -> Pacer {
        let p = Pacer::new(1.0);
        (0..5).for_each(|_| p.keepalive());
        assert!(p.decide(window(1)));
        p
    }

    #[test]
    fn paces_after_a_window_of_keepalives_only() {
        let p = Pacer::new(2.0);
        for _ in 0..10 {
            p.keepalive();
        }
        // Not before the window ends.
        assert!(!p.decide(Duration::from_secs(1)));
        assert!(p.decide(window(1)));
        assert!(p.is_pacing());
    }

    #[test]
    fn too_few_keepalives_or_anything_else_in_the_window_keeps_it_awake() {
        let p = Pacer::new(2.0);
        for _ in 0..9 {
            p.keepalive();
        }
        assert!(!p.decide(window(1)), "9 in 5 s is under 2 a second");
        for _ in 0..100 {
            p.keepalive();
        }
        p.busy();
        assert!(!p.decide(window(2)), "a request in the window");
        for _ in 0..100 {
            p.keepalive();
        }
        assert!(p.decide(window(3)), "a quiet window follows");
    }

    #[test]
    fn busy_ends_pacing_at_once_and_it_resumes_after_a_quiet_window() {
        let p = pacing();
        p.busy();
        assert!(!p.is_pacing());
        (0..50).for_each(|_| p.keepalive());
        assert!(!p.decide(window(2)), "the window held the busy mark");
        (0..50).for_each(|_| p.keepalive());
        assert!(p.decide(window(3)));
    }

    #[test]
    fn pacing_stops_when_keepalives_fall_below_two_fifths() {
        let p = Pacer::new(10.0);
        (0..50).for_each(|_| p.keepalive());
        assert!(p.decide(window(1)));
        (0..20).for_each(|_| p.keepalive()); // 4 a second: exactly two fifths
        assert!(p.decide(window(2)));
        (0..19).for_each(|_| p.keepalive());
        assert!(!p.decide(window(3)));
    }

    #[test]
    fn never_paces_at_zero() {
        let p = Pacer::never();
        (0..1000).for_each(|_| p.keepalive());
        assert!(!p.decide(window(1)));
        // And `park` returns at once.
        p.park();
        assert!(!p.is_pacing());
    }

    #[test]
    fn a_decision_is_made_once_per_window() {
        let p = pacing();
        // Keepalives counted since: the next decision is not due before another window.
        p.busy();
        (0..5).for_each(|_| p.keepalive());
        assert!(!p.decide(window(1) + Duration::from_secs(4)));
        assert_eq!(p.busy.load(Relaxed), 1, "the window's counts were kept");
    }

    /// A thread resting in `park` is woken by `busy` long before its rest would end.
    #[test]
    fn busy_wakes_a_resting_thread() {
        let p = Arc::new(pacing());
        let (done, parked) = mpsc::channel();
        let t = std::thread::spawn({
            let p = p.clone();
            move || {
                // Make the rest long enough that only `busy` can end it within the test.
                let started = Instant::now();
                p.rest(Duration::from_secs(600));
                done.send(started.elapsed()).unwrap();
            }
        });
        // Still resting while pacing lasts.
        assert!(parked.recv_timeout(Duration::from_millis(200)).is_err());
        p.busy();
        let rested = parked
            .recv_timeout(Duration::from_secs(10))
            .expect("busy did not wake the resting thread");
        assert!(rested < Duration::from_secs(600));
        t.join().unwrap();
    }

    #[test]
    fn the_first_thread_paces_and_the_others_rest() {
        let p = Arc::new(pacing());
        // Force the next decision far off so that `park` only rests.
        p.next_decision.store(u64::MAX, Relaxed);
        let started = Instant::now();
        p.park(); // this test's thread is the first: one PERIOD
        let first = started.elapsed();
        assert!(first >= PERIOD, "{first:?}");
        assert!(first < REST, "{first:?}");
        let (done, rested) = mpsc::channel();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            p2.park(); // the second thread: REST, unless woken
            done.send(started.elapsed()).unwrap();
        });
        assert!(
            rested.recv_timeout(PERIOD * 4).is_err(),
            "the second thread rests longer than a period"
        );
        p.busy();
        rested.recv_timeout(Duration::from_secs(10)).unwrap();
        t.join().unwrap();
    }
}
