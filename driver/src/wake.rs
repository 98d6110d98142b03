//! How the media core's threads wake each other.
//!
//! A shard sleeps in its own [`mio::Poll`] (its socket and its waker, nothing else), so a
//! wake-up costs one `epoll_wait` and no runtime around it. The router and the ICE-TCP port
//! run small tokio loops and keep a [`Notify`] each.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::AcqRel;

use tokio::sync::Notify;

/// Wakes one shard out of its poll. Wakes that come while one is already pending cost
/// an atomic swap and no system call.
pub(crate) struct ShardWaker {
    waker: mio::Waker,
    /// A wake was sent since the shard last took it.
    pending: AtomicBool,
}

impl ShardWaker {
    pub(crate) fn new(waker: mio::Waker) -> Self {
        Self {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    /// Wakes the shard: its next round looks at its inbox, its rings and the stop flag.
    /// Whatever was put there before this call is seen by that round.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, AcqRel)
            && let Err(e) = self.waker.wake()
        {
            tracing::error!("media shard waker: {e}");
        }
    }

    /// Taken by the shard when it wakes, before it looks at what wakes it; `true` when a
    /// wake was pending.
    pub(crate) fn take(&self) -> bool {
        self.pending.swap(false, AcqRel)
    }
}

/// Every thread's waker: the shards', the router's and the ICE-TCP port's.
pub(crate) struct Wakers {
    shards: Box<[ShardWaker]>,
    router: Notify,
    tcp: Notify,
}

impl Wakers {
    pub(crate) fn new(shards: Vec<ShardWaker>) -> Self {
        Self {
            shards: shards.into(),
            router: Notify::new(),
            tcp: Notify::new(),
        }
    }

    /// Shard `s`'s waker.
    pub(crate) fn shard(&self, s: usize) -> Option<&ShardWaker> {
        self.shards.get(s)
    }

    pub(crate) fn router(&self) -> &Notify {
        &self.router
    }

    pub(crate) fn tcp(&self) -> &Notify {
        &self.tcp
    }

    /// Wakes every thread (to see the stop flag).
    pub(crate) fn all(&self) {
        for s in self.shards.iter() {
            s.wake();
        }
        self.router.notify_one();
        self.tcp.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wake_ends_the_poll_once_and_repeated_wakes_coalesce() {
        let mut poll = mio::Poll::new().unwrap();
        let w = ShardWaker::new(mio::Waker::new(poll.registry(), mio::Token(1)).unwrap());
        let mut events = mio::Events::with_capacity(4);
        w.wake();
        w.wake();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1, "woken");
        assert!(w.take(), "a wake was pending");
        assert!(!w.take(), "and only one");
        // Nothing pending: the poll runs to its timeout.
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        assert!(events.is_empty());
        // A wake after the take reaches the next poll.
        w.wake();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
    }
}
