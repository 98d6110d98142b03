//! The hub: rooms, their participants' sessions and published tracks, shared by every
//! signalling session and by the Twirp API.
//!
//! Sessions talk to each other only through the hub: it keeps the room model, routes
//! [`ToSession`] messages to each session's queue, and forwards media events from the core
//! to the session that owns the peer. Its one lock guards plain data and is never held
//! across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lkr_proto::{id, pb};
use lkr_room::{CreateRoom, RoomError, Rooms};
use lkr_sfu::{Command, Event, MediaKind, PeerId, TrackId};
use tokio::sync::{Notify, mpsc};

use crate::join::{JoinError, JoinParams};
pub use lkr_room::negotiation::TrackCodec;

/// The version this server reports: LiveKit clients gate features (RPC needs ≥ 1.8) on it.
pub const SERVER_VERSION: &str = "1.9.0";
/// The signalling protocol version this server speaks.
pub const SERVER_PROTOCOL: i32 = 16;
/// Seconds between client pings.
pub const PING_INTERVAL: i32 = 5;
/// Seconds of silence after which a client is dropped.
pub const PING_TIMEOUT: i32 = 15;

/// Settings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub keys: BTreeMap<String, String>,
    pub auto_create: bool,
    /// Address advertised in ICE candidates.
    pub node_ip: IpAddr,
    pub udp_port: u16,
    pub region: String,
    pub node_id: String,
    /// This server's DTLS fingerprint, `sha-256 AB:…` split into algorithm and value.
    pub fingerprint: (String, String),
    /// Largest participant metadata, in bytes (0: no limit).
    pub max_metadata_size: usize,
    /// Largest total size of a participant's attributes, in bytes (0: no limit).
    pub max_attributes_size: usize,
}

impl HubConfig {
    /// Checks participant metadata and attributes against the configured limits.
    pub fn check_limits<'a>(
        &self,
        metadata: &str,
        attributes: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), String> {
        if self.max_metadata_size > 0 && metadata.len() > self.max_metadata_size {
            return Err(format!(
                "metadata is {} bytes, larger than the limit of {}",
                metadata.len(),
                self.max_metadata_size
            ));
        }
        let size: usize = attributes.into_iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.max_attributes_size > 0 && size > self.max_attributes_size {
            return Err(format!(
                "attributes are {size} bytes, larger than the limit of {}",
                self.max_attributes_size
            ));
        }
        Ok(())
    }
}

/// What a session needs to offer a published track to its participant.
#[derive(Debug, Clone)]
pub struct TrackOffer {
    pub track_sid: String,
    pub track_id: TrackId,
    pub publisher_sid: String,
    pub kind: MediaKind,
    pub codecs: Vec<TrackCodec>,
    /// The publisher's simulcast layers (quality and size), for choosing a subscriber's layer.
    pub layers: Vec<pb::VideoLayer>,
    /// Number of layers the core sees (simulcast rids, or 1).
    pub layer_count: usize,
}

/// Messages to one session.
#[derive(Debug)]
pub enum ToSession {
    /// Send this signal message as it is.
    Signal(Box<pb::signal_response::Message>),
    /// Subscribe to a track (its ParticipantUpdate was queued before).
    Subscribe(TrackOffer),
    /// Stop receiving a track.
    Unsubscribe { track_sid: String },
    /// Send `leave` and close.
    Close {
        reason: pb::DisconnectReason,
        action: pb::leave_request::Action,
    },
    /// An event of one of the session's peers.
    Media(Event),
    /// A data packet (already stamped) to send on the session's data channels.
    Data { reliable: bool, data: bytes::Bytes },
}

/// The channel the media core listens on: a bounded command channel whose sends never
/// wait (a full channel is reported), and the core's drop counters.
pub use lkr_driver::MediaHandle;

struct SessionEntry {
    room: String,
    identity: String,
    tx: mpsc::UnboundedSender<ToSession>,
    auto_subscribe: bool,
    can_subscribe: bool,
    hidden: bool,
    peers: Vec<PeerId>,
}

struct TrackEntry {
    room: String,
    publisher_sid: String,
    offer: TrackOffer,
    subscribers: BTreeSet<String>,
    /// Dynacast: the quality each subscriber wants (absent: paused).
    wanted: BTreeMap<String, i32>,
    /// The highest wanted quality last told to the publisher.
    told: Option<i32>,
}

#[derive(Default)]
struct State {
    rooms: Rooms,
    sessions: HashMap<String, SessionEntry>,
    peer_owner: HashMap<PeerId, String>,
    tracks: BTreeMap<String, TrackEntry>,
    /// Per room, the speaking participants last announced: sid → level.
    speakers: HashMap<String, BTreeMap<String, f32>>,
}

/// What a successful join gives the session.
#[derive(Debug)]
pub struct Joined {
    pub participant_sid: String,
    pub rx: mpsc::UnboundedReceiver<ToSession>,
    pub response: pb::JoinResponse,
}

/// Shared state of one node.
pub struct Hub {
    pub config: HubConfig,
    state: Mutex<State>,
    media: Option<MediaHandle>,
    next_id: AtomicU64,
    rooms_changed: Notify,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn source_from_name(s: &str) -> Option<i32> {
    let src = match s {
        "camera" => pb::TrackSource::Camera,
        "microphone" => pb::TrackSource::Microphone,
        "screen_share" => pb::TrackSource::ScreenShare,
        "screen_share_audio" => pb::TrackSource::ScreenShareAudio,
        _ => return None,
    };
    Some(src as i32)
}

fn kind_from_name(s: &str) -> i32 {
    use pb::participant_info::Kind;
    let k = match s {
        "ingress" => Kind::Ingress,
        "egress" => Kind::Egress,
        "sip" => Kind::Sip,
        "agent" => Kind::Agent,
        _ => Kind::Standard,
    };
    k as i32
}

/// The permission a token grants, in wire form.
pub fn permission_of(grant: &lkr_proto::token::VideoGrant) -> pb::ParticipantPermission {
    pb::ParticipantPermission {
        can_subscribe: grant.can_subscribe(),
        can_publish: grant.can_publish(),
        can_publish_data: grant.can_publish_data(),
        can_publish_sources: grant
            .can_publish_sources
            .iter()
            .filter_map(|s| source_from_name(s))
            .collect(),
        hidden: grant.hidden,
        can_update_metadata: grant.can_update_own_metadata(),
        can_subscribe_metrics: grant.can_subscribe_metrics(),
        ..Default::default()
    }
}

impl Hub {
    /// A hub with no rooms; `media` is the core's command channel (None: signalling only).
    pub fn new(config: HubConfig, rooms: Rooms, media: Option<MediaHandle>) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                rooms,
                ..Default::default()
            }),
            media,
            next_id: AtomicU64::new(1),
            rooms_changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the room model (for the Twirp API).
    pub fn with_rooms<R>(&self, f: impl FnOnce(&mut Rooms) -> R) -> R {
        let r = f(&mut self.lock().rooms);
        self.rooms_changed.notify_one();
        r
    }

    /// A new number for peers and tracks.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a command to the media core without waiting (dropped when the hub runs without
    /// media). A full command queue drops the command; it is counted in the core's stats.
    pub fn media(&self, cmd: Command) {
        if let Some(m) = &self.media
            && let Err(e) = m.send(cmd)
        {
            tracing::error!("media command dropped: {e}");
        }
    }

    /// Whether a media core is attached.
    pub fn has_media(&self) -> bool {
        self.media.is_some()
    }

    /// Records that `peer` belongs to the session `psid`, for routing media events.
    pub fn register_peer(&self, psid: &str, peer: PeerId) {
        let mut st = self.lock();
        if let Some(s) = st.sessions.get_mut(psid) {
            s.peers.push(peer);
            st.peer_owner.insert(peer, psid.to_string());
        }
    }

    /// Routes one media event to the session owning its peer.
    pub fn dispatch_media_event(&self, ev: Event) {
        match &ev {
            Event::AudioLevels { levels } => return self.update_speakers(levels),
            Event::Loss { peers } => return self.update_quality(peers),
            _ => {}
        }
        let peer = match &ev {
            Event::PeerConnected { peer }
            | Event::StreamState { peer, .. }
            | Event::PeerDisconnected { peer, .. }
            | Event::ChannelOpen { peer, .. }
            | Event::Data { peer, .. } => Some(*peer),
            Event::TrackStarted { .. } => None,
            Event::AudioLevels { .. } | Event::Loss { .. } => None,
        };
        let st = self.lock();
        if let Some(psid) = peer.and_then(|p| st.peer_owner.get(&p))
            && let Some(s) = st.sessions.get(psid)
        {
            let _ = s.tx.send(ToSession::Media(ev));
        }
    }

    /// Turns audio levels into `speakers_changed` deltas for each room: participants who
    /// started speaking or whose level moved, and those who stopped (level 0, inactive).
    fn update_speakers(&self, levels: &[(TrackId, f32, bool)]) {
        let mut st = self.lock();
        // Loudest speaking track per participant, grouped by room.
        let mut now: HashMap<String, BTreeMap<String, f32>> = HashMap::new();
        let mut rooms: Vec<String> = Vec::new();
        for (tid, level, active) in levels {
            let Some(t) = st.tracks.values().find(|t| t.offer.track_id == *tid) else {
                continue;
            };
            if !rooms.contains(&t.room) {
                rooms.push(t.room.clone());
            }
            if *active {
                let e = now
                    .entry(t.room.clone())
                    .or_default()
                    .entry(t.publisher_sid.clone())
                    .or_insert(0.0);
                *e = e.max(*level);
            }
        }
        for room in rooms {
            let new = now.remove(&room).unwrap_or_default();
            let old = st.speakers.remove(&room).unwrap_or_default();
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
            st.speakers.insert(room.clone(), kept);
            if changes.is_empty() {
                continue;
            }
            let msg = pb::signal_response::Message::SpeakersChanged(pb::SpeakersChanged {
                speakers: changes,
            });
            for s in st.sessions.values().filter(|s| s.room == room) {
                let _ = s.tx.send(ToSession::Signal(Box::new(msg.clone())));
            }
        }
    }

    /// Sends every room a connection quality update: each participant rated from the packet
    /// loss of what it publishes (EXCELLENT under 2%, GOOD under 10%, else POOR).
    fn update_quality(&self, peers: &[(PeerId, f32)]) {
        use pb::ConnectionQuality as Q;
        let st = self.lock();
        let mut by_room: HashMap<&str, Vec<pb::ConnectionQualityInfo>> = HashMap::new();
        for (psid, s) in &st.sessions {
            if s.hidden {
                continue;
            }
            let loss = peers
                .iter()
                .filter(|(p, _)| s.peers.contains(p))
                .map(|(_, l)| *l)
                .fold(0.0f32, f32::max);
            let (quality, score) = if loss < 0.02 {
                (Q::Excellent, 5.0 - loss * 25.0)
            } else if loss < 0.10 {
                (Q::Good, 4.0 - loss * 10.0)
            } else {
                (Q::Poor, (2.0 - loss * 2.0).max(1.0))
            };
            by_room
                .entry(&s.room)
                .or_default()
                .push(pb::ConnectionQualityInfo {
                    participant_sid: psid.clone(),
                    quality: quality as i32,
                    score,
                });
        }
        for (room, updates) in by_room {
            let msg =
                pb::signal_response::Message::ConnectionQuality(pb::ConnectionQualityUpdate {
                    updates,
                });
            for s in st.sessions.values().filter(|s| s.room == room) {
                let _ = s.tx.send(ToSession::Signal(Box::new(msg.clone())));
            }
        }
    }

    /// Forwards media events until the channel closes.
    pub async fn run_media_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            self.dispatch_media_event(ev);
        }
    }

    /// Closes empty rooms when their timeouts pass, until the task is dropped.
    pub async fn run_room_closer(&self) {
        loop {
            let deadline = self.lock().rooms.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.rooms_changed.notified() => {}
            }
            let closed = self.lock().rooms.close_expired(Instant::now());
            for room in closed {
                tracing::info!(room = %room.info().name, sid = %room.sid(), "closing empty room");
            }
        }
    }

    /// Admits a participant: creates the room when allowed, replaces a session with the same
    /// identity, tells the others, and returns the JoinResponse to send.
    pub fn join(&self, p: &JoinParams) -> Result<Joined, JoinError> {
        let now = Instant::now();
        let grant = p.claims.video();
        let permission = permission_of(&grant);
        let mut st = self.lock();
        if st.rooms.get(&p.room).is_err() {
            if !self.config.auto_create {
                return Err(JoinError::new(404, "requested room does not exist"));
            }
            let mut req = CreateRoom {
                name: p.room.clone(),
                ..Default::default()
            };
            if let Ok(Some(rc)) = p.claims.room_configuration() {
                req.empty_timeout = rc.empty_timeout;
                req.departure_timeout = rc.departure_timeout;
                req.max_participants = rc.max_participants;
                req.metadata = rc.metadata;
            }
            st.rooms
                .create(now, &req)
                .map_err(|e| JoinError::new(400, e.to_string()))?;
            tracing::info!(room = %p.room, "room created by join");
        }
        let ms = unix_ms();
        let psid = id::new_id(id::PARTICIPANT_PREFIX);
        let mut metadata = p.claims.metadata.clone();
        let mut attributes: HashMap<String, String> =
            p.claims.attributes.clone().into_iter().collect();
        if permission.can_update_metadata {
            if let Some(m) = &p.metadata {
                metadata = m.clone();
            }
            attributes.extend(p.attributes.clone());
        }
        let info = pb::ParticipantInfo {
            sid: psid.clone(),
            identity: p.identity.clone(),
            name: p.claims.name.clone(),
            state: pb::participant_info::State::Joined as i32,
            metadata,
            attributes,
            joined_at: ms / 1000,
            joined_at_ms: ms,
            version: 1,
            permission: Some(permission.clone()),
            region: self.config.region.clone(),
            kind: kind_from_name(&p.claims.kind),
            client_protocol: p.client_info.client_protocol,
            ..Default::default()
        };
        let replaced = st
            .rooms
            .join(now, &p.room, info.clone())
            .map_err(|e| match e {
                RoomError::RoomFull(_) => JoinError::new(403, e.to_string()),
                other => JoinError::new(400, other.to_string()),
            })?;
        if let Some(old) = replaced {
            tracing::info!(identity = %p.identity, old = %old.info.sid, "duplicate identity replaces the earlier session");
            if let Some(s) = st.sessions.get(&old.info.sid) {
                let _ = s.tx.send(ToSession::Close {
                    reason: pb::DisconnectReason::DuplicateIdentity,
                    action: pb::leave_request::Action::Disconnect,
                });
            }
            self.cleanup_session(&mut st, &old.info.sid, false);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.sessions.insert(
            psid.clone(),
            SessionEntry {
                room: p.room.clone(),
                identity: p.identity.clone(),
                tx,
                auto_subscribe: p.auto_subscribe,
                can_subscribe: permission.can_subscribe,
                hidden: permission.hidden,
                peers: Vec::new(),
            },
        );
        let room = st
            .rooms
            .get(&p.room)
            .map_err(|e| JoinError::new(404, e.to_string()))?;
        let room_info = room.info();
        let others: Vec<pb::ParticipantInfo> = room
            .participants()
            .filter(|o| o.info.sid != psid && !o.info.permission.as_ref().is_some_and(|p| p.hidden))
            .map(|o| o.info.clone())
            .collect();
        let response = pb::JoinResponse {
            room: Some(room_info),
            participant: Some(info.clone()),
            other_participants: others,
            server_version: SERVER_VERSION.into(),
            subscriber_primary: !p.single_pc && permission.can_subscribe,
            ping_timeout: PING_TIMEOUT,
            ping_interval: PING_INTERVAL,
            server_info: Some(pb::ServerInfo {
                edition: pb::server_info::Edition::Standard as i32,
                version: SERVER_VERSION.into(),
                protocol: SERVER_PROTOCOL,
                region: self.config.region.clone(),
                node_id: self.config.node_id.clone(),
                ..Default::default()
            }),
            server_region: self.config.region.clone(),
            fast_publish: permission.can_publish,
            ..Default::default()
        };
        if !permission.hidden {
            self.broadcast(&st, &p.room, &info, Some(&psid));
        }
        drop(st);
        self.rooms_changed.notify_one();
        Ok(Joined {
            participant_sid: psid,
            rx,
            response,
        })
    }

    /// Sends a ParticipantUpdate with `info` to every session of `room` but `except`.
    fn broadcast(&self, st: &State, room: &str, info: &pb::ParticipantInfo, except: Option<&str>) {
        let msg = pb::signal_response::Message::Update(pb::ParticipantUpdate {
            participants: vec![info.clone()],
        });
        for (sid, s) in &st.sessions {
            if s.room == room && Some(sid.as_str()) != except {
                let _ = s.tx.send(ToSession::Signal(Box::new(msg.clone())));
            }
        }
    }

    /// Applies `f` to a participant's record, bumps its version and tells everyone.
    pub fn update_participant<R>(
        &self,
        psid: &str,
        f: impl FnOnce(&mut pb::ParticipantInfo) -> R,
    ) -> Option<R> {
        let mut st = self.lock();
        let s = st.sessions.get(psid)?;
        let (room, identity, hidden) = (s.room.clone(), s.identity.clone(), s.hidden);
        let (r, info) = st.rooms.update_participant(&room, &identity, f).ok()?;
        if !hidden {
            self.broadcast(&st, &room, &info, None);
        }
        Some(r)
    }

    /// Marks the participant active (its primary transport is up) and subscribes it to the
    /// tracks already in the room.
    pub fn set_active(&self, psid: &str) {
        self.update_participant(psid, |i| {
            i.state = pb::participant_info::State::Active as i32;
        });
        let st = self.lock();
        let Some(s) = st.sessions.get(psid) else {
            return;
        };
        if !(s.auto_subscribe && s.can_subscribe) {
            return;
        }
        for t in st.tracks.values() {
            if t.room == s.room && t.publisher_sid != psid {
                let _ = s.tx.send(ToSession::Subscribe(t.offer.clone()));
            }
        }
    }

    /// Registers a published track: the participant's record gains `info`, everyone is told,
    /// and auto-subscribing participants are asked to subscribe.
    pub fn publish_track(&self, psid: &str, info: pb::TrackInfo, offer: TrackOffer) {
        let sid = info.sid.clone();
        self.update_participant(psid, |p| {
            p.tracks.retain(|t| t.sid != info.sid);
            p.tracks.push(info.clone());
            p.is_publisher = true;
        });
        let mut st = self.lock();
        let Some(room) = st.sessions.get(psid).map(|s| s.room.clone()) else {
            return;
        };
        for (other, s) in &st.sessions {
            if other != psid && s.room == room && s.auto_subscribe && s.can_subscribe {
                let _ = s.tx.send(ToSession::Subscribe(offer.clone()));
            }
        }
        st.tracks.insert(
            sid,
            TrackEntry {
                room,
                publisher_sid: psid.to_string(),
                offer,
                subscribers: BTreeSet::new(),
                wanted: BTreeMap::new(),
                told: None,
            },
        );
    }

    /// Removes a published track and stops it for its subscribers.
    pub fn unpublish_track(&self, psid: &str, track_sid: &str) {
        self.update_participant(psid, |p| p.tracks.retain(|t| t.sid != track_sid));
        let mut st = self.lock();
        self.drop_track(&mut st, track_sid);
    }

    /// Forgets a published track: its subscribers stop receiving it and the core drops it.
    fn drop_track(&self, st: &mut State, track_sid: &str) {
        let Some(t) = st.tracks.remove(track_sid) else {
            return;
        };
        for sub in &t.subscribers {
            if let Some(s) = st.sessions.get(sub) {
                let _ = s.tx.send(ToSession::Unsubscribe {
                    track_sid: track_sid.to_string(),
                });
            }
        }
        self.media(Command::Unpublish {
            track: t.offer.track_id,
        });
    }

    /// Forgets every track `publisher` published.
    fn drop_tracks_of(&self, st: &mut State, publisher: &str) {
        let gone: Vec<String> = st
            .tracks
            .iter()
            .filter(|(_, t)| t.publisher_sid == publisher)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in gone {
            self.drop_track(st, &sid);
        }
    }

    /// Marks a track muted or not and tells everyone. Returns the track's new record.
    pub fn set_track_muted(
        &self,
        psid: &str,
        track_sid: &str,
        muted: bool,
    ) -> Option<pb::TrackInfo> {
        self.update_participant(psid, |p| {
            p.tracks.iter_mut().find(|t| t.sid == track_sid).map(|t| {
                t.muted = muted;
                t.clone()
            })
        })
        .flatten()
    }

    /// Notes that `subscriber` now receives `track_sid`; the publisher hears of its first
    /// subscriber.
    pub fn track_subscribed(&self, subscriber: &str, track_sid: &str) {
        let mut st = self.lock();
        let Some(t) = st.tracks.get_mut(track_sid) else {
            return;
        };
        let first = t.subscribers.is_empty();
        t.subscribers.insert(subscriber.to_string());
        t.wanted
            .insert(subscriber.to_string(), pb::VideoQuality::High as i32);
        let publisher = t.publisher_sid.clone();
        self.tell_qualities(&mut st, track_sid);
        if first && let Some(p) = st.sessions.get(&publisher) {
            let _ = p.tx.send(ToSession::Signal(Box::new(
                pb::signal_response::Message::TrackSubscribed(pb::TrackSubscribed {
                    track_sid: track_sid.to_string(),
                }),
            )));
        }
    }

    /// Notes that `subscriber` no longer receives `track_sid`.
    pub fn track_unsubscribed(&self, subscriber: &str, track_sid: &str) {
        let mut st = self.lock();
        if let Some(t) = st.tracks.get_mut(track_sid) {
            t.subscribers.remove(subscriber);
            t.wanted.remove(subscriber);
        }
        self.tell_qualities(&mut st, track_sid);
    }

    /// Dynacast: notes the quality one subscriber wants (`None`: paused) and tells the
    /// publisher when the highest wanted quality changes.
    pub fn set_subscriber_quality(&self, subscriber: &str, track_sid: &str, quality: Option<i32>) {
        let mut st = self.lock();
        if let Some(t) = st.tracks.get_mut(track_sid) {
            match quality {
                Some(q) => t.wanted.insert(subscriber.to_string(), q),
                None => t.wanted.remove(subscriber),
            };
        }
        self.tell_qualities(&mut st, track_sid);
    }

    #[allow(deprecated)] // subscribed_qualities is still read by older clients
    fn tell_qualities(&self, st: &mut State, track_sid: &str) {
        let Some(t) = st.tracks.get_mut(track_sid) else {
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
        let msg =
            pb::signal_response::Message::SubscribedQualityUpdate(pb::SubscribedQualityUpdate {
                track_sid: track_sid.to_string(),
                subscribed_qualities: qualities.clone(),
                subscribed_codecs: vec![pb::SubscribedCodec { codec, qualities }],
            });
        if let Some(p) = st.sessions.get(&t.publisher_sid) {
            let _ = p.tx.send(ToSession::Signal(Box::new(msg)));
        }
    }

    /// The offer for a published track, if it is in the session's room.
    pub fn track_offer(&self, psid: &str, track_sid: &str) -> Option<TrackOffer> {
        let st = self.lock();
        let room = &st.sessions.get(psid)?.room;
        st.tracks
            .get(track_sid)
            .filter(|t| &t.room == room && t.publisher_sid != psid)
            .map(|t| t.offer.clone())
    }

    /// The sids of tracks published by `participant_sid` in the session's room.
    pub fn tracks_of(&self, psid: &str, participant_sid: &str) -> Vec<String> {
        let st = self.lock();
        let Some(room) = st.sessions.get(psid).map(|s| &s.room) else {
            return Vec::new();
        };
        st.tracks
            .iter()
            .filter(|(_, t)| &t.room == room && t.publisher_sid == participant_sid)
            .map(|(sid, _)| sid.clone())
            .collect()
    }

    /// Ends a session: the participant leaves, its tracks go, everyone is told.
    pub fn leave(&self, psid: &str) {
        let mut st = self.lock();
        self.cleanup_session(&mut st, psid, true);
        drop(st);
        self.rooms_changed.notify_one();
    }

    fn cleanup_session(&self, st: &mut State, psid: &str, remove_from_room: bool) {
        let Some(s) = st.sessions.remove(psid) else {
            return;
        };
        for p in &s.peers {
            st.peer_owner.remove(p);
            self.media(Command::RemovePeer { peer: *p });
        }
        self.drop_tracks_of(st, psid);
        for t in st.tracks.values_mut() {
            t.subscribers.remove(psid);
        }
        if remove_from_room {
            let still_ours = st
                .rooms
                .participant(&s.room, &s.identity)
                .is_ok_and(|p| p.info.sid == psid);
            if still_ours && let Ok(mut p) = st.rooms.leave(Instant::now(), &s.room, &s.identity) {
                p.info.state = pb::participant_info::State::Disconnected as i32;
                p.info.version += 1;
                p.info.tracks.clear();
                if !s.hidden {
                    self.broadcast(st, &s.room, &p.info, Some(psid));
                }
            }
        }
        tracing::info!(participant = %psid, identity = %s.identity, room = %s.room, "participant left");
    }

    fn session_of(&self, st: &State, room: &str, identity: &str) -> Result<String, RoomError> {
        let p = st.rooms.participant(room, identity)?;
        Ok(p.info.sid.clone())
    }

    /// RemoveParticipant: the client is told to leave with PARTICIPANT_REMOVED.
    pub fn remove_participant(&self, room: &str, identity: &str) -> Result<(), RoomError> {
        let mut st = self.lock();
        let psid = self.session_of(&st, room, identity)?;
        if let Some(s) = st.sessions.get(&psid) {
            let _ = s.tx.send(ToSession::Close {
                reason: pb::DisconnectReason::ParticipantRemoved,
                action: pb::leave_request::Action::Disconnect,
            });
            self.cleanup_session(&mut st, &psid, true);
        } else {
            st.rooms.leave(Instant::now(), room, identity)?;
        }
        drop(st);
        self.rooms_changed.notify_one();
        Ok(())
    }

    /// MutePublishedTrack: the publisher is told to mute; everyone sees the new state.
    pub fn mute_published_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<pb::TrackInfo, RoomError> {
        let psid = {
            let st = self.lock();
            let p = st.rooms.participant(room, identity)?;
            if !p.info.tracks.iter().any(|t| t.sid == track_sid) {
                return Err(RoomError::TrackNotFound);
            }
            if let Some(s) = st.sessions.get(&p.info.sid) {
                let _ = s.tx.send(ToSession::Signal(Box::new(
                    pb::signal_response::Message::Mute(pb::MuteTrackRequest {
                        sid: track_sid.to_string(),
                        muted,
                    }),
                )));
            }
            p.info.sid.clone()
        };
        self.set_track_muted(&psid, track_sid, muted)
            .ok_or(RoomError::TrackNotFound)
    }

    /// UpdateParticipant from the API: metadata, name, attributes, permission.
    pub fn admin_update_participant(
        &self,
        req: &pb::UpdateParticipantRequest,
    ) -> Result<pb::ParticipantInfo, RoomError> {
        self.config
            .check_limits(&req.metadata, &req.attributes)
            .map_err(RoomError::InvalidArgument)?;
        let mut st = self.lock();
        let (_, info) = st.rooms.update_participant(&req.room, &req.identity, |p| {
            if !req.metadata.is_empty() {
                p.metadata = req.metadata.clone();
            }
            if !req.name.is_empty() {
                p.name = req.name.clone();
            }
            for (k, v) in &req.attributes {
                if v.is_empty() {
                    p.attributes.remove(k);
                } else {
                    p.attributes.insert(k.clone(), v.clone());
                }
            }
            if let Some(perm) = &req.permission {
                p.permission = Some(perm.clone());
                if !perm.can_publish {
                    p.tracks.clear();
                }
            }
        })?;
        if req.permission.as_ref().is_some_and(|p| !p.can_publish) {
            self.drop_tracks_of(&mut st, &info.sid);
        }
        let hidden = info.permission.as_ref().is_some_and(|p| p.hidden);
        if let Some(s) = st.sessions.get_mut(&info.sid)
            && let Some(perm) = &info.permission
        {
            s.can_subscribe = perm.can_subscribe;
        }
        if !hidden {
            self.broadcast(&st, &req.room, &info, None);
        } else if let Some(s) = st.sessions.get(&info.sid) {
            let _ = s.tx.send(ToSession::Signal(Box::new(
                pb::signal_response::Message::Update(pb::ParticipantUpdate {
                    participants: vec![info.clone()],
                }),
            )));
        }
        Ok(info)
    }

    /// UpdateSubscriptions from the API.
    pub fn admin_update_subscriptions(
        &self,
        req: &pb::UpdateSubscriptionsRequest,
    ) -> Result<(), RoomError> {
        let st = self.lock();
        let psid = self.session_of(&st, &req.room, &req.identity)?;
        let Some(s) = st.sessions.get(&psid) else {
            return Ok(());
        };
        let mut sids: Vec<String> = req.track_sids.clone();
        for pt in &req.participant_tracks {
            sids.extend(pt.track_sids.iter().cloned());
        }
        for sid in sids {
            if req.subscribe {
                if let Some(t) = st.tracks.get(&sid).filter(|t| t.room == req.room) {
                    let _ = s.tx.send(ToSession::Subscribe(t.offer.clone()));
                }
            } else {
                let _ = s.tx.send(ToSession::Unsubscribe { track_sid: sid });
            }
        }
        Ok(())
    }

    /// Sends a data packet to every session of the sender's room (or of `room` for the API)
    /// but the sender, limited to `destinations` when any are named.
    pub fn broadcast_data(
        &self,
        from: Option<&str>,
        room: Option<&str>,
        reliable: bool,
        data: bytes::Bytes,
        destinations: &[String],
    ) {
        let st = self.lock();
        let room = match (from, room) {
            (_, Some(r)) => r.to_string(),
            (Some(f), None) => match st.sessions.get(f) {
                Some(s) => s.room.clone(),
                None => return,
            },
            (None, None) => return,
        };
        for (sid, s) in &st.sessions {
            if s.room != room || Some(sid.as_str()) == from {
                continue;
            }
            if !destinations.is_empty() && !destinations.contains(&s.identity) {
                continue;
            }
            let _ = s.tx.send(ToSession::Data {
                reliable,
                data: data.clone(),
            });
        }
    }

    #[allow(deprecated)] // kind and the inner destination fields are still read by clients
    /// SendData from the API: a user packet with no sender, to the room or the named
    /// identities.
    pub fn api_send_data(&self, req: &pb::SendDataRequest) -> Result<(), RoomError> {
        self.lock().rooms.get(&req.room)?;
        let reliable = req.kind != pb::data_packet::Kind::Lossy as i32;
        let packet = pb::DataPacket {
            kind: req.kind,
            destination_identities: req.destination_identities.clone(),
            value: Some(pb::data_packet::Value::User(pb::UserPacket {
                payload: req.data.clone(),
                topic: req.topic.clone(),
                nonce: req.nonce.clone(),
                destination_identities: req.destination_identities.clone(),
                destination_sids: req.destination_sids.clone(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let data = bytes::Bytes::from(prost::Message::encode_to_vec(&packet));
        self.broadcast_data(
            None,
            Some(&req.room),
            reliable,
            data,
            &req.destination_identities,
        );
        Ok(())
    }

    /// Tells every participant of `room` its new record (RoomUpdate).
    pub fn broadcast_room_update(&self, room: &pb::Room) {
        let st = self.lock();
        let msg = pb::signal_response::Message::RoomUpdate(pb::RoomUpdate {
            room: Some(room.clone()),
        });
        for s in st.sessions.values().filter(|s| s.room == room.name) {
            let _ = s.tx.send(ToSession::Signal(Box::new(msg.clone())));
        }
    }

    /// Closes every session of a deleted room with ROOM_DELETED.
    pub fn close_room_sessions(&self, room: &str) {
        let mut st = self.lock();
        let sids: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.room == room)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in sids {
            if let Some(s) = st.sessions.get(&sid) {
                let _ = s.tx.send(ToSession::Close {
                    reason: pb::DisconnectReason::RoomDeleted,
                    action: pb::leave_request::Action::Disconnect,
                });
            }
            self.cleanup_session(&mut st, &sid, false);
        }
    }
}
