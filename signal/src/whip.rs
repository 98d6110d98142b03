//! Participants whose signalling is HTTP: WHIP ingest and WHEP playback sessions.
//!
//! A session is an ordinary single-PC participant of the room machine. Its front door (the
//! HTTP routes in `lkr-api`) calls [`HttpSessions`]: a `POST` joins the participant, turns
//! the offer into machine inputs (WHIP: one `add_track` per sending section, then the offer;
//! WHEP: [`lkr_room::Machine::handle_play_offer`]) and waits, with a deadline, for the answer
//! the machine addresses to the participant. A small task per session stands in for the
//! WebSocket: it reads what the machine sends the participant (keeping answers for whoever
//! waits for one, dropping the rest), keeps the signal link alive, and ends the participant
//! when its media never connects within [`CONNECT_TIMEOUT`] (once connected, the media core's
//! consent check ends it when media stops), and a WHEP player once every track it played is
//! gone (its publisher left or unpublished). `PATCH` (trickle, ICE restart) and `DELETE`
//! find the session by participant sid.
//!
//! Bounds: sessions per node and per room ([`HttpLimits`]), the SDP size
//! ([`MAX_SDP_BYTES`]), trickled candidates per session ([`MAX_TRICKLE_CANDIDATES`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lkr_proto::pb;
use lkr_proto::token::Claims;
use lkr_room::{Join, Machine, PlayOffer, RoomError};
use tokio::sync::{mpsc, oneshot};

use crate::control::{Control, ToSession};

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

/// Largest SDP offer or fragment accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Candidates one session may trickle over its life (the server is ICE-lite and learns the
/// client's address from its checks, so candidates are only validated and counted).
pub const MAX_TRICKLE_CANDIDATES: usize = 64;
/// How long a request waits for the machine's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A session whose media has not connected by then is ended (the ICE consent timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a session tells the machine its signal link is alive.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Most `add_track`s one WHIP offer may make (its sending sections).
const MAX_OFFER_TRACKS: usize = 16;

/// How many HTTP-signalled sessions the node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// WHIP and WHEP sessions on this node.
    pub max_sessions: usize,
    /// WHIP and WHEP sessions in one room.
    pub max_sessions_per_room: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            max_sessions_per_room: 64,
        }
    }
}

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client plays.
    Whep,
}

/// Why a request failed; [`HttpError::status`] is the HTTP status the WHIP/WHEP drafts
/// name for it, and the text is the response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The client sent something malformed (SDP, fragment, path).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or a token that does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that does not allow this (another room, another identity, a grant it lacks).
    #[error("{0}")]
    Forbidden(String),
    /// No such session, publisher or track.
    #[error("{0}")]
    NotFound(String),
    /// `If-Match` names another ICE session.
    #[error("the entity tag does not match the session's ICE session")]
    PreconditionFailed,
    /// Another offer of the same session is being answered.
    #[error("another request of this session is being answered")]
    Conflict,
    /// The client exceeded a per-session bound.
    #[error("{0}")]
    TooMany(String),
    /// The node cannot take it (session caps, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// Ours.
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Unauthorized(_) => 401,
            HttpError::Forbidden(_) => 403,
            HttpError::NotFound(_) => 404,
            HttpError::Conflict => 409,
            HttpError::PreconditionFailed => 412,
            HttpError::TooMany(_) => 429,
            HttpError::Unavailable(_) => 503,
            HttpError::Internal(_) => 500,
        }
    }

    fn from_room(e: RoomError) -> Self {
        use lkr_room::Fault;
        let msg = e.to_string();
        match e.fault() {
            Fault::Invalid | Fault::Precondition => HttpError::BadRequest(msg),
            Fault::NotPermitted => HttpError::Forbidden(msg),
            Fault::NotFound => HttpError::NotFound(msg),
            Fault::Limit => match e {
                RoomError::RoomFull(_) => HttpError::Forbidden(msg),
                _ => HttpError::Unavailable(msg),
            },
            Fault::Internal => HttpError::Internal(msg),
            Fault::Unavailable => HttpError::Unavailable(msg),
        }
    }

    fn gone() -> Self {
        HttpError::Unavailable("the server is shutting down".into())
    }

    fn no_session() -> Self {
        HttpError::NotFound("session not found".into())
    }
}

/// A session just created.
#[derive(Debug, Clone)]
pub struct Created {
    /// The participant's sid, which names the session resource.
    pub participant_sid: String,
    /// The SDP answer.
    pub answer: String,
    /// The ICE session (the server's ufrag), for `ETag`.
    pub etag: String,
    /// The ICE servers the participant may use, as a join response lists them.
    pub ice_servers: Vec<pb::IceServer>,
}

/// An ICE restart's result.
#[derive(Debug, Clone)]
pub struct Restarted {
    /// The `application/trickle-ice-sdpfrag` body: the new credentials and candidates.
    pub fragment: String,
    /// The new ICE session, for `ETag`.
    pub etag: String,
}

/// What a WHEP player asks for.
#[derive(Debug, Clone)]
pub struct PlayRequest {
    /// The room named in the URL.
    pub room: String,
    /// The publisher's identity.
    pub publisher: String,
    /// One track's sid, or every track of the publisher.
    pub track_sid: Option<String>,
    /// Highest simulcast quality (0 low, 1 medium, 2 high).
    pub quality: Option<i32>,
}

enum Cmd {
    /// Hand the next answer (or the refusal of an `add_track` before it) to this waiter.
    AwaitAnswer(oneshot::Sender<Result<String, HttpError>>),
}

struct Entry {
    kind: Kind,
    room: String,
    identity: String,
    etag: String,
    /// The last offer, which an ICE restart re-sends with new credentials.
    offer: String,
    candidates: usize,
    cmds: mpsc::Sender<Cmd>,
    /// Held while an offer of the session is being answered: one at a time.
    busy: Arc<tokio::sync::Mutex<()>>,
}

type Registry = Arc<Mutex<HashMap<String, Entry>>>;

/// The node's WHIP and WHEP sessions; cheap to clone.
#[derive(Clone)]
pub struct HttpSessions {
    control: Control,
    limits: HttpLimits,
    sessions: Registry,
}

impl HttpSessions {
    /// No sessions yet; participants are run by `control`.
    pub fn new(control: Control, limits: HttpLimits) -> Self {
        Self {
            control,
            limits,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_caps(&self, room: &str) -> Result<(), HttpError> {
        let s = self.lock();
        if s.len() >= self.limits.max_sessions {
            return Err(HttpError::Unavailable(format!(
                "this node holds its maximum of {} WHIP/WHEP sessions",
                self.limits.max_sessions
            )));
        }
        if s.values().filter(|e| e.room == room).count() >= self.limits.max_sessions_per_room {
            return Err(HttpError::Unavailable(format!(
                "room holds its maximum of {} WHIP/WHEP sessions",
                self.limits.max_sessions_per_room
            )));
        }
        Ok(())
    }

    /// `POST /whip/v1`: publishes what the offer sends, as the token's identity in the
    /// token's room (kind INGRESS when `ingress`, else as the token says).
    pub async fn create_whip(
        &self,
        mut claims: Claims,
        offer: String,
        ingress: bool,
    ) -> Result<Created, HttpError> {
        let (room, identity) = token_place(&claims)?;
        if !claims.video().can_publish() {
            return Err(HttpError::Forbidden(
                "the token does not allow publishing".into(),
            ));
        }
        let sd = parse_offer(&offer)?;
        let adds = add_tracks_of(&sd);
        if adds.is_empty() {
            return Err(HttpError::BadRequest(
                "the offer sends no audio or video".into(),
            ));
        }
        if adds.len() > MAX_OFFER_TRACKS {
            return Err(HttpError::BadRequest(format!(
                "the offer sends more than {MAX_OFFER_TRACKS} tracks"
            )));
        }
        if ingress {
            claims.kind = "ingress".into();
        }
        self.check_caps(&room)?;
        let (psid, cmds) = self.start(Kind::Whip, &room, &identity, claims).await?;
        let p = psid.clone();
        let o = offer.clone();
        let r = self
            .negotiate(&cmds, move |m, now| {
                for t in adds {
                    m.handle_signal(now, &p, Req::AddTrack(t))?;
                }
                m.handle_signal(now, &p, Req::Offer(description(o)))
            })
            .await;
        self.finish_create(psid, offer, r).await
    }

    /// `POST /whep/v1/{room}/{identity}[/{track}]`: plays the publisher's tracks to the
    /// offer's receive-only sections, as the token's identity.
    pub async fn create_whep(
        &self,
        claims: Claims,
        play: PlayRequest,
        offer: String,
    ) -> Result<Created, HttpError> {
        let (room, identity) = token_place(&claims)?;
        if room != play.room {
            return Err(HttpError::Forbidden("the token is for another room".into()));
        }
        if !claims.video().can_subscribe() {
            return Err(HttpError::Forbidden(
                "the token does not allow subscribing".into(),
            ));
        }
        let sd = parse_offer(&offer)?;
        let receives = sd.media.iter().any(|m| {
            matches!(
                m.kind,
                lkr_sdp::MediaKind::Audio | lkr_sdp::MediaKind::Video
            ) && !m.is_rejected()
                && m.direction_or_default() == lkr_sdp::Direction::RecvOnly
        });
        if !receives {
            return Err(HttpError::BadRequest(
                "the offer receives no audio or video (WHEP offers are recvonly)".into(),
            ));
        }
        // The publisher and its tracks must be there before a player joins for them.
        let (r, who, track) = (room.clone(), play.publisher.clone(), play.track_sid.clone());
        let found = self
            .control
            .call(move |m, _| {
                m.api_get_participant(&r, &who).map(|p| {
                    p.tracks
                        .iter()
                        .any(|t| track.as_ref().is_none_or(|want| *want == t.sid))
                })
            })
            .await
            .map_err(|_| HttpError::gone())?;
        match found {
            Ok(true) => {}
            Ok(false) => {
                return Err(HttpError::NotFound(
                    "the participant publishes no such track".into(),
                ));
            }
            Err(_) => return Err(HttpError::NotFound("participant not found".into())),
        }
        self.check_caps(&room)?;
        let (psid, cmds) = self.start(Kind::Whep, &room, &identity, claims).await?;
        let p = psid.clone();
        let o = offer.clone();
        let r = self
            .negotiate(&cmds, move |m, now| {
                m.handle_play_offer(
                    now,
                    &p,
                    PlayOffer {
                        publisher: play.publisher,
                        track_sid: play.track_sid,
                        quality: play.quality,
                        offer: description(o),
                    },
                )
            })
            .await;
        self.finish_create(psid, offer, r).await
    }

    /// Joins the participant and starts its session task.
    async fn start(
        &self,
        kind: Kind,
        room: &str,
        identity: &str,
        claims: Claims,
    ) -> Result<(String, mpsc::Sender<Cmd>), HttpError> {
        let join = Join {
            room: room.to_string(),
            identity: identity.to_string(),
            claims,
            single_pc: true,
            auto_subscribe: false,
            auto_subscribe_data: false,
            client_protocol: lkr_room::machine::SERVER_PROTOCOL,
            publisher_offer: None,
            metadata: None,
            attributes: HashMap::new(),
            resume: None,
            // A WHEP player plays a publisher's tracks in sync when they share a stream.
            sync_stream_id: true,
        };
        let joined = self
            .control
            .join(join)
            .await
            .map_err(|_| HttpError::gone())?
            .map_err(HttpError::from_room)?;
        let psid = joined.participant_sid.clone();
        let (tx, rx) = mpsc::channel(4);
        let admitted = {
            let mut s = self.lock();
            let in_room = s.values().filter(|e| e.room == room).count();
            let over =
                s.len() >= self.limits.max_sessions || in_room >= self.limits.max_sessions_per_room;
            if !over {
                s.insert(
                    psid.clone(),
                    Entry {
                        kind,
                        room: room.to_string(),
                        identity: identity.to_string(),
                        etag: String::new(),
                        offer: String::new(),
                        candidates: 0,
                        cmds: tx.clone(),
                        busy: Arc::new(tokio::sync::Mutex::new(())),
                    },
                );
            }
            !over
        };
        if !admitted {
            let _ = self.leave(&psid).await;
            return Err(HttpError::Unavailable("too many WHIP/WHEP sessions".into()));
        }
        tracing::info!(participant = %psid, %room, %identity, ?kind, "HTTP-signalled session started");
        tokio::spawn(run(
            self.control.clone(),
            self.sessions.clone(),
            kind,
            joined,
            rx,
        ));
        Ok((psid, tx))
    }

    /// Records a created session's answer, or ends the participant when it failed.
    async fn finish_create(
        &self,
        psid: String,
        offer: String,
        r: Result<String, HttpError>,
    ) -> Result<Created, HttpError> {
        let answer = match r {
            Ok(a) => a,
            Err(e) => {
                self.lock().remove(&psid);
                let _ = self.leave(&psid).await;
                return Err(e);
            }
        };
        let etag = ice_session(&answer);
        let p = psid.clone();
        let ice_servers = self
            .control
            .call(move |m, now| m.ice_servers(now, &p))
            .await
            .map_err(|_| HttpError::gone())?;
        match self.lock().get_mut(&psid) {
            Some(e) => {
                e.etag = etag.clone();
                e.offer = offer;
            }
            None => return Err(HttpError::NotFound("the session ended".into())),
        }
        Ok(Created {
            participant_sid: psid,
            answer,
            etag,
            ice_servers,
        })
    }

    /// Runs `f` on the machine and waits for the answer it makes.
    async fn negotiate(
        &self,
        cmds: &mpsc::Sender<Cmd>,
        f: impl FnOnce(&mut Machine, Instant) -> Result<(), RoomError> + Send + 'static,
    ) -> Result<String, HttpError> {
        let (tx, rx) = oneshot::channel();
        cmds.send(Cmd::AwaitAnswer(tx))
            .await
            .map_err(|_| HttpError::NotFound("the session ended".into()))?;
        self.control
            .call(f)
            .await
            .map_err(|_| HttpError::gone())?
            .map_err(HttpError::from_room)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(HttpError::NotFound("the session ended".into())),
            Err(_) => Err(HttpError::Internal(format!(
                "no answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The session `psid` of `kind`, checked against the request's token.
    fn authorize(&self, kind: Kind, psid: &str, claims: &Claims) -> Result<(), HttpError> {
        let s = self.lock();
        let e = s
            .get(psid)
            .filter(|e| e.kind == kind)
            .ok_or_else(HttpError::no_session)?;
        let video = claims.video();
        if !video.room_join || video.room != e.room || claims.identity() != e.identity {
            return Err(HttpError::Forbidden(
                "the token is not for this session's room and identity".into(),
            ));
        }
        Ok(())
    }

    /// `PATCH` with `If-Match: <etag>`: trickled candidates, validated and counted (the
    /// server is ICE-lite; the client's checks tell it the addresses).
    pub async fn trickle(
        &self,
        kind: Kind,
        psid: &str,
        claims: &Claims,
        if_match: &str,
        fragment: &str,
    ) -> Result<(), HttpError> {
        self.authorize(kind, psid, claims)?;
        let frag = parse_fragment(fragment)?;
        {
            let mut s = self.lock();
            let e = s.get_mut(psid).ok_or_else(HttpError::no_session)?;
            if unquote(if_match) != e.etag {
                return Err(HttpError::PreconditionFailed);
            }
            if e.candidates + frag.candidates > MAX_TRICKLE_CANDIDATES {
                return Err(HttpError::TooMany(format!(
                    "more than {MAX_TRICKLE_CANDIDATES} trickled candidates"
                )));
            }
            e.candidates += frag.candidates;
        }
        Ok(())
    }

    /// `PATCH` with `If-Match: *`: an ICE restart with the fragment's new credentials; the
    /// server answers with new credentials of its own.
    pub async fn restart_ice(
        &self,
        kind: Kind,
        psid: &str,
        claims: &Claims,
        fragment: &str,
    ) -> Result<Restarted, HttpError> {
        self.authorize(kind, psid, claims)?;
        let frag = parse_fragment(fragment)?;
        let (Some(ufrag), Some(pwd)) = (frag.ufrag, frag.pwd) else {
            return Err(HttpError::BadRequest(
                "an ICE restart needs a=ice-ufrag and a=ice-pwd".into(),
            ));
        };
        let (old, cmds, busy) = {
            let s = self.lock();
            let e = s.get(psid).ok_or_else(HttpError::no_session)?;
            (e.offer.clone(), e.cmds.clone(), e.busy.clone())
        };
        let _one_at_a_time = busy.try_lock_owned().map_err(|_| HttpError::Conflict)?;
        let mut sd = lkr_sdp::parse(&old)
            .map_err(|e| HttpError::Internal(format!("stored offer unreadable: {e}")))?;
        sd.ice_ufrag = Some(ufrag.clone());
        sd.ice_pwd = Some(pwd.clone());
        for m in sd.media.iter_mut() {
            m.ice_ufrag = Some(ufrag.clone());
            m.ice_pwd = Some(pwd.clone());
            m.candidates.clear();
        }
        let offer = sd.write();
        let p = psid.to_string();
        let o = offer.clone();
        let answer = self
            .negotiate(&cmds, move |m, now| {
                m.handle_signal(now, &p, Req::Offer(description(o)))
            })
            .await?;
        let etag = ice_session(&answer);
        if let Some(e) = self.lock().get_mut(psid) {
            e.etag = etag.clone();
            e.offer = offer;
            e.candidates = 0;
        }
        Ok(Restarted {
            fragment: answer_fragment(&answer),
            etag,
        })
    }

    /// `DELETE`: the participant leaves.
    pub async fn delete(&self, kind: Kind, psid: &str, claims: &Claims) -> Result<(), HttpError> {
        self.authorize(kind, psid, claims)?;
        self.lock().remove(psid);
        match self.leave(psid).await {
            Ok(()) | Err(HttpError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn leave(&self, psid: &str) -> Result<(), HttpError> {
        let p = psid.to_string();
        self.control
            .call(move |m, now| m.handle_signal(now, &p, Req::Leave(client_leave())))
            .await
            .map_err(|_| HttpError::gone())?
            .map_err(HttpError::from_room)
    }
}

fn client_leave() -> pb::LeaveRequest {
    pb::LeaveRequest {
        can_reconnect: false,
        reason: pb::DisconnectReason::ClientInitiated as i32,
        action: pb::leave_request::Action::Disconnect as i32,
        regions: None,
    }
}

fn description(sdp: String) -> pb::SessionDescription {
    pb::SessionDescription {
        r#type: "offer".into(),
        sdp,
        id: 0,
        mid_to_track_id: HashMap::new(),
    }
}

/// The room and identity a token joins.
fn token_place(claims: &Claims) -> Result<(String, String), HttpError> {
    let video = claims.video();
    if !video.room_join {
        return Err(HttpError::Unauthorized(
            "permissions denied: the token lacks the roomJoin grant".into(),
        ));
    }
    if video.room.is_empty() {
        return Err(HttpError::Unauthorized("the token names no room".into()));
    }
    if claims.identity().is_empty() {
        return Err(HttpError::BadRequest("identity cannot be empty".into()));
    }
    Ok((video.room.clone(), claims.identity().to_string()))
}

fn parse_offer(offer: &str) -> Result<lkr_sdp::SessionDescription, HttpError> {
    if offer.len() > MAX_SDP_BYTES {
        return Err(HttpError::BadRequest(format!(
            "the offer is larger than {MAX_SDP_BYTES} bytes"
        )));
    }
    let sd = lkr_sdp::parse(offer)
        .map_err(|e| HttpError::BadRequest(format!("malformed SDP offer: {e}")))?;
    if sd.media.is_empty() {
        return Err(HttpError::BadRequest(
            "malformed SDP offer: no media sections".into(),
        ));
    }
    Ok(sd)
}

/// One `add_track` per section the offer sends on: microphone for audio, camera for video,
/// named by the section's `msid` track id (else its kind), simulcast layers from its rids.
fn add_tracks_of(sd: &lkr_sdp::SessionDescription) -> Vec<pb::AddTrackRequest> {
    let mut out = Vec::new();
    for m in &sd.media {
        let (ty, source, kind) = match m.kind {
            lkr_sdp::MediaKind::Audio => {
                (pb::TrackType::Audio, pb::TrackSource::Microphone, "audio")
            }
            lkr_sdp::MediaKind::Video => (pb::TrackType::Video, pb::TrackSource::Camera, "video"),
            _ => continue,
        };
        if m.is_rejected() || !m.direction_or_default().sends() {
            continue;
        }
        let Some(mid) = m.mid.clone() else { continue };
        let msid_track = m
            .msid
            .as_ref()
            .map(|x| x.track.clone())
            .filter(|t| !t.is_empty());
        let cid = msid_track.clone().unwrap_or_else(|| mid.clone());
        let name = msid_track.unwrap_or_else(|| kind.to_string());
        let rids: Vec<&str> = m
            .rids
            .iter()
            .filter(|r| r.direction == lkr_sdp::RidDirection::Send)
            .map(|r| r.id.as_str())
            .collect();
        let layers: Vec<pb::VideoLayer> = if rids.len() > 1 {
            let mut qs: Vec<i32> = rids.iter().map(|r| rid_quality(r)).collect();
            qs.sort_unstable();
            qs.dedup();
            qs.truncate(lkr_room::negotiation::MAX_SIMULCAST_LAYERS);
            qs.into_iter()
                .map(|quality| pb::VideoLayer {
                    quality,
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        out.push(pb::AddTrackRequest {
            cid,
            name,
            r#type: ty as i32,
            source: source as i32,
            layers,
            ..Default::default()
        });
    }
    out
}

/// The quality of a simulcast rid: LiveKit's `q`/`h`/`f`, or `0`/`1`/`2`, else by name.
fn rid_quality(rid: &str) -> i32 {
    match rid {
        "q" | "0" | "l" | "low" => 0,
        "h" | "1" | "m" | "mid" | "medium" => 1,
        _ => 2,
    }
}

/// The server's ICE ufrag in an answer.
fn ice_session(answer: &str) -> String {
    lkr_sdp::parse(answer)
        .ok()
        .and_then(|sd| {
            sd.ice_ufrag
                .clone()
                .or_else(|| sd.media.iter().find_map(|m| m.ice_ufrag.clone()))
        })
        .unwrap_or_default()
}

fn unquote(tag: &str) -> &str {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
}

/// What an `application/trickle-ice-sdpfrag` body holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fragment {
    ufrag: Option<String>,
    pwd: Option<String>,
    candidates: usize,
}

/// Reads a fragment (RFC 8840): `a=` and `m=` lines; candidates must parse.
fn parse_fragment(body: &str) -> Result<Fragment, HttpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(HttpError::BadRequest(format!(
            "the fragment is larger than {MAX_SDP_BYTES} bytes"
        )));
    }
    let mut f = Fragment::default();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with("m=") {
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            return Err(HttpError::BadRequest(format!(
                "malformed SDP fragment line: {:?}",
                line.chars().take(80).collect::<String>()
            )));
        };
        if let Some(v) = attr.strip_prefix("ice-ufrag:") {
            f.ufrag = Some(v.trim().to_string());
        } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
            f.pwd = Some(v.trim().to_string());
        } else if let Some(v) = attr.strip_prefix("candidate:") {
            lkr_sdp::parse_candidate(v).map_err(|e| {
                HttpError::BadRequest(format!("malformed candidate in the fragment: {e}"))
            })?;
            f.candidates += 1;
        }
    }
    if f.ufrag
        .as_ref()
        .is_some_and(|u| u.is_empty() || u.len() > 256)
        || f.pwd
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.len() > 256)
    {
        return Err(HttpError::BadRequest(
            "malformed ICE credentials in the fragment".into(),
        ));
    }
    Ok(f)
}

/// The fragment answering an ICE restart: the server's new credentials and its candidates
/// for each section of the answer.
fn answer_fragment(answer: &str) -> String {
    let Ok(sd) = lkr_sdp::parse(answer) else {
        return String::new();
    };
    let mut out = String::from("a=ice-lite\r\n");
    let first = sd.media.iter().find(|m| !m.is_rejected());
    let ufrag = sd
        .ice_ufrag
        .clone()
        .or_else(|| first.and_then(|m| m.ice_ufrag.clone()));
    let pwd = sd
        .ice_pwd
        .clone()
        .or_else(|| first.and_then(|m| m.ice_pwd.clone()));
    if let (Some(u), Some(p)) = (ufrag, pwd) {
        out += &format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\n");
    }
    for m in sd.media.iter().filter(|m| !m.is_rejected()) {
        let Some(mid) = &m.mid else { continue };
        out += &format!(
            "m={} 9 {} {}\r\na=mid:{mid}\r\n",
            m.kind.as_str(),
            m.protocol,
            m.formats.first().map(String::as_str).unwrap_or("0")
        );
        for c in &m.candidates {
            out += &format!("a=candidate:{c}\r\n");
        }
        if m.end_of_candidates {
            out += "a=end-of-candidates\r\n";
        }
    }
    out
}

/// One session's stand-in for a WebSocket: reads what the machine sends the participant,
/// keeps its link alive, and ends it when its media never connects.
async fn run(
    control: Control,
    sessions: Registry,
    kind: Kind,
    joined: crate::control::Joined,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let _running = control.session_guard();
    let crate::control::Joined {
        participant_sid: psid,
        mut rx,
        abort,
        ..
    } = joined;
    let started = tokio::time::Instant::now();
    let mut media_up = false;
    let mut waiter: Option<oneshot::Sender<Result<String, HttpError>>> = None;
    let mut tick = tokio::time::interval_at(started + KEEPALIVE, KEEPALIVE);
    let why = loop {
        tokio::select! {
            biased;
            c = cmds.recv() => match c {
                Some(Cmd::AwaitAnswer(tx)) => {
                    if let Some(old) = waiter.replace(tx) {
                        let _ = old.send(Err(HttpError::Conflict));
                    }
                }
                None => break "released",
            },
            m = rx.recv() => match m {
                Some(ToSession::Signal(m)) => match m.message() {
                    Resp::Answer(a) => {
                        if let Some(w) = waiter.take() {
                            let _ = w.send(Ok(a.sdp.clone()));
                        }
                    }
                    Resp::RequestResponse(r)
                        if r.reason != pb::request_response::Reason::Ok as i32 =>
                    {
                        if let Some(w) = waiter.take() {
                            let e = if r.reason == pb::request_response::Reason::NotAllowed as i32
                                || r.reason == pb::request_response::Reason::LimitExceeded as i32
                            {
                                HttpError::Forbidden(r.message.clone())
                            } else {
                                HttpError::BadRequest(r.message.clone())
                            };
                            let _ = w.send(Err(e));
                        }
                    }
                    _ => {}
                },
                Some(ToSession::Close(_)) => break "closed by the server",
                None => break "server shutting down",
            },
            _ = tick.tick() => {
                let p = psid.clone();
                let state = control
                    .call(move |m, _| {
                        m.participant_media_up(&p)
                            .map(|up| (up, m.participant_subscriptions(&p)))
                    })
                    .await;
                let end = match state {
                    Err(_) => break "server shutting down",
                    Ok(None) => break "participant gone",
                    Ok(Some((false, _))) if started.elapsed() >= CONNECT_TIMEOUT => {
                        Some("media never connected")
                    }
                    // A player whose publisher's tracks are all gone has nothing to play and
                    // is never renegotiated.
                    Ok(Some((true, 0))) if kind == Kind::Whep && media_up => {
                        Some("nothing left to play")
                    }
                    Ok(Some((up, _))) => {
                        media_up = up;
                        None
                    }
                };
                if let Some(why) = end {
                    let p = psid.clone();
                    let _ = control
                        .call(move |m, now| m.handle_signal(now, &p, Req::Leave(client_leave())))
                        .await;
                    break why;
                }
            }
            _ = abort.notified() => break "aborted",
        }
    };
    sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&psid);
    tracing::info!(participant = %psid, reason = why, "HTTP-signalled session ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_proto::token::VideoGrant;
    use lkr_room::{Config, Limits, RoomDefaults, Rooms};
    use std::net::{IpAddr, Ipv4Addr};

    fn sessions(limits: HttpLimits) -> HttpSessions {
        let config = Config {
            auto_create: true,
            node_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port: 7882,
            region: String::new(),
            node_id: "ND_t".into(),
            fingerprint: ("sha-256".into(), "AA:BB".into()),
            max_metadata_size: 0,
            max_attributes_size: 0,
            enable_remote_unmute: false,
            ice_servers: Vec::new(),
            limits: Limits::default(),
            tcp_port: None,
            turn: None,
        };
        let machine = Machine::new(config, Rooms::new(RoomDefaults::default()), Instant::now());
        let (control, _task) = Control::spawn(machine, None, None);
        HttpSessions::new(control, limits)
    }

    fn claims(identity: &str, room: &str) -> Claims {
        Claims {
            sub: identity.into(),
            video: Some(VideoGrant {
                room_join: true,
                room: room.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:cliU\r\na=ice-pwd:clientpasswordclientpass\r\n\
a=fingerprint:sha-256 11:17:5E:9E:C8:A8:D7:60:78:46:72:FD:EB:C7:A5:A1:ED:4B:62:44:56:58:22:D8:32:8D:7B:ED:BE:93:D0:44\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=msid:s mic\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:1000 cname:c\r\n";

    #[tokio::test]
    async fn a_whip_session_is_answered_patched_and_deleted() {
        let s = sessions(HttpLimits::default());
        let c = s
            .create_whip(claims("pub", "r"), OFFER.into(), false)
            .await
            .expect("created");
        assert!(c.participant_sid.starts_with("PA_"));
        assert!(c.answer.contains("a=recvonly"), "{}", c.answer);
        assert!(c.answer.contains(&format!("a=ice-ufrag:{}", c.etag)));
        assert_eq!(s.len(), 1);
        let psid = c.participant_sid.clone();
        let cand = "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n";
        let mine = claims("pub", "r");
        assert_eq!(
            s.trickle(Kind::Whip, &psid, &mine, "\"other\"", cand).await,
            Err(HttpError::PreconditionFailed)
        );
        assert!(matches!(
            s.trickle(Kind::Whep, &psid, &mine, &c.etag, cand).await,
            Err(HttpError::NotFound(_))
        ));
        assert!(matches!(
            s.trickle(Kind::Whip, &psid, &claims("pub", "other"), &c.etag, cand)
                .await,
            Err(HttpError::Forbidden(_))
        ));
        let tag = format!("\"{}\"", c.etag);
        for _ in 0..MAX_TRICKLE_CANDIDATES {
            s.trickle(Kind::Whip, &psid, &mine, &tag, cand)
                .await
                .expect("within the cap");
        }
        assert!(matches!(
            s.trickle(Kind::Whip, &psid, &mine, &tag, cand).await,
            Err(HttpError::TooMany(_))
        ));
        let r = s
            .restart_ice(
                Kind::Whip,
                &psid,
                &mine,
                "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpasswordnn\r\n",
            )
            .await
            .expect("restarted");
        assert_ne!(r.etag, c.etag);
        assert!(r.fragment.contains(&format!("a=ice-ufrag:{}", r.etag)));
        s.trickle(Kind::Whip, &psid, &mine, &r.etag, cand)
            .await
            .expect("the count starts again after a restart");
        s.delete(Kind::Whip, &psid, &mine).await.expect("deleted");
        assert!(s.is_empty());
        assert!(matches!(
            s.delete(Kind::Whip, &psid, &mine).await,
            Err(HttpError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn one_ice_restart_at_a_time() {
        let s = sessions(HttpLimits::default());
        let c = s
            .create_whip(claims("pub", "r"), OFFER.into(), false)
            .await
            .expect("created");
        let mine = claims("pub", "r");
        let frag = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpasswordnn\r\n";
        let (a, b) = tokio::join!(
            s.restart_ice(Kind::Whip, &c.participant_sid, &mine, frag),
            s.restart_ice(Kind::Whip, &c.participant_sid, &mine, frag),
        );
        assert!(a.is_ok(), "{a:?}");
        assert_eq!(b.map(|_| ()), Err(HttpError::Conflict));
        // the ETag is the answer of the restart that ran
        let a = a.unwrap();
        s.trickle(Kind::Whip, &c.participant_sid, &mine, &a.etag, "")
            .await
            .expect("the new ETag holds");
    }

    #[tokio::test]
    async fn sessions_are_capped_per_room_and_node() {
        let s = sessions(HttpLimits {
            max_sessions: 3,
            max_sessions_per_room: 2,
        });
        for who in ["a", "b"] {
            s.create_whip(claims(who, "r1"), OFFER.into(), false)
                .await
                .expect("within the room cap");
        }
        assert!(matches!(
            s.create_whip(claims("c", "r1"), OFFER.into(), false).await,
            Err(HttpError::Unavailable(_))
        ));
        s.create_whip(claims("c", "r2"), OFFER.into(), false)
            .await
            .expect("another room");
        assert!(matches!(
            s.create_whip(claims("d", "r3"), OFFER.into(), false).await,
            Err(HttpError::Unavailable(_))
        ));
        assert_eq!(s.len(), 3);
        // the refused ones left no participant behind
        let n = s.control.call(|m, _| m.participant_count()).await.unwrap();
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn whip_refusals() {
        let s = sessions(HttpLimits::default());
        let no_publish = Claims {
            video: Some(VideoGrant {
                room_join: true,
                room: "r".into(),
                can_publish: Some(false),
                ..Default::default()
            }),
            sub: "p".into(),
            ..Default::default()
        };
        assert!(matches!(
            s.create_whip(no_publish, OFFER.into(), false).await,
            Err(HttpError::Forbidden(_))
        ));
        assert!(matches!(
            s.create_whip(claims("p", "r"), "garbage".into(), false)
                .await,
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            s.create_whip(claims("p", ""), OFFER.into(), false).await,
            Err(HttpError::Unauthorized(_))
        ));
        assert!(matches!(
            s.create_whip(
                claims("p", "r"),
                OFFER.replace("sendonly", "recvonly"),
                false
            )
            .await,
            Err(HttpError::BadRequest(_))
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn fragments_are_read_and_checked() {
        let f = parse_fragment(
            "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(f.candidates, 1);
        assert!(matches!(
            parse_fragment("hello"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            parse_fragment("a=candidate:garbage"),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn entity_tags_compare_without_quotes() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }

    #[test]
    fn offer_sections_become_add_tracks() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=msid:s mic1\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n";
        let sd = lkr_sdp::parse(sdp).unwrap();
        let adds = add_tracks_of(&sd);
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[0].cid, "mic1");
        assert_eq!(adds[0].name, "mic1");
        assert_eq!(adds[0].source, pb::TrackSource::Microphone as i32);
        assert_eq!(adds[1].cid, "1");
        assert_eq!(adds[1].name, "video");
        let qs: Vec<i32> = adds[1].layers.iter().map(|l| l.quality).collect();
        assert_eq!(qs, [0, 1, 2]);
    }
}
