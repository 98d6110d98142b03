//! Counters of what the media core dropped, shared with the control plane.
//!
//! The media thread writes them with relaxed atomic stores (and, once a second, the
//! per-peer table under a lock it only tries to take); readers take a [`StatsSnapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use lkr_sfu::{Drops, PeerId, TrackStats, Traffic};

/// What the media core dropped, counted since it started (summed over its shards).
#[derive(Debug)]
pub struct MediaStats {
    /// Commands refused because the command channel was full (counted by the sender).
    pub commands_rejected: AtomicU64,
    /// Loss-tolerant events (data messages, audio levels, loss reports) dropped because the
    /// control plane did not keep up.
    pub events_dropped: AtomicU64,
    /// State events that found the event channel full and waited in the local queue.
    pub events_deferred: AtomicU64,
    /// Datagrams the socket would not take (`EAGAIN`/`ENOBUFS`), dropped rather than waited
    /// for.
    pub send_dropped: AtomicU64,
    /// Datagrams refused for another reason (e.g. no route).
    pub send_failed: AtomicU64,
    /// Wake-ups of the media threads.
    pub wakeups: AtomicU64,
    /// Segmented sends: runs of two datagrams or more to one destination that left as one
    /// `UDP_SEGMENT` send.
    pub segmented_sends: AtomicU64,
    /// The datagrams those runs carried.
    pub segmented_datagrams: AtomicU64,
    /// Hand-offs between shards (datagrams, relayed packets) dropped because the ring to
    /// the other shard was full.
    pub handoff_dropped: AtomicU64,
    /// The ICE-TCP port's counters.
    pub tcp: TcpCounters,
    /// One set per shard.
    engine: Vec<EngineCounters>,
    traffic: Vec<TrafficCounters>,
    latency: Vec<LatencyCounters>,
    per_peer: Vec<Mutex<Vec<(PeerId, u64)>>>,
    /// Each shard's published tracks, as of the last second (for the node page).
    tracks: Vec<Mutex<Vec<TrackStats>>>,
    /// Each shard: reading its socket on a schedule (idle peers only), as of the last
    /// second.
    polling: Vec<AtomicBool>,
}

impl Default for MediaStats {
    fn default() -> Self {
        Self::new(1)
    }
}

/// What the ICE-TCP port accepted, refused and closed (written by its thread).
#[derive(Debug, Default)]
pub struct TcpCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections closed for a frame larger than a datagram or not a STUN/DTLS/RTP packet.
    pub bad_frames: AtomicU64,
    /// Connections closed because no check was answered in time or nothing arrived for the
    /// idle timeout.
    pub timed_out: AtomicU64,
    /// Frames dropped: the connection's send buffer or the ring to a shard was full.
    pub frames_dropped: AtomicU64,
}

/// A copy of [`TcpCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TcpSnapshot {
    pub accepted: u64,
    pub refused: u64,
    pub bad_frames: u64,
    pub timed_out: u64,
    pub frames_dropped: u64,
}

#[derive(Debug, Default)]
struct EngineCounters {
    unknown_source: AtomicU64,
    bad_stun: AtomicU64,
    dtls_error: AtomicU64,
    srtp_error: AtomicU64,
    replayed: AtomicU64,
    malformed_rtp: AtomicU64,
    unknown_ssrc: AtomicU64,
    unknown_first_byte: AtomicU64,
    padding: AtomicU64,
    late: AtomicU64,
    unsent: AtomicU64,
    nack_duplicate: AtomicU64,
    nack_over_cap: AtomicU64,
    nack_over_rate: AtomicU64,
    sender_report_over_rate: AtomicU64,
    data_over_hold: AtomicU64,
}

#[derive(Debug, Default)]
struct TrafficCounters {
    rtp_in: AtomicU64,
    rtp_in_bytes: AtomicU64,
    rtp_out: AtomicU64,
    rtp_out_bytes: AtomicU64,
    rtx_out: AtomicU64,
    nack_in: AtomicU64,
    pli_in: AtomicU64,
    pli_out: AtomicU64,
    upstream_lost: AtomicU64,
    path_returns: AtomicU64,
}

/// Upper bounds of the forwarding latency histogram, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 9] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// A shard's forwarding latency histogram: from a receive batch to the end of the wake that
/// handled and sent it (plain integers, kept by the shard's thread).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_US`].
    pub buckets: [u64; LATENCY_BUCKETS_US.len()],
    pub sum_us: u64,
    pub count: u64,
}

impl Latency {
    /// Notes one batch's latency.
    pub fn observe(&mut self, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        for (b, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS_US) {
            if us <= le {
                *b += 1;
            }
        }
        self.sum_us += us;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct LatencyCounters {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A copy of [`MediaStats`] at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub commands_rejected: u64,
    pub events_dropped: u64,
    pub events_deferred: u64,
    pub send_dropped: u64,
    pub send_failed: u64,
    pub wakeups: u64,
    pub segmented_sends: u64,
    pub segmented_datagrams: u64,
    pub handoff_dropped: u64,
    /// Shards reading their socket on a schedule because they hear only idle peers.
    pub polling_shards: usize,
    /// The ICE-TCP port's counters.
    pub tcp: TcpSnapshot,
    /// The engine's own counters (bad input, late packets, unsent datagrams).
    pub engine: Drops,
    /// What the engines forwarded and heard, summed over shards.
    pub traffic: Traffic,
    /// Forwarding latency, summed over shards.
    pub latency: Latency,
    /// Datagrams dropped at the socket per peer (subscriber), as of the last second; peers
    /// with none are left out.
    pub unsent_by_peer: Vec<(PeerId, u64)>,
}

impl MediaStats {
    /// Counters for `shards` shards.
    pub fn new(shards: usize) -> Self {
        let n = shards.max(1);
        Self {
            commands_rejected: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            events_deferred: AtomicU64::new(0),
            send_dropped: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            segmented_sends: AtomicU64::new(0),
            segmented_datagrams: AtomicU64::new(0),
            handoff_dropped: AtomicU64::new(0),
            tcp: TcpCounters::default(),
            engine: (0..n).map(|_| EngineCounters::default()).collect(),
            traffic: (0..n).map(|_| TrafficCounters::default()).collect(),
            latency: (0..n).map(|_| LatencyCounters::default()).collect(),
            per_peer: (0..n).map(|_| Mutex::default()).collect(),
            tracks: (0..n).map(|_| Mutex::default()).collect(),
            polling: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Notes whether shard `shard` reads its socket on a schedule.
    pub(crate) fn set_polling(&self, shard: usize, on: bool) {
        if let Some(p) = self.polling.get(shard) {
            p.store(on, Relaxed);
        }
    }

    /// Replaces shard `shard`'s track table with what `fill` writes, unless a reader holds
    /// it (then it waits for the next second).
    pub(crate) fn try_store_tracks(&self, shard: usize, fill: impl FnOnce(&mut Vec<TrackStats>)) {
        if let Some(Ok(mut v)) = self.tracks.get(shard).map(Mutex::try_lock) {
            fill(&mut v);
        }
    }

    /// Every published track's counters, bitrate and loss, as of the last second.
    pub fn tracks(&self) -> Vec<TrackStats> {
        let mut out = Vec::new();
        for m in &self.tracks {
            if let Ok(v) = m.lock() {
                out.extend(v.iter().cloned());
            }
        }
        out
    }

    /// Copies shard `shard`'s latency histogram (called by its media thread).
    pub(crate) fn store_latency(&self, shard: usize, l: &Latency) {
        let Some(c) = self.latency.get(shard) else {
            return;
        };
        for (a, v) in c.buckets.iter().zip(l.buckets) {
            a.store(v, Relaxed);
        }
        c.sum_us.store(l.sum_us, Relaxed);
        c.count.store(l.count, Relaxed);
    }

    /// Copies shard `shard`'s traffic counters (called by its media thread).
    pub(crate) fn store_traffic(&self, shard: usize, t: &Traffic) {
        let Some(c) = self.traffic.get(shard) else {
            return;
        };
        c.rtp_in.store(t.rtp_in, Relaxed);
        c.rtp_in_bytes.store(t.rtp_in_bytes, Relaxed);
        c.rtp_out.store(t.rtp_out, Relaxed);
        c.rtp_out_bytes.store(t.rtp_out_bytes, Relaxed);
        c.rtx_out.store(t.rtx_out, Relaxed);
        c.nack_in.store(t.nack_in, Relaxed);
        c.pli_in.store(t.pli_in, Relaxed);
        c.pli_out.store(t.pli_out, Relaxed);
        c.upstream_lost.store(t.upstream_lost, Relaxed);
        c.path_returns.store(t.path_returns, Relaxed);
    }

    /// Copies shard `shard`'s engine counters (called by its media thread).
    pub(crate) fn store_engine(&self, shard: usize, d: &Drops) {
        let Some(e) = self.engine.get(shard) else {
            return;
        };
        e.unknown_source.store(d.unknown_source, Relaxed);
        e.bad_stun.store(d.bad_stun, Relaxed);
        e.dtls_error.store(d.dtls_error, Relaxed);
        e.srtp_error.store(d.srtp_error, Relaxed);
        e.replayed.store(d.replayed, Relaxed);
        e.malformed_rtp.store(d.malformed_rtp, Relaxed);
        e.unknown_ssrc.store(d.unknown_ssrc, Relaxed);
        e.unknown_first_byte.store(d.unknown_first_byte, Relaxed);
        e.padding.store(d.padding, Relaxed);
        e.late.store(d.late, Relaxed);
        e.unsent.store(d.unsent, Relaxed);
        e.nack_duplicate.store(d.nack_duplicate, Relaxed);
        e.nack_over_cap.store(d.nack_over_cap, Relaxed);
        e.nack_over_rate.store(d.nack_over_rate, Relaxed);
        e.sender_report_over_rate
            .store(d.sender_report_over_rate, Relaxed);
        e.data_over_hold.store(d.data_over_hold, Relaxed);
    }

    /// Replaces the per-peer table unless a reader holds it (the media thread never waits).
    pub(crate) fn try_store_per_peer(
        &self,
        shard: usize,
        fill: impl FnOnce(&mut Vec<(PeerId, u64)>),
    ) {
        if let Some(Ok(mut v)) = self.per_peer.get(shard).map(Mutex::try_lock) {
            v.clear();
            fill(&mut v);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut engine = Drops::default();
        for e in &self.engine {
            engine.unknown_source += e.unknown_source.load(Relaxed);
            engine.bad_stun += e.bad_stun.load(Relaxed);
            engine.dtls_error += e.dtls_error.load(Relaxed);
            engine.srtp_error += e.srtp_error.load(Relaxed);
            engine.replayed += e.replayed.load(Relaxed);
            engine.malformed_rtp += e.malformed_rtp.load(Relaxed);
            engine.unknown_ssrc += e.unknown_ssrc.load(Relaxed);
            engine.unknown_first_byte += e.unknown_first_byte.load(Relaxed);
            engine.padding += e.padding.load(Relaxed);
            engine.late += e.late.load(Relaxed);
            engine.unsent += e.unsent.load(Relaxed);
            engine.nack_duplicate += e.nack_duplicate.load(Relaxed);
            engine.nack_over_cap += e.nack_over_cap.load(Relaxed);
            engine.nack_over_rate += e.nack_over_rate.load(Relaxed);
            engine.sender_report_over_rate += e.sender_report_over_rate.load(Relaxed);
            engine.data_over_hold += e.data_over_hold.load(Relaxed);
        }
        let mut latency = Latency::default();
        for c in &self.latency {
            for (b, a) in latency.buckets.iter_mut().zip(&c.buckets) {
                *b += a.load(Relaxed);
            }
            latency.sum_us += c.sum_us.load(Relaxed);
            latency.count += c.count.load(Relaxed);
        }
        let mut traffic = Traffic::default();
        for t in &self.traffic {
            traffic.rtp_in += t.rtp_in.load(Relaxed);
            traffic.rtp_in_bytes += t.rtp_in_bytes.load(Relaxed);
            traffic.rtp_out += t.rtp_out.load(Relaxed);
            traffic.rtp_out_bytes += t.rtp_out_bytes.load(Relaxed);
            traffic.rtx_out += t.rtx_out.load(Relaxed);
            traffic.nack_in += t.nack_in.load(Relaxed);
            traffic.pli_in += t.pli_in.load(Relaxed);
            traffic.pli_out += t.pli_out.load(Relaxed);
            traffic.upstream_lost += t.upstream_lost.load(Relaxed);
            traffic.path_returns += t.path_returns.load(Relaxed);
        }
        let mut unsent_by_peer = Vec::new();
        for m in &self.per_peer {
            if let Ok(v) = m.lock() {
                unsent_by_peer.extend_from_slice(&v);
            }
        }
        StatsSnapshot {
            commands_rejected: self.commands_rejected.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            events_deferred: self.events_deferred.load(Relaxed),
            send_dropped: self.send_dropped.load(Relaxed),
            send_failed: self.send_failed.load(Relaxed),
            wakeups: self.wakeups.load(Relaxed),
            segmented_sends: self.segmented_sends.load(Relaxed),
            segmented_datagrams: self.segmented_datagrams.load(Relaxed),
            handoff_dropped: self.handoff_dropped.load(Relaxed),
            polling_shards: self.polling.iter().filter(|p| p.load(Relaxed)).count(),
            tcp: TcpSnapshot {
                accepted: self.tcp.accepted.load(Relaxed),
                refused: self.tcp.refused.load(Relaxed),
                bad_frames: self.tcp.bad_frames.load(Relaxed),
                timed_out: self.tcp.timed_out.load(Relaxed),
                frames_dropped: self.tcp.frames_dropped.load(Relaxed),
            },
            engine,
            traffic,
            latency,
            unsent_by_peer,
        }
    }
}
