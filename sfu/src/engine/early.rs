//! Binding requests that reach a shard before the peer they are for.
//!
//! The control plane gives a client the server's ICE credentials (in the SDP it sends) and
//! the media core the peer that answers to them (`Command::AddPeer`) at about the same time,
//! on two paths: the client's first check can come before the command reaches the shard (the
//! router thread may not have run yet). Dropped, that check costs the join the client's
//! retransmission interval (ours 50 ms, longer for others); kept a moment, it is answered as
//! soon as the peer arrives. The same holds for an ICE restart: the first check with the new
//! credentials, from the peer's known address, can come before `Command::RestartIce`. What is
//! kept is bounded in number, size and age, and a kept request is checked (MESSAGE-INTEGRITY
//! with the peer's password) only when it is answered, like any other.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Binding requests kept for ufrags no peer has; the oldest goes for a new one.
pub const EARLY_CHECKS: usize = 32;
/// How long a kept request waits for its peer. A client's own retransmissions (and its next
/// checks) take over after that.
pub const EARLY_CHECK_AGE: Duration = Duration::from_secs(3);
/// Largest binding request kept (a browser's is 100-200 bytes).
pub const EARLY_CHECK_BYTES: usize = 512;

/// The kept requests, oldest first, each in a buffer of the engine's pool.
#[derive(Default)]
pub(super) struct EarlyChecks {
    held: VecDeque<Held>,
}

struct Held {
    at: Instant,
    from: SocketAddr,
    data: Vec<u8>,
}

impl EarlyChecks {
    /// Keeps `buf`, a binding request from `from` whose USERNAME names no known peer, in a
    /// buffer from `pool`; when [`EARLY_CHECKS`] are held the oldest goes. A request larger
    /// than [`EARLY_CHECK_BYTES`] is not kept.
    pub(super) fn keep(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
        pool: &mut Vec<Vec<u8>>,
    ) {
        self.expire(now, pool);
        if buf.len() > EARLY_CHECK_BYTES {
            return;
        }
        if self.held.len() >= EARLY_CHECKS
            && let Some(old) = self.held.pop_front()
        {
            pool.push(old.data);
        }
        let mut data = super::take_buf(pool);
        data.extend_from_slice(buf);
        self.held.push_back(Held {
            at: now,
            from,
            data,
        });
    }

    /// Takes the oldest kept request for local ufrag `ufrag` younger than
    /// [`EARLY_CHECK_AGE`]: where it came from and the datagram (a pool buffer).
    pub(super) fn take(
        &mut self,
        now: Instant,
        ufrag: &str,
        pool: &mut Vec<Vec<u8>>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        self.expire(now, pool);
        let i = self
            .held
            .iter()
            .position(|h| local_ufrag(&h.data) == Some(ufrag))?;
        self.held.remove(i).map(|h| (h.from, h.data))
    }

    /// Requests held now.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    fn expire(&mut self, now: Instant, pool: &mut Vec<Vec<u8>>) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) >= EARLY_CHECK_AGE)
        {
            if let Some(h) = self.held.pop_front() {
                pool.push(h.data);
            }
        }
    }
}

/// The local (first) part of a binding request's USERNAME.
pub(super) fn local_ufrag(buf: &[u8]) -> Option<&str> {
    lkr_ice::stun_username_str(buf).and_then(|u| u.split(':').next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ufrag: &str, n: u8) -> Vec<u8> {
        let mut out = Vec::new();
        lkr_ice::write_binding_request(
            &mut out,
            [n; 12],
            &format!("{ufrag}:client"),
            "server-password-0123456789",
            1,
            7,
            false,
        )
        .unwrap();
        out
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], port))
    }

    #[test]
    fn a_kept_request_is_taken_once_by_its_ufrag() {
        let (mut e, mut pool) = (EarlyChecks::default(), Vec::new());
        let now = Instant::now();
        e.keep(now, addr(1), &check("aaaa", 1), &mut pool);
        e.keep(now, addr(2), &check("bbbb", 2), &mut pool);
        assert!(e.take(now, "cccc", &mut pool).is_none());
        let (from, data) = e.take(now, "bbbb", &mut pool).unwrap();
        assert_eq!((from, data), (addr(2), check("bbbb", 2)));
        assert!(e.take(now, "bbbb", &mut pool).is_none());
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_age_drops_the_rest() {
        let (mut e, mut pool) = (EarlyChecks::default(), Vec::new());
        let t0 = Instant::now();
        for i in 0..EARLY_CHECKS + 8 {
            let now = t0 + Duration::from_millis(i as u64);
            e.keep(
                now,
                addr(i as u16),
                &check(&format!("u{i:03}"), i as u8),
                &mut pool,
            );
        }
        assert_eq!(e.len(), EARLY_CHECKS);
        let now = t0 + Duration::from_millis(100);
        // The first eight made room for the last eight.
        assert!(e.take(now, "u000", &mut pool).is_none());
        assert!(e.take(now, "u007", &mut pool).is_none());
        assert!(e.take(now, "u008", &mut pool).is_some());
        assert!(
            e.take(now, &format!("u{:03}", EARLY_CHECKS + 7), &mut pool)
                .is_some()
        );
        // The buffers of the eight dropped ones held the eight that replaced them.
        assert!(pool.is_empty());
        // Past the age nothing is answered and everything is given back.
        let late = t0 + EARLY_CHECK_AGE + Duration::from_millis(50);
        assert!(e.take(late, "u009", &mut pool).is_none());
        assert_eq!(e.len(), 0);
        assert_eq!(pool.len(), EARLY_CHECKS - 2);
    }

    #[test]
    fn an_oversized_request_is_not_kept() {
        let (mut e, mut pool) = (EarlyChecks::default(), Vec::new());
        let mut big = check("aaaa", 1);
        big.resize(EARLY_CHECK_BYTES + 1, 0);
        e.keep(Instant::now(), addr(1), &big, &mut pool);
        assert_eq!(e.len(), 0);
    }
}
