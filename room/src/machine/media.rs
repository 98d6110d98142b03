//! Media events from the core: transports up and down, data, stream states, speakers and
//! connection quality.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use lkr_proto::pb;
use lkr_sfu::{Event, PeerId, TrackId};

use super::participant::Effects;

/// A rating is told again when its score moves by this much (or its level changes).
const QUALITY_SCORE_STEP: f32 = 0.5;
use super::{Machine, Resp};

impl Machine {
    /// One event of the media core.
    pub fn handle_media_event(&mut self, now: Instant, ev: Event) {
        self.last_now = now;
        match ev {
            Event::AudioLevels { levels } => self.update_speakers(&levels),
            Event::Loss { peers } => self.update_quality(&peers),
            Event::PeerConnected { peer } => {
                self.on_peer(now, peer, |p, _| Ok(p.peer_connected(peer)));
            }
            Event::PeerDisconnected { peer, reason } => {
                self.on_peer(now, peer, |p, _| Ok(p.peer_disconnected(peer, &reason)));
            }
            Event::Data {
                peer, label, data, ..
            } => {
                self.on_peer(now, peer, |p, _| Ok(p.handle_data(&label, &data)));
            }
            Event::StreamState {
                peer,
                track,
                paused,
            } => {
                self.on_peer(now, peer, |p, ctx| {
                    p.stream_state(ctx, track, paused);
                    Ok(Effects::default())
                });
            }
            Event::ChannelOpen { .. } | Event::TrackStarted { .. } => {}
        }
    }

    fn on_peer(
        &mut self,
        now: Instant,
        peer: PeerId,
        f: impl FnOnce(
            &mut super::participant::Participant,
            &mut super::participant::Ctx<'_>,
        ) -> Result<Effects, crate::RoomError>,
    ) {
        let Some(psid) = self.peer_owner.get(&peer).cloned() else {
            return;
        };
        let _ = self.with_participant(now, &psid, f);
    }

    /// Turns audio levels into `speakers_changed` deltas for each room: participants who
    /// started speaking or whose level moved, and those who stopped (level 0, inactive).
    fn update_speakers(&mut self, levels: &[(TrackId, f32, bool)]) {
        // Loudest speaking track per participant, grouped by room (every room with a track
        // in `levels`, speaking or not).
        let mut now: BTreeMap<&str, BTreeMap<String, f32>> = BTreeMap::new();
        for (tid, level, active) in levels {
            let Some(t) = self.tracks.by_track_id(*tid) else {
                continue;
            };
            let speaking = now.entry(t.room.as_str()).or_default();
            if *active {
                let e = speaking.entry(t.publisher_sid.clone()).or_insert(0.0);
                *e = e.max(*level);
            }
        }
        // Owned, in room order: what follows changes the machine.
        let now: Vec<(String, BTreeMap<String, f32>)> = now
            .into_iter()
            .map(|(room, speaking)| (room.to_string(), speaking))
            .collect();
        for (room, new) in now {
            let old = self.speakers.remove(&room).unwrap_or_default();
            let mut changes: Vec<pb::SpeakerInfo> = Vec::new();
            for (sid, level) in &new {
                if old.get(sid).is_none_or(|o| (o - level).abs() > 0.05) {
                    changes.push(pb::SpeakerInfo {
                        sid: sid.clone(),
                        level: *level,
                        active: true,
                    });
                }
            }
            for sid in old.keys().filter(|s| !new.contains_key(*s)) {
                changes.push(pb::SpeakerInfo {
                    sid: sid.clone(),
                    level: 0.0,
                    active: false,
                });
            }
            // Keep what was announced, so small moves do not drift unannounced.
            let mut kept = new.clone();
            for (sid, level) in kept.iter_mut() {
                if let Some(o) = old.get(sid)
                    && (*o - *level).abs() <= 0.05
                {
                    *level = *o;
                }
            }
            self.speakers.insert(room.clone(), kept);
            if changes.is_empty() {
                continue;
            }
            let msg = Resp::SpeakersChanged(pb::SpeakersChanged { speakers: changes });
            self.send_room(&room, None, &msg);
        }
    }

    /// Rates every participant from the packet loss of what it publishes (EXCELLENT under
    /// 2%, GOOD under 10%, else POOR) and, as LiveKit does, tells only what changed, and only
    /// to whom it concerns: a participant hears its own rating and those of the participants
    /// it subscribes to. A steady room costs nothing, whatever its size.
    fn update_quality(&mut self, peers: &[(PeerId, f32)]) {
        use pb::ConnectionQuality as Q;
        let mut changed: HashMap<String, pb::ConnectionQualityInfo> = HashMap::new();
        for (psid, p) in &self.participants {
            if p.hidden() {
                continue;
            }
            let mine = p.peers();
            let loss = peers
                .iter()
                .filter(|(peer, _)| mine.contains(peer))
                .map(|(_, l)| *l)
                .fold(0.0f32, f32::max);
            let (quality, score) = if loss < 0.02 {
                (Q::Excellent, 5.0 - loss * 25.0)
            } else if loss < 0.10 {
                (Q::Good, 4.0 - loss * 10.0)
            } else {
                (Q::Poor, (2.0 - loss * 2.0).max(1.0))
            };
            let same = self.quality.get(psid).is_some_and(|(q, s)| {
                *q == quality as i32 && (s - score).abs() < QUALITY_SCORE_STEP
            });
            if !same {
                self.quality.insert(psid.clone(), (quality as i32, score));
                changed.insert(
                    psid.clone(),
                    pb::ConnectionQualityInfo {
                        participant_sid: psid.clone(),
                        quality: quality as i32,
                        score,
                    },
                );
            }
        }
        let participants = &self.participants;
        self.quality
            .retain(|psid, _| participants.contains_key(psid));
        if changed.is_empty() {
            return;
        }
        // Each recipient: itself, and the publishers it subscribes to, among those changed.
        let mut to: BTreeMap<String, Vec<pb::ConnectionQualityInfo>> = BTreeMap::new();
        for (psid, info) in &changed {
            to.entry(psid.clone()).or_default().push(info.clone());
        }
        let mut heard: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
        for t in self.tracks.values() {
            let Some(info) = changed.get(&t.publisher_sid) else {
                continue;
            };
            for sub in &t.subscribers {
                if sub != &t.publisher_sid && heard.insert((sub.as_str(), t.publisher_sid.as_str()))
                {
                    to.entry(sub.clone()).or_default().push(info.clone());
                }
            }
        }
        for (psid, updates) in to {
            self.send_one(
                &psid,
                Resp::ConnectionQuality(pb::ConnectionQualityUpdate { updates }),
            );
        }
    }
}
