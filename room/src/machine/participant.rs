//! One participant: its signal link, its peer connections' offer/answer state, its pending
//! and published tracks, its downstream tracks.
//!
//! Dual PC (`/rtc`): the client offers on its publisher PC and the server answers; the server
//! offers on the subscriber PC (first right after the JoinResponse, with its data channels)
//! and the client answers. Single PC (`/rtc/v1`): the client is the only offerer; downstream
//! tracks are placed on its receive-only sections in the next answer, with `mid_to_track_id`,
//! and `media_sections_requirement` asks for a new offer when needed.
//!
//! A participant changes only itself; what concerns the room (a track published, a
//! subscription started, data to forward) it reports as [`Effects`] for the machine to apply.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lkr_proto::token::Claims;
use lkr_proto::{id, pb};
use lkr_sfu::{
    ChannelSpec, CodecKind, Command, MediaKind, PayloadType, PeerConfig, PeerId, PublishSpec,
    RemoteFingerprint, SubscribeSpec, TrackId,
};
use prost::Message as _;

use super::data_tracks::{self, DataTrackChange, DataTracks};
use super::{ANSWER_DELAY, Config, Join, Leaving, MAX_DEFERRED, Outbox, Resp, TrackOffer};
use crate::RoomError;
use crate::negotiation::{self, DownTrack, LocalTransport, OfferSection};

/// Most track sids one subscription update may name (its own and its participants' lists
/// together); the SDKs name one at a time.
pub const MAX_SUBSCRIPTION_TRACKS: usize = 1024;
/// Most participants one subscription update may name.
pub const MAX_SUBSCRIPTION_PARTICIPANTS: usize = 1024;

/// Refuses a subscription update (signalling or Twirp) that names too much.
pub(crate) fn check_subscription_update(
    track_sids: &[String],
    participant_tracks: &[pb::ParticipantTracks],
) -> Result<(), RoomError> {
    let tracks = participant_tracks.iter().fold(track_sids.len(), |n, pt| {
        n.saturating_add(pt.track_sids.len())
    });
    if tracks > MAX_SUBSCRIPTION_TRACKS || participant_tracks.len() > MAX_SUBSCRIPTION_PARTICIPANTS
    {
        return Err(RoomError::LimitExceeded(format!(
            "a subscription update may name at most {MAX_SUBSCRIPTION_TRACKS} tracks and \
             {MAX_SUBSCRIPTION_PARTICIPANTS} participants"
        )));
    }
    Ok(())
}

/// What a subscription update names, each once in the order first named: track sids, and
/// the participants whose tracks are all meant (those named without tracks).
pub(crate) fn subscription_targets(
    track_sids: Vec<String>,
    participant_tracks: Vec<pb::ParticipantTracks>,
) -> (Vec<String>, Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    let mut sids = Vec::new();
    let mut seen_participants = std::collections::HashSet::new();
    let mut participants = Vec::new();
    let mut named = track_sids;
    for pt in participant_tracks {
        if !pt.track_sids.is_empty() {
            named.extend(pt.track_sids);
        } else if seen_participants.insert(pt.participant_sid.clone()) {
            participants.push(pt.participant_sid);
        }
    }
    for sid in named {
        if seen.insert(sid.clone()) {
            sids.push(sid);
        }
    }
    (sids, participants)
}

/// Longest data packet nonce remembered for de-duplication: LiveKit's is 16 bytes.
const MAX_NONCE_LEN: usize = 16;
/// Most destination identities one data packet may name.
pub const MAX_DATA_DESTINATIONS: usize = 1024;

/// Whom a data packet is for: the participants with these identities or these sids (the
/// deprecated `destination_sids` older SDKs and `SendData` callers still use), or, when both
/// lists are empty, everyone in the room but the sender. LiveKit routes on both lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataTargets {
    pub identities: Vec<String>,
    pub sids: Vec<String>,
}

/// Most audio features one add_track may list (LiveKit defines seven).
const MAX_AUDIO_FEATURES: usize = 16;

/// What a participant's handler may use besides the participant itself.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub wall_ms: i64,
    pub out: &'a mut Outbox,
    pub next_id: &'a mut u64,
    pub config: &'a Config,
    /// The rooms' records (the participant's own among them), read-only.
    pub rooms: &'a crate::Rooms,
    pub peer_owner: &'a mut HashMap<PeerId, String>,
}

impl Ctx<'_> {
    fn new_id(&mut self) -> u64 {
        let id = *self.next_id;
        *self.next_id += 1;
        id
    }
}

/// What a participant's handler asks of the room, applied by the machine in this order.
#[derive(Default)]
pub(crate) struct Effects {
    /// Tracks now published: records and offers for subscribers.
    pub published: Vec<(pb::TrackInfo, TrackOffer)>,
    /// Tracks whose sections vanished.
    pub unpublished: Vec<String>,
    /// Downstream tracks whose forwarding started.
    pub subscribed: Vec<String>,
    /// Downstream tracks dropped.
    pub unsubscribed: Vec<String>,
    /// Dynacast: the quality wanted of a track (`None`: paused).
    pub qualities: Vec<(String, Option<i32>)>,
    /// The primary transport came up: the participant is active.
    pub active: bool,
    /// A data packet to forward: reliable, stamped bytes, destinations.
    pub data: Option<(bool, bytes::Bytes, DataTargets)>,
    /// The participant's record changes (name, metadata, attributes).
    pub record: Option<RecordChange>,
    /// A track's muted flag changes.
    pub mute: Option<(String, bool)>,
    /// Subscription requests by track sid (true: subscribe).
    pub subscriptions: Vec<(String, bool)>,
    /// Participants whose tracks are all to be subscribed or unsubscribed.
    pub subscriptions_of: Vec<(String, bool)>,
    /// The participant leaves.
    pub leave: Option<Leaving>,
    /// Who may subscribe to its tracks from now on.
    pub permission: Option<pb::SubscriptionPermission>,
    /// The publisher's own update of a published track's record.
    pub track_update: Option<TrackUpdate>,
    /// A scenario the client asked to have played on it.
    pub simulate: Option<Simulation>,
    /// A data track it published or unpublished.
    pub data_track: Option<DataTrackChange>,
    /// Data track subscription requests by track sid (true: subscribe).
    pub data_subscriptions: Vec<(String, bool)>,
    /// A packet of one of its data tracks to forward: the track's sid and the packet.
    pub data_track_packet: Option<(String, bytes::Bytes)>,
    /// Its acknowledgement or answer of an RPC call, which may be one of the server's.
    pub rpc_reply: Option<super::rpc::RpcReply>,
}

/// What a client's `SimulateScenario` (livekit-client's `room.simulateScenario`) has the
/// server do, as LiveKit does it, for testing how clients recover. The scenarios that send
/// the participant away go through [`Effects::leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simulation {
    /// `speaker_update`: everyone is told it speaks (level 0.9), and this long after that it
    /// stopped.
    Speaker(Duration),
    /// `node_failure`, `migration`: its signal connection is closed without a leave, as when
    /// a node goes away; it keeps its place for the departure timeout and may resume.
    DropSignal,
    /// `switch_candidate_protocol` TCP or TLS (livekit-client's `force-tcp` / `force-tls`,
    /// which then rejoins): its identity's next join in the room is offered only that path.
    ForcePath(super::ForcedPath),
    /// `disconnect_signal_on_resume` (`no_messages: false`) and its `_no_messages` twin: a
    /// resume within [`DROP_RESUME_WITHIN`] has its new signal connection closed after the
    /// resume's messages, or before any; the client resumes again.
    DropResume { no_messages: bool },
}

/// How long a simulated `disconnect-signal-on-resume` waits for the resume it drops.
pub(crate) const DROP_RESUME_WITHIN: Duration = Duration::from_secs(5);

/// A publisher's update of one of its tracks' records: `UpdateLocalAudioTrack` (the audio
/// features it now has, e.g. after noise cancellation was turned on) or
/// `UpdateLocalVideoTrack` (the video's new dimensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrackUpdate {
    /// Known feature values only, each once, in the order first named.
    Audio { sid: String, features: Vec<i32> },
    Video {
        sid: String,
        width: u32,
        height: u32,
    },
}

impl TrackUpdate {
    fn audio(u: pb::UpdateLocalAudioTrack) -> Self {
        let mut features: Vec<i32> = Vec::new();
        // Unknown values are dropped, so the list is at most the enum's length whatever the
        // request carried.
        for f in u.features {
            if pb::AudioTrackFeature::try_from(f).is_ok() && !features.contains(&f) {
                features.push(f);
            }
        }
        TrackUpdate::Audio {
            sid: u.track_sid,
            features,
        }
    }

    pub fn sid(&self) -> &str {
        match self {
            TrackUpdate::Audio { sid, .. } | TrackUpdate::Video { sid, .. } => sid,
        }
    }

    /// Applies the update to a track record as LiveKit does (the features also set `stereo`
    /// and `disable_dtx`). Returns whether the record changed: an update for a track of the
    /// other kind, or one that changes nothing, leaves it as it was.
    #[allow(deprecated)] // `stereo` and `disable_dtx` are deprecated upstream, still read by clients
    pub fn apply(&self, t: &mut pb::TrackInfo) -> bool {
        let before = t.clone();
        match self {
            TrackUpdate::Audio { features, .. } if t.r#type == pb::TrackType::Audio as i32 => {
                t.audio_features = features.clone();
                t.stereo = features.contains(&(pb::AudioTrackFeature::TfStereo as i32));
                t.disable_dtx = features.contains(&(pb::AudioTrackFeature::TfNoDtx as i32));
            }
            TrackUpdate::Video { width, height, .. } if t.r#type == pb::TrackType::Video as i32 => {
                t.width = *width;
                t.height = *height;
            }
            _ => {}
        }
        *t != before
    }
}

/// A change of a participant's own record, asked by the participant.
pub(crate) struct RecordChange {
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
}

/// The quality (LOW 0, MEDIUM 1, HIGH 2) a track setting asks for: from the requested size
/// when given (the smallest layer at least that large), else from `quality`.
#[allow(deprecated)] // `quality` is deprecated upstream but still sent by clients
pub fn wanted_quality(ts: &pb::UpdateTrackSettings, layers: &[pb::VideoLayer]) -> i32 {
    let high = pb::VideoQuality::High as i32;
    if ts.width == 0 && ts.height == 0 {
        return if ts.quality == pb::VideoQuality::Off as i32 {
            high
        } else {
            ts.quality.clamp(0, high)
        };
    }
    let mut sorted: Vec<&pb::VideoLayer> = layers.iter().collect();
    sorted.sort_by_key(|l| l.quality);
    sorted
        .iter()
        .find(|l| l.width >= ts.width && l.height >= ts.height)
        .map(|l| l.quality.clamp(0, high))
        .unwrap_or(high)
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// One RTCPeerConnection as the server sees it.
struct Transport {
    peer: PeerId,
    local: LocalTransport,
    /// The remote ICE credentials the core knows (once added).
    remote_ice: Option<(String, String)>,
    added: bool,
    connected: bool,
    candidates_sent: bool,
    target: pb::SignalTarget,
    open_channels: Vec<ChannelSpec>,
}

struct PendingTrack {
    cid: String,
    kind: MediaKind,
    info: pb::TrackInfo,
}

impl PendingTrack {
    /// The codec its AddTrackRequest announced for the section of `stream` (its
    /// `simulcast_codecs` entry with that cid, else the first), e.g. `VP9`. Not AV1 in
    /// several spatial layers: its layers are described only by the dependency descriptor,
    /// which is not forwarded, and Chromium decodes no such stream without it.
    #[allow(deprecated)] // TrackInfo.layers is what clients fill.
    fn codec_for(&self, stream: &str) -> Option<String> {
        let c = self
            .info
            .codecs
            .iter()
            .find(|c| c.cid == stream)
            .or(self.info.codecs.first())?;
        let name = codec_of_mime(&c.mime_type);
        let layered = self.info.layers.len().max(c.layers.len()) > 1;
        if name.is_empty() || (layered && name.eq_ignore_ascii_case("av1")) {
            return None;
        }
        Some(name.to_string())
    }
}

/// A video codec's layer mode as LiveKit settles it: the client's, else several spatial
/// layers per stream for the codecs that can carry them (VP9, AV1), one otherwise.
fn layer_mode(announced: i32, mime: &str) -> i32 {
    use pb::video_layer::Mode;
    if announced != Mode::Unused as i32 {
        return announced;
    }
    let codec = codec_of_mime(mime);
    if codec.eq_ignore_ascii_case("vp9") || codec.eq_ignore_ascii_case("av1") {
        Mode::MultipleSpatialLayersPerStream as i32
    } else {
        Mode::OneSpatialLayerPerStream as i32
    }
}

/// The codec of a MIME type (`video/VP9` → `VP9`).
fn codec_of_mime(mime: &str) -> &str {
    mime.rsplit('/').next().unwrap_or_default()
}

/// Whether the primary codec sends its spatial layers in one stream (then the track is not
/// "simulcast", however many layers it has).
fn spatial_in_one_stream(codecs: &[pb::SimulcastCodecInfo]) -> bool {
    codecs.first().is_some_and(|c| {
        c.video_layer_mode == pb::video_layer::Mode::MultipleSpatialLayersPerStream as i32
    })
}

/// A publication of this participant: its track sid and the codec its section was answered
/// with first (kept first when the client offers that section again).
struct Published {
    sid: String,
    codec: String,
}

struct Down {
    offer: TrackOffer,
    ssrc: u32,
    /// The section carrying it, once placed.
    mid: Option<String>,
    /// Forwarding is set up in the core.
    active: bool,
    /// The subscriber's latest settings for it (paused; highest simulcast layer), kept so
    /// that settings sent before forwarding is set up apply when it is.
    paused: bool,
    max_layer: Option<u8>,
}

impl Down {
    /// Sets up forwarding in the core from what the subscriber's answer accepted, with the
    /// settings it has sent so far.
    fn start(
        &mut self,
        out: &mut Outbox,
        peer: PeerId,
        pts: &[(lkr_sfu::CodecKind, u8)],
        extras: negotiation::DownExtras,
        delay: Option<(u32, u32)>,
    ) {
        out.media(Command::Subscribe(subscribe_spec(
            peer, self, pts, extras, delay,
        )));
        let track = self.offer.track_id;
        if self.paused {
            out.media(Command::SetPaused {
                peer,
                track,
                paused: true,
            });
        }
        if let Some(max_layer) = self.max_layer {
            out.media(Command::SetMaxLayer {
                peer,
                track,
                max_layer,
            });
        }
        self.active = true;
    }
}

/// The participant's signal connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Open. Its liveness (the ping timeout) is the session's to watch: a silent
    /// connection is ended there and arrives here as lost.
    Open,
    /// Dropped without `leave`; the participant keeps its place until `until`.
    Lost { until: Instant },
}

/// One participant of a room.
pub(crate) struct Participant {
    /// Its sid, shared by the outputs addressed to it.
    psid: Arc<str>,
    room: String,
    identity: String,
    kind: i32,
    permission: pb::ParticipantPermission,
    auto_subscribe: bool,
    single_pc: bool,
    joined_at: Instant,
    link: Link,
    session_id: u64,
    version: u64,
    /// The PC the client offers on: the publisher PC (dual) or the only PC (single).
    pub_t: Option<Transport>,
    /// Dual PC: the PC the server offers on.
    sub_t: Option<Transport>,
    pending: Vec<PendingTrack>,
    /// mid → this participant's publication on it.
    published: BTreeMap<String, Published>,
    /// track sid → downstream track.
    downs: BTreeMap<String, Down>,
    sub_sections: Vec<OfferSection>,
    /// Dual PC: inactive sections of the offer awaiting its answer.
    offered_inactive: Vec<String>,
    /// Dual PC: sections whose inactivity the client has answered, free for a new track.
    recyclable: std::collections::BTreeSet<String>,
    /// Dual PC: the track each emptied section last carried (by mid). A track subscribed
    /// again is not put back in the section it just left: the Python SDK's libwebrtc
    /// reported no track for a section that went inactive and came back with the same track
    /// (about once in twenty resubscriptions), while a fresh section always works.
    left_by: BTreeMap<String, String>,
    /// Single PC: receive sections whose track was unsubscribed since the last answer. The
    /// next answer marks them inactive, and only then may they carry another track: a section
    /// that goes from one track straight to the next gives the client no new remote track.
    cooling: std::collections::BTreeSet<String>,
    awaiting_answer: Option<u32>,
    sub_dirty: bool,
    next_offer_id: u32,
    /// Single PC: the receive slots of the client's last offer.
    slots: Vec<negotiation::RecvSlot>,
    active_sent: bool,
    last_data_sequence: u32,
    seen_nonces: VecDeque<Vec<u8>>,
    /// Answers to send a little later, in order.
    deferred: VecDeque<(Instant, Resp)>,
    /// The deadline last handed to the machine's timer queue.
    watched: Option<Instant>,
    /// Downstream tracks take `publisher sid|stream` stream ids (`room.sync_streams`, for a
    /// client that takes them), so that one publisher's camera and microphone play in sync.
    sync_streams: bool,
    /// The room's playout delay (least and most milliseconds), written on the video sent to
    /// this participant.
    playout_delay: Option<(u32, u32)>,
    /// The claims of the token it joined with, the base of the tokens it is handed.
    claims: Claims,
    /// When it is next handed a refreshed token (none without a token signer).
    refresh_at: Option<Instant>,
    /// A simulated speaker update (`SimulateScenario`): when the room is told it stopped.
    speaking_until: Option<Instant>,
    /// Its transports offer only the ICE-TCP candidate (a simulated `force-tcp`).
    tcp_only: bool,
    /// Told to use only the TURN/TLS relay (a simulated `force-tls`).
    tls_relay_only: bool,
    /// A simulated `disconnect-signal-on-resume`: until when, and whether before any message.
    drop_resume: Option<(Instant, bool)>,
    /// The data tracks it publishes and receives.
    data: DataTracks,
}

impl Participant {
    pub fn new(
        now: Instant,
        j: &Join,
        psid: &str,
        kind: i32,
        permission: pb::ParticipantPermission,
        sync_streams: bool,
        playout_delay: Option<(u32, u32)>,
    ) -> Self {
        Self {
            psid: psid.into(),
            room: j.room.clone(),
            identity: j.identity.clone(),
            kind,
            permission,
            auto_subscribe: j.auto_subscribe,
            single_pc: j.single_pc,
            joined_at: now,
            link: Link::Open,
            session_id: rand::random::<u32>() as u64,
            version: 1,
            pub_t: None,
            sub_t: None,
            pending: Vec::new(),
            published: BTreeMap::new(),
            downs: BTreeMap::new(),
            sub_sections: Vec::new(),
            offered_inactive: Vec::new(),
            recyclable: std::collections::BTreeSet::new(),
            left_by: BTreeMap::new(),
            cooling: std::collections::BTreeSet::new(),
            awaiting_answer: None,
            sub_dirty: false,
            next_offer_id: 1,
            slots: Vec::new(),
            active_sent: false,
            last_data_sequence: 0,
            seen_nonces: VecDeque::new(),
            deferred: VecDeque::new(),
            watched: None,
            sync_streams,
            playout_delay,
            claims: j.claims.clone(),
            refresh_at: None,
            speaking_until: None,
            tcp_only: false,
            tls_relay_only: false,
            drop_resume: None,
            data: DataTracks::new(j.auto_subscribe_data),
        }
    }

    /// Has its next resume before `until` dropped (`no_messages`: before any message).
    pub fn set_drop_resume(&mut self, until: Instant, no_messages: bool) {
        self.drop_resume = Some((until, no_messages));
    }

    /// Whether the resume at `now` is to be dropped, and how (`Some(true)`: before any
    /// message); the request is used up either way.
    pub fn take_drop_resume(&mut self, now: Instant) -> Option<bool> {
        self.drop_resume
            .take()
            .filter(|(until, _)| now <= *until)
            .map(|(_, no_messages)| no_messages)
    }

    /// Has its transports offer only the ICE-TCP candidate.
    pub fn set_tcp_only(&mut self) {
        self.tcp_only = true;
    }

    /// Has it told, at every resume too, to reach the server only through TURN over TLS.
    pub fn set_tls_relay_only(&mut self) {
        self.tls_relay_only = true;
    }

    /// Whether it reaches the server only through TURN over TLS (a simulated `force-tls`).
    pub fn tls_relay_only(&self) -> bool {
        self.tls_relay_only
    }

    /// The claims of the token it joined with.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Sets when it is next handed a refreshed token.
    pub fn set_refresh_at(&mut self, at: Instant) {
        self.refresh_at = Some(at);
    }

    /// Notes that a simulated speaker update ends at `at`.
    pub fn set_speaking_until(&mut self, at: Instant) {
        self.speaking_until = Some(at);
    }

    /// Whether a simulated speaker update ends by `now`; if so it is over.
    pub fn take_speaking_end(&mut self, now: Instant) -> bool {
        let over = self.speaking_until.is_some_and(|t| t <= now);
        if over {
            self.speaking_until = None;
        }
        over
    }

    /// Whether a refreshed token is due at `now`.
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|t| t <= now)
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn hidden(&self) -> bool {
        self.permission.hidden
    }

    /// Whether its primary transport ever came up.
    pub fn was_active(&self) -> bool {
        self.active_sent
    }

    pub fn joined_at(&self) -> Instant {
        self.joined_at
    }

    pub fn auto_subscribe(&self) -> bool {
        self.auto_subscribe
    }

    pub fn can_subscribe(&self) -> bool {
        self.permission.can_subscribe
    }

    pub fn set_permission(&mut self, p: pb::ParticipantPermission) {
        self.permission = p;
    }

    /// Whether its signal connection is open (messages to it can be delivered).
    pub fn connected(&self) -> bool {
        matches!(self.link, Link::Open)
    }

    /// A new signal connection took the participant over.
    pub fn resume(&mut self) {
        self.link = Link::Open;
    }

    /// After a resume: the server restarts ICE on its subscriber transport with a new offer
    /// (dual PC); the client restarts the transport it offers on itself. What was asked of
    /// the client while it was away is asked again.
    pub fn restart_ice(&mut self, ctx: &mut Ctx<'_>) -> Result<Effects, RoomError> {
        if let Some(t) = self.pub_t.as_mut() {
            t.candidates_sent = false;
        }
        if self.single_pc {
            self.request_sections(ctx);
            return Ok(Effects::default());
        }
        let Some(t) = self.sub_t.as_mut() else {
            return Ok(Effects::default());
        };
        {
            t.local.ufrag = random_token(8);
            t.local.pwd = random_token(24);
            t.candidates_sent = false;
            if let (true, Some((ru, rp))) = (t.added, t.remote_ice.clone()) {
                ctx.out.media(Command::RestartIce {
                    peer: t.peer,
                    local_ufrag: t.local.ufrag.clone(),
                    local_pwd: t.local.pwd.clone(),
                    remote_ufrag: ru,
                    remote_pwd: rp,
                });
            }
        }
        // An offer in flight when the connection dropped may never have arrived.
        self.awaiting_answer = None;
        self.sub_dirty = false;
        self.negotiate_subscriber(ctx);
        Ok(Effects::default())
    }

    /// The signal connection dropped: the participant keeps its place for `grace`.
    pub fn lose_link(&mut self, now: Instant, grace: Duration) {
        self.link = Link::Lost { until: now + grace };
        self.deferred.clear();
    }

    /// Its peers in the media core.
    pub fn peers(&self) -> Vec<PeerId> {
        [self.pub_t.as_ref(), self.sub_t.as_ref()]
            .into_iter()
            .flatten()
            .filter(|t| t.added)
            .map(|t| t.peer)
            .collect()
    }

    /// The earliest instant something is due.
    pub fn deadline(&self) -> Option<Instant> {
        let link = match self.link {
            Link::Open => None,
            Link::Lost { until } => Some(until),
        };
        let deferred = self.deferred.front().map(|d| d.0);
        [link, deferred, self.refresh_at, self.speaking_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Its deadline, if it is not the one last returned here: what the machine's timer
    /// queue has no entry for yet.
    pub fn new_deadline(&mut self) -> Option<Instant> {
        let d = self.deadline();
        if d == self.watched {
            return None;
        }
        self.watched = d;
        d
    }

    /// Its sid, shared (cloning it allocates nothing).
    pub fn sid(&self) -> &Arc<str> {
        &self.psid
    }

    /// The deadline the machine's timer queue last took for it.
    pub fn watched(&self) -> Option<Instant> {
        self.watched
    }

    /// Its queue entry fell due: its deadline, even unchanged, needs a new one.
    pub fn deadline_fired(&mut self) {
        self.watched = None;
    }

    /// Sends the delayed answers that are due.
    pub fn flush_deferred(&mut self, now: Instant, out: &mut Outbox) {
        while self.deferred.front().is_some_and(|d| d.0 <= now) {
            if let Some((_, m)) = self.deferred.pop_front() {
                out.shared(self.psid.clone(), Arc::new(m));
            }
        }
    }

    /// Why the participant must go at `now`, if it must.
    pub fn expired(&self, now: Instant) -> Option<Leaving> {
        match self.link {
            Link::Lost { until } if now >= until => Some(Leaving::Gone),
            _ => None,
        }
    }

    /// The sids of the tracks it publishes.
    pub fn published_tracks(&self) -> impl Iterator<Item = &String> {
        self.published.values().map(|p| &p.sid)
    }

    /// The downstream track `track_sid`, if it receives it.
    pub fn downstream(&self, track_sid: &str) -> Option<&TrackOffer> {
        self.downs.get(track_sid).map(|d| &d.offer)
    }

    fn send(&self, ctx: &mut Ctx<'_>, m: Resp) {
        if self.connected() {
            ctx.out.shared(self.psid.clone(), Arc::new(m));
        }
    }

    fn new_transport(
        &self,
        ctx: &mut Ctx<'_>,
        target: pb::SignalTarget,
        open_channels: Vec<ChannelSpec>,
    ) -> Transport {
        Transport {
            peer: PeerId(ctx.new_id()),
            local: LocalTransport {
                ufrag: random_token(8),
                pwd: random_token(24),
                fingerprint: ctx.config.fingerprint.clone(),
                candidates: ctx
                    .config
                    .candidates()
                    .into_iter()
                    .filter(|c| !self.tcp_only || c.contains(" tcp "))
                    .collect(),
            },
            remote_ice: None,
            added: false,
            connected: false,
            candidates_sent: false,
            target,
            open_channels,
        }
    }

    fn ensure_sub_transport(&mut self, ctx: &mut Ctx<'_>) {
        if self.sub_t.is_none() {
            let channels = vec![
                ChannelSpec {
                    label: "_reliable".into(),
                    ordered: true,
                    max_retransmits: None,
                },
                ChannelSpec {
                    label: "_lossy".into(),
                    ordered: false,
                    max_retransmits: Some(0),
                },
                ChannelSpec {
                    label: "_data_track".into(),
                    ordered: false,
                    max_retransmits: Some(0),
                },
            ];
            self.sub_t = Some(self.new_transport(ctx, pb::SignalTarget::Subscriber, channels));
        }
    }

    /// Adds the transport's peer to the core once the remote description is known.
    fn add_peer(
        &self,
        ctx: &mut Ctx<'_>,
        t: &mut Transport,
        remote: &lkr_sdp::SessionDescription,
        is_offer: bool,
    ) -> Result<(), RoomError> {
        let r = negotiation::remote_transport(remote).ok_or_else(|| {
            RoomError::InvalidArgument(
                "remote description lacks ICE credentials or a fingerprint".into(),
            )
        })?;
        if t.added {
            // New credentials from the client: an ICE restart (RFC 8445 §9). An offer's restart
            // is answered with new credentials of ours too.
            let remote = (r.ufrag.clone(), r.pwd.clone());
            if t.remote_ice.as_ref() != Some(&remote) {
                if is_offer {
                    t.local.ufrag = random_token(8);
                    t.local.pwd = random_token(24);
                }
                t.remote_ice = Some(remote);
                t.candidates_sent = false;
                ctx.out.media(Command::RestartIce {
                    peer: t.peer,
                    local_ufrag: t.local.ufrag.clone(),
                    local_pwd: t.local.pwd.clone(),
                    remote_ufrag: r.ufrag,
                    remote_pwd: r.pwd,
                });
                tracing::debug!(participant = %self.psid, peer = ?t.peer, "ICE restart");
            }
            return Ok(());
        }
        t.remote_ice = Some((r.ufrag.clone(), r.pwd.clone()));
        ctx.peer_owner.insert(t.peer, self.psid.to_string());
        ctx.out.media(Command::AddPeer {
            peer: t.peer,
            config: PeerConfig {
                local_ufrag: t.local.ufrag.clone(),
                local_pwd: t.local.pwd.clone(),
                remote_ufrag: r.ufrag,
                remote_pwd: r.pwd,
                remote_fingerprint: RemoteFingerprint {
                    algorithm: r.fingerprint.0,
                    value: r.fingerprint.1,
                },
                open_channels: t.open_channels.clone(),
                group: lkr_sfu::group_key(&self.room),
            },
        });
        t.added = true;
        Ok(())
    }

    fn send_candidates(&mut self, ctx: &mut Ctx<'_>, publisher: bool, first_mid: &str) {
        let connected = self.connected();
        let t = if publisher {
            self.pub_t.as_mut()
        } else {
            self.sub_t.as_mut()
        };
        let Some(t) = t else { return };
        if t.candidates_sent || !connected {
            return;
        }
        t.candidates_sent = true;
        let target = t.target;
        let n = t.local.candidates.len();
        for (i, c) in t.local.candidates.iter().enumerate() {
            let init = serde_json::json!({
                "candidate": c,
                "sdpMid": first_mid,
                "sdpMLineIndex": 0,
                "usernameFragment": serde_json::Value::Null,
            });
            ctx.out.signal(
                &self.psid,
                Resp::Trickle(pb::TrickleRequest {
                    candidate_init: init.to_string(),
                    target: target as i32,
                    r#final: i + 1 == n,
                }),
            );
        }
    }

    /// Dual PC with the subscriber primary: the first subscriber offer, with the data
    /// channels, right after the JoinResponse.
    pub fn open_subscriber(&mut self, ctx: &mut Ctx<'_>) -> Result<Effects, RoomError> {
        self.ensure_sub_transport(ctx);
        self.sub_sections
            .push(OfferSection::Data { mid: "0".into() });
        self.negotiate_subscriber(ctx);
        Ok(Effects::default())
    }

    /// One signal request from the client.
    pub fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: pb::signal_request::Message,
    ) -> Result<Effects, RoomError> {
        use pb::signal_request::Message as Req;
        let mut fx = Effects::default();
        match m {
            Req::Offer(o) => return self.handle_offer(ctx, o),
            Req::Answer(a) => return self.handle_answer(ctx, a),
            Req::Trickle(_) => {}
            Req::AddTrack(t) => self.handle_add_track(ctx, t),
            Req::Mute(m) => fx.mute = Some((m.sid, m.muted)),
            Req::Subscription(u) => return Ok(self.update_subscription(ctx, u)),
            Req::TrackSetting(ts) => return Ok(self.handle_track_setting(ctx, &ts)),
            Req::Leave(_) => fx.leave = Some(Leaving::Client),
            Req::Ping(_) => self.send(ctx, Resp::Pong(ctx.wall_ms)),
            Req::PingReq(p) => {
                let ms = ctx.wall_ms;
                self.send(
                    ctx,
                    Resp::PongResp(pb::Pong {
                        last_ping_timestamp: p.timestamp,
                        timestamp: ms,
                    }),
                )
            }
            Req::UpdateMetadata(u) => return Ok(self.update_metadata(ctx, u)),
            Req::UpdateAudioTrack(u) => fx.track_update = self.update_track(TrackUpdate::audio(u)),
            Req::Simulate(s) => {
                use pb::simulate_scenario::Scenario as S;
                tracing::info!(participant = %self.psid, scenario = ?s.scenario, "simulating a scenario the client asked for");
                match s.scenario {
                    Some(S::SpeakerUpdate(secs)) => {
                        let secs = u64::try_from(secs).unwrap_or(0);
                        fx.simulate = Some(Simulation::Speaker(Duration::from_secs(secs)));
                    }
                    Some(S::NodeFailure(true) | S::Migration(true)) => {
                        fx.simulate = Some(Simulation::DropSignal)
                    }
                    Some(S::ServerLeave(true)) => {
                        fx.leave = Some(Leaving::Server(
                            pb::DisconnectReason::ServerShutdown,
                            pb::leave_request::Action::Disconnect,
                        ))
                    }
                    Some(S::LeaveRequestFullReconnect(true)) => {
                        fx.leave = Some(Leaving::Server(
                            pb::DisconnectReason::UnknownReason,
                            pb::leave_request::Action::Reconnect,
                        ))
                    }
                    // What congestion control may send it, until a 0 lifts the cap.
                    Some(S::SubscriberBandwidth(bps)) => {
                        if let Some(peer) = self.down_peer() {
                            ctx.out.media(Command::SetChannelCapacity {
                                peer,
                                bps: u64::try_from(bps).unwrap_or(0),
                            });
                        }
                    }
                    Some(S::SwitchCandidateProtocol(p))
                        if p == pb::CandidateProtocol::Tcp as i32 =>
                    {
                        fx.simulate = Some(Simulation::ForcePath(super::ForcedPath::Tcp))
                    }
                    Some(S::SwitchCandidateProtocol(p))
                        if p == pb::CandidateProtocol::Tls as i32 =>
                    {
                        fx.simulate = Some(Simulation::ForcePath(super::ForcedPath::Tls))
                    }
                    Some(S::DisconnectSignalOnResume(true)) => {
                        fx.simulate = Some(Simulation::DropResume { no_messages: false })
                    }
                    Some(S::DisconnectSignalOnResumeNoMessages(true)) => {
                        fx.simulate = Some(Simulation::DropResume { no_messages: true })
                    }
                    _ => {}
                }
            }
            Req::UpdateVideoTrack(u) => {
                fx.track_update = self.update_track(TrackUpdate::Video {
                    sid: u.track_sid,
                    width: u.width,
                    height: u.height,
                })
            }
            Req::PublishDataTrackRequest(r) => fx.data_track = self.publish_data_track(ctx, r),
            Req::UnpublishDataTrackRequest(r) => fx.data_track = self.unpublish_data_track(ctx, r),
            Req::UpdateDataSubscription(u) => {
                if u.updates.len() > MAX_SUBSCRIPTION_TRACKS {
                    self.refuse(
                        ctx,
                        &RoomError::LimitExceeded(format!(
                            "a data subscription update may name at most \
                             {MAX_SUBSCRIPTION_TRACKS} tracks"
                        )),
                    );
                } else {
                    fx.data_subscriptions = u
                        .updates
                        .into_iter()
                        .map(|u| (u.track_sid, u.subscribe))
                        .collect();
                }
            }
            Req::SubscriptionPermission(perm) => {
                let tracks = perm.track_permissions.iter().map(|t| t.track_sids.len());
                let named = tracks.fold(0usize, usize::saturating_add);
                if perm.track_permissions.len() > MAX_SUBSCRIPTION_PARTICIPANTS
                    || named > MAX_SUBSCRIPTION_TRACKS
                {
                    self.refuse(
                        ctx,
                        &RoomError::LimitExceeded(format!(
                            "a subscription permission may name at most \
                             {MAX_SUBSCRIPTION_PARTICIPANTS} participants and \
                             {MAX_SUBSCRIPTION_TRACKS} tracks"
                        )),
                    );
                } else {
                    fx.permission = Some(perm);
                }
            }
            _ => {}
        }
        Ok(fx)
    }

    /// UpdateLocalAudioTrack / UpdateLocalVideoTrack: a track still pending (announced, not
    /// yet in an offer) takes the update here and publishes with it; a published one's
    /// update is handed to the room, which holds its record. An unknown sid changes nothing.
    fn update_track(&mut self, u: TrackUpdate) -> Option<TrackUpdate> {
        if let Some(p) = self.pending.iter_mut().find(|p| p.info.sid == u.sid()) {
            u.apply(&mut p.info);
            return None;
        }
        if self.published.values().any(|p| p.sid == u.sid()) {
            return Some(u);
        }
        tracing::debug!(participant = %self.psid, track = u.sid(), "track update for a track it does not publish");
        None
    }

    /// UpdateSubscription: the tracks named, and every track of the participants named
    /// without tracks, each once. An update naming more than [`MAX_SUBSCRIPTION_TRACKS`]
    /// tracks or [`MAX_SUBSCRIPTION_PARTICIPANTS`] participants is refused whole: each name
    /// costs a lookup and, for an unknown track, an answer.
    fn update_subscription(&mut self, ctx: &mut Ctx<'_>, u: pb::UpdateSubscription) -> Effects {
        let mut fx = Effects::default();
        if let Err(e) = check_subscription_update(&u.track_sids, &u.participant_tracks) {
            tracing::debug!(participant = %self.psid, "subscription update refused: {e}");
            self.refuse(ctx, &e);
            return fx;
        }
        tracing::debug!(participant = %self.psid, tracks = u.track_sids.len(), participants = u.participant_tracks.len(), subscribe = u.subscribe, "subscription update");
        let (sids, participants) = subscription_targets(u.track_sids, u.participant_tracks);
        fx.subscriptions = sids.into_iter().map(|s| (s, u.subscribe)).collect();
        fx.subscriptions_of = participants.into_iter().map(|p| (p, u.subscribe)).collect();
        fx
    }

    /// UpdateTrackSettings: pause or resume, and the simulcast layer this subscriber gets
    /// (from the requested size, or the quality), which also feeds dynacast.
    #[allow(deprecated)] // `quality` is deprecated upstream but still sent by clients
    fn handle_track_setting(&mut self, ctx: &mut Ctx<'_>, ts: &pb::UpdateTrackSettings) -> Effects {
        let mut fx = Effects::default();
        let peer = self.down_peer();
        for sid in &ts.track_sids {
            let Some(d) = self.downs.get_mut(sid) else {
                continue;
            };
            let off = ts.disabled || ts.quality == pb::VideoQuality::Off as i32 && ts.width == 0;
            d.paused = off;
            // Until forwarding is set up the core has nothing to apply them to: they go
            // with its setup.
            let send = peer.filter(|_| d.active);
            if let Some(peer) = send {
                ctx.out.media(Command::SetPaused {
                    peer,
                    track: d.offer.track_id,
                    paused: off,
                });
            }
            if d.offer.kind != MediaKind::Video {
                continue;
            }
            if off {
                fx.qualities.push((sid.clone(), None));
                continue;
            }
            let quality = wanted_quality(ts, &d.offer.layers);
            if d.offer.layer_count > 1 {
                let max_layer = (quality as usize).min(d.offer.layer_count - 1) as u8;
                d.max_layer = Some(max_layer);
                if let Some(peer) = send {
                    ctx.out.media(Command::SetMaxLayer {
                        peer,
                        track: d.offer.track_id,
                        max_layer,
                    });
                }
            }
            fx.qualities.push((sid.clone(), Some(quality)));
        }
        fx
    }

    fn update_metadata(&mut self, ctx: &mut Ctx<'_>, u: pb::UpdateParticipantMetadata) -> Effects {
        let mut fx = Effects::default();
        if !self.permission.can_update_metadata {
            self.send(
                ctx,
                Resp::RequestResponse(pb::RequestResponse {
                    request_id: u.request_id,
                    reason: pb::request_response::Reason::NotAllowed as i32,
                    message: "does not have permission to update own metadata".into(),
                    request: None,
                }),
            );
            return fx;
        }
        // The attributes limit covers what the participant holds once the update is merged,
        // so that updates of new keys cannot add up past it.
        let no_attributes = HashMap::new();
        let current = ctx
            .rooms
            .participant(&self.room, &self.identity)
            .map(|r| &r.info.attributes)
            .unwrap_or(&no_attributes);
        let checked = ctx
            .config
            .check_limits(&u.metadata, std::iter::empty())
            .and_then(|()| ctx.config.check_name(&u.name))
            .and_then(|()| ctx.config.check_merged_attributes(current, &u.attributes));
        if let Err(msg) = checked {
            self.send(
                ctx,
                Resp::RequestResponse(pb::RequestResponse {
                    request_id: u.request_id,
                    reason: pb::request_response::Reason::LimitExceeded as i32,
                    message: msg,
                    request: None,
                }),
            );
            return fx;
        }
        fx.record = Some(RecordChange {
            name: u.name,
            metadata: u.metadata,
            attributes: u.attributes,
        });
        // Clients of protocol 14 and later wait for this answer (older ones for their update).
        // The Rust SDK starts listening for it only after its request is written, so an
        // answer sent at once can arrive before it listens: it goes out a moment later.
        let answer = Resp::RequestResponse(pb::RequestResponse {
            request_id: u.request_id,
            reason: pb::request_response::Reason::Ok as i32,
            message: String::new(),
            request: None,
        });
        if self.deferred.len() == MAX_DEFERRED
            && let Some(&(last, _)) = self.deferred.back()
        {
            // A client this far ahead of its answers is not one waiting for its first: those
            // held go now, in order, so that the queue stays bounded.
            self.flush_deferred(last, ctx.out);
        }
        self.deferred.push_back((ctx.now + ANSWER_DELAY, answer));
        fx
    }

    #[allow(deprecated)] // TrackInfo layers, simulcast, stereo and disable_dtx are still read by clients.
    fn handle_add_track(&mut self, ctx: &mut Ctx<'_>, t: pb::AddTrackRequest) {
        let kind = if t.r#type == pb::TrackType::Video as i32 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let allowed = self.permission.can_publish
            && (self.permission.can_publish_sources.is_empty()
                || self.permission.can_publish_sources.contains(&t.source));
        if !allowed {
            self.refuse_track(
                ctx,
                &t,
                RoomError::NotAllowed("does not have permission to publish".into()),
            );
            return;
        }
        if let Err(e) = self.check_add_track(ctx, &t, kind) {
            self.refuse_track(ctx, &t, e);
            return;
        }
        let sid = id::new_id(id::TRACK_PREFIX);
        let stream = if !t.stream.is_empty() {
            t.stream.clone()
        } else if t.source == pb::TrackSource::ScreenShare as i32
            || t.source == pb::TrackSource::ScreenShareAudio as i32
        {
            "screen".into()
        } else {
            "camera".into()
        };
        let kind_name = if kind == MediaKind::Video {
            "video"
        } else {
            "audio"
        };
        let mut codecs: Vec<pb::SimulcastCodecInfo> = t
            .simulcast_codecs
            .iter()
            .map(|c| {
                let mime_type = if c.codec.is_empty() {
                    String::new()
                } else if c.codec.contains('/') {
                    c.codec.clone()
                } else {
                    format!("{kind_name}/{}", c.codec)
                };
                let video_layer_mode = if kind == MediaKind::Video {
                    layer_mode(c.video_layer_mode, &mime_type)
                } else {
                    c.video_layer_mode
                };
                pb::SimulcastCodecInfo {
                    mime_type,
                    cid: c.cid.clone(),
                    layers: c.layers.clone(),
                    video_layer_mode,
                    ..Default::default()
                }
            })
            .collect();
        if codecs.is_empty() {
            codecs.push(pb::SimulcastCodecInfo {
                cid: t.cid.clone(),
                layers: t.layers.clone(),
                ..Default::default()
            });
        }
        let info = pb::TrackInfo {
            sid,
            r#type: t.r#type,
            name: t.name.clone(),
            muted: t.muted,
            width: t.width,
            height: t.height,
            // As LiveKit has it: several layers of a primary codec that sends one spatial
            // layer per stream.
            simulcast: t.layers.len() > 1 && !spatial_in_one_stream(&codecs),
            disable_dtx: t.disable_dtx,
            source: t.source,
            layers: t.layers.clone(),
            codecs,
            stereo: t.stereo,
            disable_red: t.disable_red,
            encryption: t.encryption,
            stream,
            audio_features: t.audio_features.clone(),
            backup_codec_policy: t.backup_codec_policy,
            ..Default::default()
        };
        self.pending.push(PendingTrack {
            cid: t.cid.clone(),
            kind,
            info: info.clone(),
        });
        self.send(
            ctx,
            Resp::TrackPublished(pb::TrackPublishedResponse {
                cid: t.cid,
                track: Some(info),
            }),
        );
    }

    /// PublishDataTrackRequest: the new track's record is answered and handed to the room;
    /// a refusal is answered with LiveKit's reason, which the client turns into its error.
    fn publish_data_track(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: pb::PublishDataTrackRequest,
    ) -> Option<DataTrackChange> {
        let allowed = ctx.config.limits.data_tracks && self.permission.can_publish_data;
        let limit = ctx.config.limits.max_data_track_custom_encoding;
        match self.data.publish(&req, allowed, limit) {
            Ok(info) => {
                tracing::info!(participant = %self.psid, track = %info.sid, handle = info.pub_handle, "data track published");
                self.send(
                    ctx,
                    Resp::PublishDataTrackResponse(pb::PublishDataTrackResponse {
                        info: Some(info.clone()),
                    }),
                );
                Some(DataTrackChange::Published(info))
            }
            Err((reason, message)) => {
                tracing::debug!(participant = %self.psid, handle = req.pub_handle, "data track refused: {message}");
                self.send(
                    ctx,
                    Resp::RequestResponse(pb::RequestResponse {
                        reason: reason as i32,
                        message,
                        request: Some(pb::request_response::Request::PublishDataTrack(req)),
                        ..Default::default()
                    }),
                );
                None
            }
        }
    }

    /// UnpublishDataTrackRequest: answered with the track's record, or NOT_FOUND.
    fn unpublish_data_track(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: pb::UnpublishDataTrackRequest,
    ) -> Option<DataTrackChange> {
        let Some(info) = self.data.unpublish(req.pub_handle) else {
            self.send(
                ctx,
                Resp::RequestResponse(pb::RequestResponse {
                    reason: pb::request_response::Reason::NotFound as i32,
                    message: format!("no data track with handle {}", req.pub_handle),
                    request: Some(pb::request_response::Request::UnpublishDataTrack(req)),
                    ..Default::default()
                }),
            );
            return None;
        };
        tracing::info!(participant = %self.psid, track = %info.sid, "data track unpublished");
        self.send(
            ctx,
            Resp::UnpublishDataTrackResponse(pb::UnpublishDataTrackResponse {
                info: Some(info.clone()),
            }),
        );
        Some(DataTrackChange::Unpublished(info))
    }

    /// Its data tracks, published and received.
    pub fn data_tracks(&self) -> &DataTracks {
        &self.data
    }

    pub fn data_tracks_mut(&mut self) -> &mut DataTracks {
        &mut self.data
    }

    /// Answers a refused request with its reason (a `RequestResponse` without a request id:
    /// the requests refused so carry none).
    fn refuse(&self, ctx: &mut Ctx<'_>, e: &RoomError) {
        self.send(
            ctx,
            Resp::RequestResponse(pb::RequestResponse {
                reason: e.request_reason() as i32,
                message: e.to_string(),
                ..Default::default()
            }),
        );
    }

    /// An add_track that breaks a rule or a limit: refused with its reason, nothing kept.
    fn refuse_track(&self, ctx: &mut Ctx<'_>, t: &pb::AddTrackRequest, e: RoomError) {
        tracing::debug!(participant = %self.psid, cid = %t.cid.chars().take(64).collect::<String>(), "add_track refused: {e}");
        self.refuse(ctx, &e);
    }

    /// The sizes and kinds an add_track may have.
    fn check_add_track(
        &self,
        ctx: &Ctx<'_>,
        t: &pb::AddTrackRequest,
        kind: MediaKind,
    ) -> Result<(), RoomError> {
        let limits = &ctx.config.limits;
        if self.pending.len() >= limits.max_pending_tracks {
            return Err(RoomError::LimitExceeded(format!(
                "more than {} tracks waiting for an offer",
                limits.max_pending_tracks
            )));
        }
        if limits.num_tracks > 0 && self.published.len() + self.pending.len() >= limits.num_tracks {
            return Err(RoomError::LimitExceeded(format!(
                "more than {} published tracks",
                limits.num_tracks
            )));
        }
        let longest = [&t.name, &t.cid, &t.stream, &t.sid]
            .iter()
            .map(|s| s.len())
            .chain(
                t.simulcast_codecs
                    .iter()
                    .map(|c| c.cid.len() + c.codec.len()),
            )
            .max()
            .unwrap_or(0);
        if longest > limits.max_track_name_length {
            return Err(RoomError::LimitExceeded(format!(
                "track name or id is longer than {} bytes",
                limits.max_track_name_length
            )));
        }
        if t.layers.len() > negotiation::MAX_SIMULCAST_LAYERS
            || t.simulcast_codecs.len() > 2
            || t.simulcast_codecs
                .iter()
                .any(|c| c.layers.len() > negotiation::MAX_SIMULCAST_LAYERS)
        {
            return Err(RoomError::LimitExceeded(
                "too many simulcast layers or codecs".into(),
            ));
        }
        let mut layers = t
            .layers
            .iter()
            .chain(t.simulcast_codecs.iter().flat_map(|c| &c.layers));
        if layers.any(|l| l.rid.len() > negotiation::MAX_RID_LEN) {
            return Err(RoomError::LimitExceeded(format!(
                "a simulcast layer's rid is longer than {} bytes",
                negotiation::MAX_RID_LEN
            )));
        }
        if t.audio_features.len() > MAX_AUDIO_FEATURES {
            return Err(RoomError::LimitExceeded(format!(
                "more than {MAX_AUDIO_FEATURES} audio features"
            )));
        }
        use pb::TrackSource as S;
        let audio_source = [S::Microphone as i32, S::ScreenShareAudio as i32].contains(&t.source);
        let video_source = [S::Camera as i32, S::ScreenShare as i32].contains(&t.source);
        if (audio_source && kind != MediaKind::Audio) || (video_source && kind != MediaKind::Video)
        {
            return Err(RoomError::InvalidArgument(
                "track type does not match its source".into(),
            ));
        }
        Ok(())
    }

    /// The peer whose data channels carry downstream data: the subscriber PC when the server
    /// opened channels there, else the PC the client offers on.
    pub fn data_peer(&self) -> Option<PeerId> {
        match (&self.sub_t, &self.pub_t) {
            (Some(s), _) if !self.single_pc => Some(s.peer),
            (_, Some(p)) => Some(p.peer),
            _ => None,
        }
    }

    /// A DataPacket from the client: checked, stamped with the sender, to be forwarded
    /// (LiveKit's rules: canPublishData, reliable sequence and nonce dedupe, destinations,
    /// never back to the sender, same kind of channel out as in). A packet naming more than
    /// [`MAX_DATA_DESTINATIONS`] destinations, or with a nonce longer than LiveKit's 16
    /// bytes, is dropped.
    pub fn handle_data(&mut self, label: &str, data: &[u8]) -> Effects {
        let mut fx = Effects::default();
        let reliable = match label {
            "_reliable" => true,
            "_lossy" => false,
            "_data_track" => {
                // A packet of one of its data tracks, by the handle it published it under;
                // anything else (too short, an unknown handle), or anything once it may no
                // longer publish data, is dropped.
                if !self.permission.can_publish_data {
                    return fx;
                }
                fx.data_track_packet = data_tracks::packet_handle(data)
                    .and_then(|h| self.data.track_of(h))
                    .map(|sid| (sid.to_string(), bytes::Bytes::copy_from_slice(data)));
                return fx;
            }
            _ => return fx,
        };
        if !self.permission.can_publish_data {
            tracing::debug!(participant = %self.psid, "data dropped: no canPublishData");
            return fx;
        }
        let Ok(mut pkt) = pb::DataPacket::decode(data) else {
            tracing::debug!(participant = %self.psid, "undecodable data packet dropped");
            return fx;
        };
        if reliable && pkt.sequence > 0 {
            if pkt.sequence <= self.last_data_sequence {
                return fx;
            }
            self.last_data_sequence = pkt.sequence;
        }
        use pb::data_packet::Value;
        #[allow(deprecated)] // the SDKs still send the inner destinations
        let destinations = match &pkt.value {
            Some(Value::User(u)) => u.destination_identities.len().max(u.destination_sids.len()),
            _ => 0,
        }
        .max(pkt.destination_identities.len());
        if destinations > MAX_DATA_DESTINATIONS {
            tracing::debug!(participant = %self.psid, destinations, "data packet to too many destinations dropped");
            return fx;
        }
        let hidden = self.permission.hidden;
        let identity = if hidden {
            String::new()
        } else {
            self.identity.clone()
        };
        let sid = if hidden {
            String::new()
        } else {
            self.psid.to_string()
        };
        match &mut pkt.value {
            Some(Value::User(u)) => {
                if u.nonce.len() > MAX_NONCE_LEN {
                    // LiveKit's nonce is 16 bytes or absent; a longer one would make the
                    // remembered nonces as large as the packets.
                    tracing::debug!(participant = %self.psid, len = u.nonce.len(), "data packet with an over-long nonce dropped");
                    return fx;
                }
                if !u.nonce.is_empty() {
                    if self.seen_nonces.contains(&u.nonce) {
                        return fx;
                    }
                    if self.seen_nonces.len() == 64 {
                        self.seen_nonces.pop_front();
                    }
                    self.seen_nonces.push_back(u.nonce.clone());
                }
                #[allow(deprecated)] // the SDKs still read the inner sender fields
                {
                    u.participant_identity = identity.clone();
                    u.participant_sid = sid.clone();
                    if pkt.destination_identities.is_empty() {
                        pkt.destination_identities = u.destination_identities.clone();
                    } else {
                        u.destination_identities = pkt.destination_identities.clone();
                    }
                }
            }
            Some(Value::Metrics(_)) => return fx,
            Some(Value::RpcAck(a)) => {
                fx.rpc_reply = Some(super::rpc::RpcReply::Ack(a.request_id.clone()))
            }
            Some(Value::RpcResponse(r)) => {
                fx.rpc_reply = Some(super::rpc::RpcReply::Response(r.clone()))
            }
            Some(Value::Transcription(_))
                if self.kind != pb::participant_info::Kind::Agent as i32 =>
            {
                return fx;
            }
            _ => {}
        }
        pkt.participant_identity = identity;
        pkt.participant_sid = sid;
        #[allow(deprecated)] // clients still read the kind
        {
            pkt.kind = if reliable {
                pb::data_packet::Kind::Reliable as i32
            } else {
                pb::data_packet::Kind::Lossy as i32
            };
        }
        #[allow(deprecated)] // older SDKs name destinations by participant sid
        let targets = DataTargets {
            identities: pkt.destination_identities.clone(),
            sids: match &pkt.value {
                Some(Value::User(u)) => u.destination_sids.clone(),
                _ => Vec::new(),
            },
        };
        fx.data = Some((reliable, bytes::Bytes::from(pkt.encode_to_vec()), targets));
        fx
    }

    /// The transport the client waits for: the only PC, the subscriber PC when the server
    /// offers first, else the publisher PC.
    fn primary_transport(&self) -> Option<&Transport> {
        if self.single_pc || self.sub_t.is_none() {
            self.pub_t.as_ref()
        } else {
            self.sub_t.as_ref()
        }
    }

    /// The peer that carries downstream media.
    pub fn down_peer(&self) -> Option<PeerId> {
        if self.single_pc {
            self.pub_t.as_ref().map(|t| t.peer)
        } else {
            self.sub_t.as_ref().map(|t| t.peer)
        }
    }

    /// One of its peers came up; reports when the participant becomes active.
    pub fn peer_connected(&mut self, peer: PeerId) -> Effects {
        let mut fx = Effects::default();
        for t in [self.pub_t.as_mut(), self.sub_t.as_mut()]
            .into_iter()
            .flatten()
        {
            if t.peer == peer {
                t.connected = true;
            }
        }
        let primary = self.primary_transport();
        if !self.active_sent && primary.is_some_and(|t| t.connected) {
            self.active_sent = true;
            tracing::info!(participant = %self.psid, "participant active");
            fx.active = true;
        }
        fx
    }

    /// One of its peers failed; losing the primary transport ends the participant.
    pub fn peer_disconnected(&mut self, peer: PeerId, reason: &str) -> Effects {
        let mut fx = Effects::default();
        tracing::info!(participant = %self.psid, ?peer, %reason, "transport lost");
        if self.primary_transport().is_some_and(|t| t.peer == peer) {
            fx.leave = Some(Leaving::Server(
                pb::DisconnectReason::ConnectionTimeout,
                pb::leave_request::Action::Reconnect,
            ));
        }
        fx
    }

    /// Congestion control paused or resumed one of its downstream tracks.
    pub fn stream_state(&mut self, ctx: &mut Ctx<'_>, track: TrackId, paused: bool) {
        if let Some(d) = self.downs.values().find(|d| d.offer.track_id == track) {
            let state = if paused {
                pb::StreamState::Paused
            } else {
                pb::StreamState::Active
            };
            let info = pb::StreamStateInfo {
                participant_sid: d.offer.publisher_sid.clone(),
                track_sid: d.offer.track_sid.clone(),
                state: state as i32,
            };
            self.send(
                ctx,
                Resp::StreamStateUpdate(pb::StreamStateUpdate {
                    stream_states: vec![info],
                }),
            );
        }
    }

    /// An offer from the client (publisher PC, or the only PC): answered, its new sections
    /// bound to pending tracks, its vanished sections unpublished, and (single PC) waiting
    /// downstream tracks placed on its receive-only sections.
    pub fn handle_offer(
        &mut self,
        ctx: &mut Ctx<'_>,
        o: pb::SessionDescription,
    ) -> Result<Effects, RoomError> {
        let mut fx = Effects::default();
        let sd = lkr_sdp::parse(&o.sdp)
            .map_err(|e| RoomError::InvalidArgument(format!("bad offer: {e}")))?;
        if sd.media.iter().any(|m| {
            m.mid
                .as_ref()
                .is_some_and(|mid| mid.len() > negotiation::MAX_MID_LEN)
        }) {
            return Err(RoomError::InvalidArgument(format!(
                "bad offer: a mid is longer than {} bytes",
                negotiation::MAX_MID_LEN
            )));
        }
        let mut t = match self.pub_t.take() {
            Some(t) => t,
            None => self.new_transport(ctx, pb::SignalTarget::Publisher, Vec::new()),
        };
        let added = self.add_peer(ctx, &mut t, &sd, true);
        self.pub_t = Some(t);
        added?;

        // Single PC: place waiting downstream tracks on free receive slots of this offer.
        let mut downs_by_mid: HashMap<String, DownTrack> = HashMap::new();
        if self.single_pc {
            let slots: Vec<negotiation::RecvSlot> = sd
                .media
                .iter()
                .filter(|m| {
                    !m.is_rejected() && m.direction_or_default() == lkr_sdp::Direction::RecvOnly
                })
                .filter_map(|m| {
                    let kind = match m.kind {
                        lkr_sdp::MediaKind::Audio => MediaKind::Audio,
                        lkr_sdp::MediaKind::Video => MediaKind::Video,
                        _ => return None,
                    };
                    Some(negotiation::RecvSlot {
                        mid: m.mid.clone()?,
                        kind,
                    })
                })
                .collect();
            // Sections that disappeared or changed kind free their tracks, and the core
            // stops sending them until they are placed again.
            let peer = self.down_peer();
            for d in self.downs.values_mut() {
                if let Some(mid) = &d.mid
                    && !slots
                        .iter()
                        .any(|s| &s.mid == mid && s.kind == d.offer.kind)
                {
                    if d.active
                        && let Some(peer) = peer
                    {
                        ctx.out.media(Command::Unsubscribe {
                            peer,
                            track: d.offer.track_id,
                        });
                    }
                    d.mid = None;
                    d.active = false;
                }
            }
            for slot in &slots {
                let taken = self
                    .downs
                    .values()
                    .any(|d| d.mid.as_deref() == Some(&slot.mid));
                if taken || self.cooling.contains(&slot.mid) {
                    continue;
                }
                if let Some(d) = self
                    .downs
                    .values_mut()
                    .find(|d| d.mid.is_none() && d.offer.kind == slot.kind)
                {
                    d.mid = Some(slot.mid.clone());
                }
            }
            for d in self.downs.values() {
                if let Some(mid) = &d.mid {
                    downs_by_mid.insert(mid.clone(), down_track(d, self.sync_streams));
                }
            }
            self.slots = slots;
        }

        self.version += 1;
        let t = self
            .pub_t
            .as_ref()
            .ok_or_else(|| RoomError::Internal("transport vanished".into()))?;
        let peer = t.peer;
        let preferred = |m: &lkr_sdp::MediaSection| -> Option<String> {
            let mid = m.mid.as_deref()?;
            if let Some(p) = self.published.get(mid) {
                return Some(p.codec.clone());
            }
            let stream = m.msid.as_ref().map(|x| x.track.as_str())?;
            self.pending
                .iter()
                .find(|p| p.cid == stream)
                .and_then(|p| p.codec_for(stream))
        };
        let answer = negotiation::answer_offer(
            &sd,
            &t.local,
            self.version,
            self.session_id,
            &downs_by_mid,
            ctx.config.limits.max_rids_per_track,
            &preferred,
        );
        // This answer marks the unsubscribed sections inactive: the next offer may reuse them.
        self.cooling.clear();

        // Publications: new sections bind to pending tracks; vanished ones unpublish.
        for ps in &answer.publish {
            if self.published.contains_key(&ps.mid) {
                continue;
            }
            // A section binds to the pending track of its own kind: a token allowed only a
            // microphone cannot publish video by announcing audio and offering video.
            let idx = self
                .pending
                .iter()
                .position(|p| Some(&p.cid) == ps.msid_track.as_ref() && p.kind == ps.kind)
                .or_else(|| self.pending.iter().position(|p| p.kind == ps.kind));
            let Some(idx) = idx else {
                tracing::debug!(participant = %self.psid, mid = %ps.mid, "published section without add_track yet");
                continue;
            };
            let p = self.pending.remove(idx);
            let track = TrackId(ctx.new_id());
            fx.published.push(self.publish(ctx, peer, track, ps, p));
        }
        let gone: Vec<(String, String)> = self
            .published
            .iter()
            .filter(|(mid, _)| !answer.publish.iter().any(|p| &p.mid == *mid))
            .map(|(m, p)| (m.clone(), p.sid.clone()))
            .collect();
        for (mid, sid) in gone {
            self.published.remove(&mid);
            fx.unpublished.push(sid);
        }

        let mid_to_track_id: HashMap<String, String> = if self.single_pc {
            self.downs
                .iter()
                .filter_map(|(sid, d)| d.mid.clone().map(|m| (m, sid.clone())))
                .filter(|(m, _)| answer.down_payload_types.contains_key(m))
                .collect()
        } else {
            HashMap::new()
        };
        let first_mid = sd
            .media
            .first()
            .and_then(|m| m.mid.clone())
            .unwrap_or_else(|| "0".into());
        self.send(
            ctx,
            Resp::Answer(pb::SessionDescription {
                r#type: "answer".into(),
                sdp: answer.sdp.write(),
                id: o.id,
                mid_to_track_id,
            }),
        );
        self.send_candidates(ctx, true, &first_mid);

        if self.single_pc {
            let delay = self.playout_delay;
            for (sid, d) in self.downs.iter_mut() {
                let Some(mid) = &d.mid else { continue };
                if d.active {
                    continue;
                }
                if let Some(pts) = answer.down_payload_types.get(mid) {
                    let extras = answer.down_extras.get(mid).cloned().unwrap_or_default();
                    d.start(ctx.out, peer, pts, extras, delay);
                    fx.subscribed.push(sid.clone());
                }
            }
            self.request_sections(ctx);
        }
        Ok(fx)
    }

    /// Binds an offer section to a pending track: the core learns the track; the record and
    /// offer for subscribers are returned for the room.
    #[allow(deprecated)] // TrackInfo.simulcast is still read by clients.
    fn publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        peer: PeerId,
        track: TrackId,
        ps: &negotiation::PublishSection,
        p: PendingTrack,
    ) -> (pb::TrackInfo, TrackOffer) {
        let mut info = p.info;
        let kind_name = if ps.kind == MediaKind::Video {
            "video"
        } else {
            "audio"
        };
        let codec = ps
            .codecs
            .iter()
            .find(|c| !c.name.eq_ignore_ascii_case("red"))
            .or(ps.codecs.first())
            .map(|c| c.name.clone());
        let mime = codec
            .as_ref()
            .map(|c| format!("{kind_name}/{c}"))
            .unwrap_or_default();
        info.mid = ps.mid.clone();
        info.mime_type = mime.clone();
        if let Some(c) = info.codecs.first_mut() {
            if c.mime_type.is_empty() {
                c.mime_type = mime;
            }
            if ps.kind == MediaKind::Video {
                c.video_layer_mode = layer_mode(c.video_layer_mode, &c.mime_type);
            }
            c.mid = ps.mid.clone();
        }
        if ps.rids.len() > 1 && !spatial_in_one_stream(&info.codecs) {
            info.simulcast = true;
        }
        ctx.out.media(Command::Publish(PublishSpec {
            peer,
            track,
            kind: ps.kind,
            mid: ps.mid.clone(),
            rids: ps.rids.clone(),
            ssrcs: ps.ssrcs.clone(),
            payload_types: ps
                .codecs
                .iter()
                .map(|c| PayloadType {
                    pt: c.pt,
                    codec: CodecKind::from_name(&c.name),
                    clock_rate: c.clock_rate,
                })
                .collect(),
            ext: ps.ext,
            rtx: ps.rtx.clone(),
            rtx_ssrcs: ps.rtx_ssrcs.clone(),
        }));
        self.published.insert(
            ps.mid.clone(),
            Published {
                sid: info.sid.clone(),
                codec: codec.unwrap_or_default(),
            },
        );
        tracing::info!(participant = %self.psid, track = %info.sid, mid = %ps.mid, mime = %info.mime_type, rids = ?ps.rids, "track published");
        let layers = if info.layers.is_empty() {
            info.codecs
                .first()
                .map(|c| c.layers.clone())
                .unwrap_or_default()
        } else {
            info.layers.clone()
        };
        // VP9 in one stream announced with several layers (livekit-client's L3T3_KEY):
        // subscribers choose among its spatial layers as among simulcast streams.
        let svc = ps.rids.len() <= 1
            && ps
                .codecs
                .first()
                .is_some_and(|c| c.name.eq_ignore_ascii_case("vp9"))
            && layers.len() > 1;
        let offer = TrackOffer {
            track_sid: info.sid.clone(),
            track_id: track,
            publisher_sid: self.psid.to_string(),
            kind: ps.kind,
            codecs: ps.codecs.clone(),
            layer_count: if svc {
                layers.len().min(negotiation::MAX_SIMULCAST_LAYERS)
            } else {
                ps.rids.len().max(1)
            },
            layers,
            stream: info.stream.clone(),
            priority: if info.source == pb::TrackSource::ScreenShare as i32 {
                2
            } else {
                0
            },
        };
        (info, offer)
    }

    /// Single PC: asks the client for a new offer when downstream tracks wait for sections.
    fn request_sections(&mut self, ctx: &mut Ctx<'_>) {
        let waiting: Vec<MediaKind> = self
            .downs
            .values()
            .filter(|d| d.mid.is_none())
            .map(|d| d.offer.kind)
            .collect();
        if waiting.is_empty() {
            return;
        }
        let free = |k: MediaKind| {
            self.slots
                .iter()
                .filter(|s| {
                    s.kind == k
                        && !self
                            .downs
                            .values()
                            .any(|d| d.mid.as_deref() == Some(&s.mid))
                })
                .count()
        };
        let need = |k: MediaKind| {
            let w = waiting.iter().filter(|x| **x == k).count();
            w.saturating_sub(free(k)) as u32
        };
        let req = pb::MediaSectionsRequirement {
            num_audios: need(MediaKind::Audio),
            num_videos: need(MediaKind::Video),
        };
        self.send(ctx, Resp::MediaSectionsRequirement(req));
    }

    /// Dual PC: the client's answer to a subscriber offer starts forwarding of the tracks
    /// placed in it.
    pub fn handle_answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        a: pb::SessionDescription,
    ) -> Result<Effects, RoomError> {
        let mut fx = Effects::default();
        let sd = lkr_sdp::parse(&a.sdp)
            .map_err(|e| RoomError::InvalidArgument(format!("bad answer: {e}")))?;
        let Some(mut t) = self.sub_t.take() else {
            return Err(RoomError::InvalidArgument("answer without an offer".into()));
        };
        let added = self.add_peer(ctx, &mut t, &sd, false);
        let peer = t.peer;
        self.sub_t = Some(t);
        added?;
        if self
            .awaiting_answer
            .is_some_and(|id| a.id != 0 && id != a.id)
        {
            tracing::debug!(participant = %self.psid, "answer for an older offer");
        }
        tracing::debug!(participant = %self.psid, id = a.id, awaiting = ?self.awaiting_answer, again = self.sub_dirty, "subscriber answer");
        self.awaiting_answer = None;
        self.recyclable.extend(self.offered_inactive.drain(..));
        let pts = negotiation::accepted_payload_types(&sd);
        let mut extras = negotiation::accepted_down_extras(&sd);
        let delay = self.playout_delay;
        for (sid, d) in self.downs.iter_mut() {
            if d.active {
                continue;
            }
            let Some(mid) = &d.mid else { continue };
            if let Some(p) = pts.get(mid).filter(|p| !p.is_empty()) {
                let x = extras.remove(mid).unwrap_or_default();
                d.start(ctx.out, peer, p, x, delay);
                fx.subscribed.push(sid.clone());
            }
        }
        if self.sub_dirty {
            self.sub_dirty = false;
            self.negotiate_subscriber(ctx);
        }
        Ok(fx)
    }

    /// Dual PC: sends a new subscriber offer, or notes that one is due after the answer.
    fn negotiate_subscriber(&mut self, ctx: &mut Ctx<'_>) {
        if self.awaiting_answer.is_some() {
            self.sub_dirty = true;
            return;
        }
        self.ensure_sub_transport(ctx);
        if !self
            .sub_sections
            .iter()
            .any(|s| matches!(s, OfferSection::Data { .. }))
        {
            self.sub_sections
                .insert(0, OfferSection::Data { mid: "0".into() });
        }
        self.version += 1;
        let Some(t) = self.sub_t.as_ref() else {
            return;
        };
        let sdp = negotiation::subscriber_offer(
            &t.local,
            self.version,
            self.session_id,
            &self.sub_sections,
        );
        self.offered_inactive = self
            .sub_sections
            .iter()
            .filter_map(|s| match s {
                OfferSection::Media {
                    mid, track: None, ..
                } => Some(mid.clone()),
                _ => None,
            })
            .collect();
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        self.awaiting_answer = Some(id);
        tracing::debug!(
            participant = %self.psid,
            id,
            tracks = self.sub_sections.iter().filter(|s| matches!(s, OfferSection::Media { track: Some(_), .. })).count(),
            inactive = self.offered_inactive.len(),
            "subscriber offer"
        );
        self.send(
            ctx,
            Resp::Offer(pb::SessionDescription {
                r#type: "offer".into(),
                sdp: sdp.write(),
                id,
                mid_to_track_id: HashMap::new(),
            }),
        );
        self.send_candidates(ctx, false, "0");
    }

    /// Starts receiving a track: a section for it (dual PC, new offer) or a request for one
    /// (single PC).
    pub fn subscribe(&mut self, ctx: &mut Ctx<'_>, offer: TrackOffer) {
        if self.downs.contains_key(&offer.track_sid) || !self.permission.can_subscribe {
            return;
        }
        let limit = match offer.kind {
            MediaKind::Audio => ctx.config.limits.subscription_limit_audio,
            MediaKind::Video => ctx.config.limits.subscription_limit_video,
        };
        if limit > 0
            && self
                .downs
                .values()
                .filter(|d| d.offer.kind == offer.kind)
                .count()
                >= limit
        {
            tracing::debug!(participant = %self.psid, track = %offer.track_sid, limit, "subscription limit reached");
            self.refuse_subscription(ctx, offer.track_sid);
            return;
        }
        // The peer connection's sections: one per track received (and, with one PC, per
        // track published), one for data. Past the cap the client's next description would
        // be refused (`lkr_sdp::Limit::MediaSections`), so the subscription is refused now.
        let max = ctx.config.limits.max_media_sections;
        if self.single_pc && self.downs.len() + self.published.len() + self.pending.len() + 1 >= max
        {
            tracing::debug!(participant = %self.psid, track = %offer.track_sid, max, "media section limit reached");
            self.refuse_subscription(ctx, offer.track_sid);
            return;
        }
        let ssrc = loop {
            let s: u32 = rand::random();
            // Each down track also owns `rtx_ssrc(s)` for its RTX stream.
            if s != 0
                && !self
                    .downs
                    .values()
                    .any(|d| d.ssrc == s || d.ssrc == negotiation::rtx_ssrc(s))
            {
                break s;
            }
        };
        let sid = offer.track_sid.clone();
        let kind = offer.kind;
        let mut d = Down {
            offer,
            ssrc,
            mid: None,
            active: false,
            paused: false,
            max_layer: None,
        };
        if self.single_pc {
            self.downs.insert(sid, d);
            self.request_sections(ctx);
        } else {
            let sections = self.sub_sections.len();
            // An answered inactive section of the same kind carries the new track, so that
            // the subscriber PC does not grow a section per subscription. Not with synced
            // stream ids (as LiveKit): a client names the track of a reused section by the
            // track id it had first, and the stream id no longer carries the track's sid.
            let sync = self.sync_streams;
            let reuse = self.sub_sections.iter_mut().find_map(|s| match s {
                OfferSection::Media {
                    mid,
                    kind: k,
                    track,
                } if !sync
                    && *k == kind
                    && track.is_none()
                    && self.recyclable.contains(mid.as_str())
                    && self.left_by.get(mid.as_str()) != Some(&sid) =>
                {
                    Some((mid.clone(), track))
                }
                _ => None,
            });
            match reuse {
                Some((mid, slot)) => {
                    self.recyclable.remove(&mid);
                    self.left_by.remove(&mid);
                    d.mid = Some(mid);
                    *slot = Some(down_track(&d, self.sync_streams));
                }
                None if sections >= ctx.config.limits.max_media_sections => {
                    tracing::debug!(participant = %self.psid, track = %sid, "media section limit reached");
                    self.refuse_subscription(ctx, sid);
                    return;
                }
                None => {
                    let mid = self.sub_sections.len().to_string();
                    d.mid = Some(mid.clone());
                    self.sub_sections.push(OfferSection::Media {
                        mid,
                        kind,
                        track: Some(down_track(&d, self.sync_streams)),
                    });
                }
            }
            // Only the section it left last is avoided: a track toggled on and off takes
            // turns between two sections instead of growing the offer.
            self.left_by.retain(|_, t| *t != sid);
            self.downs.insert(sid, d);
            self.negotiate_subscriber(ctx);
        }
    }

    /// Answers a subscription that cannot be taken (LiveKit has no closer error).
    fn refuse_subscription(&self, ctx: &mut Ctx<'_>, track_sid: String) {
        self.send(
            ctx,
            Resp::SubscriptionResponse(pb::SubscriptionResponse {
                track_sid,
                err: pb::SubscriptionError::SeUnknown as i32,
            }),
        );
    }

    /// Stops receiving a track; returns whether it was received.
    pub fn unsubscribe(&mut self, ctx: &mut Ctx<'_>, sid: &str) -> bool {
        let Some(d) = self.downs.remove(sid) else {
            return false;
        };
        if d.active
            && let Some(peer) = self.down_peer()
        {
            ctx.out.media(Command::Unsubscribe {
                peer,
                track: d.offer.track_id,
            });
        }
        if self.single_pc {
            if let Some(mid) = d.mid {
                self.cooling.insert(mid);
            }
            // Ask for a new offer so that the next answer marks the section inactive.
            self.send(
                ctx,
                Resp::MediaSectionsRequirement(pb::MediaSectionsRequirement::default()),
            );
        } else {
            for s in self.sub_sections.iter_mut() {
                if let OfferSection::Media { mid, track, .. } = s
                    && d.mid.as_deref() == Some(mid.as_str())
                {
                    *track = None;
                    self.left_by.insert(mid.clone(), sid.to_owned());
                }
            }
            self.negotiate_subscriber(ctx);
        }
        true
    }
}

/// How the core should send one downstream track, from what the subscriber accepted.
fn subscribe_spec(
    peer: PeerId,
    d: &Down,
    pts: &[(lkr_sfu::CodecKind, u8)],
    extras: negotiation::DownExtras,
    delay: Option<(u32, u32)>,
) -> SubscribeSpec {
    let rtx = (d.offer.kind == MediaKind::Video && !extras.rtx.is_empty())
        .then(|| (negotiation::rtx_ssrc(d.ssrc), extras.rtx));
    SubscribeSpec {
        peer,
        track: d.offer.track_id,
        ssrc: d.ssrc,
        payload_types: pts.to_vec(),
        transport_cc: extras.transport_cc,
        rtx,
        priority: d.offer.priority,
        playout_delay: delay
            .filter(|_| d.offer.kind == MediaKind::Video && extras.playout_delay != 0)
            .map(|(min, max)| (extras.playout_delay, lkr_sfu::playout_delay(min, max))),
    }
}

/// A downstream track as the subscriber's SDP names it: stream id `PA_…|TR_…`, or with
/// `sync` `PA_…|<stream>` (`camera`, `screen` or the publisher's own name for it, when that is
/// an msid token of at most 64 characters without `|`), which one publisher's tracks share.
fn down_track(d: &Down, sync: bool) -> DownTrack {
    let stream = &d.offer.stream;
    let synced = sync
        && (1..=64).contains(&stream.len())
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{}~".contains(&b));
    let group = if synced { stream } else { &d.offer.track_sid };
    DownTrack {
        kind: d.offer.kind,
        stream_id: format!("{}|{group}", d.offer.publisher_sid),
        track_sid: d.offer.track_sid.clone(),
        ssrc: d.ssrc,
        cname: d.offer.publisher_sid.clone(),
        codecs: d.offer.codecs.clone(),
    }
}
