//! Which other shard a datagram that landed on this shard's socket belongs to.
//!
//! The kernel spreads datagrams over the shards' sockets by source address, not by peer. A
//! STUN check names its peer's local ufrag, which the router has told every shard the owner
//! of; the check's source address is then remembered for that shard, so that the peer's
//! DTLS, SRTP and SRTCP from the same address follow. The check is not authenticated here
//! (only the owning shard knows the password), so a peer can send checks with its own ufrag
//! from any number of source ports: each ufrag keeps only its latest [`SOURCES_PER_UFRAG`]
//! sources, and what one peer sends never pushes out another's routes.

use std::collections::VecDeque;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;

/// Source addresses remembered per ufrag (as many as ICE accepts for one peer), the oldest
/// forgotten first.
pub const SOURCES_PER_UFRAG: usize = 8;

/// Routes to other shards, by ufrag and by source address.
#[derive(Default)]
pub(crate) struct Routes {
    /// Each other shard's peer, by local ufrag: its shard and its sources, oldest first.
    ufrags: FxHashMap<String, (u8, VecDeque<SocketAddr>)>,
    /// The shard of each remembered source.
    addrs: FxHashMap<SocketAddr, u8>,
}

impl Routes {
    /// The peer with local `ufrag` is on shard `shard` (`None`: on ours, or gone); a
    /// forgotten ufrag takes its sources with it.
    pub(crate) fn set_ufrag(&mut self, ufrag: String, shard: Option<u8>) {
        match shard {
            Some(s) => {
                let entry = self.ufrags.entry(ufrag).or_default();
                entry.0 = s;
                for a in &entry.1 {
                    self.addrs.insert(*a, s);
                }
            }
            None => {
                if let Some((_, sources)) = self.ufrags.remove(&ufrag) {
                    for a in sources {
                        self.addrs.remove(&a);
                    }
                }
            }
        }
    }

    /// The shard of the peer a STUN check from `from` names (`ufrag`, its local ufrag), if
    /// another shard's; `from` is remembered for it.
    pub(crate) fn by_ufrag(&mut self, ufrag: &str, from: SocketAddr) -> Option<u8> {
        let (s, sources) = self.ufrags.get_mut(ufrag)?;
        let s = *s;
        if sources.contains(&from) {
            return Some(s);
        }
        if sources.len() >= SOURCES_PER_UFRAG
            && let Some(old) = sources.pop_front()
        {
            self.addrs.remove(&old);
        }
        sources.push_back(from);
        if let Some(prev) = self.addrs.insert(from, s)
            && prev != s
        {
            // The address moved to another peer: the old peer's list forgets it lazily.
            tracing::debug!(%from, to = s, "source moved between shards");
        }
        Some(s)
    }

    /// The shard a source address was last seen checking for, if another shard's.
    pub(crate) fn by_source(&self, from: SocketAddr) -> Option<u8> {
        self.addrs.get(&from).copied()
    }

    /// Remembered sources (at most [`SOURCES_PER_UFRAG`] per known ufrag).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.addrs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn checks_from_ever_new_ports_keep_their_own_last_sources_only() {
        let mut r = Routes::default();
        r.set_ufrag("good".into(), Some(1));
        r.set_ufrag("bad".into(), Some(2));
        assert_eq!(r.by_ufrag("good", addr(5000)), Some(1));
        // One peer checks from 100,000 source ports with its own ufrag.
        for i in 0..100_000u32 {
            let from = SocketAddr::from(([10, 0, (i >> 16) as u8, 2], i as u16));
            assert_eq!(r.by_ufrag("bad", from), Some(2));
        }
        assert_eq!(r.sources(), 1 + SOURCES_PER_UFRAG);
        // The other peer's media still finds its shard.
        assert_eq!(r.by_source(addr(5000)), Some(1));
        // The latest sources of the busy one are kept, the older ones forgotten.
        assert_eq!(
            r.by_source(SocketAddr::from(([10, 0, 1, 2], 34_463))),
            Some(2)
        );
        assert_eq!(r.by_source(SocketAddr::from(([10, 0, 0, 2], 7))), None);
        // An unknown ufrag learns nothing.
        assert_eq!(r.by_ufrag("nobody", addr(9)), None);
        assert_eq!(r.by_source(addr(9)), None);
        // A forgotten peer takes its sources with it.
        r.set_ufrag("bad".into(), None);
        assert_eq!(r.sources(), 1);
        r.set_ufrag("good".into(), None);
        assert_eq!(r.by_source(addr(5000)), None);
    }

    #[test]
    fn a_peer_that_moves_shards_takes_its_sources() {
        let mut r = Routes::default();
        r.set_ufrag("u".into(), Some(1));
        r.by_ufrag("u", addr(1));
        r.set_ufrag("u".into(), Some(3));
        assert_eq!(r.by_source(addr(1)), Some(3));
        assert_eq!(r.by_ufrag("u", addr(1)), Some(3));
    }
}
