//! LiveKit data tracks: a participant publishes named tracks of application frames, others
//! subscribe to them, and the frames' packets travel on the `_data_track` data channel.
//!
//! A publisher names each track with a 16-bit handle of its own (`PublishDataTrackRequest`)
//! and stamps it on every packet (bytes 2-3 of the 12-byte header); the server gives each
//! subscriber a handle of the subscriber's own for each track it receives, tells it which
//! handle is which track (`DataTrackSubscriberHandles`, the whole map each time), and
//! forwards each packet with the handle rewritten, nothing else changed.
//!
//! [`DataTracks`] is one participant's side of it: what it publishes and what it receives.
//! The room's side (who receives a track, forwarding, auto-subscription, permissions) is the
//! `Machine` methods below, which apply the participant's [`DataTrackChange`]s.

use std::collections::{BTreeMap, BTreeSet};

use lkr_proto::{id, pb};

use pb::request_response::Reason;

use super::Resp;

/// Most data tracks one participant publishes at once.
pub const MAX_DATA_TRACKS: usize = 256;
/// Most data tracks one participant receives at once.
pub const MAX_DATA_SUBSCRIPTIONS: usize = 1024;
/// Longest data track name, and longest schema name, in bytes (LiveKit's 256).
pub const MAX_DATA_TRACK_NAME: usize = 256;
/// Longest custom frame or schema encoding when the configuration sets no limit.
pub const MAX_CUSTOM_ENCODING: usize = 256;
/// A data track packet's fixed header; the publisher's or subscriber's handle is at 2..4.
pub const DATA_TRACK_HEADER_LEN: usize = 12;

/// The prefix of data track sids.
const DATA_TRACK_PREFIX: &str = "DTR_";

/// What a participant's data-track request changes in the room.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DataTrackChange {
    Published(pb::DataTrackInfo),
    Unpublished(pb::DataTrackInfo),
}

/// A data track a participant receives.
#[derive(Debug, Clone)]
struct DataSub {
    handle: u16,
    publisher_sid: String,
    publisher_identity: String,
}

/// One participant's data tracks: those it publishes, by its handle, and those it receives,
/// by track sid.
#[derive(Debug, Default)]
pub(crate) struct DataTracks {
    published: BTreeMap<u16, pb::DataTrackInfo>,
    subs: BTreeMap<String, DataSub>,
    /// The handles of `subs`.
    handles_in_use: BTreeSet<u16>,
    last_handle: u16,
    /// New data tracks in its room are subscribed for it (LiveKit's
    /// `auto_subscribe_data_track`).
    pub auto_subscribe: bool,
}

/// A refused data-track request: the reason the client maps to its error, and a message.
pub(crate) type Refusal = (Reason, String);

impl DataTracks {
    pub fn new(auto_subscribe: bool) -> Self {
        Self {
            auto_subscribe,
            // LiveKit starts each participant's handles at a random point too.
            last_handle: rand::random::<u8>().into(),
            ..Default::default()
        }
    }

    /// Checks a publish request as LiveKit does (permission, handle, name, encodings,
    /// duplicates) and, within the limit, records the new track.
    pub fn publish(
        &mut self,
        req: &pb::PublishDataTrackRequest,
        allowed: bool,
        max_custom_encoding: usize,
    ) -> Result<pb::DataTrackInfo, Refusal> {
        if !allowed {
            return Err((
                Reason::NotAllowed,
                "does not have permission to publish data".into(),
            ));
        }
        let Some(handle) = u16::try_from(req.pub_handle).ok().filter(|h| *h != 0) else {
            return Err((
                Reason::InvalidHandle,
                "handle should be > 0 AND < 65536".into(),
            ));
        };
        if req.name.is_empty() || req.name.len() > MAX_DATA_TRACK_NAME {
            return Err((
                Reason::InvalidName,
                format!(
                    "name should not be empty and should not exceed {MAX_DATA_TRACK_NAME} characters"
                ),
            ));
        }
        let limit = if max_custom_encoding == 0 {
            MAX_CUSTOM_ENCODING
        } else {
            max_custom_encoding.min(MAX_CUSTOM_ENCODING)
        };
        let custom_ok = |c: &str| !c.is_empty() && c.len() <= limit;
        use pb::data_track_frame_encoding::Value as Frame;
        use pb::data_track_schema_encoding::Value as Schema;
        let frame_ok = match req.frame_encoding.as_ref().and_then(|e| e.value.as_ref()) {
            Some(Frame::Custom(c)) => custom_ok(c),
            _ => true,
        };
        let schema_ok = req.schema.as_ref().is_none_or(|s| {
            s.name.len() <= MAX_DATA_TRACK_NAME
                && match s.encoding.as_ref().and_then(|e| e.value.as_ref()) {
                    Some(Schema::Custom(c)) => custom_ok(c),
                    _ => true,
                }
        });
        if !frame_ok || !schema_ok {
            return Err((
                Reason::InvalidRequest,
                "encoding identifier is empty or exceeds the maximum length".into(),
            ));
        }
        if self.published.contains_key(&handle) {
            return Err((
                Reason::DuplicateHandle,
                "a data track with same handle already exists".into(),
            ));
        }
        if self.published.values().any(|t| t.name == req.name) {
            return Err((
                Reason::DuplicateName,
                "a data track with same name already exists".into(),
            ));
        }
        if self.published.len() >= MAX_DATA_TRACKS {
            return Err((
                Reason::LimitExceeded,
                format!("a participant may publish at most {MAX_DATA_TRACKS} data tracks"),
            ));
        }
        let info = pb::DataTrackInfo {
            pub_handle: handle.into(),
            sid: id::new_id(DATA_TRACK_PREFIX),
            name: req.name.clone(),
            encryption: req.encryption,
            frame_encoding: req.frame_encoding.clone(),
            schema: req.schema.clone(),
        };
        self.published.insert(handle, info.clone());
        Ok(info)
    }

    /// Removes the track published under `handle`.
    pub fn unpublish(&mut self, handle: u32) -> Option<pb::DataTrackInfo> {
        self.published.remove(&u16::try_from(handle).ok()?)
    }

    /// The sid of the track it publishes under `handle`.
    pub fn track_of(&self, handle: u16) -> Option<&str> {
        self.published.get(&handle).map(|t| t.sid.as_str())
    }

    /// The sids of the tracks it publishes.
    pub fn published_sids(&self) -> Vec<String> {
        self.published.values().map(|t| t.sid.clone()).collect()
    }

    /// Starts receiving track `sid` under a handle of its own; false when it already does
    /// or receives as many as it may.
    pub fn subscribe(&mut self, sid: &str, publisher_sid: &str, publisher_identity: &str) -> bool {
        if self.subs.contains_key(sid) {
            return false;
        }
        if self.subs.len() >= MAX_DATA_SUBSCRIPTIONS {
            tracing::debug!(track = %sid, "data track not subscribed: the participant receives as many as it may");
            return false;
        }
        // The next handle not in use (never 0); fewer than 65535 are, so one is free.
        let mut h = self.last_handle;
        loop {
            h = h.wrapping_add(1);
            if h != 0 && !self.handles_in_use.contains(&h) {
                break;
            }
        }
        self.last_handle = h;
        self.handles_in_use.insert(h);
        self.subs.insert(
            sid.to_string(),
            DataSub {
                handle: h,
                publisher_sid: publisher_sid.to_string(),
                publisher_identity: publisher_identity.to_string(),
            },
        );
        true
    }

    /// Stops receiving track `sid`; false when it did not.
    pub fn unsubscribe(&mut self, sid: &str) -> bool {
        let Some(s) = self.subs.remove(sid) else {
            return false;
        };
        self.handles_in_use.remove(&s.handle);
        true
    }

    /// Its handle for track `sid`, when it receives it.
    pub fn handle_for(&self, sid: &str) -> Option<u16> {
        self.subs.get(sid).map(|s| s.handle)
    }

    /// The tracks it receives from `publisher_sid`.
    pub fn received_from(&self, publisher_sid: &str) -> Vec<String> {
        self.subs
            .iter()
            .filter(|(_, s)| s.publisher_sid == publisher_sid)
            .map(|(sid, _)| sid.clone())
            .collect()
    }

    /// Which of its handles is which track, as the client is told.
    pub fn handles(&self) -> pb::DataTrackSubscriberHandles {
        pb::DataTrackSubscriberHandles {
            sub_handles: self
                .subs
                .iter()
                .map(|(sid, s)| {
                    (
                        u32::from(s.handle),
                        pb::data_track_subscriber_handles::PublishedDataTrack {
                            publisher_identity: s.publisher_identity.clone(),
                            publisher_sid: s.publisher_sid.clone(),
                            track_sid: sid.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The publisher's handle of a data track packet, or `None` for one too short to have a
/// header.
pub fn packet_handle(packet: &[u8]) -> Option<u16> {
    (packet.len() >= DATA_TRACK_HEADER_LEN).then(|| u16::from_be_bytes([packet[2], packet[3]]))
}

/// `packet` with its handle replaced by `handle`, for one subscriber.
pub fn with_handle(packet: &[u8], handle: u16) -> bytes::Bytes {
    let mut out = bytes::BytesMut::from(packet);
    out[2..4].copy_from_slice(&handle.to_be_bytes());
    out.freeze()
}

impl super::Machine {
    /// Applies a participant's data track change: the room's record of it changes (everyone
    /// is told), and a new track is subscribed for those who take new data tracks.
    pub(super) fn apply_data_track(&mut self, psid: &str, change: DataTrackChange) {
        match change {
            DataTrackChange::Published(info) => {
                let sid = info.sid.clone();
                self.data_track_owner.insert(sid.clone(), psid.to_string());
                self.update_participant(psid, |p| p.data_tracks.push(info));
                let Some((room, identity)) = self
                    .participants
                    .get(psid)
                    .map(|p| (p.room().to_string(), p.identity().to_string()))
                else {
                    return;
                };
                let takers: Vec<String> =
                    super::members_of(&self.members, &self.participants, &room)
                        .filter(|(s, p)| {
                            s.as_str() != psid
                                && p.was_active()
                                && p.data_tracks().auto_subscribe
                                && p.can_subscribe()
                        })
                        .map(|(s, _)| s.clone())
                        .collect();
                for sub in takers {
                    if self.may_subscribe(psid, &sid, &sub) {
                        self.subscribe_data(
                            &sub,
                            &[(sid.clone(), psid.to_string(), identity.clone())],
                        );
                    }
                }
            }
            DataTrackChange::Unpublished(info) => {
                self.update_participant(psid, |p| p.data_tracks.retain(|t| t.sid != info.sid));
                if let Some(room) = self.room_of(psid) {
                    self.drop_data_tracks(&room, &[info.sid]);
                }
            }
        }
    }

    /// A participant's data subscription update: each named track of its room it may have is
    /// subscribed or unsubscribed; it is told its handles once, if they changed or it asked
    /// for a track it may have.
    pub(super) fn update_data_subscriptions(&mut self, psid: &str, updates: Vec<(String, bool)>) {
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        let room = p.room().to_string();
        let can_subscribe = p.can_subscribe();
        let mut wanted = Vec::new();
        let mut changed = false;
        for (sid, subscribe) in updates {
            if !subscribe {
                changed |= self
                    .participants
                    .get_mut(psid)
                    .is_some_and(|p| p.data_tracks_mut().unsubscribe(&sid));
                continue;
            }
            // By the node's index of data tracks: the cost is the request's, not the room's.
            let publisher = self
                .data_track_owner
                .get(&sid)
                .filter(|owner| owner.as_str() != psid)
                .and_then(|owner| self.participants.get_key_value(owner))
                .filter(|(_, p)| p.room() == room)
                .map(|(s, p)| (s.clone(), p.identity().to_string()));
            match publisher {
                Some((publisher, identity))
                    if can_subscribe && self.may_subscribe(&publisher, &sid, psid) =>
                {
                    wanted.push((sid, publisher, identity));
                }
                Some(_) => {
                    tracing::debug!(participant = %psid, track = %sid, "data track subscription not allowed")
                }
                None => {
                    tracing::debug!(participant = %psid, track = %sid, "data track subscription to no such track")
                }
            }
        }
        // A subscription it already had (one taken for it when the track was published) is
        // answered with the map too: the client waits for it after asking.
        if !self.subscribe_data(psid, &wanted) && (changed || !wanted.is_empty()) {
            self.tell_data_handles(psid);
        }
    }

    /// Subscribes `psid` to data tracks (sid, publisher sid, publisher identity) and tells it
    /// its handles if any was new; whether any was.
    fn subscribe_data(&mut self, psid: &str, tracks: &[(String, String, String)]) -> bool {
        let Some(p) = self.participants.get_mut(psid) else {
            return false;
        };
        let mut any = false;
        for (sid, publisher, identity) in tracks {
            any |= p.data_tracks_mut().subscribe(sid, publisher, identity);
        }
        if any {
            self.tell_data_handles(psid);
        }
        any
    }

    /// Tells `psid` which of its handles is which data track.
    fn tell_data_handles(&mut self, psid: &str) {
        if let Some(handles) = self
            .participants
            .get(psid)
            .map(|p| p.data_tracks().handles())
        {
            self.send_one(psid, Resp::DataTrackSubscriberHandles(handles));
        }
    }

    /// Data tracks that are gone from `room`: whoever received them is told its handles
    /// without them.
    pub(super) fn drop_data_tracks(&mut self, room: &str, sids: &[String]) {
        if sids.is_empty() {
            return;
        }
        for sid in sids {
            self.data_track_owner.remove(sid);
        }
        let receivers: Vec<String> = super::members_of(&self.members, &self.participants, room)
            .filter(|(_, p)| sids.iter().any(|s| p.data_tracks().handle_for(s).is_some()))
            .map(|(s, _)| s.clone())
            .collect();
        for sub in receivers {
            self.end_data_subscriptions(&sub, sids);
        }
    }

    /// Ends `sub`'s subscriptions to `sids` and tells it its handles.
    fn end_data_subscriptions(&mut self, sub: &str, sids: &[String]) {
        if let Some(p) = self.participants.get_mut(sub) {
            for sid in sids {
                p.data_tracks_mut().unsubscribe(sid);
            }
        }
        self.tell_data_handles(sub);
    }

    /// A newly active participant that takes new data tracks gets those already in its room
    /// that it may have.
    pub(super) fn subscribe_existing_data_tracks(&mut self, psid: &str) {
        let Some(p) = self.participants.get(psid) else {
            return;
        };
        if !(p.data_tracks().auto_subscribe && p.can_subscribe()) {
            return;
        }
        let room = p.room().to_string();
        let tracks: Vec<(String, String, String)> =
            super::members_of(&self.members, &self.participants, &room)
                .filter(|(s, _)| s.as_str() != psid)
                .flat_map(|(s, p)| {
                    p.data_tracks()
                        .published_sids()
                        .into_iter()
                        .map(|sid| (sid, s.clone(), p.identity().to_string()))
                })
                .filter(|(sid, publisher, _)| self.may_subscribe(publisher, sid, psid))
                .collect();
        self.subscribe_data(psid, &tracks);
    }

    /// After a publisher's permission changed: those who receive its data tracks and may no
    /// longer stop receiving them.
    pub(super) fn revoke_data_tracks(&mut self, publisher: &str) {
        let Some(room) = self.room_of(publisher) else {
            return;
        };
        let revoked: Vec<(String, Vec<String>)> =
            super::members_of(&self.members, &self.participants, &room)
                .map(|(s, p)| {
                    let gone = p
                        .data_tracks()
                        .received_from(publisher)
                        .into_iter()
                        .filter(|sid| !self.may_subscribe(publisher, sid, s))
                        .collect::<Vec<_>>();
                    (s.clone(), gone)
                })
                .filter(|(_, gone)| !gone.is_empty())
                .collect();
        for (sub, gone) in revoked {
            self.end_data_subscriptions(&sub, &gone);
        }
    }

    /// Forwards a packet of `psid`'s data track `sid` to each participant of its room that
    /// receives the track, under that participant's handle.
    pub(super) fn forward_data_track(&mut self, psid: &str, sid: &str, packet: &[u8]) {
        let Some(room) = self.participants.get(psid).map(|p| p.room()) else {
            return;
        };
        for (s, p) in super::members_of(&self.members, &self.participants, room) {
            if s.as_str() == psid {
                continue;
            }
            if let (Some(handle), Some(peer)) = (p.data_tracks().handle_for(sid), p.data_peer()) {
                self.out.media(lkr_sfu::Command::SendDataTrack {
                    peer,
                    data: with_handle(packet, handle),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(handle: u32, name: &str) -> pb::PublishDataTrackRequest {
        pb::PublishDataTrackRequest {
            pub_handle: handle,
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn publishing_follows_livekits_rules_and_is_capped() {
        let mut d = DataTracks::new(false);
        assert_eq!(
            d.publish(&req(1, "a"), false, 32).unwrap_err().0,
            Reason::NotAllowed
        );
        assert_eq!(
            d.publish(&req(0, "a"), true, 32).unwrap_err().0,
            Reason::InvalidHandle
        );
        assert_eq!(
            d.publish(&req(70_000, "a"), true, 32).unwrap_err().0,
            Reason::InvalidHandle
        );
        assert_eq!(
            d.publish(&req(1, ""), true, 32).unwrap_err().0,
            Reason::InvalidName
        );
        let long = "x".repeat(MAX_DATA_TRACK_NAME + 1);
        assert_eq!(
            d.publish(&req(1, &long), true, 32).unwrap_err().0,
            Reason::InvalidName
        );
        let mut custom = req(1, "a");
        custom.frame_encoding = Some(pb::DataTrackFrameEncoding {
            value: Some(pb::data_track_frame_encoding::Value::Custom("y".repeat(33))),
        });
        assert_eq!(
            d.publish(&custom, true, 32).unwrap_err().0,
            Reason::InvalidRequest
        );
        let info = d.publish(&req(1, "a"), true, 32).unwrap();
        assert!(info.sid.starts_with("DTR_") && info.pub_handle == 1 && info.name == "a");
        assert_eq!(d.track_of(1), Some(info.sid.as_str()));
        assert_eq!(
            d.publish(&req(1, "b"), true, 32).unwrap_err().0,
            Reason::DuplicateHandle
        );
        assert_eq!(
            d.publish(&req(2, "a"), true, 32).unwrap_err().0,
            Reason::DuplicateName
        );
        for h in 2..=MAX_DATA_TRACKS as u32 {
            d.publish(&req(h, &format!("t{h}")), true, 32).unwrap();
        }
        let (reason, msg) = d.publish(&req(9999, "over"), true, 32).unwrap_err();
        assert_eq!(reason, Reason::LimitExceeded);
        assert!(msg.contains("at most 256 data tracks"), "{msg}");
        assert_eq!(d.unpublish(1).map(|t| t.sid), Some(info.sid));
        assert!(d.unpublish(1).is_none());
        d.publish(&req(9999, "over"), true, 32).unwrap();
    }

    #[test]
    fn subscriber_handles_are_distinct_nonzero_and_capped() {
        let mut d = DataTracks::new(true);
        d.last_handle = u16::MAX - 1;
        assert!(d.subscribe("DTR_a", "PA_p", "p"));
        assert!(!d.subscribe("DTR_a", "PA_p", "p"), "once per track");
        assert!(d.subscribe("DTR_b", "PA_p", "p"));
        let (a, b) = (
            d.handle_for("DTR_a").unwrap(),
            d.handle_for("DTR_b").unwrap(),
        );
        assert_eq!((a, b), (u16::MAX, 1), "wraps past 0");
        let m = d.handles();
        assert_eq!(m.sub_handles[&u32::from(a)].track_sid, "DTR_a");
        assert_eq!(m.sub_handles[&1].publisher_identity, "p");
        for i in 2..MAX_DATA_SUBSCRIPTIONS {
            assert!(d.subscribe(&format!("DTR_{i}"), "PA_q", "q"));
        }
        assert!(!d.subscribe("DTR_over", "PA_q", "q"), "capped");
        assert_eq!(d.received_from("PA_p").len(), 2);
        assert!(d.unsubscribe("DTR_a") && !d.unsubscribe("DTR_a"));
        assert!(d.subscribe("DTR_over", "PA_q", "q"));
    }

    #[test]
    fn packets_get_the_subscribers_handle_and_nothing_else_changes() {
        let packet = [0x18, 0, 0x12, 0x34, 0, 1, 0, 2, 0, 0, 0, 3, 9, 9];
        assert_eq!(packet_handle(&packet), Some(0x1234));
        assert_eq!(packet_handle(&packet[..11]), None);
        let out = with_handle(&packet, 0xabcd);
        assert_eq!(&out[2..4], &[0xab, 0xcd]);
        assert_eq!(&out[..2], &packet[..2]);
        assert_eq!(&out[4..], &packet[4..]);
    }
}
