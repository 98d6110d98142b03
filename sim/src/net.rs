//! The simulated network: datagrams between addresses, each direction of each pair of
//! addresses a link with its own loss, delay, jitter and reordering, drawn from its own seeded
//! generator so that traffic on one link never shifts the loss pattern of another.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// How one direction between two addresses behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram (which may reorder).
    pub jitter: Duration,
    /// Probability that a datagram is held back by `reorder_delay`, arriving after later ones.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
}

impl Default for LinkConfig {
    /// 10 ms one way, no loss, no jitter, no reordering.
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(15),
        }
    }
}

impl LinkConfig {
    /// The default link with random loss `loss`.
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            ..Self::default()
        }
    }

    /// A link that loses everything.
    pub fn cut() -> Self {
        Self::lossy(1.0)
    }
}

/// What a datagram carries, by its first byte (RFC 7983) and, for RTP/RTCP, its second
/// (RFC 5761 §4). SRTP leaves both in the clear, so the network can tell without keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Other,
}

impl Kind {
    /// Classifies a datagram.
    pub fn of(data: &[u8]) -> Kind {
        match data.first() {
            Some(0..=3) => Kind::Stun,
            Some(20..=63) => Kind::Dtls,
            Some(128..=191) if lkr_rtp::is_rtcp(data) => Kind::Rtcp,
            Some(128..=191) => Kind::Rtp,
            _ => Kind::Other,
        }
    }
}

/// Counters of one direction of a link. Kinds count every datagram sent, lost or not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub delivered: u64,
    pub stun: u64,
    pub dtls: u64,
    pub rtp: u64,
    pub rtcp: u64,
    pub other: u64,
}

/// A datagram on its way.
#[derive(Debug)]
pub struct Datagram {
    /// When it arrives.
    pub at: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Heap entry: earliest arrival first, then send order, so that equal arrival times keep
/// the order datagrams were sent in.
struct Queued {
    order: u64,
    datagram: Datagram,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.datagram.at, other.order).cmp(&(self.datagram.at, self.order))
    }
}

struct Link {
    config: LinkConfig,
    rng: Rng,
    stats: LinkStats,
    /// RTP packets (SSRC, sequence number) to lose the next time they are sent.
    drop_once: Vec<(u32, u16)>,
}

/// SSRC and sequence number of an RTP datagram; SRTP leaves both in the clear.
fn rtp_id(data: &[u8]) -> Option<(u32, u16)> {
    if Kind::of(data) != Kind::Rtp || data.len() < 12 {
        return None;
    }
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    Some((ssrc, seq))
}

/// Folds an address into a seed.
fn addr_seed(a: SocketAddr) -> u64 {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => {
            let x = u128::from(v6);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    (ip << 16) ^ u64::from(a.port())
}

/// Datagrams in flight between addresses.
pub struct Network {
    seed: u64,
    default_link: LinkConfig,
    links: BTreeMap<(SocketAddr, SocketAddr), Link>,
    queue: BinaryHeap<Queued>,
    order: u64,
}

impl Network {
    /// An empty network; links not configured otherwise behave as `default_link`.
    pub fn new(seed: u64, default_link: LinkConfig) -> Self {
        Self {
            seed,
            default_link,
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
        }
    }

    fn link(&mut self, from: SocketAddr, to: SocketAddr) -> &mut Link {
        let (seed, default_link) = (self.seed, self.default_link);
        self.links.entry((from, to)).or_insert_with(|| Link {
            config: default_link,
            rng: Rng::new(seed ^ addr_seed(from).rotate_left(17) ^ addr_seed(to).rotate_left(41)),
            stats: LinkStats::default(),
            drop_once: Vec::new(),
        })
    }

    /// Loses the RTP packet `(ssrc, seq)` the next time it is sent from `from` to `to`
    /// (a retransmission of it then gets through), whatever the link's loss rate.
    pub fn drop_rtp_once(&mut self, from: SocketAddr, to: SocketAddr, ssrc: u32, seq: u16) {
        self.link(from, to).drop_once.push((ssrc, seq));
    }

    /// Sets how datagrams from `from` to `to` travel from now on (those in flight keep their
    /// arrival time).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, config: LinkConfig) {
        self.link(from, to).config = config;
    }

    /// Takes loss and reordering off every link (delays stay), for example so that the end
    /// of a test stream is not lost where no later packet could reveal the gap.
    pub fn heal(&mut self) {
        self.default_link.loss = 0.0;
        self.default_link.reorder = 0.0;
        for l in self.links.values_mut() {
            l.config.loss = 0.0;
            l.config.reorder = 0.0;
        }
    }

    /// How datagrams from `from` to `to` travel.
    pub fn link_config(&self, from: SocketAddr, to: SocketAddr) -> LinkConfig {
        self.links
            .get(&(from, to))
            .map_or(self.default_link, |l| l.config)
    }

    /// The counters of the direction `from` → `to`.
    pub fn stats(&self, from: SocketAddr, to: SocketAddr) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(|l| l.stats)
            .unwrap_or_default()
    }

    /// Sends a datagram at `now`; returns false when the link lost it.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) -> bool {
        let link = self.link(from, to);
        let stats = &mut link.stats;
        stats.sent += 1;
        match Kind::of(&data) {
            Kind::Stun => stats.stun += 1,
            Kind::Dtls => stats.dtls += 1,
            Kind::Rtp => stats.rtp += 1,
            Kind::Rtcp => stats.rtcp += 1,
            Kind::Other => stats.other += 1,
        }
        let c = link.config;
        let targeted = !link.drop_once.is_empty()
            && rtp_id(&data)
                .and_then(|id| link.drop_once.iter().position(|x| *x == id))
                .map(|i| link.drop_once.swap_remove(i))
                .is_some();
        // The draw happens either way, so that a targeted drop leaves the random pattern as
        // it was.
        if link.rng.chance(c.loss) || targeted {
            link.stats.lost += 1;
            return false;
        }
        let mut delay = c.delay;
        if !c.jitter.is_zero() {
            let nanos = u64::try_from(c.jitter.as_nanos()).unwrap_or(u64::MAX);
            delay += Duration::from_nanos(link.rng.below(nanos.saturating_add(1)));
        }
        if link.rng.chance(c.reorder) {
            delay += c.reorder_delay;
        }
        self.order += 1;
        self.queue.push(Queued {
            order: self.order,
            datagram: Datagram {
                at: now + delay,
                from,
                to,
                data,
            },
        });
        true
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|q| q.datagram.at)
    }

    /// The next datagram that has arrived by `now`.
    pub fn pop_arrived(&mut self, now: Instant) -> Option<Datagram> {
        if self.next_arrival()? > now {
            return None;
        }
        let q = self.queue.pop()?;
        if let Some(l) = self.links.get_mut(&(q.datagram.from, q.datagram.to)) {
            l.stats.delivered += 1;
        }
        Some(q.datagram)
    }

    /// Datagrams still on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal address")
    }

    #[test]
    fn delivers_in_order_after_the_delay() {
        let t0 = Instant::now();
        let (a, b) = (addr("10.0.0.1:1"), addr("10.0.0.2:2"));
        let mut net = Network::new(1, LinkConfig::default());
        for i in 0..10u8 {
            assert!(net.send(t0, a, b, vec![255, i]));
        }
        assert!(net.pop_arrived(t0).is_none());
        let t1 = t0 + Duration::from_millis(10);
        let got: Vec<u8> = std::iter::from_fn(|| net.pop_arrived(t1))
            .map(|d| d.data[1])
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(net.stats(a, b).delivered, 10);
        assert_eq!(net.stats(a, b).other, 10);
    }

    #[test]
    fn loss_is_seeded_and_per_link() {
        let t0 = Instant::now();
        let (a, b, c) = (addr("10.0.0.1:1"), addr("10.0.0.2:2"), addr("10.0.0.3:3"));
        let pattern = |interleave: bool| {
            let mut net = Network::new(9, LinkConfig::lossy(0.3));
            (0..200)
                .map(|_| {
                    if interleave {
                        net.send(t0, a, c, vec![0]);
                    }
                    net.send(t0, a, b, vec![0])
                })
                .collect::<Vec<_>>()
        };
        let p = pattern(false);
        assert_eq!(
            p,
            pattern(true),
            "other links do not shift this one's losses"
        );
        let lost = p.iter().filter(|x| !**x).count();
        assert!((30..90).contains(&lost), "{lost}");
    }
}
