//! The room model shared by the Twirp API and the signalling sessions.
//!
//! [`Rooms`] holds every room of this node by name, with its LiveKit `Room` record, its
//! participants and the instants that decide when an empty room closes. It is plain data
//! with no clock and no I/O: callers pass `now`, and ask [`Rooms::next_deadline`] when to call
//! [`Rooms::close_expired`] again. The control plane keeps one `Rooms` behind a lock; the
//! media path never touches it.
//!
//! Closing rules follow LiveKit: a room nobody has joined closes `empty_timeout` seconds
//! after it was created; once someone has joined and everyone has left, it closes
//! `departure_timeout` seconds after the last one left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lkr_proto::{id, pb};
use prost::Message as _;

use crate::error::RoomError;

/// Room settings the server applies when a request leaves them at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDefaults {
    /// Seconds a room nobody joined stays open.
    pub empty_timeout: u32,
    /// Seconds a room stays open after its last participant left.
    pub departure_timeout: u32,
    /// 0 means unlimited.
    pub max_participants: u32,
    /// Codecs advertised in `Room.enabled_codecs`.
    pub enabled_codecs: Vec<pb::Codec>,
    /// Longest room name accepted.
    pub max_room_name_length: usize,
    /// Largest room metadata accepted, in bytes (0: no limit).
    pub max_metadata_size: usize,
    /// `room.sync_streams`: a subscriber's tracks of one publisher's stream (camera and
    /// microphone, or a screen share and its audio) share one stream id, so that its
    /// browser plays them in sync.
    pub sync_streams: bool,
    /// `room.playout_delay`: the least and most time, in milliseconds, subscribers should
    /// hold video before playing it out (the playout-delay header extension).
    pub playout_delay: Option<(u32, u32)>,
    /// `room.room_configurations`: named room configurations (LiveKit's room presets) that
    /// a CreateRoom's `room_preset` or a token's `roomPreset` picks; see
    /// [`Rooms::apply_preset`].
    pub presets: BTreeMap<String, pb::RoomConfiguration>,
}

impl Default for RoomDefaults {
    fn default() -> Self {
        let codecs = [
            "audio/PCMU",
            "audio/PCMA",
            "audio/opus",
            "audio/red",
            "video/VP8",
            "video/H264",
            "video/VP9",
            "video/AV1",
            "video/H265",
            "video/rtx",
        ];
        Self {
            empty_timeout: 300,
            departure_timeout: 20,
            max_participants: 0,
            enabled_codecs: codecs
                .iter()
                .map(|m| pb::Codec {
                    mime: (*m).to_string(),
                    fmtp_line: String::new(),
                })
                .collect(),
            max_room_name_length: 256,
            max_metadata_size: 512 * 1024,
            sync_streams: false,
            playout_delay: None,
            presets: BTreeMap::new(),
        }
    }
}

/// Longest playout delay the header extension carries, in milliseconds (12 bits of 10 ms).
pub const MAX_PLAYOUT_DELAY_MS: u32 = 40_950;

/// A playout delay range as LiveKit takes it: a maximum of 0 is 10 s (Chromium's default
/// maximum), a maximum under the minimum is the minimum, and both are cut to
/// [`MAX_PLAYOUT_DELAY_MS`].
pub fn playout_delay_range(min_ms: u32, max_ms: u32) -> (u32, u32) {
    let min = min_ms.min(MAX_PLAYOUT_DELAY_MS);
    let max = if max_ms == 0 { 10_000 } else { max_ms }.clamp(min, MAX_PLAYOUT_DELAY_MS);
    (min, max)
}

/// What a CreateRoom call (or a join that auto-creates) asks for; zero means "default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateRoom {
    pub name: String,
    pub empty_timeout: u32,
    pub departure_timeout: u32,
    pub max_participants: u32,
    pub metadata: String,
    /// Turns [`RoomDefaults::sync_streams`] on for this room (false keeps the default).
    pub sync_streams: bool,
    /// Milliseconds; either above 0 sets the room's playout delay (a maximum of 0 then
    /// means LiveKit's 10 s).
    pub min_playout_delay: u32,
    pub max_playout_delay: u32,
}

impl From<&pb::RoomConfiguration> for CreateRoom {
    /// A token's `roomConfig` as a request to create room `rc.name` (callers name the room).
    fn from(rc: &pb::RoomConfiguration) -> Self {
        Self {
            name: rc.name.clone(),
            empty_timeout: rc.empty_timeout,
            departure_timeout: rc.departure_timeout,
            max_participants: rc.max_participants,
            metadata: rc.metadata.clone(),
            sync_streams: rc.sync_streams,
            min_playout_delay: rc.min_playout_delay,
            max_playout_delay: rc.max_playout_delay,
        }
    }
}

impl From<&pb::CreateRoomRequest> for CreateRoom {
    fn from(r: &pb::CreateRoomRequest) -> Self {
        Self {
            name: r.name.clone(),
            empty_timeout: r.empty_timeout,
            departure_timeout: r.departure_timeout,
            max_participants: r.max_participants,
            metadata: r.metadata.clone(),
            sync_streams: r.sync_streams,
            min_playout_delay: r.min_playout_delay,
            max_playout_delay: r.max_playout_delay,
        }
    }
}

/// One participant as the room sees it.
#[derive(Debug, Clone)]
pub struct Participant {
    /// The record sent to clients and API callers.
    pub info: pb::ParticipantInfo,
    /// `info` in protobuf and the version it was encoded at: every join response of the
    /// room lists this participant, and copies these bytes instead of cloning and encoding
    /// the record again.
    encoded: (u32, Box<[u8]>),
}

impl PartialEq for Participant {
    fn eq(&self, other: &Self) -> bool {
        self.info == other.info
    }
}

impl Participant {
    fn new(info: pb::ParticipantInfo) -> Self {
        let encoded = (info.version, info.encode_to_vec().into_boxed_slice());
        Self { info, encoded }
    }

    /// `info` in protobuf: the bytes encoded when it last changed (a record changed
    /// without a new version, which no update here does, is encoded afresh).
    pub fn encoded(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.encoded.0 == self.info.version {
            std::borrow::Cow::Borrowed(&self.encoded.1)
        } else {
            std::borrow::Cow::Owned(self.info.encode_to_vec())
        }
    }
}

/// One room.
#[derive(Debug, Clone)]
pub struct Room {
    info: pb::Room,
    created_at: Instant,
    first_joined_at: Option<Instant>,
    last_left_at: Option<Instant>,
    participants: BTreeMap<String, Participant>,
    /// What it counts of its participants, kept as they change.
    tally: Tally,
    /// The agent dispatches the room was created with (token `roomConfig` or CreateRoom).
    agents: Vec<pb::RoomAgentDispatch>,
    /// [`RoomDefaults::sync_streams`], or CreateRoom's.
    sync_streams: bool,
    /// [`RoomDefaults::playout_delay`], or CreateRoom's.
    playout_delay: Option<(u32, u32)>,
}

/// A room's counts of its participants, kept as they join, change and leave, so that
/// neither [`Room::info`] nor `max_participants` walks the room.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Participants publishing a track.
    publishers: usize,
    /// Participants that only serve the room ([`is_dependent`]).
    dependents: usize,
}

impl Tally {
    fn add(&mut self, info: &pb::ParticipantInfo) {
        self.publishers += usize::from(!info.tracks.is_empty());
        self.dependents += usize::from(is_dependent(info));
    }

    fn remove(&mut self, info: &pb::ParticipantInfo) {
        self.publishers -= usize::from(!info.tracks.is_empty());
        self.dependents -= usize::from(is_dependent(info));
    }
}

/// Whether a participant only serves the room (an agent or egress, as LiveKit's
/// `IsDependent`): a room whose only participants are such closes like an empty one.
#[allow(deprecated)] // agent and recorder are still set by older servers and clients
pub fn is_dependent(info: &pb::ParticipantInfo) -> bool {
    use pb::participant_info::Kind;
    info.kind == Kind::Agent as i32
        || info.kind == Kind::Egress as i32
        || info
            .permission
            .as_ref()
            .is_some_and(|p| p.agent || p.recorder)
}

impl Room {
    /// The LiveKit record of this room, counts refreshed.
    pub fn info(&self) -> pb::Room {
        let mut info = self.info.clone();
        info.num_participants = self.participants.len() as u32;
        info.num_publishers = self.tally.publishers as u32;
        info
    }

    /// Room id (`RM_…`).
    pub fn sid(&self) -> &str {
        &self.info.sid
    }

    /// Participants by identity.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// The participant with `identity`.
    pub fn participant(&self, identity: &str) -> Result<&Participant, RoomError> {
        self.participants
            .get(identity)
            .ok_or(RoomError::ParticipantNotFound)
    }

    /// Whether a subscriber's tracks of one publisher's stream share one stream id
    /// ([`RoomDefaults::sync_streams`]).
    pub fn sync_streams(&self) -> bool {
        self.sync_streams
    }

    /// The least and most milliseconds subscribers should hold video
    /// ([`RoomDefaults::playout_delay`]).
    pub fn playout_delay(&self) -> Option<(u32, u32)> {
        self.playout_delay
    }

    /// The agent dispatches the room was created with.
    pub fn agents(&self) -> &[pb::RoomAgentDispatch] {
        &self.agents
    }

    /// When this room closes if nobody but agents and egress stays, or `None` while someone
    /// else is in it.
    fn deadline(&self) -> Option<Instant> {
        if self.participants.values().any(|p| !is_dependent(&p.info)) {
            return None;
        }
        match (self.first_joined_at, self.last_left_at) {
            (Some(_), Some(left)) => {
                Some(left + Duration::from_secs(u64::from(self.info.departure_timeout)))
            }
            _ => Some(self.created_at + Duration::from_secs(u64::from(self.info.empty_timeout))),
        }
    }
}

/// Every room of this node, by name.
#[derive(Debug, Default)]
pub struct Rooms {
    defaults: RoomDefaults,
    rooms: BTreeMap<String, Room>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Rooms {
    /// An empty registry applying `defaults`.
    pub fn new(defaults: RoomDefaults) -> Self {
        Self {
            defaults,
            rooms: BTreeMap::new(),
        }
    }

    /// The defaults in force.
    pub fn defaults(&self) -> &RoomDefaults {
        &self.defaults
    }

    fn check_metadata(&self, metadata: &str) -> Result<(), RoomError> {
        let max = self.defaults.max_metadata_size;
        if max > 0 && metadata.len() > max {
            return Err(RoomError::InvalidArgument(format!(
                "metadata is {} bytes, larger than the limit of {max}",
                metadata.len()
            )));
        }
        Ok(())
    }

    /// Creates a room, or updates the non-zero settings of the existing one with that name,
    /// as LiveKit's CreateRoom does. Returns the room record and whether it is new.
    pub fn create(
        &mut self,
        now: Instant,
        req: &CreateRoom,
    ) -> Result<(pb::Room, bool), RoomError> {
        if req.name.is_empty() {
            return Err(RoomError::InvalidArgument(
                "room name cannot be empty".into(),
            ));
        }
        if req.name.len() > self.defaults.max_room_name_length {
            return Err(RoomError::InvalidArgument(format!(
                "room name is longer than {} characters",
                self.defaults.max_room_name_length
            )));
        }
        self.check_metadata(&req.metadata)?;
        let defaults = &self.defaults;
        let mut created = false;
        let room = self.rooms.entry(req.name.clone()).or_insert_with(|| {
            created = true;
            let ms = unix_ms();
            Room {
                info: pb::Room {
                    sid: id::new_id(id::ROOM_PREFIX),
                    name: req.name.clone(),
                    empty_timeout: defaults.empty_timeout,
                    departure_timeout: defaults.departure_timeout,
                    max_participants: defaults.max_participants,
                    creation_time: ms / 1000,
                    creation_time_ms: ms,
                    enabled_codecs: defaults.enabled_codecs.clone(),
                    ..Default::default()
                },
                created_at: now,
                first_joined_at: None,
                last_left_at: None,
                participants: BTreeMap::new(),
                tally: Tally::default(),
                agents: Vec::new(),
                sync_streams: defaults.sync_streams,
                playout_delay: defaults.playout_delay,
            }
        });
        if req.empty_timeout > 0 {
            room.info.empty_timeout = req.empty_timeout;
        }
        if req.departure_timeout > 0 {
            room.info.departure_timeout = req.departure_timeout;
        }
        if req.max_participants > 0 {
            room.info.max_participants = req.max_participants;
        }
        if !req.metadata.is_empty() {
            room.info.metadata = req.metadata.clone();
        }
        room.sync_streams |= req.sync_streams;
        if req.min_playout_delay > 0 || req.max_playout_delay > 0 {
            room.playout_delay = Some(playout_delay_range(
                req.min_playout_delay,
                req.max_playout_delay,
            ));
        }
        Ok((room.info(), created))
    }

    /// Fills what `req` and `agents` leave unset (zero, empty or false) from the room
    /// configuration called `preset`, as LiveKit applies a named room configuration before
    /// creating a room; an empty `preset` changes nothing, an unknown one is refused.
    pub fn apply_preset(
        &self,
        preset: &str,
        req: &mut CreateRoom,
        agents: &mut Vec<pb::RoomAgentDispatch>,
    ) -> Result<(), RoomError> {
        if preset.is_empty() {
            return Ok(());
        }
        let Some(conf) = self.defaults.presets.get(preset) else {
            return Err(RoomError::InvalidArgument(format!(
                "unknown room configuration {preset:?} in create room request"
            )));
        };
        let fill = |v: &mut u32, from: u32| {
            if *v == 0 {
                *v = from;
            }
        };
        fill(&mut req.empty_timeout, conf.empty_timeout);
        fill(&mut req.departure_timeout, conf.departure_timeout);
        fill(&mut req.max_participants, conf.max_participants);
        fill(&mut req.min_playout_delay, conf.min_playout_delay);
        fill(&mut req.max_playout_delay, conf.max_playout_delay);
        req.sync_streams |= conf.sync_streams;
        if req.metadata.is_empty() {
            req.metadata.clone_from(&conf.metadata);
        }
        if agents.is_empty() {
            agents.clone_from(&conf.agents);
        }
        Ok(())
    }

    /// The room called `name`.
    pub fn get(&self, name: &str) -> Result<&Room, RoomError> {
        self.rooms.get(name).ok_or(RoomError::RoomNotFound)
    }

    /// Room records, all of them or those named (unknown names are skipped).
    pub fn list(&self, names: &[String]) -> Vec<pb::Room> {
        if names.is_empty() {
            self.rooms.values().map(Room::info).collect()
        } else {
            names
                .iter()
                .filter_map(|n| self.rooms.get(n))
                .map(Room::info)
                .collect()
        }
    }

    /// Removes the room called `name` and returns it, with its participants.
    pub fn delete(&mut self, name: &str) -> Result<Room, RoomError> {
        self.rooms.remove(name).ok_or(RoomError::RoomNotFound)
    }

    /// Replaces the room's metadata.
    pub fn update_metadata(&mut self, name: &str, metadata: &str) -> Result<pb::Room, RoomError> {
        self.check_metadata(metadata)?;
        let room = self.rooms.get_mut(name).ok_or(RoomError::RoomNotFound)?;
        room.info.metadata = metadata.to_string();
        Ok(room.info())
    }

    /// Adds a participant, enforcing `max_participants`. A participant with the same
    /// identity is replaced and returned, so its session can be told to leave.
    pub fn join(
        &mut self,
        now: Instant,
        name: &str,
        info: pb::ParticipantInfo,
    ) -> Result<Option<Participant>, RoomError> {
        let room = self.rooms.get_mut(name).ok_or(RoomError::RoomNotFound)?;
        let max = room.info.max_participants;
        // As LiveKit: agents and egress neither count toward max_participants nor are held
        // back by it.
        if max > 0
            && !is_dependent(&info)
            && !room.participants.contains_key(&info.identity)
            && room.participants.len() - room.tally.dependents >= max as usize
        {
            return Err(RoomError::RoomFull(max));
        }
        if !is_dependent(&info) {
            room.first_joined_at.get_or_insert(now);
        }
        room.tally.add(&info);
        let replaced = room
            .participants
            .insert(info.identity.clone(), Participant::new(info));
        if let Some(old) = &replaced {
            room.tally.remove(&old.info);
        }
        Ok(replaced)
    }

    /// Removes a participant; the room's departure clock starts when it becomes empty.
    pub fn leave(
        &mut self,
        now: Instant,
        name: &str,
        identity: &str,
    ) -> Result<Participant, RoomError> {
        let room = self.rooms.get_mut(name).ok_or(RoomError::RoomNotFound)?;
        let p = room
            .participants
            .remove(identity)
            .ok_or(RoomError::ParticipantNotFound)?;
        room.tally.remove(&p.info);
        // As LiveKit: the departure clock runs from the last leave of anyone, and counts
        // once only agents and egress remain.
        room.last_left_at = Some(now);
        Ok(p)
    }

    /// Sets the agent dispatches of room `name` (kept at most `cap`).
    pub fn set_agents(
        &mut self,
        name: &str,
        mut agents: Vec<pb::RoomAgentDispatch>,
        cap: usize,
    ) -> Result<(), RoomError> {
        let room = self.rooms.get_mut(name).ok_or(RoomError::RoomNotFound)?;
        agents.truncate(cap);
        room.agents = agents;
        Ok(())
    }

    /// The participant `identity` in room `name`.
    pub fn participant(&self, name: &str, identity: &str) -> Result<&Participant, RoomError> {
        self.get(name)?.participant(identity)
    }

    /// Changes a participant's record with `f` and bumps its version, as clients drop
    /// updates whose version is not newer than the one they hold. Returns `f`'s result and
    /// the new record.
    pub fn update_participant<R>(
        &mut self,
        name: &str,
        identity: &str,
        f: impl FnOnce(&mut pb::ParticipantInfo) -> R,
    ) -> Result<(R, pb::ParticipantInfo), RoomError> {
        let room = self.rooms.get_mut(name).ok_or(RoomError::RoomNotFound)?;
        let p = room
            .participants
            .get_mut(identity)
            .ok_or(RoomError::ParticipantNotFound)?;
        room.tally.remove(&p.info);
        let r = f(&mut p.info);
        room.tally.add(&p.info);
        p.info.version += 1;
        *p = Participant::new(std::mem::take(&mut p.info));
        Ok((r, p.info.clone()))
    }

    /// The earliest instant at which an empty room is due to close.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rooms.values().filter_map(Room::deadline).min()
    }

    /// Closes every empty room whose timeout has passed at `now`; returns them.
    pub fn close_expired(&mut self, now: Instant) -> Vec<Room> {
        let due: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.deadline().is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        due.iter().filter_map(|n| self.rooms.remove(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playout_delay_ranges_are_taken_as_livekit_takes_them() {
        assert_eq!(playout_delay_range(100, 2000), (100, 2000));
        assert_eq!(playout_delay_range(100, 0), (100, 10_000));
        assert_eq!(playout_delay_range(20_000, 0), (20_000, 20_000));
        assert_eq!(playout_delay_range(500, 200), (500, 500));
        assert_eq!(playout_delay_range(90_000, 90_000), (40_950, 40_950));
    }

    fn req(name: &str) -> CreateRoom {
        CreateRoom {
            name: name.into(),
            ..Default::default()
        }
    }

    fn person(identity: &str) -> pb::ParticipantInfo {
        pb::ParticipantInfo {
            identity: identity.into(),
            sid: id::new_id(id::PARTICIPANT_PREFIX),
            ..Default::default()
        }
    }

    /// The room's publisher count follows its participants' tracks: a track added or
    /// removed, a publisher leaving, a publisher replaced by a join with its identity.
    #[test]
    fn the_publisher_count_follows_the_tracks() {
        let now = Instant::now();
        let mut rooms = Rooms::new(RoomDefaults::default());
        rooms.create(now, &req("a")).unwrap();
        let publishers = |rooms: &Rooms| rooms.get("a").unwrap().info().num_publishers;
        for who in ["p", "q", "r"] {
            rooms.join(now, "a", person(who)).unwrap();
        }
        let track = |t: &mut pb::ParticipantInfo| {
            t.tracks.push(pb::TrackInfo {
                sid: id::new_id("TR_"),
                ..Default::default()
            })
        };
        rooms.update_participant("a", "p", track).unwrap();
        rooms.update_participant("a", "p", track).unwrap();
        rooms.update_participant("a", "q", track).unwrap();
        rooms.update_participant("a", "r", track).unwrap();
        assert_eq!(publishers(&rooms), 3);
        rooms
            .update_participant("a", "p", |t| t.tracks.truncate(1))
            .unwrap();
        assert_eq!(publishers(&rooms), 3);
        rooms
            .update_participant("a", "p", |t| t.tracks.clear())
            .unwrap();
        assert_eq!(publishers(&rooms), 2);
        rooms.leave(now, "a", "q").unwrap();
        assert_eq!(publishers(&rooms), 1);
        rooms.join(now, "a", person("r")).unwrap();
        assert_eq!(publishers(&rooms), 0);
        assert_eq!(rooms.get("a").unwrap().info().num_participants, 2);
    }

    #[test]
    fn create_applies_defaults_and_updates_existing() {
        let now = Instant::now();
        let mut rooms = Rooms::new(RoomDefaults::default());
        let (r, created) = rooms.create(now, &req("a")).unwrap();
        assert!(created && r.sid.starts_with("RM_"));
        assert_eq!((r.empty_timeout, r.departure_timeout), (300, 20));
        assert!(r.enabled_codecs.iter().any(|c| c.mime == "video/VP8"));
        let again = CreateRoom {
            name: "a".into(),
            max_participants: 3,
            metadata: "m".into(),
            ..Default::default()
        };
        let (r2, created) = rooms.create(now, &again).unwrap();
        assert!(!created);
        assert_eq!(r2.sid, r.sid);
        assert_eq!((r2.max_participants, r2.metadata.as_str()), (3, "m"));
    }

    #[test]
    fn bad_names_and_metadata() {
        let mut rooms = Rooms::new(RoomDefaults {
            max_metadata_size: 4,
            ..Default::default()
        });
        let now = Instant::now();
        assert!(matches!(
            rooms.create(now, &req("")),
            Err(RoomError::InvalidArgument(_))
        ));
        let long = "x".repeat(257);
        assert!(matches!(
            rooms.create(now, &req(&long)),
            Err(RoomError::InvalidArgument(_))
        ));
        rooms.create(now, &req("a")).unwrap();
        assert!(matches!(
            rooms.update_metadata("a", "12345"),
            Err(RoomError::InvalidArgument(_))
        ));
        assert_eq!(
            rooms.update_metadata("b", "1"),
            Err(RoomError::RoomNotFound)
        );
    }

    #[test]
    fn empty_room_closes_after_empty_timeout() {
        let t0 = Instant::now();
        let mut rooms = Rooms::new(RoomDefaults::default());
        rooms
            .create(
                t0,
                &CreateRoom {
                    name: "a".into(),
                    empty_timeout: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(rooms.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(rooms.close_expired(t0 + Duration::from_secs(9)).is_empty());
        let closed = rooms.close_expired(t0 + Duration::from_secs(10));
        assert_eq!(closed.len(), 1);
        assert!(rooms.list(&[]).is_empty());
    }

    #[test]
    fn occupied_room_stays_then_departure_timeout() {
        let t0 = Instant::now();
        let mut rooms = Rooms::new(RoomDefaults::default());
        rooms
            .create(
                t0,
                &CreateRoom {
                    name: "a".into(),
                    empty_timeout: 10,
                    departure_timeout: 5,
                    ..Default::default()
                },
            )
            .unwrap();
        rooms.join(t0, "a", person("p")).unwrap();
        assert_eq!(rooms.next_deadline(), None);
        assert!(
            rooms
                .close_expired(t0 + Duration::from_secs(100))
                .is_empty()
        );
        let t1 = t0 + Duration::from_secs(100);
        rooms.leave(t1, "a", "p").unwrap();
        assert_eq!(rooms.next_deadline(), Some(t1 + Duration::from_secs(5)));
        assert_eq!(rooms.close_expired(t1 + Duration::from_secs(5)).len(), 1);
    }

    /// Rooms with one room "a" of at most `max` participants.
    fn capped(now: Instant, max: u32) -> Rooms {
        let mut rooms = Rooms::new(RoomDefaults::default());
        rooms
            .create(
                now,
                &CreateRoom {
                    name: "a".into(),
                    max_participants: max,
                    ..Default::default()
                },
            )
            .unwrap();
        rooms
    }

    /// Agents and egress neither count toward `max_participants` nor are held back by it,
    /// as their kind and permissions change, arrive and leave.
    #[test]
    #[allow(deprecated)] // `recorder` is still set by older servers and clients
    fn only_participants_that_are_not_agents_or_egress_fill_a_room() {
        use pb::participant_info::Kind;
        let now = Instant::now();
        let mut rooms = capped(now, 2);
        let of_kind = |identity: &str, kind: Kind| pb::ParticipantInfo {
            kind: kind as i32,
            ..person(identity)
        };
        for p in [
            of_kind("agent", Kind::Agent),
            of_kind("egress", Kind::Egress),
            person("p"),
            person("q"),
            of_kind("agent2", Kind::Agent),
        ] {
            assert_eq!(rooms.join(now, "a", p).map(|_| ()), Ok(()));
        }
        assert_eq!(
            rooms.join(now, "a", person("r")),
            Err(RoomError::RoomFull(2))
        );
        rooms.leave(now, "a", "agent").unwrap();
        assert_eq!(
            rooms.join(now, "a", person("r")),
            Err(RoomError::RoomFull(2))
        );
        // q becomes a recorder: it serves the room and no longer fills it.
        rooms
            .update_participant("a", "q", |i| {
                i.permission = Some(pb::ParticipantPermission {
                    recorder: true,
                    ..Default::default()
                })
            })
            .unwrap();
        assert_eq!(rooms.join(now, "a", person("r")).map(|_| ()), Ok(()));
        assert_eq!(
            rooms.join(now, "a", person("s")),
            Err(RoomError::RoomFull(2))
        );
        // An agent replaced by a participant of its identity fills a place.
        rooms.leave(now, "a", "r").unwrap();
        assert_eq!(rooms.join(now, "a", person("agent2")).map(|_| ()), Ok(()));
        assert_eq!(
            rooms.join(now, "a", person("s")),
            Err(RoomError::RoomFull(2))
        );
        rooms.leave(now, "a", "p").unwrap();
        assert_eq!(rooms.join(now, "a", person("s")).map(|_| ()), Ok(()));
    }

    #[test]
    fn max_participants_and_duplicate_identity() {
        let now = Instant::now();
        let mut rooms = capped(now, 1);
        assert_eq!(rooms.join(now, "a", person("p")).unwrap(), None);
        assert_eq!(
            rooms.join(now, "a", person("q")),
            Err(RoomError::RoomFull(1))
        );
        let old = rooms.join(now, "a", person("p")).unwrap();
        assert!(old.is_some(), "same identity replaces the old session");
        assert_eq!(rooms.get("a").unwrap().info().num_participants, 1);
        assert_eq!(
            rooms.participant("a", "zz"),
            Err(RoomError::ParticipantNotFound)
        );
        assert_eq!(rooms.participant("b", "p"), Err(RoomError::RoomNotFound));
    }
}
