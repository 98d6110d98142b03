//! The participant and room machine: every room and participant of this node, owned in one
//! place, sans-IO.
//!
//! Inputs, each with `now`: a join ([`Machine::handle_join`]), a client's signal request
//! ([`Machine::handle_signal`]), a lost signal connection ([`Machine::handle_signal_lost`]), a
//! media event ([`Machine::handle_media_event`]), an API call (the `api_*` methods, Twirp's
//! RoomService) and [`Machine::handle_timeout`]. Outputs are polled with
//! [`Machine::poll_output`]: signal responses addressed to participants, connection closes,
//! commands to the media core and [`RoomEvent`]s for webhooks and metrics.
//! [`Machine::poll_timeout`] is the earliest deadline of its rooms and participants (ping
//! timeouts, departure grace, room closing, delayed answers).
//!
//! The machine never reads a clock, spawns a task, takes a lock or touches a socket: its
//! owner (the signalling pump) feeds it and delivers what it emits. Randomness (ICE
//! credentials, SSRCs, ids) comes from the thread's generator.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lkr_proto::token::Claims;
use lkr_proto::{id, pb};
use lkr_sfu::{Command, MediaKind, PeerId, TrackId};

use crate::negotiation::TrackCodec;
use crate::{CreateRoom, RoomError, Rooms};

mod agents;
mod api;
mod data_tracks;
mod egress;
mod media;
mod node_view;
mod participant;
mod refresh;
mod room_state;
mod rpc;
#[cfg(test)]
mod tests;
mod tracks;
mod whep;

pub use agents::MAX_ROOM_AGENTS;
use participant::{Ctx, Effects, Participant};
pub use refresh::{REFRESHED_TOKEN_TTL, TOKEN_REFRESH_INTERVAL, TokenSigner, refreshed_token};

pub use data_tracks::{MAX_DATA_SUBSCRIPTIONS, MAX_DATA_TRACKS};
pub use egress::{ENDED_EGRESS_KEPT, EgressEnd, EgressTrack, StartEgress};
pub use node_view::PublishedTrack;
pub use participant::{
    MAX_DATA_DESTINATIONS, MAX_SUBSCRIPTION_PARTICIPANTS, MAX_SUBSCRIPTION_TRACKS, wanted_quality,
};
pub use rpc::{
    MAX_PENDING_RPCS, MAX_RPC_PAYLOAD, RPC_ACK_WITHIN, RPC_DEFAULT_TIMEOUT, RPC_MAX_TIMEOUT,
    RpcFailure,
};
pub use whep::PlayOffer;

/// The version this server reports: LiveKit clients gate features (RPC needs ≥ 1.8) on it.
pub const SERVER_VERSION: &str = "1.9.0";
/// The signalling protocol version this server speaks.
pub const SERVER_PROTOCOL: i32 = 16;
/// Seconds between client pings.
pub const PING_INTERVAL: i32 = 5;
/// Seconds of silence after which a client is dropped.
pub const PING_TIMEOUT: i32 = 15;

/// How long an answer to update_metadata waits (see `Participant::update_metadata`).
const ANSWER_DELAY: Duration = Duration::from_millis(30);

/// Answers a participant may have waiting for [`ANSWER_DELAY`] at once; past it they are
/// sent without the delay.
const MAX_DEFERRED: usize = 32;

/// The most entries the timer queue keeps for `participants` participants before it is
/// rebuilt from their deadlines (one live entry each, as many stale ones, and some slack).
fn timer_cap(participants: usize) -> usize {
    2 * participants + 64
}
/// How long an update about a participant that has never published waits for others of its
/// room, at least: in a room of up to 100 members.
pub const UPDATE_BATCH: Duration = Duration::from_millis(200);
/// How long such an update waits at most: LiveKit's interval for its subscribers' updates.
pub const UPDATE_BATCH_MAX: Duration = Duration::from_secs(3);
/// A batch goes to every member of its room, so a larger room waits longer, this much per
/// member: a room's batches stay near 500 messages a second however fast participants come
/// and go (in a room of 1000, a non-publisher's join is told after up to 2 s).
const UPDATE_BATCH_PER_MEMBER: Duration = Duration::from_millis(2);

/// How long a room of `members` participants holds back updates about non-publishers.
pub fn update_batch(members: usize) -> Duration {
    UPDATE_BATCH_PER_MEMBER
        .saturating_mul(u32::try_from(members).unwrap_or(u32::MAX))
        .clamp(UPDATE_BATCH, UPDATE_BATCH_MAX)
}

/// A room's held-back participant updates.
struct Batch {
    /// When they go out.
    due: Instant,
    /// Per participant sid: its latest record and who is not to be sent it.
    updates: BTreeMap<String, (pb::ParticipantInfo, Option<String>)>,
}

type Resp = pb::signal_response::Message;

/// Settings of the machine.
#[derive(Debug, Clone)]
pub struct Config {
    pub auto_create: bool,
    /// Address advertised in ICE candidates.
    pub node_ip: IpAddr,
    pub udp_port: u16,
    /// The ICE-TCP port, advertised as a passive TCP host candidate after the UDP one.
    pub tcp_port: Option<u16>,
    /// The embedded TURN server, handed to every participant in `ice_servers`.
    pub turn: Option<TurnIce>,
    pub region: String,
    pub node_id: String,
    /// This server's DTLS fingerprint, `sha-256 AB:…` split into algorithm and value.
    pub fingerprint: (String, String),
    /// Largest participant metadata, in bytes (0: no limit).
    pub max_metadata_size: usize,
    /// Largest total size of a participant's attributes, in bytes (0: no limit).
    pub max_attributes_size: usize,
    /// Whether `MutePublishedTrack` may unmute a track (LiveKit's
    /// `room.enable_remote_unmute`, off by default): a server-side unmute turns on someone's
    /// microphone or camera without them.
    pub enable_remote_unmute: bool,
    /// ICE servers of the configuration's own (`rtc.turn_servers`, `rtc.stun_servers`),
    /// handed to every participant after the embedded TURN server's.
    pub ice_servers: Vec<pb::IceServer>,
    /// What one participant may hold.
    pub limits: Limits,
}

/// What one participant may make the server hold (0: no limit where noted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Tracks announced with add_track and not yet bound to an offer section.
    pub max_pending_tracks: usize,
    /// Tracks published at once (LiveKit's `limit.num_tracks`; 0: no limit).
    pub num_tracks: usize,
    /// Simulcast layers answered for one published section, lowest quality first (at most
    /// [`crate::negotiation::MAX_SIMULCAST_LAYERS`]).
    pub max_rids_per_track: usize,
    /// Longest track name and client track id, in bytes.
    pub max_track_name_length: usize,
    /// Longest participant name, in bytes (LiveKit's `limit.max_participant_name_length`).
    pub max_participant_name_length: usize,
    /// Longest identity, in bytes (LiveKit's `limit.max_participant_identity_length`).
    pub max_participant_identity_length: usize,
    /// Audio tracks received at once (LiveKit's `limit.subscription_limit_audio`; 0: no limit).
    pub subscription_limit_audio: usize,
    /// Video tracks received at once (LiveKit's `limit.subscription_limit_video`; 0: no limit).
    pub subscription_limit_video: usize,
    /// Sections of one peer connection: tracks received (and published, with one PC) plus
    /// data. The most a description may hold ([`lkr_sdp::Limit::MediaSections`]); past it a
    /// subscription is refused, since the client's answer or offer would be.
    pub max_media_sections: usize,
    /// Whether participants may publish data tracks (LiveKit's `enable_data_tracks`).
    pub data_tracks: bool,
    /// Longest custom encoding a data track may name (LiveKit's
    /// `limit.max_data_track_custom_encoding_length`; 0: the crate's own cap).
    pub max_data_track_custom_encoding: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pending_tracks: 16,
            num_tracks: 0,
            max_rids_per_track: crate::negotiation::MAX_SIMULCAST_LAYERS,
            max_track_name_length: 256,
            max_participant_name_length: 256,
            max_participant_identity_length: 256,
            subscription_limit_audio: 0,
            subscription_limit_video: 0,
            max_media_sections: lkr_sdp::Limit::MediaSections.max(),
            data_tracks: true,
            max_data_track_custom_encoding: 32,
        }
    }
}

impl Config {
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
        self.check_attributes_size(size)
    }

    /// Checks the attributes a participant would hold once `update` is merged into
    /// `current` (as LiveKit merges them: an empty value deletes its key) against the
    /// limit, which covers all of a participant's attributes, not one request's.
    pub fn check_merged_attributes(
        &self,
        current: &HashMap<String, String>,
        update: &HashMap<String, String>,
    ) -> Result<(), String> {
        let kept: usize = current
            .iter()
            .filter(|(k, _)| !update.contains_key(*k))
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let added: usize = update
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        self.check_attributes_size(kept + added)
    }

    fn check_attributes_size(&self, size: usize) -> Result<(), String> {
        if self.max_attributes_size > 0 && size > self.max_attributes_size {
            return Err(format!(
                "attributes are {size} bytes, larger than the limit of {}",
                self.max_attributes_size
            ));
        }
        Ok(())
    }

    /// Checks a participant name against `limit.max_participant_name_length`.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        let max = self.limits.max_participant_name_length;
        if max > 0 && name.len() > max {
            return Err(format!("participant name is longer than {max} bytes"));
        }
        Ok(())
    }

    fn candidates(&self) -> Vec<String> {
        let mut c = vec![format!(
            "candidate:1 1 udp 2130706431 {} {} typ host generation 0",
            self.node_ip, self.udp_port
        )];
        if let Some(port) = self.tcp_port {
            c.push(tcp_candidate(self.node_ip, port));
        }
        c
    }
}

/// The embedded TURN server as participants are told of it.
#[derive(Debug, Clone)]
pub struct TurnIce {
    /// `turn:` and `turns:` URLs, one entry of `ice_servers`.
    pub urls: Vec<String>,
    /// The keys credentials are derived from.
    pub credentials: lkr_turn::Credentials,
}

impl TurnIce {
    /// Whether it takes TLS (a `turns:` URL).
    fn has_tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("turns:"))
    }

    /// The `ice_servers` of participant `psid` at `unix` (seconds): time-limited credentials.
    fn ice_servers(&self, unix: u64, psid: &str) -> Vec<pb::IceServer> {
        self.credentials
            .issue(psid, unix, lkr_turn::CREDENTIAL_TTL)
            .map(|(username, credential)| pb::IceServer {
                urls: self.urls.clone(),
                username,
                credential,
            })
            .into_iter()
            .collect()
    }
}

/// The passive ICE-TCP host candidate (RFC 6544 §4.5). Its priority (RFC 6544 §4.2: type
/// preference 126, direction preference 4 for passive, other preference 8191, component 1)
/// is below the UDP host candidate's, so a client that can use UDP does.
fn tcp_candidate(ip: IpAddr, port: u16) -> String {
    const PRIORITY: u32 = (126 << 24) + (((4 << 13) + 8191) << 8) + 255;
    format!("candidate:2 1 tcp {PRIORITY} {ip} {port} typ host tcptype passive generation 0")
}

/// A join, after its token and parameters were checked.
#[derive(Debug, Clone)]
pub struct Join {
    pub room: String,
    pub identity: String,
    pub claims: Claims,
    /// `/rtc/v1` (or a `join_request` on `/rtc`): one peer connection.
    pub single_pc: bool,
    pub auto_subscribe: bool,
    /// New data tracks in the room are subscribed for it (LiveKit's
    /// `auto_subscribe_data_track`).
    pub auto_subscribe_data: bool,
    pub client_protocol: i32,
    /// Single PC: the offer carried by the join request.
    pub publisher_offer: Option<pb::SessionDescription>,
    /// From the join request; applied when the token allows updating own metadata.
    pub metadata: Option<String>,
    pub attributes: HashMap<String, String>,
    /// A resume (`reconnect=1`): the sid of the participant this connection takes over.
    pub resume: Option<String>,
    /// The client takes a downstream track's stream id as its publisher's sid and stream
    /// name (LiveKit protocol 10 and later, but not Firefox), so `room.sync_streams` applies
    /// to it.
    pub sync_stream_id: bool,
}

impl Join {
    /// A fresh join of `identity` to `room` as a current client makes it: two peer
    /// connections, auto-subscribe, protocol 16, no offer, metadata or attributes.
    pub fn new(room: &str, identity: &str, claims: Claims) -> Self {
        Self {
            room: room.into(),
            identity: identity.into(),
            claims,
            single_pc: false,
            auto_subscribe: true,
            auto_subscribe_data: true,
            client_protocol: 16,
            publisher_offer: None,
            metadata: None,
            attributes: HashMap::new(),
            resume: None,
            sync_stream_id: true,
        }
    }
}

/// What happened in a room, for webhooks, metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    RoomStarted {
        room: pb::Room,
    },
    RoomFinished {
        room: pb::Room,
    },
    ParticipantJoined {
        room: pb::Room,
        participant: pb::ParticipantInfo,
    },
    ParticipantActive {
        room: pb::Room,
        participant: pb::ParticipantInfo,
    },
    /// It left without its media ever connecting (and not by its own leave).
    ParticipantConnectionAborted {
        room: pb::Room,
        participant: pb::ParticipantInfo,
    },
    ParticipantLeft {
        room: pb::Room,
        participant: pb::ParticipantInfo,
        reason: pb::DisconnectReason,
        /// How long it was in the room.
        duration: Duration,
    },
    TrackPublished {
        room: pb::Room,
        participant: pb::ParticipantInfo,
        track: pb::TrackInfo,
    },
    TrackUnpublished {
        room: pb::Room,
        participant: pb::ParticipantInfo,
        track: pb::TrackInfo,
    },
    /// A track egress was started (EGRESS_STARTING).
    EgressStarted {
        info: Box<pb::EgressInfo>,
    },
    /// A track egress changed status (ACTIVE, ENDING).
    EgressUpdated {
        info: Box<pb::EgressInfo>,
    },
    /// A track egress ended (COMPLETE, FAILED).
    EgressEnded {
        info: Box<pb::EgressInfo>,
    },
}

/// What the machine asks its owner to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this signal response to the participant. A message that goes to several
    /// participants is one allocation shared by all their outputs (and they come one after
    /// another), so that a consumer can encode it once.
    Signal { to: Arc<str>, message: Arc<Resp> },
    /// Send `leave` (when given) to the participant and close its signal connection; nothing
    /// more goes to it.
    Close {
        to: String,
        leave: Option<pb::LeaveRequest>,
    },
    /// Send this join response to the participant (a signal response built from records
    /// the room keeps encoded).
    Join { to: String, reply: JoinReply },
    /// A command for the media core.
    Media(Command),
    /// Something happened in a room.
    Event(Box<RoomEvent>),
    /// A call of [`Machine::api_perform_rpc`] ended: the participant's payload, or why not.
    RpcDone {
        id: String,
        result: Result<String, RpcFailure>,
    },
}

/// A join response in protobuf, as the `SignalResponse` that carries it: a room of N members
/// lists N records in each join response, and each record is encoded once per change
/// ([`crate::rooms::Participant::encoded`]) and copied from there rather than cloned and
/// encoded for every join.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinReply(bytes::Bytes);

impl JoinReply {
    /// `SignalResponse.join`'s field number.
    const JOIN_FIELD: u32 = 1;
    /// `JoinResponse.other_participants`'s field number.
    const OTHERS_FIELD: u32 = 3;

    /// `response` followed by `others`, each an encoded `ParticipantInfo`, as one more
    /// `other_participants` entry: protobuf reads a repeated field's entries wherever they
    /// stand, so entries already in `response.other_participants` come first and these after.
    pub fn new<B: AsRef<[u8]>>(response: &pb::JoinResponse, others: &[B]) -> Self {
        use prost::Message as _;
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
        let entry = |b: &B| {
            let n = b.as_ref().len();
            key_len(Self::OTHERS_FIELD) + encoded_len_varint(n as u64) + n
        };
        let inner = response.encoded_len() + others.iter().map(entry).sum::<usize>();
        let mut out = Vec::with_capacity(
            key_len(Self::JOIN_FIELD) + encoded_len_varint(inner as u64) + inner,
        );
        encode_key(Self::JOIN_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint(inner as u64, &mut out);
        response.encode_raw(&mut out);
        for b in others {
            let b = b.as_ref();
            encode_key(Self::OTHERS_FIELD, WireType::LengthDelimited, &mut out);
            encode_varint(b.len() as u64, &mut out);
            out.extend_from_slice(b);
        }
        Self(bytes::Bytes::from(out))
    }

    /// The protobuf of the `SignalResponse` carrying the response.
    pub fn bytes(&self) -> bytes::Bytes {
        self.0.clone()
    }

    /// The response, decoded (for JSON clients and tests).
    pub fn decoded(&self) -> pb::JoinResponse {
        use prost::Message as _;
        match pb::SignalResponse::decode(self.0.as_ref()).map(|r| r.message) {
            Ok(Some(Resp::Join(j))) => j,
            other => {
                debug_assert!(false, "a JoinReply that does not read back: {other:?}");
                pb::JoinResponse::default()
            }
        }
    }
}

/// A published track as subscribers are offered it.
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
    /// The publisher's stream the track belongs to (`TrackInfo.stream`: `camera`, `screen`
    /// or the client's own), for synced stream ids.
    pub stream: String,
    /// Bandwidth allocation priority for subscribers: 2 for a screen share, 0 otherwise.
    pub priority: u8,
}

/// What the machine holds, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rooms: usize,
    pub participants: usize,
    pub published_audio: usize,
    pub published_video: usize,
    pub subscribed_audio: usize,
    pub subscribed_video: usize,
    /// Joins admitted since start.
    pub joins_total: u64,
    /// Join latency (join to media connected), in ms: counts per bucket of
    /// [`JOIN_LATENCY_BUCKETS_MS`] (cumulative, as Prometheus wants), their sum and count.
    pub join_latency_buckets: [u64; JOIN_LATENCY_BUCKETS_MS.len()],
    pub join_latency_sum_ms: u64,
    pub join_latency_count: u64,
}

/// Upper bounds of the join latency histogram, in ms.
pub const JOIN_LATENCY_BUCKETS_MS: [u64; 8] = [50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// Outputs in the order they were produced.
#[derive(Debug, Default)]
pub(crate) struct Outbox(VecDeque<Output>);

impl Outbox {
    fn signal(&mut self, to: &str, message: Resp) {
        self.shared(to.into(), Arc::new(message));
    }

    /// Sends one message that several participants receive (`to` shared with the
    /// participant's own, see [`Participant::sid`], so that a message to a room of N costs no
    /// allocation per member).
    fn shared(&mut self, to: Arc<str>, message: Arc<Resp>) {
        self.0.push_back(Output::Signal { to, message });
    }

    fn join(&mut self, to: &str, reply: JoinReply) {
        self.0.push_back(Output::Join {
            to: to.to_string(),
            reply,
        });
    }

    fn media(&mut self, cmd: Command) {
        self.0.push_back(Output::Media(cmd));
    }

    fn event(&mut self, ev: RoomEvent) {
        self.0.push_back(Output::Event(Box::new(ev)));
    }

    fn close(&mut self, to: &str, leave: Option<pb::LeaveRequest>) {
        self.0.push_back(Output::Close {
            to: to.to_string(),
            leave,
        });
    }
}

/// Wall-clock time derived from `now`, so that the machine never reads a clock.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    base: Instant,
    unix_ms: i64,
}

impl WallClock {
    fn ms(&self, now: Instant) -> i64 {
        self.unix_ms + now.saturating_duration_since(self.base).as_millis() as i64
    }
}

/// A published track of a room.
struct TrackEntry {
    room: String,
    publisher_sid: String,
    offer: TrackOffer,
    subscribers: std::collections::BTreeSet<String>,
    /// Dynacast: the quality each subscriber wants (absent: paused).
    wanted: BTreeMap<String, i32>,
    /// The highest wanted quality last told to the publisher.
    told: Option<i32>,
    /// Participants that asked for it but may not have it (the publisher's subscription
    /// permission): they get it if the permission comes to allow them.
    denied: std::collections::BTreeSet<String>,
}

/// Why a participant goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// It sent `leave`.
    Client,
    /// Its signal connection dropped and did not come back within the departure timeout.
    Gone,
    /// The server sends it away with this leave.
    Server(pb::DisconnectReason, pb::leave_request::Action),
}

/// The participants of `room`, from the per-room index, in the order they joined.
fn members_of<'a>(
    members: &'a HashMap<String, Vec<String>>,
    participants: &'a HashMap<String, Participant>,
    room: &str,
) -> impl Iterator<Item = (&'a String, &'a Participant)> + 'a {
    members
        .get(room)
        .into_iter()
        .flatten()
        .filter_map(|sid| participants.get_key_value(sid))
}

/// The participant and room machine of one node.
pub struct Machine {
    config: Config,
    rooms: Rooms,
    participants: HashMap<String, Participant>,
    /// Per room, its participants' sids in the order they joined: what a broadcast walks,
    /// so that its cost is the room's size, not the node's.
    members: HashMap<String, Vec<String>>,
    peer_owner: HashMap<PeerId, String>,
    tracks: tracks::Tracks,
    /// Per room, the speaking participants last announced: sid → level.
    speakers: HashMap<String, BTreeMap<String, f32>>,
    /// Per participant, the connection quality last announced: (level, score).
    quality: HashMap<String, (i32, f32)>,
    /// Per publisher that restricted who may subscribe to its tracks, its
    /// `SubscriptionPermission` (absent: everyone may).
    permissions: HashMap<String, pb::SubscriptionPermission>,
    /// Participant updates held back (see [`update_batch`]): per room, when they go out and,
    /// per participant sid, its latest record and who is not to be sent it.
    batched: HashMap<String, Batch>,
    /// Participants' deadlines (delayed answers, departure grace, token refreshes), earliest
    /// first: an entry is pushed whenever a participant's deadline changes, so that finding
    /// the next one and what is due costs the entries, not a walk over every participant. An
    /// entry whose deadline was since withdrawn (a link back before its grace ran out) only
    /// wakes the machine once for nothing.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// The time of the latest input (for deadlines set by calls that carry none).
    last_now: Instant,
    out: Outbox,
    next_id: u64,
    clock: WallClock,
    /// Shutting down: no new joins or rooms.
    draining: bool,
    joins_total: u64,
    join_latency: ([u64; JOIN_LATENCY_BUCKETS_MS.len()], u64, u64),
    egresses: egress::Egresses,
    /// Signs the tokens participants are handed ([`refresh`]); none are without it.
    signer: Option<TokenSigner>,
    /// (room, identity) whose next join is offered only ICE-TCP or the TURN/TLS relay (a
    /// simulated `force-tcp` / `force-tls`), until when; at most [`MAX_FORCED_PATHS`].
    forced_paths: HashMap<(String, String), (Instant, ForcedPath)>,
    /// The server's RPC calls to participants waiting for their answer.
    rpcs: rpc::Rpcs,
    /// Every data track on the node: sid → its publisher's sid.
    data_track_owner: HashMap<String, String>,
}

/// Identities remembered at once for a simulated `force-tcp` / `force-tls`; past it the one
/// due to expire first is forgotten.
pub const MAX_FORCED_PATHS: usize = 1024;
/// How long a simulated `force-tcp` / `force-tls` waits for its participant's next join.
const FORCED_PATH_FOR: Duration = Duration::from_secs(300);

/// The one way to the server a participant's next join is given (LiveKit's
/// `switch_candidate_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedPath {
    /// Only the ICE-TCP candidate.
    Tcp,
    /// Only the TURN server over TLS: `force_relay` and its `turns:` URLs alone.
    Tls,
}

impl Machine {
    /// A machine with the rooms of `rooms` and no participants; `now` anchors its wall clock
    /// to the system's.
    pub fn new(config: Config, rooms: Rooms, now: Instant) -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self::with_wall_clock(config, rooms, now, unix_ms)
    }

    /// As [`Machine::new`], with the wall clock reading `unix_ms` at `now` (for tests).
    pub fn with_wall_clock(config: Config, rooms: Rooms, now: Instant, unix_ms: i64) -> Self {
        Self {
            config,
            rooms,
            participants: HashMap::new(),
            members: HashMap::new(),
            peer_owner: HashMap::new(),
            tracks: tracks::Tracks::default(),
            speakers: HashMap::new(),
            permissions: HashMap::new(),
            quality: HashMap::new(),
            batched: HashMap::new(),
            timers: BinaryHeap::new(),
            last_now: now,
            out: Outbox::default(),
            next_id: 1,
            clock: WallClock { base: now, unix_ms },
            draining: false,
            joins_total: 0,
            join_latency: ([0; JOIN_LATENCY_BUCKETS_MS.len()], 0, 0),
            egresses: egress::Egresses::default(),
            signer: None,
            forced_paths: HashMap::new(),
            rpcs: rpc::Rpcs::default(),
            data_track_owner: HashMap::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The room model (read-only).
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// Number of participants with a place in a room (connected or within their grace).
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// A snapshot for metrics.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            rooms: self.rooms.list(&[]).len(),
            participants: self.participants.len(),
            joins_total: self.joins_total,
            join_latency_buckets: self.join_latency.0,
            join_latency_sum_ms: self.join_latency.1,
            join_latency_count: self.join_latency.2,
            ..Default::default()
        };
        for t in self.tracks.values() {
            let (published, subscribed) = match t.offer.kind {
                MediaKind::Audio => (&mut s.published_audio, &mut s.subscribed_audio),
                MediaKind::Video => (&mut s.published_video, &mut s.subscribed_video),
            };
            *published += 1;
            *subscribed += t.subscribers.len();
        }
        s
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.0.pop_front()
    }

    /// The earliest instant at which [`Machine::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let people = self.timers.peek().map(|Reverse((t, _))| *t);
        people
            .into_iter()
            .chain(self.rooms.next_deadline())
            .chain(self.batched.values().map(|b| b.due))
            .chain(self.rpcs.next_deadline())
            .min()
    }

    /// Runs what is due at `now`: delayed answers, token refreshes, departure grace, room
    /// closing. (A connection silent past the ping timeout is ended by its session and
    /// arrives as lost.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.flush_due_updates(now);
        self.expire_rpcs(now);
        let mut due: Vec<String> = Vec::new();
        while self.timers.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, psid))) = self.timers.pop() {
                due.push(psid);
            }
        }
        due.sort_unstable();
        due.dedup();
        let mut ended: Vec<(String, Leaving)> = Vec::new();
        let mut refresh: Vec<String> = Vec::new();
        let mut speaking_ended: Vec<String> = Vec::new();
        for psid in due {
            let Some(p) = self.participants.get_mut(&psid) else {
                continue;
            };
            p.flush_deferred(now, &mut self.out);
            if let Some(why) = p.expired(now) {
                ended.push((psid, why));
            } else {
                p.deadline_fired();
                if p.take_speaking_end(now) {
                    speaking_ended.push(psid.clone());
                }
                if p.refresh_due(now) {
                    refresh.push(psid);
                } else {
                    self.watch(&psid);
                }
            }
        }
        for (psid, why) in ended {
            self.remove(now, &psid, true, reason_of(why));
        }
        for psid in refresh {
            self.refresh_token(now, &psid);
        }
        for psid in speaking_ended {
            self.tell_simulated_speaking(&psid, false);
        }
        for room in self.rooms.close_expired(now) {
            // Only agents (or egress) may still be in it: they are sent away as LiveKit
            // does when it closes a room.
            let name = room.info().name;
            let left: Vec<String> = self.members.get(&name).cloned().unwrap_or_default();
            for psid in left {
                self.send_away(
                    now,
                    &psid,
                    pb::DisconnectReason::RoomClosed,
                    pb::leave_request::Action::Disconnect,
                    false,
                );
            }
            self.speakers.remove(&name);
            tracing::info!(room = %name, sid = %room.sid(), "closing empty room");
            self.out
                .event(RoomEvent::RoomFinished { room: room.info() });
        }
    }

    /// Shuts the node down: no new joins or rooms; every participant is sent away with
    /// SERVER_SHUTDOWN and every room finishes.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.draining = true;
        let everyone: Vec<String> = self.participants.keys().cloned().collect();
        for psid in everyone {
            self.send_away(
                now,
                &psid,
                pb::DisconnectReason::ServerShutdown,
                pb::leave_request::Action::Disconnect,
                true,
            );
        }
        let names: Vec<String> = self.rooms.list(&[]).into_iter().map(|r| r.name).collect();
        for name in names {
            if let Ok(room) = self.rooms.delete(&name) {
                tracing::info!(room = %name, sid = %room.sid(), "room closed by shutdown");
                self.out
                    .event(RoomEvent::RoomFinished { room: room.info() });
            }
        }
        self.speakers.clear();
    }

    /// Whether the node is shutting down.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Admits a participant: creates the room when allowed, replaces a participant with the
    /// same identity, tells the others, and queues the JoinResponse (and, per signalling
    /// mode, the first answer or subscriber offer). Returns the participant's sid.
    pub fn handle_join(&mut self, now: Instant, j: Join) -> Result<String, RoomError> {
        self.last_now = now;
        if self.draining {
            return Err(RoomError::ShuttingDown);
        }
        if j.resume.is_some() {
            return self.handle_resume(now, j);
        }
        let grant = j.claims.video();
        let permission = permission_of(&grant);
        if self.rooms.get(&j.room).is_err() {
            if !self.config.auto_create {
                return Err(RoomError::RoomNotFound);
            }
            // The token's room configuration, then its preset for what that leaves unset.
            let rc = j.claims.room_configuration().ok().flatten();
            let mut req = rc.as_ref().map(CreateRoom::from).unwrap_or_default();
            req.name.clone_from(&j.room);
            let mut agents = rc.map(|rc| rc.agents).unwrap_or_default();
            self.rooms
                .apply_preset(&j.claims.room_preset, &mut req, &mut agents)?;
            let (room, _) = self.rooms.create(now, &req)?;
            if !agents.is_empty() {
                self.rooms.set_agents(&j.room, agents, MAX_ROOM_AGENTS)?;
            }
            tracing::info!(room = %j.room, preset = %j.claims.room_preset, "room created by join");
            self.out.event(RoomEvent::RoomStarted { room });
        }
        let mut metadata = j.claims.metadata.clone();
        let mut attributes: HashMap<String, String> =
            j.claims.attributes.clone().into_iter().collect();
        if permission.can_update_metadata {
            if let Some(m) = &j.metadata {
                metadata = m.clone();
            }
            attributes.extend(j.attributes.clone());
        }
        self.check_join(&j, &attributes)?;
        let ms = self.clock.ms(now);
        let psid = id::new_id(id::PARTICIPANT_PREFIX);
        let info = pb::ParticipantInfo {
            sid: psid.clone(),
            identity: j.identity.clone(),
            name: j.claims.name.clone(),
            state: pb::participant_info::State::Joined as i32,
            metadata,
            attributes,
            joined_at: ms / 1000,
            joined_at_ms: ms,
            version: 1,
            permission: Some(permission.clone()),
            region: self.config.region.clone(),
            kind: kind_from_name(&j.claims.kind),
            client_protocol: j.client_protocol,
            ..Default::default()
        };
        let replaced = self.rooms.join(now, &j.room, info.clone())?;
        if let Some(old) = replaced {
            tracing::info!(identity = %j.identity, old = %old.info.sid, "duplicate identity replaces the earlier session");
            self.send_away(
                now,
                &old.info.sid,
                pb::DisconnectReason::DuplicateIdentity,
                pb::leave_request::Action::Disconnect,
                false,
            );
        }
        let room = self.rooms.get(&j.room)?;
        let room_info = room.info();
        let others: Vec<std::borrow::Cow<'_, [u8]>> = room
            .participants()
            .filter(|o| o.info.sid != psid && !o.info.permission.as_ref().is_some_and(|p| p.hidden))
            .map(|o| o.encoded())
            .collect();
        let subscriber_primary = !j.single_pc && permission.can_subscribe;
        let forced = if self.forced_paths.is_empty() {
            None
        } else {
            self.forced_paths
                .remove(&(j.room.clone(), j.identity.clone()))
                .filter(|(until, _)| *until > now)
                .map(|(_, path)| path)
        };
        let tls_only = forced == Some(ForcedPath::Tls);
        let (ice_servers, client_configuration) = self.ice_config(now, &psid, tls_only);
        let response = pb::JoinResponse {
            room: Some(room_info.clone()),
            participant: Some(info.clone()),
            server_version: SERVER_VERSION.into(),
            subscriber_primary,
            ping_timeout: PING_TIMEOUT,
            ping_interval: PING_INTERVAL,
            server_info: Some(self.server_info()),
            server_region: self.config.region.clone(),
            fast_publish: permission.can_publish,
            ice_servers,
            client_configuration,
            ..Default::default()
        };
        let reply = JoinReply::new(&response, &others);
        drop(others);
        if !permission.hidden {
            self.broadcast(&j.room, &info, Some(&psid));
        }
        let (sync, delay) = match self.rooms.get(&j.room) {
            Ok(r) => (j.sync_stream_id && r.sync_streams(), r.playout_delay()),
            Err(_) => (false, None),
        };
        let mut p = Participant::new(now, &j, &psid, info.kind, permission, sync, delay);
        match forced {
            Some(ForcedPath::Tcp) => {
                tracing::info!(participant = %psid, "offering only ICE-TCP (simulated force-tcp)");
                p.set_tcp_only();
            }
            Some(ForcedPath::Tls) => {
                tracing::info!(participant = %psid, "relay only, through TURN over TLS (simulated force-tls)");
                p.set_tls_relay_only();
            }
            None => {}
        }
        self.participants.insert(psid.clone(), p);
        self.members
            .entry(j.room.clone())
            .or_default()
            .push(psid.clone());
        self.joins_total += 1;
        tracing::info!(participant = %psid, identity = %j.identity, room = %j.room, single_pc = j.single_pc, sync_streams = sync, "participant joined");
        self.out.event(RoomEvent::ParticipantJoined {
            room: room_info,
            participant: info,
        });
        self.out.join(&psid, reply);
        self.refresh_token(now, &psid);
        if let Some(o) = j.publisher_offer
            && let Err(e) = self.with_participant(now, &psid, |p, ctx| p.handle_offer(ctx, o))
        {
            tracing::warn!(participant = %psid, "offer in join request: {e}");
        }
        if subscriber_primary
            && let Err(e) = self.with_participant(now, &psid, |p, ctx| p.open_subscriber(ctx))
        {
            tracing::warn!(participant = %psid, "subscriber offer: {e}");
        }
        Ok(psid)
    }

    /// A resume: the connection takes over the participant it names, which keeps its sid,
    /// tracks, subscriptions and data channels; the others see nothing. The client hears a
    /// `reconnect` response, the room's current state, and (dual PC) a subscriber offer that
    /// restarts ICE; it restarts its own publisher transport with an offer. A participant
    /// that is gone, or belongs to another room or identity, is refused (the client then
    /// joins afresh).
    fn handle_resume(&mut self, now: Instant, j: Join) -> Result<String, RoomError> {
        let psid = j.resume.clone().unwrap_or_default();
        let p = self
            .participants
            .get_mut(&psid)
            .filter(|p| p.room() == j.room && p.identity() == j.identity)
            .ok_or(RoomError::ParticipantNotFound)?;
        p.resume();
        let dropped = p.take_drop_resume(now);
        self.watch(&psid);
        if dropped == Some(true) {
            // A simulated `disconnect-signal-on-resume-no-messages`.
            tracing::info!(participant = %psid, "closing the resumed signal connection before any message (simulated)");
            self.drop_link(now, &psid);
            return Ok(psid);
        }
        let room = self.rooms.get(&j.room)?;
        let records: Vec<pb::ParticipantInfo> = room
            .participants()
            .filter(|o| o.info.sid == psid || !o.info.permission.as_ref().is_some_and(|p| p.hidden))
            .map(|o| o.info.clone())
            .collect();
        let room_info = room.info();
        let tls_only = self
            .participants
            .get(&psid)
            .is_some_and(|p| p.tls_relay_only());
        let (ice_servers, client_configuration) = self.ice_config(now, &psid, tls_only);
        tracing::info!(participant = %psid, identity = %j.identity, room = %j.room, "participant resumed");
        self.out.signal(
            &psid,
            Resp::Reconnect(pb::ReconnectResponse {
                ice_servers,
                client_configuration,
                server_info: Some(self.server_info()),
                last_message_seq: 0,
            }),
        );
        self.out.signal(
            &psid,
            Resp::Update(pb::ParticipantUpdate {
                participants: records,
            }),
        );
        self.out.signal(
            &psid,
            Resp::RoomUpdate(pb::RoomUpdate {
                room: Some(room_info),
            }),
        );
        self.with_participant(now, &psid, |p, ctx| p.restart_ice(ctx))?;
        self.refresh_token(now, &psid);
        if dropped == Some(false) {
            // A simulated `disconnect-signal-on-resume`: closed once its messages are out.
            tracing::info!(participant = %psid, "closing the resumed signal connection (simulated)");
            self.drop_link(now, &psid);
        }
        Ok(psid)
    }

    /// Notes how long a participant took from its join to connected media.
    fn observe_join_latency(&mut self, ms: u64) {
        let (buckets, sum, count) = &mut self.join_latency;
        for (b, le) in buckets.iter_mut().zip(JOIN_LATENCY_BUCKETS_MS) {
            if ms <= le {
                *b += 1;
            }
        }
        *sum += ms;
        *count += 1;
    }

    /// The ICE servers for participant `psid`: the embedded TURN server's (with credentials
    /// of its own), if TURN is on, then the configured TURN and STUN servers. The join
    /// response and a resume's ReconnectResponse list them; WHIP and WHEP answers name them
    /// in `Link` headers.
    pub fn ice_servers(&self, now: Instant, psid: &str) -> Vec<pb::IceServer> {
        let unix = u64::try_from(self.clock.ms(now) / 1000).unwrap_or(0);
        let mut servers = self
            .config
            .turn
            .as_ref()
            .map(|t| t.ice_servers(unix, psid))
            .unwrap_or_default();
        servers.extend(self.config.ice_servers.iter().cloned());
        servers
    }

    /// The ICE servers and client configuration a join or resume of `psid` is given: with
    /// `tls_only` (a simulated `force-tls`), only the TURN server's `turns:` URLs and
    /// `force_relay`, so that the client reaches the server through TURN over TLS alone.
    fn ice_config(
        &self,
        now: Instant,
        psid: &str,
        tls_only: bool,
    ) -> (Vec<pb::IceServer>, Option<pb::ClientConfiguration>) {
        let mut servers = self.ice_servers(now, psid);
        if !tls_only {
            return (servers, None);
        }
        for s in &mut servers {
            s.urls.retain(|u| u.starts_with("turns:"));
        }
        servers.retain(|s| !s.urls.is_empty());
        let config = pb::ClientConfiguration {
            force_relay: pb::ClientConfigSetting::Enabled as i32,
            ..Default::default()
        };
        (servers, Some(config))
    }

    fn server_info(&self) -> pb::ServerInfo {
        pb::ServerInfo {
            edition: pb::server_info::Edition::Standard as i32,
            version: SERVER_VERSION.into(),
            protocol: SERVER_PROTOCOL,
            region: self.config.region.clone(),
            node_id: self.config.node_id.clone(),
            ..Default::default()
        }
    }

    /// The sizes a join brings in (token and join request) against the limits;
    /// `attributes` are the participant's, the token's and the request's merged.
    fn check_join(&self, j: &Join, attributes: &HashMap<String, String>) -> Result<(), RoomError> {
        let max_identity = self.config.limits.max_participant_identity_length;
        if max_identity > 0 && j.identity.len() > max_identity {
            return Err(RoomError::LimitExceeded(format!(
                "participant identity is longer than {max_identity} bytes"
            )));
        }
        self.config
            .check_name(&j.claims.name)
            .map_err(RoomError::LimitExceeded)?;
        let metadata = j.metadata.as_deref().unwrap_or_default();
        for m in [j.claims.metadata.as_str(), metadata] {
            self.config
                .check_limits(m, std::iter::empty())
                .map_err(RoomError::LimitExceeded)?;
        }
        self.config
            .check_limits("", j.claims.attributes.iter())
            .map_err(RoomError::LimitExceeded)?;
        self.config
            .check_limits("", j.attributes.iter())
            .map_err(RoomError::LimitExceeded)?;
        self.config
            .check_limits("", attributes)
            .map_err(RoomError::LimitExceeded)?;
        Ok(())
    }

    /// Runs `f` on one participant with the context it may use, then applies the room-level
    /// effects it reports.
    fn with_participant(
        &mut self,
        now: Instant,
        psid: &str,
        f: impl FnOnce(&mut Participant, &mut Ctx<'_>) -> Result<Effects, RoomError>,
    ) -> Result<(), RoomError> {
        let Machine {
            participants,
            rooms,
            out,
            next_id,
            config,
            peer_owner,
            clock,
            ..
        } = self;
        let p = participants
            .get_mut(psid)
            .ok_or(RoomError::ParticipantNotFound)?;
        let mut ctx = Ctx {
            now,
            wall_ms: clock.ms(now),
            out,
            next_id,
            config,
            rooms,
            peer_owner,
        };
        let effects = f(p, &mut ctx);
        self.watch(psid);
        self.apply(now, psid, effects?);
        Ok(())
    }

    /// Queues participant `psid`'s deadline if it changed (see `timers`).
    fn watch(&mut self, psid: &str) {
        if let Some(t) = self
            .participants
            .get_mut(psid)
            .and_then(Participant::new_deadline)
        {
            self.timers.push(Reverse((t, psid.to_string())));
            if self.timers.len() > timer_cap(self.participants.len()) {
                self.rebuild_timers();
            }
        }
    }

    /// Rebuilds the timer queue from the participants' current deadlines, leaving out the
    /// entries withdrawn or moved since they were queued. Participants that drop their link
    /// and come back again and again leave an entry each time that would otherwise stay
    /// until its grace ran out; past [`timer_cap`] they are swept, so the queue holds at
    /// most that many entries whatever the clients do, at a cost of one walk per as many
    /// pushes as there are participants.
    fn rebuild_timers(&mut self) {
        let live = self
            .participants
            .iter()
            .filter_map(|(psid, p)| p.watched().map(|t| Reverse((t, psid.clone()))));
        self.timers = live.collect();
    }

    /// Sends a participant away with `leave` and forgets it (`remove_from_room`: its place in
    /// the room model goes too and the others are told).
    fn send_away(
        &mut self,
        now: Instant,
        psid: &str,
        reason: pb::DisconnectReason,
        action: pb::leave_request::Action,
        remove_from_room: bool,
    ) {
        if self.participants.get(psid).is_some_and(|p| p.connected()) {
            self.out.close(
                psid,
                Some(pb::LeaveRequest {
                    can_reconnect: false,
                    reason: reason as i32,
                    action: action as i32,
                    regions: None,
                }),
            );
        }
        self.remove(now, psid, remove_from_room, reason);
    }

    /// Forgets a participant: its transports and tracks go; with `remove_from_room` its
    /// record leaves the room and everyone is told.
    fn remove(
        &mut self,
        now: Instant,
        psid: &str,
        remove_from_room: bool,
        reason: pb::DisconnectReason,
    ) {
        let Some(p) = self.participants.remove(psid) else {
            return;
        };
        if let Some(m) = self.members.get_mut(p.room()) {
            m.retain(|s| s != psid);
            if m.is_empty() {
                self.members.remove(p.room());
            }
        }
        for peer in p.peers() {
            self.peer_owner.remove(&peer);
            self.out.media(Command::RemovePeer { peer });
        }
        self.drop_tracks_of(now, p.room(), psid);
        self.drop_data_tracks(p.room(), &p.data_tracks().published_sids());
        self.end_rpcs_of(psid);
        self.permissions.remove(psid);
        // It subscribed only to tracks of its own room.
        self.tracks.for_each_in_room_mut(p.room(), |t| {
            t.subscribers.remove(psid);
            t.wanted.remove(psid);
            t.denied.remove(psid);
        });
        let duration = now.saturating_duration_since(p.joined_at());
        let mut record = None;
        if remove_from_room {
            let still_ours = self
                .rooms
                .participant(p.room(), p.identity())
                .is_ok_and(|r| r.info.sid == psid);
            if still_ours && let Ok(mut gone) = self.rooms.leave(now, p.room(), p.identity()) {
                gone.info.state = pb::participant_info::State::Disconnected as i32;
                gone.info.version += 1;
                gone.info.tracks.clear();
                gone.info.data_tracks.clear();
                if !p.hidden() {
                    self.broadcast(p.room(), &gone.info, Some(psid));
                }
                record = Some(gone.info);
            }
        }
        let room = self.rooms.get(p.room()).map(|r| r.info()).ok();
        tracing::info!(
            participant = %psid,
            identity = %p.identity(),
            room = %p.room(),
            reason = reason.as_str_name(),
            duration_s = duration.as_secs_f32(),
            "participant left"
        );
        if let (Some(room), Some(participant)) = (room, record) {
            if !p.was_active() && reason != pb::DisconnectReason::ClientInitiated {
                self.out.event(RoomEvent::ParticipantConnectionAborted {
                    room: room.clone(),
                    participant: participant.clone(),
                });
            }
            self.out.event(RoomEvent::ParticipantLeft {
                room,
                participant,
                reason,
                duration,
            });
        }
    }

    /// Tells every participant of `room` but `except` about `info`. An update about a
    /// participant that has never published is held back (see [`update_batch`]) and goes out
    /// with the room's others, only its latest record (joins or departures at a high rate
    /// cost a message per participant per batch, not one per join or departure each, as
    /// LiveKit batches its subscribers' updates); any other update goes out at once, after
    /// what the room had held back, so that no one hears of a track before its publisher.
    fn broadcast(&mut self, room: &str, info: &pb::ParticipantInfo, except: Option<&str>) {
        let quiet = info.tracks.is_empty() && !info.is_publisher;
        let heard = members_of(&self.members, &self.participants, room)
            .any(|(sid, p)| p.connected() && Some(sid.as_str()) != except);
        if !heard {
            return;
        }
        if quiet {
            let members = self.members.get(room).map_or(0, Vec::len);
            let due = self.last_now + update_batch(members);
            self.batched
                .entry(room.to_string())
                .or_insert_with(|| Batch {
                    due,
                    updates: BTreeMap::new(),
                })
                .updates
                .insert(info.sid.clone(), (info.clone(), except.map(str::to_string)));
            return;
        }
        self.broadcast_now(room, info, except);
    }

    /// Tells every participant of `room` but `except` about `info` at once (after what the
    /// room had held back).
    fn broadcast_now(&mut self, room: &str, info: &pb::ParticipantInfo, except: Option<&str>) {
        self.flush_room_updates(room);
        let msg = Resp::Update(pb::ParticipantUpdate {
            participants: vec![info.clone()],
        });
        self.send_room(room, except, &msg);
    }

    /// Sends `room`'s held-back participant updates: one message per recipient, the same
    /// one for all but those an update is not meant for.
    fn flush_room_updates(&mut self, room: &str) {
        let Some(Batch { updates: batch, .. }) = self.batched.remove(room) else {
            return;
        };
        let update = |except: Option<&str>| {
            let mut participants: Vec<pb::ParticipantInfo> = batch
                .values()
                .filter(|(_, e)| e.is_none() || e.as_deref() != except)
                .map(|(info, _)| info.clone())
                .collect();
            // Departures first: clients key participants by identity, so an identity's old
            // session must be gone before its new one is told.
            participants
                .sort_by_key(|i| i.state != pb::participant_info::State::Disconnected as i32);
            (!participants.is_empty())
                .then(|| Arc::new(Resp::Update(pb::ParticipantUpdate { participants })))
        };
        // Those the shared message is for first, back to back; then the others.
        let mut own = Vec::new();
        let everyone = update(None);
        for (sid, p) in members_of(&self.members, &self.participants, room) {
            if !p.connected() {
                continue;
            }
            if batch
                .values()
                .any(|(_, e)| e.as_deref() == Some(sid.as_str()))
            {
                own.push(sid);
            } else if let Some(msg) = &everyone {
                self.out.shared(p.sid().clone(), msg.clone());
            }
        }
        for sid in own {
            if let Some(msg) = update(Some(sid)) {
                self.out.shared(sid.as_str().into(), msg);
            }
        }
    }

    /// Sends every room's held-back participant updates when they are due.
    fn flush_due_updates(&mut self, now: Instant) {
        let due: Vec<String> = self
            .batched
            .iter()
            .filter(|(_, b)| b.due <= now)
            .map(|(room, _)| room.clone())
            .collect();
        for room in due {
            self.flush_room_updates(&room);
        }
    }

    /// Sends `msg` to every connected participant of `room` but `except`.
    fn send_room(&mut self, room: &str, except: Option<&str>, msg: &Resp) {
        let msg = Arc::new(msg.clone());
        for (sid, p) in members_of(&self.members, &self.participants, room) {
            if Some(sid.as_str()) != except && p.connected() {
                self.out.shared(p.sid().clone(), msg.clone());
            }
        }
    }

    /// The room of participant `psid`, owned (to be used while changing the machine).
    fn room_of(&self, psid: &str) -> Option<String> {
        self.participants.get(psid).map(|p| p.room().to_string())
    }

    /// Sends `msg` to one participant, if it is connected.
    fn send_one(&mut self, psid: &str, msg: Resp) {
        if self.participants.get(psid).is_some_and(|p| p.connected()) {
            self.out.signal(psid, msg);
        }
    }

    /// Applies `f` to a participant's record, bumps its version and tells everyone.
    fn update_participant<R>(
        &mut self,
        psid: &str,
        f: impl FnOnce(&mut pb::ParticipantInfo) -> R,
    ) -> Option<R> {
        let p = self.participants.get(psid)?;
        let (room, identity, hidden) = (p.room().to_string(), p.identity().to_string(), p.hidden());
        let mut before = None;
        let (r, info) = self
            .rooms
            .update_participant(&room, &identity, |info| {
                before = Some(info.clone());
                f(info)
            })
            .ok()?;
        // Only a change of state (joined, active) may wait for the room's batch; anything
        // else the participant or an API caller asked for is told at once.
        let state_only = before.is_some_and(|mut b| {
            b.state = info.state;
            b.version = info.version;
            b == info
        });
        if let Some(perm) = &info.permission
            && let Some(p) = self.participants.get_mut(psid)
        {
            p.set_permission(perm.clone());
        }
        if !hidden {
            if state_only {
                self.broadcast(&room, &info, None);
            } else {
                self.broadcast_now(&room, &info, None);
            }
        } else {
            self.send_one(
                psid,
                Resp::Update(pb::ParticipantUpdate {
                    participants: vec![info],
                }),
            );
        }
        Some(r)
    }

    /// The participant's current record and its room's, for events.
    fn records(&self, psid: &str) -> Option<(pb::Room, pb::ParticipantInfo)> {
        let p = self.participants.get(psid)?;
        let room = self.rooms.get(p.room()).ok()?;
        let info = room.participant(p.identity()).ok()?.info.clone();
        Some((room.info(), info))
    }
}

fn reason_of(why: Leaving) -> pb::DisconnectReason {
    match why {
        Leaving::Client => pb::DisconnectReason::ClientInitiated,
        Leaving::Gone => pb::DisconnectReason::SignalClose,
        Leaving::Server(r, _) => r,
    }
}

/// The names tokens give track sources (`canPublishSources`).
const SOURCE_NAMES: [(&str, pb::TrackSource); 4] = [
    ("camera", pb::TrackSource::Camera),
    ("microphone", pb::TrackSource::Microphone),
    ("screen_share", pb::TrackSource::ScreenShare),
    ("screen_share_audio", pb::TrackSource::ScreenShareAudio),
];

fn source_from_name(s: &str) -> Option<i32> {
    SOURCE_NAMES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, src)| *src as i32)
}

/// A track source's name in a token (none for UNKNOWN or a value outside the enum).
fn source_name(source: i32) -> Option<&'static str> {
    SOURCE_NAMES
        .iter()
        .find(|(_, src)| *src as i32 == source)
        .map(|(name, _)| *name)
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
