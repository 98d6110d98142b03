//! The machine's room-level state changes: signal requests, published tracks, subscriptions,
//! dynacast, data forwarding.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use lkr_proto::pb;
use lkr_sfu::{Command, MediaKind};

use super::participant::{Ctx, DROP_RESUME_WITHIN, DataTargets, Effects, Simulation, TrackUpdate};
use super::{
    FORCED_PATH_FOR, ForcedPath, Leaving, MAX_FORCED_PATHS, Machine, Resp, RoomEvent, TrackEntry,
    TrackOffer, reason_of,
};
use crate::RoomError;

impl Machine {
    /// One signal request from participant `psid`'s connection.
    pub fn handle_signal(
        &mut self,
        now: Instant,
        psid: &str,
        m: pb::signal_request::Message,
    ) -> Result<(), RoomError> {
        self.last_now = now;
        if !self.participants.contains_key(psid) {
            return Err(RoomError::ParticipantNotFound);
        }
        self.with_participant(now, psid, |p, ctx| p.handle_request(ctx, m))
    }

    /// The participant's signal connection dropped without `leave`: it keeps its place for
    /// the room's departure timeout, as LiveKit does; a new join with the same identity
    /// replaces it earlier.
    pub fn handle_signal_lost(&mut self, now: Instant, psid: &str) {
        self.last_now = now;
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        if !p.connected() {
            return;
        }
        let grace = self
            .rooms
            .get(p.room())
            .map(|r| r.info().departure_timeout)
            .unwrap_or(0);
        tracing::info!(participant = %psid, grace_s = grace, "signal connection lost");
        if let Some(p) = self.participants.get_mut(psid) {
            p.lose_link(now, Duration::from_secs(u64::from(grace)));
        }
        self.watch(psid);
        if grace == 0 {
            self.remove(now, psid, true, reason_of(Leaving::Gone));
        }
    }

    /// The signal connection of `psid` cannot keep up (its queue is full): it is closed and
    /// the participant treated as lost.
    pub fn handle_signal_stalled(&mut self, now: Instant, psid: &str) {
        self.last_now = now;
        tracing::info!(participant = %psid, "signal connection not reading; closing it");
        self.drop_link(now, psid);
    }

    /// Closes the signal connection of `psid` without a leave and treats it as lost: the
    /// participant keeps its place for the departure timeout and may resume.
    pub(super) fn drop_link(&mut self, now: Instant, psid: &str) {
        if self.participants.get(psid).is_some_and(|p| p.connected()) {
            self.out.close(psid, None);
        }
        self.handle_signal_lost(now, psid);
    }

    /// Applies what a participant's handler reported.
    pub(super) fn apply(&mut self, now: Instant, psid: &str, fx: Effects) {
        let Effects {
            published,
            unpublished,
            subscribed,
            unsubscribed,
            qualities,
            active,
            data,
            record,
            mute,
            subscriptions,
            subscriptions_of,
            leave,
            permission,
            track_update,
            simulate,
            data_track,
            data_subscriptions,
            data_track_packet,
            rpc_reply,
        } = fx;
        for sid in subscribed {
            self.track_subscribed(psid, &sid);
        }
        for sid in unsubscribed {
            self.track_unsubscribed(psid, &sid);
        }
        for (sid, q) in qualities {
            self.set_subscriber_quality(psid, &sid, q);
        }
        for (info, offer) in published {
            self.publish_track(now, psid, info, offer);
        }
        for sid in unpublished {
            self.unpublish_track(now, psid, &sid);
        }
        if let Some(r) = record {
            self.update_participant(psid, |p| {
                if !r.name.is_empty() {
                    p.name = r.name.clone();
                }
                if !r.metadata.is_empty() {
                    p.metadata = r.metadata.clone();
                }
                for (k, v) in &r.attributes {
                    if v.is_empty() {
                        p.attributes.remove(k);
                    } else {
                        p.attributes.insert(k.clone(), v.clone());
                    }
                }
            });
            // Its token follows its record.
            self.refresh_token(now, psid);
        }
        if let Some((sid, muted)) = mute {
            self.set_track_muted(psid, &sid, muted);
        }
        if let Some(u) = track_update {
            self.update_track(psid, &u);
        }
        match simulate {
            Some(Simulation::Speaker(d)) => self.simulate_speaker(now, psid, d),
            Some(Simulation::ForcePath(path)) => self.force_path(now, psid, path),
            Some(Simulation::DropResume { no_messages }) => {
                if let Some(p) = self.participants.get_mut(psid) {
                    p.set_drop_resume(now + DROP_RESUME_WITHIN, no_messages);
                }
            }
            Some(Simulation::DropSignal) => {
                tracing::info!(participant = %psid, "closing its signal connection (simulated)");
                self.drop_link(now, psid);
            }
            None => {}
        }
        if let Some(perm) = permission {
            self.set_permission(now, psid, perm);
        }
        let mut wanted: Vec<(String, bool)> = subscriptions;
        for (publisher, subscribe) in subscriptions_of {
            for sid in self.tracks_of(psid, &publisher) {
                wanted.push((sid, subscribe));
            }
        }
        for (sid, subscribe) in wanted {
            if subscribe {
                if let Some(offer) = self.track_offer(psid, &sid) {
                    self.subscribe(now, psid, offer);
                } else {
                    self.send_one(
                        psid,
                        Resp::SubscriptionResponse(pb::SubscriptionResponse {
                            track_sid: sid,
                            err: pb::SubscriptionError::SeTrackNotfound as i32,
                        }),
                    );
                }
            } else {
                self.unsubscribe(now, psid, &sid);
            }
        }
        if let Some(change) = data_track {
            self.apply_data_track(psid, change);
        }
        if !data_subscriptions.is_empty() {
            self.update_data_subscriptions(psid, data_subscriptions);
        }
        if active {
            self.set_active(now, psid);
        }
        if let Some((sid, packet)) = data_track_packet {
            self.forward_data_track(psid, &sid, &packet);
        }
        // An answer to one of the server's own calls is the server's, not forwarded.
        let data = if rpc_reply.is_some_and(|reply| self.take_rpc_reply(psid, reply)) {
            None
        } else {
            data
        };
        if let Some((reliable, bytes, targets)) = data {
            let room = self.room_of(psid);
            if let Some(room) = room {
                self.broadcast_data(Some(psid), &room, reliable, bytes, &targets);
            }
        }
        if let Some(why) = leave {
            match why {
                Leaving::Server(reason, action) => {
                    self.send_away(now, psid, reason, action, true);
                }
                _ => {
                    if self.participants.get(psid).is_some_and(|p| p.connected()) {
                        self.out.close(psid, None);
                    }
                    self.remove(now, psid, true, reason_of(why));
                }
            }
        }
    }

    /// Subscribes `psid` to a track (a no-op when it already receives it or may not). One
    /// the publisher's permission leaves out is told so (`SubscriptionPermissionUpdate`, not
    /// allowed) and remembered, to get the track if the permission comes to allow it.
    pub(super) fn subscribe(&mut self, now: Instant, psid: &str, offer: TrackOffer) {
        if !self.may_subscribe(&offer.publisher_sid, &offer.track_sid, psid) {
            let first = self
                .tracks
                .get_mut(&offer.track_sid)
                .is_some_and(|t| t.denied.insert(psid.to_string()));
            if first {
                self.tell_permission(psid, &offer, false);
            }
            return;
        }
        let _ = self.with_participant(now, psid, |p, ctx: &mut Ctx<'_>| {
            p.subscribe(ctx, offer);
            Ok(Effects::default())
        });
    }

    /// Stops `psid` receiving a track (or waiting for the permission to).
    pub(super) fn unsubscribe(&mut self, now: Instant, psid: &str, sid: &str) {
        if let Some(t) = self.tracks.get_mut(sid) {
            t.denied.remove(psid);
        }
        let sid_owned = sid.to_string();
        let _ = self.with_participant(now, psid, |p, ctx| {
            let mut fx = Effects::default();
            if p.unsubscribe(ctx, &sid_owned) {
                fx.unsubscribed.push(sid_owned.clone());
            }
            Ok(fx)
        });
    }

    /// Whether `subscriber` may receive `publisher`'s track `track_sid`, as the publisher's
    /// `SubscriptionPermission` says (by the subscriber's sid or identity).
    pub(super) fn may_subscribe(&self, publisher: &str, track_sid: &str, subscriber: &str) -> bool {
        let Some(perm) = self.permissions.get(publisher) else {
            return true;
        };
        let identity = self.participants.get(subscriber).map(|p| p.identity());
        perm.all_participants
            || perm.track_permissions.iter().any(|tp| {
                let names = tp.participant_sid == subscriber
                    || (!tp.participant_identity.is_empty()
                        && Some(tp.participant_identity.as_str()) == identity);
                names && (tp.all_tracks || tp.track_sids.iter().any(|s| s == track_sid))
            })
    }

    /// Tells `subscriber` whether it may have a track (`SubscriptionPermissionUpdate`).
    fn tell_permission(&mut self, subscriber: &str, offer: &TrackOffer, allowed: bool) {
        tracing::debug!(participant = %subscriber, track = %offer.track_sid, allowed, "subscription permission");
        self.send_one(
            subscriber,
            Resp::SubscriptionPermissionUpdate(pb::SubscriptionPermissionUpdate {
                participant_sid: offer.publisher_sid.clone(),
                track_sid: offer.track_sid.clone(),
                allowed,
            }),
        );
    }

    /// A publisher's new `SubscriptionPermission`: those it no longer allows stop receiving
    /// its tracks and are told; those who asked for a track it now allows get it and are
    /// told, as LiveKit does.
    pub(super) fn set_permission(
        &mut self,
        now: Instant,
        publisher: &str,
        perm: pb::SubscriptionPermission,
    ) {
        if perm.all_participants {
            self.permissions.remove(publisher);
        } else {
            self.permissions.insert(publisher.to_string(), perm);
        }
        let Some(room) = self.room_of(publisher) else {
            return;
        };
        let tracks: Vec<(String, TrackOffer, Vec<String>)> = self
            .tracks
            .in_room(&room)
            .filter(|(_, t)| t.publisher_sid == publisher)
            .map(|(sid, t)| {
                (
                    sid.clone(),
                    t.offer.clone(),
                    t.denied.iter().cloned().collect(),
                )
            })
            .collect();
        for (sid, offer, denied) in tracks {
            let receivers: Vec<String> =
                super::members_of(&self.members, &self.participants, &room)
                    .filter(|(_, p)| p.downstream(&sid).is_some())
                    .map(|(s, _)| s.clone())
                    .collect();
            for sub in receivers {
                if !self.may_subscribe(publisher, &sid, &sub) {
                    self.unsubscribe(now, &sub, &sid);
                    if let Some(t) = self.tracks.get_mut(&sid) {
                        t.denied.insert(sub.clone());
                    }
                    self.tell_permission(&sub, &offer, false);
                }
            }
            for sub in denied {
                if self.may_subscribe(publisher, &sid, &sub) {
                    if let Some(t) = self.tracks.get_mut(&sid) {
                        t.denied.remove(&sub);
                    }
                    self.tell_permission(&sub, &offer, true);
                    self.subscribe(now, &sub, offer.clone());
                }
            }
        }
        self.revoke_data_tracks(publisher);
    }

    /// Marks the participant active (its primary transport is up) and subscribes it to the
    /// tracks already in the room.
    fn set_active(&mut self, now: Instant, psid: &str) {
        if let Some(p) = self.participants.get(psid) {
            let ms = now.saturating_duration_since(p.joined_at()).as_millis() as u64;
            self.observe_join_latency(ms);
        }
        self.update_participant(psid, |i| {
            i.state = pb::participant_info::State::Active as i32;
        });
        if let Some((room, participant)) = self.records(psid) {
            self.out
                .event(RoomEvent::ParticipantActive { room, participant });
        }
        self.subscribe_existing_data_tracks(psid);
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        if !(p.auto_subscribe() && p.can_subscribe()) {
            return;
        }
        let offers: Vec<TrackOffer> = self
            .tracks
            .in_room(p.room())
            .filter(|(_, t)| t.publisher_sid != psid)
            .map(|(_, t)| t.offer.clone())
            .collect();
        for offer in offers {
            self.subscribe(now, psid, offer);
        }
    }

    /// Registers a published track: the participant's record gains `info`, everyone is told,
    /// and auto-subscribing participants subscribe.
    fn publish_track(&mut self, now: Instant, psid: &str, info: pb::TrackInfo, offer: TrackOffer) {
        let sid = info.sid.clone();
        self.update_participant(psid, |p| {
            p.tracks.retain(|t| t.sid != info.sid);
            p.tracks.push(info.clone());
            p.is_publisher = true;
        });
        if let Some((room, participant)) = self.records(psid) {
            self.out.event(RoomEvent::TrackPublished {
                room,
                participant,
                track: info.clone(),
            });
        }
        let Some(room) = self.room_of(psid) else {
            return;
        };
        self.tracks.insert(
            sid,
            TrackEntry {
                room: room.clone(),
                publisher_sid: psid.to_string(),
                offer: offer.clone(),
                subscribers: BTreeSet::new(),
                wanted: BTreeMap::new(),
                told: None,
                denied: BTreeSet::new(),
            },
        );
        let others: Vec<String> = super::members_of(&self.members, &self.participants, &room)
            .filter(|(other, p)| other.as_str() != psid && p.auto_subscribe() && p.can_subscribe())
            .map(|(sid, _)| sid.clone())
            .collect();
        for other in others {
            self.subscribe(now, &other, offer.clone());
        }
    }

    /// Removes a published track and stops it for its subscribers.
    fn unpublish_track(&mut self, now: Instant, psid: &str, track_sid: &str) {
        let mut gone = None;
        self.update_participant(psid, |p| {
            gone = p.tracks.iter().find(|t| t.sid == track_sid).cloned();
            p.tracks.retain(|t| t.sid != track_sid);
        });
        if let (Some(track), Some((room, participant))) = (gone, self.records(psid)) {
            self.out.event(RoomEvent::TrackUnpublished {
                room,
                participant,
                track,
            });
        }
        self.drop_track(now, track_sid);
    }

    /// Forgets a published track: its subscribers stop receiving it and the core drops it.
    pub(super) fn drop_track(&mut self, now: Instant, track_sid: &str) {
        let Some(t) = self.tracks.remove(track_sid) else {
            return;
        };
        self.end_egresses_of_track(now, track_sid);
        // Everyone who receives it or waits for a section for it (not yet forwarding): members
        // of its room only.
        let receivers: Vec<String> = super::members_of(&self.members, &self.participants, &t.room)
            .filter(|(_, p)| p.downstream(track_sid).is_some())
            .map(|(sid, _)| sid.clone())
            .collect();
        for sub in receivers {
            self.unsubscribe(now, &sub, track_sid);
        }
        self.out.media(Command::Unpublish {
            track: t.offer.track_id,
        });
    }

    /// Forgets every track `publisher` published in `room`.
    pub(super) fn drop_tracks_of(&mut self, now: Instant, room: &str, publisher: &str) {
        let gone: Vec<String> = self
            .tracks
            .in_room(room)
            .filter(|(_, t)| t.publisher_sid == publisher)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in gone {
            self.drop_track(now, &sid);
        }
    }

    /// Marks a track muted or not and tells everyone. Returns the track's new record.
    pub(super) fn set_track_muted(
        &mut self,
        psid: &str,
        track_sid: &str,
        muted: bool,
    ) -> Option<pb::TrackInfo> {
        let p = self.participants.get(psid)?;
        let room = self.rooms.get(p.room()).ok()?;
        let rec = room.participant(p.identity()).ok()?;
        if !rec.info.tracks.iter().any(|t| t.sid == track_sid) {
            return None;
        }
        self.update_participant(psid, |p| {
            p.tracks.iter_mut().find(|t| t.sid == track_sid).map(|t| {
                t.muted = muted;
                t.clone()
            })
        })
        .flatten()
    }

    /// A simulated speaker update: the room is told `psid` speaks now, and that it stopped
    /// once `d` has passed (from its deadline, in `handle_timeout`).
    fn simulate_speaker(&mut self, now: Instant, psid: &str, d: Duration) {
        let Some(p) = self.participants.get_mut(psid) else {
            return;
        };
        p.set_speaking_until(now.checked_add(d).unwrap_or(now));
        self.watch(psid);
        self.tell_simulated_speaking(psid, true);
    }

    /// A simulated `force-tcp` or `force-tls`: the participant's identity is offered only
    /// the ICE-TCP candidate, or told to use only the TURN/TLS relay, at its next join in the
    /// room (within [`FORCED_PATH_FOR`]). Without an ICE-TCP port, or without TURN over TLS,
    /// there is nothing to switch to, and the request changes nothing.
    fn force_path(&mut self, now: Instant, psid: &str, path: ForcedPath) {
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        let available = match path {
            ForcedPath::Tcp => self.config.tcp_port.is_some(),
            ForcedPath::Tls => self.config.turn.as_ref().is_some_and(|t| t.has_tls()),
        };
        if !available {
            tracing::info!(participant = %psid, ?path, "a forced path asked for, but the server has none (rtc.tcp_port, turn.tls_port)");
            return;
        }
        let key = (p.room().to_string(), p.identity().to_string());
        self.forced_paths.retain(|_, (until, _)| *until > now);
        if self.forced_paths.len() >= MAX_FORCED_PATHS && !self.forced_paths.contains_key(&key) {
            let first = self
                .forced_paths
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(k, _)| k.clone());
            if let Some(k) = first {
                self.forced_paths.remove(&k);
            }
        }
        self.forced_paths.insert(key, (now + FORCED_PATH_FOR, path));
    }

    /// A simulated speaker update's start (level 0.9) or end: the room is told `psid` speaks
    /// or stopped.
    pub(super) fn tell_simulated_speaking(&mut self, psid: &str, active: bool) {
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        let room = p.room().to_string();
        let msg = Resp::SpeakersChanged(pb::SpeakersChanged {
            speakers: vec![pb::SpeakerInfo {
                sid: psid.to_string(),
                level: if active { 0.9 } else { 0.0 },
                active,
            }],
        });
        self.send_room(&room, None, &msg);
    }

    /// A publisher's update of one of its published tracks' records; everyone is told when
    /// it changes the record (not when it repeats it, nor for a track of the other kind).
    fn update_track(&mut self, psid: &str, u: &TrackUpdate) {
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        let Ok(room) = self.rooms.get(p.room()) else {
            return;
        };
        let Ok(rec) = room.participant(p.identity()) else {
            return;
        };
        let changes = rec
            .info
            .tracks
            .iter()
            .find(|t| t.sid == u.sid())
            .is_some_and(|t| u.apply(&mut t.clone()));
        if changes {
            self.update_participant(psid, |p| {
                if let Some(t) = p.tracks.iter_mut().find(|t| t.sid == u.sid()) {
                    u.apply(t);
                }
            });
        }
    }

    /// Notes that `subscriber` now receives `track_sid`; the publisher hears of its first
    /// subscriber.
    fn track_subscribed(&mut self, subscriber: &str, track_sid: &str) {
        let Some(t) = self.tracks.get_mut(track_sid) else {
            return;
        };
        let first = t.subscribers.is_empty();
        t.subscribers.insert(subscriber.to_string());
        t.wanted
            .insert(subscriber.to_string(), pb::VideoQuality::High as i32);
        let publisher = t.publisher_sid.clone();
        self.tell_qualities(track_sid);
        if first {
            self.send_one(
                &publisher,
                Resp::TrackSubscribed(pb::TrackSubscribed {
                    track_sid: track_sid.to_string(),
                }),
            );
        }
    }

    /// Notes that `subscriber` no longer receives `track_sid`.
    fn track_unsubscribed(&mut self, subscriber: &str, track_sid: &str) {
        if let Some(t) = self.tracks.get_mut(track_sid) {
            t.subscribers.remove(subscriber);
            t.wanted.remove(subscriber);
        }
        self.tell_qualities(track_sid);
    }

    /// Dynacast: notes the quality one subscriber wants (`None`: paused) and tells the
    /// publisher when the highest wanted quality changes.
    fn set_subscriber_quality(&mut self, subscriber: &str, track_sid: &str, quality: Option<i32>) {
        if let Some(t) = self.tracks.get_mut(track_sid) {
            match quality {
                Some(q) => t.wanted.insert(subscriber.to_string(), q),
                None => t.wanted.remove(subscriber),
            };
        }
        self.tell_qualities(track_sid);
    }

    #[allow(deprecated)] // subscribed_qualities is still read by older clients
    pub(super) fn tell_qualities(&mut self, track_sid: &str) {
        let Some(t) = self.tracks.get_mut(track_sid) else {
            return;
        };
        if t.offer.kind != MediaKind::Video || t.offer.layer_count < 2 {
            return;
        }
        // With nobody watching, the publisher keeps its lowest layer rather than stopping,
        // so a new subscriber starts at once.
        let max = t
            .wanted
            .values()
            .copied()
            .max()
            .unwrap_or(pb::VideoQuality::Low as i32);
        if t.told == Some(max) {
            return;
        }
        t.told = Some(max);
        let qualities: Vec<pb::SubscribedQuality> = [
            pb::VideoQuality::Low,
            pb::VideoQuality::Medium,
            pb::VideoQuality::High,
        ]
        .iter()
        .map(|q| pb::SubscribedQuality {
            quality: *q as i32,
            enabled: (*q as i32) <= max,
        })
        .collect();
        let codec = t
            .offer
            .codecs
            .first()
            .map(|c| c.name.to_ascii_lowercase())
            .unwrap_or_default();
        let msg = Resp::SubscribedQualityUpdate(pb::SubscribedQualityUpdate {
            track_sid: track_sid.to_string(),
            subscribed_qualities: qualities.clone(),
            subscribed_codecs: vec![pb::SubscribedCodec { codec, qualities }],
        });
        let publisher = t.publisher_sid.clone();
        self.send_one(&publisher, msg);
    }

    /// The offer for a published track, if it is in the participant's room and not its own.
    fn track_offer(&self, psid: &str, track_sid: &str) -> Option<TrackOffer> {
        let room = self.participants.get(psid)?.room();
        self.tracks
            .get(track_sid)
            .filter(|t| t.room == room && t.publisher_sid != psid)
            .map(|t| t.offer.clone())
    }

    /// The sids of tracks published by `participant_sid` in the participant's room, from
    /// the publisher's own list: the cost is its tracks, not the node's.
    fn tracks_of(&self, psid: &str, participant_sid: &str) -> Vec<String> {
        let (Some(room), Some(publisher)) = (
            self.participants.get(psid).map(|p| p.room()),
            self.participants.get(participant_sid),
        ) else {
            return Vec::new();
        };
        publisher
            .published_tracks()
            .filter(|sid| {
                self.tracks
                    .get(sid)
                    .is_some_and(|t| t.room == room && t.publisher_sid == participant_sid)
            })
            .cloned()
            .collect()
    }

    /// Sends a data packet to every participant of `room` but the sender, limited to
    /// `destinations` (identities) when any are named.
    pub(super) fn broadcast_data(
        &mut self,
        from: Option<&str>,
        room: &str,
        reliable: bool,
        data: bytes::Bytes,
        targets: &DataTargets,
    ) {
        // Looked up once per member: the cost is the room's size plus the lists'.
        let identities: HashSet<&str> = targets.identities.iter().map(String::as_str).collect();
        let sids: HashSet<&str> = targets.sids.iter().map(String::as_str).collect();
        let everyone = identities.is_empty() && sids.is_empty();
        for (sid, p) in super::members_of(&self.members, &self.participants, room) {
            if Some(sid.as_str()) == from {
                continue;
            }
            if !everyone && !identities.contains(p.identity()) && !sids.contains(sid.as_str()) {
                continue;
            }
            if let Some(peer) = p.data_peer() {
                self.out.media(Command::SendData {
                    peer,
                    reliable,
                    data: data.clone(),
                });
            }
        }
    }
}
