//! The command router of a sharded media core: places each peer on a shard and sends every
//! control-plane command to the shard(s) it concerns, so that the control plane keeps one
//! command channel whatever the number of shards.
//!
//! Placement: a group (room) gets a home shard, the least loaded when its first peer comes;
//! its peers go there while the home holds at most `spill` more peers than the least loaded
//! shard, and to the least loaded shard after that. A subscription whose subscriber sits on
//! another shard than the track's publisher gets a mirror of the track on the subscriber's
//! shard, fed by the owner's shard (one hand-off per packet per shard, whatever the number
//! of subscribers there).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use lkr_sfu::{Command, PeerId, PublishSpec, TrackId};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::driver::ShardMsg;
use crate::wake::Wakers;

/// Shards at most (a track's relay targets are a 64-bit set).
pub const MAX_SHARDS: usize = 64;
/// Default for [`crate::DriverConfig::spill`].
pub const DEFAULT_SPILL: u32 = 64;

struct PeerRoute {
    shard: u8,
    group: u64,
    ufrag: String,
    published: Vec<TrackId>,
    subscribed: Vec<TrackId>,
}

struct TrackRoute {
    owner: u8,
    spec: PublishSpec,
    /// Subscribers per shard.
    subs: Vec<u32>,
}

/// Where every peer and track lives.
pub(crate) struct Placement {
    n: usize,
    spill: u32,
    load: Vec<u32>,
    peers: FxHashMap<PeerId, PeerRoute>,
    /// Home shard and peer count of each group.
    groups: FxHashMap<u64, (u8, u32)>,
    tracks: FxHashMap<TrackId, TrackRoute>,
}

/// Messages for shards, in order: (shard, message).
pub(crate) type Out = Vec<(u8, ShardMsg)>;

impl Placement {
    pub(crate) fn new(n: usize, spill: u32) -> Self {
        Self {
            n: n.clamp(1, MAX_SHARDS),
            spill,
            load: vec![0; n.clamp(1, MAX_SHARDS)],
            peers: FxHashMap::default(),
            groups: FxHashMap::default(),
            tracks: FxHashMap::default(),
        }
    }

    fn least_loaded(&self) -> u8 {
        (0..self.n).min_by_key(|&i| self.load[i]).unwrap_or(0) as u8
    }

    fn place(&mut self, group: u64) -> u8 {
        let least = self.least_loaded();
        let min = self.load[usize::from(least)];
        let entry = self.groups.entry(group).or_insert((least, 0));
        entry.1 += 1;
        let home = entry.0;
        if self.load[usize::from(home)] <= min.saturating_add(self.spill) {
            home
        } else {
            least
        }
    }

    fn shard_of(&self, peer: PeerId) -> u8 {
        self.peers.get(&peer).map_or(0, |p| p.shard)
    }

    /// Routes one command.
    pub(crate) fn route(&mut self, cmd: Command, out: &mut Out) {
        match cmd {
            // Every shard applies the same limits.
            Command::SetLimits(l) => {
                for shard in 0..self.n {
                    out.push((shard as u8, ShardMsg::Command(Command::SetLimits(l))));
                }
            }
            Command::AddPeer { peer, config } => {
                if let Some(p) = self.peers.get(&peer) {
                    out.push((
                        p.shard,
                        ShardMsg::Command(Command::AddPeer { peer, config }),
                    ));
                    return;
                }
                let shard = self.place(config.group);
                self.load[usize::from(shard)] += 1;
                tracing::debug!(?peer, group = config.group, shard, "peer placed");
                self.announce(&config.local_ufrag, Some(shard), out);
                self.peers.insert(
                    peer,
                    PeerRoute {
                        shard,
                        group: config.group,
                        ufrag: config.local_ufrag.clone(),
                        published: Vec::new(),
                        subscribed: Vec::new(),
                    },
                );
                out.push((shard, ShardMsg::Command(Command::AddPeer { peer, config })));
            }
            Command::RemovePeer { peer } => {
                let Some(p) = self.peers.remove(&peer) else {
                    out.push((0, ShardMsg::Command(Command::RemovePeer { peer })));
                    return;
                };
                self.load[usize::from(p.shard)] = self.load[usize::from(p.shard)].saturating_sub(1);
                if let Some(g) = self.groups.get_mut(&p.group) {
                    g.1 = g.1.saturating_sub(1);
                    if g.1 == 0 {
                        self.groups.remove(&p.group);
                    }
                }
                out.push((p.shard, ShardMsg::Command(Command::RemovePeer { peer })));
                self.announce(&p.ufrag, None, out);
                for t in p.subscribed {
                    self.drop_subscriber(t, p.shard, out);
                }
                for t in p.published {
                    // The owner's engine drops the peer's tracks with the peer.
                    self.drop_mirrors(t, out);
                }
            }
            Command::RestartIce {
                peer,
                local_ufrag,
                local_pwd,
                remote_ufrag,
                remote_pwd,
            } => {
                let shard = self.shard_of(peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    let old = std::mem::replace(&mut p.ufrag, local_ufrag.clone());
                    self.announce(&old, None, out);
                    self.announce(&local_ufrag, Some(shard), out);
                }
                out.push((
                    shard,
                    ShardMsg::Command(Command::RestartIce {
                        peer,
                        local_ufrag,
                        local_pwd,
                        remote_ufrag,
                        remote_pwd,
                    }),
                ));
            }
            Command::Publish(spec) => {
                let owner = self.shard_of(spec.peer);
                // A track published again starts afresh, as in the engine.
                self.drop_mirrors(spec.track, out);
                if let Some(p) = self.peers.get_mut(&spec.peer)
                    && !p.published.contains(&spec.track)
                {
                    p.published.push(spec.track);
                }
                self.tracks.insert(
                    spec.track,
                    TrackRoute {
                        owner,
                        spec: spec.clone(),
                        subs: vec![0; self.n],
                    },
                );
                out.push((owner, ShardMsg::Command(Command::Publish(spec))));
            }
            Command::Unpublish { track } => {
                let owner = self.tracks.get(&track).map_or(0, |t| t.owner);
                out.push((owner, ShardMsg::Command(Command::Unpublish { track })));
                self.drop_mirrors(track, out);
            }
            Command::Subscribe(spec) => {
                let shard = self.shard_of(spec.peer);
                let fresh = self.peers.get_mut(&spec.peer).is_some_and(|p| {
                    !p.subscribed.contains(&spec.track) && {
                        p.subscribed.push(spec.track);
                        true
                    }
                });
                if let Some(t) = self.tracks.get_mut(&spec.track)
                    && fresh
                {
                    let count = &mut t.subs[usize::from(shard)];
                    if *count == 0 && shard != t.owner {
                        tracing::debug!(track = ?spec.track, owner = t.owner, shard, "track mirrored");
                        out.push((
                            shard,
                            ShardMsg::Mirror {
                                spec: Box::new(t.spec.clone()),
                                owner: t.owner,
                            },
                        ));
                        out.push((
                            t.owner,
                            ShardMsg::Relay {
                                track: spec.track,
                                to: shard,
                                on: true,
                            },
                        ));
                    }
                    *count += 1;
                }
                out.push((shard, ShardMsg::Command(Command::Subscribe(spec))));
            }
            Command::Unsubscribe { peer, track } => {
                let shard = self.shard_of(peer);
                out.push((
                    shard,
                    ShardMsg::Command(Command::Unsubscribe { peer, track }),
                ));
                let had = self.peers.get_mut(&peer).is_some_and(|p| {
                    let before = p.subscribed.len();
                    p.subscribed.retain(|t| *t != track);
                    p.subscribed.len() != before
                });
                if had {
                    self.drop_subscriber(track, shard, out);
                }
            }
            Command::RequestKeyframe { track } => {
                let owner = self.tracks.get(&track).map_or(0, |t| t.owner);
                out.push((owner, ShardMsg::Command(Command::RequestKeyframe { track })));
            }
            // A sink is fed by the shard that owns its track.
            Command::AddSink { sink, track } => {
                let owner = self.tracks.get(&track).map_or(0, |t| t.owner);
                out.push((owner, ShardMsg::Command(Command::AddSink { sink, track })));
            }
            // Every shard forgets it (whichever took it, or none if its track was gone).
            Command::RemoveSink { sink } => {
                for shard in 0..self.n {
                    out.push((shard as u8, ShardMsg::Command(Command::RemoveSink { sink })));
                }
            }
            cmd @ (Command::SetPaused { peer, .. }
            | Command::SetChannelCapacity { peer, .. }
            | Command::SetMaxLayer { peer, .. }
            | Command::SendData { peer, .. }
            | Command::SendDataTrack { peer, .. }) => {
                out.push((self.shard_of(peer), ShardMsg::Command(cmd)));
            }
        }
    }

    /// Tells every other shard which shard owns `ufrag` (or that none does).
    fn announce(&self, ufrag: &str, shard: Option<u8>, out: &mut Out) {
        if self.n == 1 {
            return;
        }
        for s in 0..self.n as u8 {
            if Some(s) != shard {
                out.push((
                    s,
                    ShardMsg::Ufrag {
                        ufrag: ufrag.to_string(),
                        shard,
                    },
                ));
            }
        }
    }

    /// One subscriber of `track` on `shard` is gone; the mirror goes with the last one.
    fn drop_subscriber(&mut self, track: TrackId, shard: u8, out: &mut Out) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let count = &mut t.subs[usize::from(shard)];
        *count = count.saturating_sub(1);
        if *count == 0 && shard != t.owner {
            out.push((
                t.owner,
                ShardMsg::Relay {
                    track,
                    to: shard,
                    on: false,
                },
            ));
            out.push((shard, ShardMsg::Command(Command::Unpublish { track })));
        }
    }

    /// The track is gone: its mirrors go too.
    fn drop_mirrors(&mut self, track: TrackId, out: &mut Out) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        for (s, &count) in t.subs.iter().enumerate() {
            if count > 0 && s as u8 != t.owner {
                out.push((s as u8, ShardMsg::Command(Command::Unpublish { track })));
            }
        }
        if let Some(p) = self.peers.get_mut(&t.spec.peer) {
            p.published.retain(|x| *x != track);
        }
    }

    #[cfg(test)]
    fn load(&self) -> &[u32] {
        &self.load
    }
}

/// The router thread's state: the placement and the shards' command channels.
pub(crate) struct Router {
    shards: Vec<mpsc::Sender<ShardMsg>>,
    placement: Placement,
}

impl Router {
    pub(crate) fn new(shards: Vec<mpsc::Sender<ShardMsg>>, spill: u32) -> Self {
        let n = shards.len();
        Self {
            shards,
            placement: Placement::new(n, spill),
        }
    }

    /// Routes commands until the control plane hangs up or a shard stops. Waits (with
    /// backpressure on the control plane) when a shard's queue is full.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        wakers: Arc<Wakers>,
        stop: Arc<AtomicBool>,
    ) {
        let me = wakers.router();
        let mut out: Out = Vec::new();
        'run: loop {
            let cmd = tokio::select! {
                cmd = commands.recv() => cmd,
                _ = me.notified() => None,
            };
            let Some(cmd) = cmd else { break };
            self.placement.route(cmd, &mut out);
            for (s, msg) in out.drain(..) {
                let Some(tx) = self.shards.get(usize::from(s)) else {
                    continue;
                };
                if tx.send(msg).await.is_err() {
                    break 'run;
                }
                if let Some(w) = wakers.shard(usize::from(s)) {
                    w.wake();
                }
            }
            if stop.load(Relaxed) {
                break;
            }
        }
        stop.store(true, Relaxed);
        wakers.all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_sfu::{MediaKind, PeerConfig, RemoteFingerprint, SubscribeSpec};

    fn add(peer: u64, group: u64) -> Command {
        Command::AddPeer {
            peer: PeerId(peer),
            config: PeerConfig {
                local_ufrag: format!("u{peer}"),
                local_pwd: String::new(),
                remote_ufrag: String::new(),
                remote_pwd: String::new(),
                remote_fingerprint: RemoteFingerprint {
                    algorithm: String::new(),
                    value: String::new(),
                },
                open_channels: Vec::new(),
                group,
            },
        }
    }

    fn publish(peer: u64, track: u64) -> Command {
        Command::Publish(PublishSpec {
            peer: PeerId(peer),
            track: TrackId(track),
            kind: MediaKind::Audio,
            mid: "0".into(),
            rids: Vec::new(),
            ssrcs: Vec::new(),
            payload_types: Vec::new(),
            ext: Default::default(),
            rtx: Vec::new(),
            rtx_ssrcs: Vec::new(),
        })
    }

    fn subscribe(peer: u64, track: u64) -> Command {
        Command::Subscribe(SubscribeSpec {
            peer: PeerId(peer),
            track: TrackId(track),
            ssrc: 7,
            payload_types: Vec::new(),
            transport_cc: 0,
            rtx: None,
            priority: 0,
            playout_delay: None,
        })
    }

    fn shard_of(out: &Out, peer: u64) -> u8 {
        out.iter()
            .find_map(|(s, m)| match m {
                ShardMsg::Command(Command::AddPeer { peer: p, .. }) if p.0 == peer => Some(*s),
                _ => None,
            })
            .expect("added")
    }

    #[test]
    fn rooms_spread_and_stay_together() {
        let mut p = Placement::new(2, 4);
        let mut out = Out::new();
        p.route(add(1, 10), &mut out);
        p.route(add(2, 20), &mut out);
        p.route(add(3, 10), &mut out);
        p.route(add(4, 20), &mut out);
        let a = shard_of(&out, 1);
        assert_ne!(a, shard_of(&out, 2), "two rooms, two shards");
        assert_eq!(a, shard_of(&out, 3), "a room stays on its home");
        assert_eq!(shard_of(&out, 2), shard_of(&out, 4));
        assert_eq!(p.load(), &[2, 2]);
        // Each peer's ufrag is announced to the other shard only.
        let announced: Vec<_> = out
            .iter()
            .filter_map(|(s, m)| match m {
                ShardMsg::Ufrag { ufrag, shard } if ufrag == "u1" => Some((*s, *shard)),
                _ => None,
            })
            .collect();
        assert_eq!(announced, vec![(1 - a, Some(a))]);
    }

    #[test]
    fn a_big_room_spills_and_its_fan_out_crosses_shards_once_per_shard() {
        let mut p = Placement::new(2, 2);
        let mut out = Out::new();
        p.route(add(0, 1), &mut out);
        p.route(publish(0, 100), &mut out);
        let owner = shard_of(&out, 0);
        for i in 1..=20 {
            p.route(add(i, 1), &mut out);
        }
        let on_other = (1..=20).filter(|&i| shard_of(&out, i) != owner).count();
        assert!((8..=11).contains(&on_other), "spilled: {on_other}");
        out.clear();
        for i in 1..=20 {
            p.route(subscribe(i, 100), &mut out);
        }
        let mirrors = out
            .iter()
            .filter(|(_, m)| matches!(m, ShardMsg::Mirror { .. }))
            .count();
        let relays: Vec<_> = out
            .iter()
            .filter_map(|(s, m)| match m {
                ShardMsg::Relay { to, on, .. } => Some((*s, *to, *on)),
                _ => None,
            })
            .collect();
        assert_eq!(mirrors, 1, "one mirror on the other shard");
        assert_eq!(relays, vec![(owner, 1 - owner, true)]);
        // Subscribing twice changes nothing.
        out.clear();
        p.route(subscribe(1, 100), &mut out);
        assert_eq!(out.len(), 1);
        // The mirror goes with its last subscriber.
        out.clear();
        for i in 1..=20 {
            p.route(Command::RemovePeer { peer: PeerId(i) }, &mut out);
        }
        let off: Vec<_> = out
            .iter()
            .filter_map(|(s, m)| match m {
                ShardMsg::Relay { to, on, .. } => Some((*s, *to, *on)),
                _ => None,
            })
            .collect();
        assert_eq!(off, vec![(owner, 1 - owner, false)]);
        assert!(out.iter().any(|(s, m)| *s != owner
            && matches!(m, ShardMsg::Command(Command::Unpublish { track }) if track.0 == 100)));
        assert_eq!(p.load().iter().sum::<u32>(), 1);
    }

    #[test]
    fn a_publisher_leaving_removes_its_mirrors() {
        let mut p = Placement::new(2, 0);
        let mut out = Out::new();
        p.route(add(0, 1), &mut out);
        p.route(add(1, 1), &mut out);
        let (a, b) = (shard_of(&out, 0), shard_of(&out, 1));
        assert_ne!(a, b, "spill 0 alternates");
        p.route(publish(0, 5), &mut out);
        p.route(subscribe(1, 5), &mut out);
        out.clear();
        p.route(Command::RemovePeer { peer: PeerId(0) }, &mut out);
        assert!(out.iter().any(|(s, m)| *s == b
            && matches!(m, ShardMsg::Command(Command::Unpublish { track }) if track.0 == 5)));
        // Later commands about the gone track are harmless.
        out.clear();
        p.route(
            Command::Unsubscribe {
                peer: PeerId(1),
                track: TrackId(5),
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_sink_goes_to_its_tracks_owner_and_its_removal_to_every_shard() {
        let mut p = Placement::new(2, 0);
        let mut out = Out::new();
        p.route(add(0, 1), &mut out);
        p.route(add(1, 2), &mut out);
        let owner = shard_of(&out, 1);
        p.route(publish(1, 7), &mut out);
        out.clear();
        let sink = lkr_sfu::SinkId(3);
        p.route(
            Command::AddSink {
                sink,
                track: TrackId(7),
            },
            &mut out,
        );
        assert!(matches!(
            out.as_slice(),
            [(s, ShardMsg::Command(Command::AddSink { .. }))] if *s == owner
        ));
        out.clear();
        p.route(Command::RemoveSink { sink }, &mut out);
        let shards: Vec<u8> = out.iter().map(|(s, _)| *s).collect();
        assert_eq!(shards, vec![0, 1]);
    }
}
