//! One participant's signalling session: its WebSocket, its peer connections' offer/answer
//! state, its published tracks and its subscriptions.
//!
//! Dual PC (`/rtc`): the client offers on its publisher PC and the server answers; the server
//! offers on the subscriber PC (first right after the JoinResponse, with its data channels)
//! and the client answers. Single PC (`/rtc/v1`): the client is the only offerer; downstream
//! tracks are placed on its receive-only sections in the next answer, with `mid_to_track_id`,
//! and `media_sections_requirement` asks for a new offer when needed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use lkr_proto::{id, pb};
use lkr_sfu::{
    ChannelSpec, CodecKind, Command, Event, MediaKind, PayloadType, PeerConfig, PeerId,
    PublishSpec, RemoteFingerprint, SubscribeSpec, TrackId,
};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::hub::{Hub, Joined, PING_TIMEOUT, ToSession, TrackOffer};
use crate::join::JoinParams;
use lkr_room::negotiation::{self, DownTrack, LocalTransport, OfferSection};

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// How long an answer to update_metadata waits (see `handle_update_metadata`).
const ANSWER_DELAY: Duration = Duration::from_millis(30);

/// The quality (LOW 0, MEDIUM 1, HIGH 2) a track setting asks for: from the requested size
/// when given (the smallest layer at least that large), else from `quality`.
#[allow(deprecated)] // `quality` is deprecated upstream but still sent by clients
fn wanted_quality(ts: &pb::UpdateTrackSettings, layers: &[pb::VideoLayer]) -> i32 {
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

/// One RTCPeerConnection as the server sees it.
struct Transport {
    peer: PeerId,
    local: LocalTransport,
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

struct Down {
    offer: TrackOffer,
    ssrc: u32,
    /// The section carrying it, once placed.
    mid: Option<String>,
    /// Forwarding is set up in the core.
    active: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client left (a `leave` request).
    Client,
    /// The signalling connection dropped without a `leave`.
    Gone,
    /// The server asked it to leave.
    Server(pb::DisconnectReason, pb::leave_request::Action),
    /// No message within the ping timeout.
    Timeout,
}

/// Runs a session on an accepted WebSocket until it ends.
pub async fn run<S>(ws: WebSocketStream<S>, hub: Arc<Hub>, params: JoinParams, joined: Joined)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Joined {
        participant_sid,
        rx,
        response,
    } = joined;
    let permission = response
        .participant
        .as_ref()
        .and_then(|p| p.permission.clone())
        .unwrap_or_default();
    let candidates = vec![format!(
        "candidate:1 1 udp 2130706431 {} {} typ host generation 0",
        hub.config.node_ip, hub.config.udp_port
    )];
    let session_id = rand::random::<u32>() as u64;
    let mut s = Session {
        hub: hub.clone(),
        ws,
        psid: participant_sid.clone(),
        single_pc: params.single_pc,
        json: false,
        permission,
        candidates,
        session_id,
        version: 1,
        pub_t: None,
        sub_t: None,
        pending: Vec::new(),
        published: BTreeMap::new(),
        downs: BTreeMap::new(),
        sub_sections: Vec::new(),
        awaiting_answer: None,
        sub_dirty: false,
        next_offer_id: 1,
        slots: Vec::new(),
        active_sent: false,
        identity: params.identity.clone(),
        kind: response
            .participant
            .as_ref()
            .map(|p| p.kind)
            .unwrap_or_default(),
        last_data_sequence: 0,
        seen_nonces: std::collections::VecDeque::new(),
        deferred: std::collections::VecDeque::new(),
    };
    tracing::info!(participant = %participant_sid, identity = %params.identity, room = %params.room, single_pc = params.single_pc, "participant joined");
    let subscriber_primary = response.subscriber_primary;
    let end = s
        .main(rx, response, params.publisher_offer, subscriber_primary)
        .await;
    if let End::Server(reason, action) = end {
        let _ = s
            .send(Resp::Leave(pb::LeaveRequest {
                can_reconnect: false,
                reason: reason as i32,
                action: action as i32,
                regions: None,
            }))
            .await;
    }
    let _ =
        s.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    tracing::debug!(participant = %participant_sid, ?end, "session ended");
    if end == End::Gone {
        // A connection that died without `leave` keeps its place for the room's departure
        // timeout, as LiveKit does; a new join with the same identity replaces it earlier.
        let grace = hub.with_rooms(|r| {
            r.get(&params.room)
                .map(|room| room.info().departure_timeout)
                .unwrap_or(0)
        });
        tracing::info!(participant = %participant_sid, grace_s = grace, "signal connection lost");
        tokio::time::sleep(Duration::from_secs(u64::from(grace))).await;
    }
    hub.leave(&participant_sid);
}

/// Answers a resume attempt (`reconnect=1`), which this server does not support, with a
/// `leave` asking for a full reconnect, as LiveKit does for a session it no longer knows.
pub async fn refuse_resume<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let msg = pb::SignalResponse {
        message: Some(Resp::Leave(pb::LeaveRequest {
            can_reconnect: true,
            reason: pb::DisconnectReason::StateMismatch as i32,
            action: pb::leave_request::Action::Reconnect as i32,
            regions: None,
        })),
    };
    let _ = ws.send(WsMessage::Binary(msg.encode_to_vec().into())).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

struct Session<S> {
    hub: Arc<Hub>,
    ws: WebSocketStream<S>,
    psid: String,
    single_pc: bool,
    json: bool,
    permission: pb::ParticipantPermission,
    candidates: Vec<String>,
    session_id: u64,
    version: u64,
    /// The PC the client offers on: the publisher PC (dual) or the only PC (single).
    pub_t: Option<Transport>,
    /// Dual PC: the PC the server offers on.
    sub_t: Option<Transport>,
    pending: Vec<PendingTrack>,
    /// mid → track sid of this participant's publications.
    published: BTreeMap<String, String>,
    /// track sid → downstream track.
    downs: BTreeMap<String, Down>,
    sub_sections: Vec<OfferSection>,
    awaiting_answer: Option<u32>,
    sub_dirty: bool,
    next_offer_id: u32,
    /// Single PC: the receive slots of the client's last offer.
    slots: Vec<negotiation::RecvSlot>,
    active_sent: bool,
    identity: String,
    kind: i32,
    last_data_sequence: u32,
    seen_nonces: std::collections::VecDeque<Vec<u8>>,
    /// Answers to send a little later, in order.
    deferred: std::collections::VecDeque<(Instant, Resp)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn main(
        &mut self,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<ToSession>,
        response: pb::JoinResponse,
        offer: Option<pb::SessionDescription>,
        subscriber_primary: bool,
    ) -> End {
        if self.send(Resp::Join(response)).await.is_err() {
            return End::Client;
        }
        if let Some(o) = offer
            && let Err(e) = self.handle_offer(o).await
        {
            tracing::warn!(participant = %self.psid, "offer in join request: {e}");
        }
        if subscriber_primary {
            self.ensure_sub_transport();
            self.sub_sections
                .push(OfferSection::Data { mid: "0".into() });
            if self.negotiate_subscriber().await.is_err() {
                return End::Client;
            }
        }
        let timeout = Duration::from_secs(PING_TIMEOUT as u64);
        let mut deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                frame = self.ws.next() => {
                    let Some(Ok(frame)) = frame else { return End::Gone };
                    deadline = Instant::now() + timeout;
                    let req = match frame {
                        WsMessage::Binary(b) => {
                            self.json = false;
                            pb::SignalRequest::decode(b.as_ref()).map_err(|e| e.to_string())
                        }
                        WsMessage::Text(t) => {
                            self.json = true;
                            serde_json::from_str::<pb::SignalRequest>(t.as_str()).map_err(|e| e.to_string())
                        }
                        WsMessage::Close(_) => return End::Gone,
                        _ => continue,
                    };
                    match req {
                        Ok(pb::SignalRequest { message: Some(m) }) => {
                            match self.handle_request(m).await {
                                Ok(Some(end)) => return end,
                                Ok(None) => {}
                                Err(e) => tracing::warn!(participant = %self.psid, "request failed: {e}"),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(participant = %self.psid, "undecodable signal frame dropped: {e}"),
                    }
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { return End::Server(pb::DisconnectReason::ServerShutdown, pb::leave_request::Action::Disconnect) };
                    match self.handle_hub(msg).await {
                        Ok(Some(end)) => return end,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(participant = %self.psid, "{e}"),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(participant = %self.psid, "no signal message within the ping timeout");
                    return End::Timeout;
                }
                _ = tokio::time::sleep_until(self.deferred.front().map(|d| d.0).unwrap_or(deadline)), if !self.deferred.is_empty() => {
                    while self.deferred.front().is_some_and(|d| d.0 <= Instant::now()) {
                        if let Some((_, m)) = self.deferred.pop_front()
                            && self.send(m).await.is_err()
                        {
                            return End::Gone;
                        }
                    }
                }
            }
        }
    }

    async fn send(&mut self, m: Resp) -> Result<(), String> {
        let msg = pb::SignalResponse { message: Some(m) };
        let frame = if self.json {
            WsMessage::Text(
                serde_json::to_string(&msg)
                    .map_err(|e| e.to_string())?
                    .into(),
            )
        } else {
            WsMessage::Binary(msg.encode_to_vec().into())
        };
        self.ws.send(frame).await.map_err(|e| e.to_string())
    }

    fn new_transport(
        &self,
        target: pb::SignalTarget,
        open_channels: Vec<ChannelSpec>,
    ) -> Transport {
        Transport {
            peer: PeerId(self.hub.next_id()),
            local: LocalTransport {
                ufrag: random_token(8),
                pwd: random_token(24),
                fingerprint: self.hub.config.fingerprint.clone(),
                candidates: self.candidates.clone(),
            },
            added: false,
            connected: false,
            candidates_sent: false,
            target,
            open_channels,
        }
    }

    fn ensure_sub_transport(&mut self) {
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
            ];
            self.sub_t = Some(self.new_transport(pb::SignalTarget::Subscriber, channels));
        }
    }

    /// Adds the transport's peer to the core once the remote description is known.
    fn add_peer(
        &self,
        t: &mut Transport,
        remote: &lkr_sdp::SessionDescription,
    ) -> Result<(), String> {
        if t.added {
            return Ok(());
        }
        let r = negotiation::remote_transport(remote)
            .ok_or("remote description lacks ICE credentials or a fingerprint")?;
        self.hub.register_peer(&self.psid, t.peer);
        self.hub.media(Command::AddPeer {
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
            },
        });
        t.added = true;
        Ok(())
    }

    async fn send_candidates(&mut self, publisher: bool, first_mid: &str) -> Result<(), String> {
        let t = if publisher {
            self.pub_t.as_mut()
        } else {
            self.sub_t.as_mut()
        };
        let Some(t) = t else { return Ok(()) };
        if t.candidates_sent {
            return Ok(());
        }
        t.candidates_sent = true;
        let target = t.target;
        let lines = t.local.candidates.clone();
        let n = lines.len();
        for (i, c) in lines.into_iter().enumerate() {
            let init = serde_json::json!({
                "candidate": c,
                "sdpMid": first_mid,
                "sdpMLineIndex": 0,
                "usernameFragment": serde_json::Value::Null,
            });
            self.send(Resp::Trickle(pb::TrickleRequest {
                candidate_init: init.to_string(),
                target: target as i32,
                r#final: i + 1 == n,
            }))
            .await?;
        }
        Ok(())
    }

    async fn handle_request(&mut self, m: Req) -> Result<Option<End>, String> {
        match m {
            Req::Offer(o) => self.handle_offer(o).await?,
            Req::Answer(a) => self.handle_answer(a).await?,
            Req::Trickle(_) => {}
            Req::AddTrack(t) => self.handle_add_track(t).await?,
            Req::Mute(m) => {
                self.hub.set_track_muted(&self.psid, &m.sid, m.muted);
            }
            Req::Subscription(u) => {
                let mut sids = u.track_sids.clone();
                for pt in &u.participant_tracks {
                    if pt.track_sids.is_empty() {
                        sids.extend(self.hub.tracks_of(&self.psid, &pt.participant_sid));
                    } else {
                        sids.extend(pt.track_sids.iter().cloned());
                    }
                }
                for sid in sids {
                    if u.subscribe {
                        if let Some(offer) = self.hub.track_offer(&self.psid, &sid) {
                            self.subscribe(offer).await?;
                        } else {
                            self.send(Resp::SubscriptionResponse(pb::SubscriptionResponse {
                                track_sid: sid,
                                err: pb::SubscriptionError::SeTrackNotfound as i32,
                            }))
                            .await?;
                        }
                    } else {
                        self.unsubscribe(&sid).await?;
                    }
                }
            }
            Req::TrackSetting(ts) => self.handle_track_setting(&ts),
            Req::Leave(_) => return Ok(Some(End::Client)),
            Req::Ping(_) => self.send(Resp::Pong(now_ms())).await?,
            Req::PingReq(p) => {
                self.send(Resp::PongResp(pb::Pong {
                    last_ping_timestamp: p.timestamp,
                    timestamp: now_ms(),
                }))
                .await?
            }
            Req::UpdateMetadata(u) => self.handle_update_metadata(u).await?,
            _ => {}
        }
        Ok(None)
    }

    /// UpdateTrackSettings: pause or resume, and the simulcast layer this subscriber gets
    /// (from the requested size, or the quality), which also feeds dynacast.
    #[allow(deprecated)] // `quality` is deprecated upstream but still sent by clients
    fn handle_track_setting(&mut self, ts: &pb::UpdateTrackSettings) {
        let Some(peer) = self.down_peer() else { return };
        for sid in &ts.track_sids {
            let Some(d) = self.downs.get(sid) else {
                continue;
            };
            let off = ts.disabled || ts.quality == pb::VideoQuality::Off as i32 && ts.width == 0;
            self.hub.media(Command::SetPaused {
                peer,
                track: d.offer.track_id,
                paused: off,
            });
            if d.offer.kind != MediaKind::Video {
                continue;
            }
            if off {
                self.hub.set_subscriber_quality(&self.psid, sid, None);
                continue;
            }
            let quality = wanted_quality(ts, &d.offer.layers);
            if d.offer.layer_count > 1 {
                let max_layer = (quality as usize).min(d.offer.layer_count - 1) as u8;
                self.hub.media(Command::SetMaxLayer {
                    peer,
                    track: d.offer.track_id,
                    max_layer,
                });
            }
            self.hub
                .set_subscriber_quality(&self.psid, sid, Some(quality));
        }
    }

    async fn handle_update_metadata(
        &mut self,
        u: pb::UpdateParticipantMetadata,
    ) -> Result<(), String> {
        if !self.permission.can_update_metadata {
            return self
                .send(Resp::RequestResponse(pb::RequestResponse {
                    request_id: u.request_id,
                    reason: pb::request_response::Reason::NotAllowed as i32,
                    message: "does not have permission to update own metadata".into(),
                    request: None,
                }))
                .await;
        }
        if let Err(msg) = self.hub.config.check_limits(&u.metadata, &u.attributes) {
            return self
                .send(Resp::RequestResponse(pb::RequestResponse {
                    request_id: u.request_id,
                    reason: pb::request_response::Reason::LimitExceeded as i32,
                    message: msg,
                    request: None,
                }))
                .await;
        }
        self.hub.update_participant(&self.psid, |p| {
            if !u.name.is_empty() {
                p.name = u.name.clone();
            }
            if !u.metadata.is_empty() {
                p.metadata = u.metadata.clone();
            }
            for (k, v) in &u.attributes {
                if v.is_empty() {
                    p.attributes.remove(k);
                } else {
                    p.attributes.insert(k.clone(), v.clone());
                }
            }
        });
        // Clients of protocol 14 and later wait for this answer (older ones for their update).
        // The Rust SDK starts listening for it only after its request is written, so an
        // answer sent at once can arrive before it listens: it goes out a moment later.
        self.deferred.push_back((
            Instant::now() + ANSWER_DELAY,
            Resp::RequestResponse(pb::RequestResponse {
                request_id: u.request_id,
                reason: pb::request_response::Reason::Ok as i32,
                message: String::new(),
                request: None,
            }),
        ));
        Ok(())
    }

    #[allow(deprecated)] // TrackInfo layers, simulcast, stereo and disable_dtx are still read by clients.
    async fn handle_add_track(&mut self, t: pb::AddTrackRequest) -> Result<(), String> {
        let kind = if t.r#type == pb::TrackType::Video as i32 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let allowed = self.permission.can_publish
            && (self.permission.can_publish_sources.is_empty()
                || self.permission.can_publish_sources.contains(&t.source));
        if !allowed {
            return self
                .send(Resp::RequestResponse(pb::RequestResponse {
                    reason: pb::request_response::Reason::NotAllowed as i32,
                    message: "does not have permission to publish".into(),
                    ..Default::default()
                }))
                .await;
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
        let mut codecs: Vec<pb::SimulcastCodecInfo> = t
            .simulcast_codecs
            .iter()
            .map(|c| pb::SimulcastCodecInfo {
                mime_type: if c.codec.is_empty() {
                    String::new()
                } else if c.codec.contains('/') {
                    c.codec.clone()
                } else {
                    format!(
                        "{}/{}",
                        if kind == MediaKind::Video {
                            "video"
                        } else {
                            "audio"
                        },
                        c.codec
                    )
                },
                cid: c.cid.clone(),
                layers: c.layers.clone(),
                ..Default::default()
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
            simulcast: t.layers.len() > 1,
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
        self.send(Resp::TrackPublished(pb::TrackPublishedResponse {
            cid: t.cid,
            track: Some(info),
        }))
        .await
    }

    /// The peer whose data channels carry downstream data: the subscriber PC when the server
    /// opened channels there, else the PC the client offers on.
    fn data_peer(&self) -> Option<PeerId> {
        match (&self.sub_t, &self.pub_t) {
            (Some(s), _) if !self.single_pc => Some(s.peer),
            (_, Some(p)) => Some(p.peer),
            _ => None,
        }
    }

    /// A DataPacket from the client: checked, stamped with the sender and forwarded
    /// (LiveKit's rules: canPublishData, reliable sequence and nonce dedupe, destinations,
    /// never back to the sender, same kind of channel out as in).
    fn handle_data(&mut self, label: &str, data: &[u8]) {
        let reliable = match label {
            "_reliable" => true,
            "_lossy" => false,
            _ => return,
        };
        if !self.permission.can_publish_data {
            tracing::debug!(participant = %self.psid, "data dropped: no canPublishData");
            return;
        }
        let Ok(mut pkt) = pb::DataPacket::decode(data) else {
            tracing::debug!(participant = %self.psid, "undecodable data packet dropped");
            return;
        };
        if reliable && pkt.sequence > 0 {
            if pkt.sequence <= self.last_data_sequence {
                return;
            }
            self.last_data_sequence = pkt.sequence;
        }
        use pb::data_packet::Value;
        let hidden = self.permission.hidden;
        let identity = if hidden {
            String::new()
        } else {
            self.identity.clone()
        };
        let sid = if hidden {
            String::new()
        } else {
            self.psid.clone()
        };
        match &mut pkt.value {
            Some(Value::User(u)) => {
                if !u.nonce.is_empty() {
                    if self.seen_nonces.contains(&u.nonce) {
                        return;
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
            Some(Value::Metrics(_)) => return,
            Some(Value::Transcription(_))
                if self.kind != pb::participant_info::Kind::Agent as i32 =>
            {
                return;
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
        let dests = pkt.destination_identities.clone();
        let bytes = bytes::Bytes::from(pkt.encode_to_vec());
        self.hub
            .broadcast_data(Some(&self.psid), None, reliable, bytes, &dests);
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
    fn down_peer(&self) -> Option<PeerId> {
        if self.single_pc {
            self.pub_t.as_ref().map(|t| t.peer)
        } else {
            self.sub_t.as_ref().map(|t| t.peer)
        }
    }

    async fn handle_offer(&mut self, o: pb::SessionDescription) -> Result<(), String> {
        let sd = lkr_sdp::parse(&o.sdp).map_err(|e| format!("bad offer: {e}"))?;
        let mut t = match self.pub_t.take() {
            Some(t) => t,
            None => self.new_transport(pb::SignalTarget::Publisher, Vec::new()),
        };
        let added = self.add_peer(&mut t, &sd);
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
            // Sections that disappeared or changed kind free their tracks.
            for d in self.downs.values_mut() {
                if let Some(mid) = &d.mid
                    && !slots
                        .iter()
                        .any(|s| &s.mid == mid && s.kind == d.offer.kind)
                {
                    d.mid = None;
                    d.active = false;
                }
            }
            for slot in &slots {
                let taken = self
                    .downs
                    .values()
                    .any(|d| d.mid.as_deref() == Some(&slot.mid));
                if taken {
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
                    downs_by_mid.insert(mid.clone(), self.down_track(d));
                }
            }
            self.slots = slots;
        }

        self.version += 1;
        let t = self.pub_t.as_ref().ok_or("transport vanished")?;
        let peer = t.peer;
        let answer =
            negotiation::answer_offer(&sd, &t.local, self.version, self.session_id, &downs_by_mid);

        // Publications: new sections bind to pending tracks; vanished ones unpublish.
        for ps in &answer.publish {
            if self.published.contains_key(&ps.mid) {
                continue;
            }
            let idx = self
                .pending
                .iter()
                .position(|p| Some(&p.cid) == ps.msid_track.as_ref())
                .or_else(|| self.pending.iter().position(|p| p.kind == ps.kind));
            let Some(idx) = idx else {
                tracing::debug!(participant = %self.psid, mid = %ps.mid, "published section without add_track yet");
                continue;
            };
            let p = self.pending.remove(idx);
            self.publish(peer, ps, p);
        }
        let gone: Vec<(String, String)> = self
            .published
            .iter()
            .filter(|(mid, _)| !answer.publish.iter().any(|p| &p.mid == *mid))
            .map(|(m, s)| (m.clone(), s.clone()))
            .collect();
        for (mid, sid) in gone {
            self.published.remove(&mid);
            self.hub.unpublish_track(&self.psid, &sid);
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
        self.send(Resp::Answer(pb::SessionDescription {
            r#type: "answer".into(),
            sdp: answer.sdp.write(),
            id: o.id,
            mid_to_track_id,
        }))
        .await?;
        self.send_candidates(true, &first_mid).await?;

        if self.single_pc {
            let mut started = Vec::new();
            for (sid, d) in self.downs.iter_mut() {
                let Some(mid) = &d.mid else { continue };
                if d.active {
                    continue;
                }
                if let Some(pts) = answer.down_payload_types.get(mid) {
                    self.hub.media(Command::Subscribe(SubscribeSpec {
                        peer,
                        track: d.offer.track_id,
                        ssrc: d.ssrc,
                        payload_types: pts.clone(),
                    }));
                    d.active = true;
                    started.push(sid.clone());
                }
            }
            for sid in started {
                self.hub.track_subscribed(&self.psid, &sid);
            }
            self.request_sections().await?;
        }
        Ok(())
    }

    fn down_track(&self, d: &Down) -> DownTrack {
        DownTrack {
            kind: d.offer.kind,
            stream_id: format!("{}|{}", d.offer.publisher_sid, d.offer.track_sid),
            track_sid: d.offer.track_sid.clone(),
            ssrc: d.ssrc,
            cname: d.offer.publisher_sid.clone(),
            codecs: d.offer.codecs.clone(),
        }
    }

    #[allow(deprecated)] // TrackInfo.simulcast is still read by clients.
    fn publish(&mut self, peer: PeerId, ps: &negotiation::PublishSection, p: PendingTrack) {
        let mut info = p.info;
        let track = TrackId(self.hub.next_id());
        let kind_name = if ps.kind == MediaKind::Video {
            "video"
        } else {
            "audio"
        };
        let mime = ps
            .codecs
            .iter()
            .find(|c| !c.name.eq_ignore_ascii_case("red"))
            .or(ps.codecs.first())
            .map(|c| format!("{kind_name}/{}", c.name))
            .unwrap_or_default();
        info.mid = ps.mid.clone();
        info.mime_type = mime.clone();
        if ps.rids.len() > 1 {
            info.simulcast = true;
        }
        if let Some(c) = info.codecs.first_mut() {
            if c.mime_type.is_empty() {
                c.mime_type = mime;
            }
            c.mid = ps.mid.clone();
        }
        self.hub.media(Command::Publish(PublishSpec {
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
        self.published.insert(ps.mid.clone(), info.sid.clone());
        tracing::info!(participant = %self.psid, track = %info.sid, mid = %ps.mid, mime = %info.mime_type, rids = ?ps.rids, "track published");
        let layers = if info.layers.is_empty() {
            info.codecs
                .first()
                .map(|c| c.layers.clone())
                .unwrap_or_default()
        } else {
            info.layers.clone()
        };
        let offer = TrackOffer {
            track_sid: info.sid.clone(),
            track_id: track,
            publisher_sid: self.psid.clone(),
            kind: ps.kind,
            codecs: ps.codecs.clone(),
            layers,
            layer_count: ps.rids.len().max(1),
        };
        self.hub.publish_track(&self.psid, info, offer);
    }

    /// Single PC: asks the client for a new offer when downstream tracks wait for sections.
    async fn request_sections(&mut self) -> Result<(), String> {
        let waiting: Vec<MediaKind> = self
            .downs
            .values()
            .filter(|d| d.mid.is_none())
            .map(|d| d.offer.kind)
            .collect();
        if waiting.is_empty() {
            return Ok(());
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
        self.send(Resp::MediaSectionsRequirement(req)).await
    }

    async fn handle_answer(&mut self, a: pb::SessionDescription) -> Result<(), String> {
        let sd = lkr_sdp::parse(&a.sdp).map_err(|e| format!("bad answer: {e}"))?;
        let Some(mut t) = self.sub_t.take() else {
            return Err("answer without an offer".into());
        };
        let added = self.add_peer(&mut t, &sd);
        let peer = t.peer;
        self.sub_t = Some(t);
        added?;
        if self
            .awaiting_answer
            .is_some_and(|id| a.id != 0 && id != a.id)
        {
            tracing::debug!(participant = %self.psid, "answer for an older offer");
        }
        self.awaiting_answer = None;
        let pts = negotiation::accepted_payload_types(&sd);
        let mut started = Vec::new();
        for (sid, d) in self.downs.iter_mut() {
            if d.active {
                continue;
            }
            let Some(mid) = &d.mid else { continue };
            if let Some(p) = pts.get(mid).filter(|p| !p.is_empty()) {
                self.hub.media(Command::Subscribe(SubscribeSpec {
                    peer,
                    track: d.offer.track_id,
                    ssrc: d.ssrc,
                    payload_types: p.clone(),
                }));
                d.active = true;
                started.push(sid.clone());
            }
        }
        for sid in started {
            self.hub.track_subscribed(&self.psid, &sid);
        }
        if self.sub_dirty {
            self.sub_dirty = false;
            self.negotiate_subscriber().await?;
        }
        Ok(())
    }

    /// Dual PC: sends a new subscriber offer, or notes that one is due after the answer.
    async fn negotiate_subscriber(&mut self) -> Result<(), String> {
        if self.awaiting_answer.is_some() {
            self.sub_dirty = true;
            return Ok(());
        }
        self.ensure_sub_transport();
        if !self
            .sub_sections
            .iter()
            .any(|s| matches!(s, OfferSection::Data { .. }))
        {
            self.sub_sections
                .insert(0, OfferSection::Data { mid: "0".into() });
        }
        self.version += 1;
        let t = self.sub_t.as_ref().ok_or("no subscriber transport")?;
        let sdp = negotiation::subscriber_offer(
            &t.local,
            self.version,
            self.session_id,
            &self.sub_sections,
        );
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        self.awaiting_answer = Some(id);
        self.send(Resp::Offer(pb::SessionDescription {
            r#type: "offer".into(),
            sdp: sdp.write(),
            id,
            mid_to_track_id: HashMap::new(),
        }))
        .await?;
        self.send_candidates(false, "0").await
    }

    async fn subscribe(&mut self, offer: TrackOffer) -> Result<(), String> {
        if self.downs.contains_key(&offer.track_sid) || !self.permission.can_subscribe {
            return Ok(());
        }
        let ssrc = loop {
            let s: u32 = rand::random();
            if s != 0 && !self.downs.values().any(|d| d.ssrc == s) {
                break s;
            }
        };
        let sid = offer.track_sid.clone();
        let kind = offer.kind;
        self.downs.insert(
            sid.clone(),
            Down {
                offer,
                ssrc,
                mid: None,
                active: false,
            },
        );
        if self.single_pc {
            self.request_sections().await
        } else {
            let mid = self.sub_sections.len().to_string();
            let d = self.downs.get_mut(&sid).ok_or("track vanished")?;
            d.mid = Some(mid.clone());
            let track = self.down_track(self.downs.get(&sid).ok_or("track vanished")?);
            self.sub_sections.push(OfferSection::Media {
                mid,
                kind,
                track: Some(track),
            });
            self.negotiate_subscriber().await
        }
    }

    async fn unsubscribe(&mut self, sid: &str) -> Result<(), String> {
        let Some(d) = self.downs.remove(sid) else {
            return Ok(());
        };
        if d.active
            && let Some(peer) = self.down_peer()
        {
            self.hub.media(Command::Unsubscribe {
                peer,
                track: d.offer.track_id,
            });
        }
        self.hub.track_unsubscribed(&self.psid, sid);
        if self.single_pc {
            // Ask for a new offer so that the next answer marks the section inactive.
            self.send(Resp::MediaSectionsRequirement(
                pb::MediaSectionsRequirement::default(),
            ))
            .await
        } else {
            for s in self.sub_sections.iter_mut() {
                if let OfferSection::Media { mid, track, .. } = s
                    && d.mid.as_deref() == Some(mid.as_str())
                {
                    *track = None;
                }
            }
            self.negotiate_subscriber().await
        }
    }

    async fn handle_hub(&mut self, msg: ToSession) -> Result<Option<End>, String> {
        match msg {
            ToSession::Signal(m) => {
                // Our own record may carry a new permission (UpdateParticipant).
                if let Resp::Update(u) = m.as_ref()
                    && let Some(me) = u.participants.iter().find(|p| p.sid == self.psid)
                    && let Some(perm) = &me.permission
                {
                    self.permission = perm.clone();
                }
                self.send(*m).await?
            }
            ToSession::Subscribe(offer) => self.subscribe(offer).await?,
            ToSession::Unsubscribe { track_sid } => self.unsubscribe(&track_sid).await?,
            ToSession::Close { reason, action } => return Ok(Some(End::Server(reason, action))),
            ToSession::Media(ev) => return self.handle_media(ev).await,
            ToSession::Data { reliable, data } => {
                if let Some(peer) = self.data_peer() {
                    self.hub.media(Command::SendData {
                        peer,
                        reliable,
                        data,
                    });
                }
            }
        }
        Ok(None)
    }

    async fn handle_media(&mut self, ev: Event) -> Result<Option<End>, String> {
        match ev {
            Event::PeerConnected { peer } => {
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
                    self.hub.set_active(&self.psid);
                }
            }
            Event::PeerDisconnected { peer, reason } => {
                tracing::info!(participant = %self.psid, ?peer, %reason, "transport lost");
                let primary = self.primary_transport();
                if primary.is_some_and(|t| t.peer == peer) {
                    return Ok(Some(End::Server(
                        pb::DisconnectReason::ConnectionTimeout,
                        pb::leave_request::Action::Reconnect,
                    )));
                }
            }
            Event::Data { label, data, .. } => self.handle_data(&label, &data),
            Event::StreamState { track, paused, .. } => {
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
                    self.send(Resp::StreamStateUpdate(pb::StreamStateUpdate {
                        stream_states: vec![info],
                    }))
                    .await?;
                }
            }
            Event::ChannelOpen { .. }
            | Event::TrackStarted { .. }
            | Event::AudioLevels { .. }
            | Event::Loss { .. } => {}
        }
        Ok(None)
    }
}
