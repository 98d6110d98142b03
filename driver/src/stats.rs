//! Counters of what the media core dropped, shared with the control plane.
//!
//! The media thread writes them with relaxed atomic stores (and, once a second, the
//! per-peer table under a lock it only tries to take); readers take a [`StatsSnapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use lkr_sfu::{Drops, PeerId, Traffic};

/// What the media core dropped, counted since it started.
#[derive(Debug, Default)]
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
    /// Wake-ups of the media thread.
    pub wakeups: AtomicU64,
    engine: EngineCounters,
    traffic: TrafficCounters,
    per_peer: Mutex<Vec<(PeerId, u64)>>,
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
    /// The engine's own counters (bad input, late packets, unsent datagrams).
    pub engine: Drops,
    /// What the engine forwarded and heard.
    pub traffic: Traffic,
    /// Datagrams dropped at the socket per peer (subscriber), as of the last second; peers
    /// with none are left out.
    pub unsent_by_peer: Vec<(PeerId, u64)>,
}

impl MediaStats {
    /// Copies the engine's traffic counters (called by the media thread).
    pub(crate) fn store_traffic(&self, t: &Traffic) {
        let c = &self.traffic;
        c.rtp_in.store(t.rtp_in, Relaxed);
        c.rtp_in_bytes.store(t.rtp_in_bytes, Relaxed);
        c.rtp_out.store(t.rtp_out, Relaxed);
        c.rtp_out_bytes.store(t.rtp_out_bytes, Relaxed);
        c.rtx_out.store(t.rtx_out, Relaxed);
        c.nack_in.store(t.nack_in, Relaxed);
        c.pli_in.store(t.pli_in, Relaxed);
        c.pli_out.store(t.pli_out, Relaxed);
    }

    /// Copies the engine's counters (called by the media thread).
    pub(crate) fn store_engine(&self, d: &Drops) {
        let e = &self.engine;
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
    }

    /// Replaces the per-peer table unless a reader holds it (the media thread never waits).
    pub(crate) fn try_store_per_peer(&self, fill: impl FnOnce(&mut Vec<(PeerId, u64)>)) {
        if let Ok(mut v) = self.per_peer.try_lock() {
            v.clear();
            fill(&mut v);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let e = &self.engine;
        StatsSnapshot {
            commands_rejected: self.commands_rejected.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            events_deferred: self.events_deferred.load(Relaxed),
            send_dropped: self.send_dropped.load(Relaxed),
            send_failed: self.send_failed.load(Relaxed),
            wakeups: self.wakeups.load(Relaxed),
            engine: Drops {
                unknown_source: e.unknown_source.load(Relaxed),
                bad_stun: e.bad_stun.load(Relaxed),
                dtls_error: e.dtls_error.load(Relaxed),
                srtp_error: e.srtp_error.load(Relaxed),
                replayed: e.replayed.load(Relaxed),
                malformed_rtp: e.malformed_rtp.load(Relaxed),
                unknown_ssrc: e.unknown_ssrc.load(Relaxed),
                unknown_first_byte: e.unknown_first_byte.load(Relaxed),
                padding: e.padding.load(Relaxed),
                late: e.late.load(Relaxed),
                unsent: e.unsent.load(Relaxed),
                nack_duplicate: e.nack_duplicate.load(Relaxed),
                nack_over_cap: e.nack_over_cap.load(Relaxed),
                nack_over_rate: e.nack_over_rate.load(Relaxed),
            },
            traffic: Traffic {
                rtp_in: self.traffic.rtp_in.load(Relaxed),
                rtp_in_bytes: self.traffic.rtp_in_bytes.load(Relaxed),
                rtp_out: self.traffic.rtp_out.load(Relaxed),
                rtp_out_bytes: self.traffic.rtp_out_bytes.load(Relaxed),
                rtx_out: self.traffic.rtx_out.load(Relaxed),
                nack_in: self.traffic.nack_in.load(Relaxed),
                pli_in: self.traffic.pli_in.load(Relaxed),
                pli_out: self.traffic.pli_out.load(Relaxed),
            },
            unsent_by_peer: self.per_peer.lock().map(|v| v.clone()).unwrap_or_default(),
        }
    }
}
