//! The tokio driver: one task per room session owns the signalling WebSocket, the UDP
//! socket of each peer connection and all negotiation state; the application talks to it
//! through [`Room`] (commands in) and a channel of [`RoomEvent`]s (events out).
//!
//! Single PC (`/rtc/v1`, the default): one peer connection carries our data channels, our
//! published tracks (`sendonly` sections) and downstream tracks (`recvonly` sections the
//! server fills, named by `mid_to_track_id` and msid in its answers; it asks for more with
//! `media_sections_requirement`). Dual PC (`/rtc`): the publisher PC carries our data
//! channels and tracks, and the server offers downstream tracks on the subscriber PC, which
//! we answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use lkr_dtls_glue::cert::Certificate;
use lkr_proto::pb;
use lkr_rtp::{RtcpPacket, RtpView};
use prost::Message as _;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::ClientError;
use crate::codec::{Codec, MediaKind};
use crate::peer::{PeerConnection, PeerEvent};
use crate::rtp_in::{MediaPacket, ReceiveStats, ReceiveStream};
use crate::rtp_out::RtpStream;
use crate::sdp::{self, LocalTransport, OfferSection};
use crate::signal::{self, JoinSettings, SignalStream};

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

/// How long the peer connections may take to connect after the join.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to answer an AddTrackRequest and the offer that follows.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Housekeeping period of the driver.
const TICK: Duration = Duration::from_millis(20);
/// Time between sender reports on each published stream.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How to join.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomOptions {
    /// Single or dual PC, auto-subscribe.
    pub settings: JoinSettings,
}

/// One simulcast layer of a published video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// `q`, `h` or `f`.
    pub rid: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Target bitrate, bits per second.
    pub bitrate: u32,
}

/// A track to publish.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// Track name.
    pub name: String,
    /// The codec the media is encoded with.
    pub codec: Codec,
    /// Camera, microphone, …
    pub source: pb::TrackSource,
    /// Video width (0 for audio).
    pub width: u32,
    /// Video height (0 for audio).
    pub height: u32,
    /// Simulcast layers, lowest first; empty for a single stream.
    pub layers: Vec<LayerSpec>,
}

impl TrackSpec {
    /// Audio or video, from the codec.
    pub fn kind(&self) -> MediaKind {
        if self.codec.is_audio() {
            MediaKind::Audio
        } else {
            MediaKind::Video
        }
    }
}

/// Our handle on a track we publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalTrackId(pub usize);

/// A published track.
#[derive(Debug, Clone)]
pub struct LocalTrack {
    /// Our handle, for sending media.
    pub id: LocalTrackId,
    /// The server's track sid (`TR_…`).
    pub sid: String,
    /// The TrackInfo from `track_published`.
    pub info: pb::TrackInfo,
}

/// A downstream track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrack {
    /// Track sid.
    pub sid: String,
    /// Publisher's participant sid.
    pub participant_sid: String,
    /// Publisher's identity (empty when not yet known).
    pub participant_identity: String,
    /// Track name (empty when not yet known).
    pub name: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRC it arrives with.
    pub ssrc: u32,
    /// The codecs its section may carry, by payload type.
    pub payload_types: Vec<(u8, Codec)>,
}

/// Counters for one received track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackStats {
    /// Track sid.
    pub track_sid: String,
    /// Receive counters.
    pub stats: ReceiveStats,
}

/// What happens in the room.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    /// A participant is in the room (already there at join, or newly arrived).
    ParticipantConnected(pb::ParticipantInfo),
    /// A participant left.
    ParticipantDisconnected(pb::ParticipantInfo),
    /// A downstream track is set up; its media follows as [`RoomEvent::Media`].
    TrackSubscribed(RemoteTrack),
    /// A downstream track stopped.
    TrackUnsubscribed {
        /// Track sid.
        sid: String,
    },
    /// A packet of a downstream track, in sequence order.
    Media {
        /// Track sid.
        track_sid: Arc<str>,
        /// The codec of its payload type.
        codec: Option<Codec>,
        /// The packet.
        packet: MediaPacket,
    },
    /// A user data packet.
    Data {
        /// Sender identity (empty when sent by the server API).
        from: String,
        /// Topic.
        topic: Option<String>,
        /// Payload.
        payload: Vec<u8>,
        /// Arrived on `_reliable`.
        reliable: bool,
    },
    /// The server asked for a keyframe on one of our tracks.
    KeyframeRequested {
        /// Which track.
        track: LocalTrackId,
        /// Which simulcast layer (0 for a single stream).
        layer: usize,
    },
    /// The session ended.
    Disconnected {
        /// Why.
        reason: String,
    },
}

enum Command {
    Publish {
        spec: TrackSpec,
        reply: oneshot::Sender<Result<LocalTrack, ClientError>>,
    },
    Media {
        track: LocalTrackId,
        layer: usize,
        payload: Vec<u8>,
        timestamp: u32,
        marker: bool,
    },
    Data {
        payload: Vec<u8>,
        topic: Option<String>,
        reliable: bool,
    },
    Subscribe {
        track_sids: Vec<String>,
        subscribe: bool,
    },
    RequestKeyframe {
        track_sid: String,
    },
    Stats {
        reply: oneshot::Sender<Vec<TrackStats>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A joined room. Dropping it (and every [`MediaSender`]) ends the session.
#[derive(Debug)]
pub struct Room {
    cmd: mpsc::UnboundedSender<Command>,
    join: pb::JoinResponse,
    join_time: Duration,
}

/// Sends media on one published track from any task.
#[derive(Debug, Clone)]
pub struct MediaSender {
    cmd: mpsc::UnboundedSender<Command>,
    track: LocalTrackId,
}

impl MediaSender {
    /// Sends one RTP payload on simulcast layer `layer` (0 for a single stream).
    pub fn send(
        &self,
        layer: usize,
        payload: Vec<u8>,
        timestamp: u32,
        marker: bool,
    ) -> Result<(), ClientError> {
        self.cmd
            .send(Command::Media {
                track: self.track,
                layer,
                payload,
                timestamp,
                marker,
            })
            .map_err(|_| ClientError::Closed)
    }
}

impl Room {
    /// Joins: opens signalling, waits for the JoinResponse, then for the peer connections to
    /// connect. Events start flowing on the returned channel.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>), ClientError> {
        let started = Instant::now();
        let (ws, join) = signal::connect(url, token, &options.settings).await?;
        let local_ip = local_ip_toward(url).await;
        let cert = Certificate::generate().map_err(|e| ClientError::Dtls(e.to_string()))?;
        let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let primary = UdpSocket::bind(bind).await?;
        let subscriber = if options.settings.single_pc {
            None
        } else {
            Some(UdpSocket::bind(bind).await?)
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut driver = Driver::new(
            ws,
            join.clone(),
            options.settings,
            cert,
            local_ip,
            primary,
            subscriber,
            cmd_rx,
            ev_tx,
            ready_tx,
        );
        tokio::spawn(async move { driver.run().await });
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                let _ = cmd_tx.send(Command::Close {
                    reply: oneshot::channel().0,
                });
                return Err(ClientError::ConnectTimeout(CONNECT_TIMEOUT.as_secs()));
            }
        }
        Ok((
            Room {
                cmd: cmd_tx,
                join,
                join_time: started.elapsed(),
            },
            ev_rx,
        ))
    }

    /// The JoinResponse.
    pub fn join_response(&self) -> &pb::JoinResponse {
        &self.join
    }

    /// Our participant sid.
    pub fn local_sid(&self) -> &str {
        self.join
            .participant
            .as_ref()
            .map_or("", |p| p.sid.as_str())
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        self.join.room.as_ref().map_or("", |r| r.name.as_str())
    }

    /// From opening signalling to connected peer connections.
    pub fn join_time(&self) -> Duration {
        self.join_time
    }

    /// Publishes a track: AddTrackRequest, then an offer with its section. Returns once the
    /// server answered; media may be sent from then on.
    pub async fn publish_track(&self, spec: TrackSpec) -> Result<LocalTrack, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Publish { spec, reply })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// A sender for media on `track`.
    pub fn media_sender(&self, track: LocalTrackId) -> MediaSender {
        MediaSender {
            cmd: self.cmd.clone(),
            track,
        }
    }

    /// Sends a user data packet to everyone else in the room.
    pub fn publish_data(
        &self,
        payload: Vec<u8>,
        topic: Option<String>,
        reliable: bool,
    ) -> Result<(), ClientError> {
        self.cmd
            .send(Command::Data {
                payload,
                topic,
                reliable,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Subscribes to (or unsubscribes from) tracks by sid.
    pub fn set_subscribed(
        &self,
        track_sids: Vec<String>,
        subscribe: bool,
    ) -> Result<(), ClientError> {
        self.cmd
            .send(Command::Subscribe {
                track_sids,
                subscribe,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Asks the publisher of a downstream track for a keyframe (RTCP PLI).
    pub fn request_keyframe(&self, track_sid: &str) -> Result<(), ClientError> {
        self.cmd
            .send(Command::RequestKeyframe {
                track_sid: track_sid.to_owned(),
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Receive counters of every downstream track, including those that stopped (a track
    /// received twice, after a resubscription, appears twice).
    pub async fn stats(&self) -> Vec<TrackStats> {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Command::Stats { reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Leaves the room and waits for the session to end.
    pub async fn close(self) {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Command::Close { reply }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}

/// Our address toward the server (for the candidate we write), from a connected UDP socket.
async fn local_ip_toward(url: &str) -> IpAddr {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = if host.contains(':') {
        host
    } else {
        format!("{host}:80")
    };
    let fallback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Ok(mut addrs) = tokio::net::lookup_host(target).await else {
        return fallback;
    };
    let Some(addr) = addrs.next() else {
        return fallback;
    };
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(addr)?;
            s.local_addr()
        })
        .map_or(fallback, |a| a.ip())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Which of our peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Subscriber,
}

struct Pc {
    pc: PeerConnection,
    socket: UdpSocket,
    remote_set: bool,
}

impl Pc {
    fn local(&self, ip: IpAddr) -> LocalTransport {
        let (ufrag, pwd) = self.pc.ice_credentials();
        let fp = self.pc.fingerprint();
        let port = self.socket.local_addr().map_or(0, |a| a.port());
        LocalTransport {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
            fingerprint: (fp.algorithm.clone(), fp.to_sdp_value()),
            candidate: Some(lkr_ice::host_candidate_line(
                "1",
                ip,
                port,
                lkr_ice::candidate_priority(lkr_ice::HOST_TYPE_PREFERENCE, 65_535, 1),
            )),
        }
    }
}

struct PendingPublish {
    cid: String,
    spec: TrackSpec,
    reply: oneshot::Sender<Result<LocalTrack, ClientError>>,
    deadline: Instant,
}

struct Published {
    sid: String,
    mid: String,
    codec: Codec,
    streams: Vec<RtpStream>,
    info: pb::TrackInfo,
    reply: Option<oneshot::Sender<Result<LocalTrack, ClientError>>>,
    negotiated: bool,
    deadline: Instant,
}

struct Inbound {
    track_sid: Arc<str>,
    which: Which,
    mid: String,
    stream: ReceiveStream,
    payload_types: Vec<(u8, Codec)>,
    /// Loss reported on packets that were not delivered (padding only), for the next one.
    carried_loss: u64,
}

/// RTP that arrived before its SSRC was known: the server may start sending right after
/// its description, and the datagram can overtake the signalling message.
struct Early {
    at: Instant,
    arrival: SystemTime,
    packet: Vec<u8>,
}

/// Most early packets kept, and for how long.
const EARLY_MAX: usize = 512;
const EARLY_KEEP: Duration = Duration::from_secs(2);

struct Driver {
    ws: SignalStream,
    join: pb::JoinResponse,
    settings: JoinSettings,
    local_ip: IpAddr,
    primary: Pc,
    subscriber: Option<Pc>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RoomEvent>,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    session_id: u64,
    version: u64,
    sections: Vec<OfferSection>,
    next_mid: u32,
    offer_in_flight: Option<u32>,
    next_offer_id: u32,
    negotiation_needed: bool,
    pending: Vec<PendingPublish>,
    published: Vec<Published>,
    ssrc_to_local: HashMap<u32, (usize, usize)>,
    inbound: HashMap<u32, Inbound>,
    /// Counters of downstream tracks that stopped.
    retired: Vec<TrackStats>,
    early: std::collections::VecDeque<Early>,
    participants: HashMap<String, pb::ParticipantInfo>,
    rtcp_ssrc: u32,
    data_sequence: u32,
    channels_open: Vec<String>,
    queued_data: Vec<(String, Vec<u8>)>,
    next_ping: Instant,
    next_report: Instant,
    closing: Option<oneshot::Sender<()>>,
    ended: bool,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ws: SignalStream,
        join: pb::JoinResponse,
        settings: JoinSettings,
        cert: Certificate,
        local_ip: IpAddr,
        primary: UdpSocket,
        subscriber: Option<UdpSocket>,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<RoomEvent>,
        ready: oneshot::Sender<Result<(), ClientError>>,
    ) -> Self {
        Self {
            ws,
            join,
            settings,
            local_ip,
            primary: Pc {
                pc: PeerConnection::new(cert.clone()),
                socket: primary,
                remote_set: false,
            },
            subscriber: subscriber.map(|socket| Pc {
                pc: PeerConnection::new(cert),
                socket,
                remote_set: false,
            }),
            cmd_rx,
            events,
            ready: Some(ready),
            session_id: u64::from(rand::random::<u32>()),
            version: 1,
            sections: Vec::new(),
            next_mid: 0,
            offer_in_flight: None,
            next_offer_id: 1,
            negotiation_needed: false,
            pending: Vec::new(),
            published: Vec::new(),
            ssrc_to_local: HashMap::new(),
            inbound: HashMap::new(),
            retired: Vec::new(),
            early: std::collections::VecDeque::new(),
            participants: HashMap::new(),
            rtcp_ssrc: rand::random::<u32>() | 1,
            data_sequence: 0,
            channels_open: Vec::new(),
            queued_data: Vec::new(),
            next_ping: Instant::now(),
            next_report: Instant::now() + REPORT_INTERVAL,
            closing: None,
            ended: false,
        }
    }

    fn pc(&mut self, which: Which) -> Option<&mut Pc> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Subscriber => self.subscriber.as_mut(),
        }
    }

    fn emit(&self, ev: RoomEvent) {
        let _ = self.events.send(ev);
    }

    fn next_mid(&mut self) -> String {
        let mid = self.next_mid.to_string();
        self.next_mid += 1;
        mid
    }

    async fn run(&mut self) {
        let now = Instant::now();
        let others = std::mem::take(&mut self.join.other_participants);
        for p in &others {
            self.participants.insert(p.sid.clone(), p.clone());
            self.emit(RoomEvent::ParticipantConnected(p.clone()));
        }
        self.join.other_participants = others;
        let mid = self.next_mid();
        self.sections.push(OfferSection::Data { mid });
        self.primary.pc.open_channel("_reliable", true, None);
        self.primary.pc.open_channel("_lossy", false, Some(0));
        self.primary.pc.enable_sctp(now);
        if let Err(e) = self.negotiate().await {
            self.finish(e.to_string());
            return;
        }
        let mut buf = vec![0u8; 2048];
        let mut sub_buf = vec![0u8; 2048];
        while !self.ended {
            let deadline = self.deadline();
            let sub_socket = self.subscriber.as_ref().map(|s| &s.socket);
            tokio::select! {
                frame = self.ws.next() => {
                    match frame {
                        Some(Ok(frame)) => {
                            if let Some(resp) = signal::decode(&frame)
                                && let Some(m) = resp.message
                                && let Err(e) = self.handle_signal(m).await
                            {
                                tracing::warn!("signal message not handled: {e}");
                            }
                        }
                        Some(Err(e)) => self.finish(format!("signalling connection failed: {e}")),
                        None => self.finish("the server closed the signalling connection".into()),
                    }
                }
                r = self.primary.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.primary.pc.handle_receive(Instant::now(), from, &mut buf[..n]);
                    }
                }
                r = recv_opt(sub_socket, &mut sub_buf) => {
                    if let Ok((n, from)) = r
                        && let Some(s) = self.subscriber.as_mut()
                    {
                        s.pc.handle_receive(Instant::now(), from, &mut sub_buf[..n]);
                    }
                }
                cmd = self.cmd_rx.recv() => {
                    match cmd {
                        Some(cmd) => self.handle_command(cmd).await,
                        None => {
                            let _ = self.ws.send(signal::encode(Req::Leave(leave_request()))).await;
                            self.ended = true;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.handle_timeout().await;
                }
            }
            self.flush(Which::Primary).await;
            self.flush(Which::Subscriber).await;
        }
        let _ = self.ws.close(None).await;
        if let Some(reply) = self.closing.take() {
            let _ = reply.send(());
        }
    }

    fn deadline(&self) -> Instant {
        let now = Instant::now();
        let mut at = now + TICK;
        for t in [
            self.primary.pc.poll_timeout(),
            self.subscriber.as_ref().and_then(|s| s.pc.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        {
            at = at.min(t);
        }
        at.max(now)
    }

    fn finish(&mut self, reason: String) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(ClientError::SessionEnded(reason.clone())));
        }
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(ClientError::Closed));
        }
        self.emit(RoomEvent::Disconnected { reason });
    }

    async fn send_signal(&mut self, m: Req) -> Result<(), ClientError> {
        self.ws
            .send(signal::encode(m))
            .await
            .map_err(|e| ClientError::Connect {
                url: "signalling".into(),
                status: None,
                reason: e.to_string(),
            })
    }

    /// Sends an offer on the publisher (or single) PC, or notes that one is due.
    async fn negotiate(&mut self) -> Result<(), ClientError> {
        if self.offer_in_flight.is_some() {
            self.negotiation_needed = true;
            return Ok(());
        }
        self.negotiation_needed = false;
        self.version += 1;
        let local = self.primary.local(self.local_ip);
        let sd = sdp::offer(&local, self.session_id, self.version, &self.sections);
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        self.offer_in_flight = Some(id);
        self.send_signal(Req::Offer(pb::SessionDescription {
            r#type: "offer".into(),
            sdp: sd.write(),
            id,
            mid_to_track_id: HashMap::new(),
        }))
        .await
    }

    async fn handle_signal(&mut self, m: Resp) -> Result<(), ClientError> {
        let now = Instant::now();
        match m {
            Resp::Answer(a) => self.handle_answer(now, a).await?,
            Resp::Offer(o) => self.handle_offer(now, o).await?,
            Resp::Trickle(t) => self.handle_trickle(now, &t),
            Resp::Update(u) => {
                for p in u.participants {
                    self.update_participant(p);
                }
            }
            Resp::TrackPublished(tp) => self.handle_track_published(tp).await?,
            Resp::RequestResponse(r) => {
                let reason = pb::request_response::Reason::try_from(r.reason).unwrap_or_default();
                if reason != pb::request_response::Reason::Ok && !self.pending.is_empty() {
                    let p = self.pending.remove(0);
                    let _ = p.reply.send(Err(ClientError::PublishRefused {
                        name: p.spec.name,
                        reason: r.message,
                    }));
                }
            }
            Resp::MediaSectionsRequirement(req) => {
                for _ in 0..req.num_audios {
                    let mid = self.next_mid();
                    self.sections.push(OfferSection::Receive {
                        mid,
                        kind: MediaKind::Audio,
                    });
                }
                for _ in 0..req.num_videos {
                    let mid = self.next_mid();
                    self.sections.push(OfferSection::Receive {
                        mid,
                        kind: MediaKind::Video,
                    });
                }
                self.negotiate().await?;
            }
            Resp::Leave(l) => {
                let reason = pb::DisconnectReason::try_from(l.reason).unwrap_or_default();
                self.finish(format!(
                    "the server ended the session ({})",
                    reason.as_str_name()
                ));
            }
            Resp::TrackUnpublished(t) => {
                self.published.retain(|p| p.sid != t.track_sid);
            }
            _ => {}
        }
        Ok(())
    }

    fn update_participant(&mut self, p: pb::ParticipantInfo) {
        if Some(p.sid.as_str()) == self.join.participant.as_ref().map(|me| me.sid.as_str()) {
            return;
        }
        if p.state == pb::participant_info::State::Disconnected as i32 {
            if let Some(old) = self.participants.remove(&p.sid) {
                self.emit(RoomEvent::ParticipantDisconnected(old));
            }
            return;
        }
        let new = !self.participants.contains_key(&p.sid);
        self.participants.insert(p.sid.clone(), p.clone());
        if new {
            self.emit(RoomEvent::ParticipantConnected(p));
        }
    }

    async fn handle_track_published(
        &mut self,
        tp: pb::TrackPublishedResponse,
    ) -> Result<(), ClientError> {
        let Some(idx) = self.pending.iter().position(|p| p.cid == tp.cid) else {
            return Ok(());
        };
        let p = self.pending.remove(idx);
        let Some(info) = tp.track else {
            let _ = p.reply.send(Err(ClientError::PublishRefused {
                name: p.spec.name,
                reason: "track_published without a track".into(),
            }));
            return Ok(());
        };
        let mid = self.next_mid();
        let count = p.spec.layers.len().max(1);
        let mut streams = Vec::with_capacity(count);
        let mut ssrcs = Vec::with_capacity(count);
        let rids: Vec<String> = p.spec.layers.iter().map(|l| l.rid.clone()).collect();
        for i in 0..count {
            let ssrc = loop {
                let s: u32 = rand::random();
                if s != 0 && !self.ssrc_to_local.contains_key(&s) {
                    break s;
                }
            };
            let rid = (rids.len() > 1).then(|| rids[i].clone());
            streams.push(RtpStream::new(
                ssrc,
                p.spec.codec.clock_rate(),
                p.spec.codec.payload_type(),
                mid.clone(),
                rid,
            ));
            ssrcs.push(ssrc);
            self.ssrc_to_local.insert(ssrc, (self.published.len(), i));
        }
        let stream = self
            .join
            .participant
            .as_ref()
            .map_or_else(|| "stream".to_owned(), |me| me.sid.clone());
        self.sections.push(OfferSection::Send {
            mid: mid.clone(),
            codec: p.spec.codec,
            stream,
            cid: p.cid.clone(),
            ssrcs,
            rids: if rids.len() > 1 { rids } else { Vec::new() },
        });
        self.published.push(Published {
            sid: info.sid.clone(),
            mid,
            codec: p.spec.codec,
            streams,
            info,
            reply: Some(p.reply),
            negotiated: false,
            deadline: p.deadline,
        });
        self.negotiate().await
    }

    async fn handle_answer(
        &mut self,
        now: Instant,
        a: pb::SessionDescription,
    ) -> Result<(), ClientError> {
        let sd = lkr_sdp::parse(&a.sdp).map_err(|e| ClientError::Sdp(e.to_string()))?;
        self.offer_in_flight = None;
        if !self.primary.remote_set {
            let params = sdp::remote_params(&sd)?;
            self.primary.pc.set_remote(now, &params);
            self.primary.remote_set = true;
        }
        for addr in sdp::remote_candidates(&sd) {
            self.primary.pc.add_remote_candidate(now, addr);
        }
        for (i, p) in self.published.iter_mut().enumerate() {
            if p.negotiated {
                continue;
            }
            let Some(pt) = sdp::answered_payload_type(&sd, &p.mid, p.codec) else {
                continue;
            };
            p.negotiated = true;
            for s in &mut p.streams {
                s.set_payload_type(pt);
            }
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Ok(LocalTrack {
                    id: LocalTrackId(i),
                    sid: p.sid.clone(),
                    info: p.info.clone(),
                }));
            }
        }
        if self.settings.single_pc {
            let incoming = sdp::incoming_sections(&sd, &a.mid_to_track_id);
            self.apply_incoming(Which::Primary, incoming);
        }
        if self.negotiation_needed {
            self.negotiate().await?;
        }
        Ok(())
    }

    async fn handle_offer(
        &mut self,
        now: Instant,
        o: pb::SessionDescription,
    ) -> Result<(), ClientError> {
        let sd = lkr_sdp::parse(&o.sdp).map_err(|e| ClientError::Sdp(e.to_string()))?;
        let local_ip = self.local_ip;
        let session_id = self.session_id;
        self.version += 1;
        let version = self.version;
        let Some(sub) = self.subscriber.as_mut() else {
            return Err(ClientError::Sdp(
                "an offer arrived on a single-PC session".into(),
            ));
        };
        let answer = sdp::answer(&sd, &sub.local(local_ip), session_id, version);
        if !sub.remote_set {
            let params = sdp::remote_params(&sd)?;
            sub.pc.set_remote(now, &params);
            sub.remote_set = true;
        }
        if sd
            .media
            .iter()
            .any(|m| m.kind == lkr_sdp::MediaKind::Application && !m.is_rejected())
        {
            sub.pc.enable_sctp(now);
        }
        for addr in sdp::remote_candidates(&sd) {
            sub.pc.add_remote_candidate(now, addr);
        }
        self.send_signal(Req::Answer(pb::SessionDescription {
            r#type: "answer".into(),
            sdp: answer.write(),
            id: o.id,
            mid_to_track_id: HashMap::new(),
        }))
        .await?;
        let incoming = sdp::incoming_sections(&sd, &o.mid_to_track_id);
        self.apply_incoming(Which::Subscriber, incoming);
        Ok(())
    }

    /// Maps the SSRCs of the sections the server sends on to track sids, announcing new
    /// tracks and retiring sections that stopped.
    fn apply_incoming(&mut self, which: Which, incoming: Vec<sdp::IncomingSection>) {
        let gone: Vec<u32> = self
            .inbound
            .iter()
            .filter(|(ssrc, i)| {
                i.which == which
                    && !incoming
                        .iter()
                        .any(|s| s.mid == i.mid && s.ssrcs.contains(ssrc))
            })
            .map(|(ssrc, _)| *ssrc)
            .collect();
        for ssrc in gone {
            if let Some(i) = self.inbound.remove(&ssrc) {
                self.retired.push(TrackStats {
                    track_sid: i.track_sid.to_string(),
                    stats: i.stream.stats(),
                });
                self.emit(RoomEvent::TrackUnsubscribed {
                    sid: i.track_sid.to_string(),
                });
            }
        }
        for s in incoming {
            let Some(track_sid) = s.track_sid.clone() else {
                continue;
            };
            let Some(&ssrc) = s.ssrcs.first() else {
                continue;
            };
            if self.inbound.contains_key(&ssrc) {
                continue;
            }
            let participant_sid = s
                .stream
                .as_deref()
                .and_then(|st| st.split_once('|').map(|(p, _)| p.to_owned()))
                .unwrap_or_default();
            let owner = self
                .participants
                .values()
                .find(|p| p.tracks.iter().any(|t| t.sid == track_sid))
                .or_else(|| self.participants.get(&participant_sid));
            let (participant_sid, identity, name) = match owner {
                Some(p) => (
                    p.sid.clone(),
                    p.identity.clone(),
                    p.tracks
                        .iter()
                        .find(|t| t.sid == track_sid)
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                ),
                None => (participant_sid, String::new(), String::new()),
            };
            self.inbound.insert(
                ssrc,
                Inbound {
                    track_sid: Arc::from(track_sid.as_str()),
                    which,
                    mid: s.mid.clone(),
                    stream: ReceiveStream::new(),
                    payload_types: s.payload_types.clone(),
                    carried_loss: 0,
                },
            );
            self.replay_early(ssrc);
            self.emit(RoomEvent::TrackSubscribed(RemoteTrack {
                sid: track_sid,
                participant_sid,
                participant_identity: identity,
                name,
                kind: s.kind,
                ssrc,
                payload_types: s.payload_types,
            }));
        }
    }

    /// Feeds the early packets of a newly known SSRC to its stream.
    fn replay_early(&mut self, ssrc: u32) {
        let now = Instant::now();
        let Some(i) = self.inbound.get_mut(&ssrc) else {
            return;
        };
        let mut rest = std::collections::VecDeque::with_capacity(self.early.len());
        for e in self.early.drain(..) {
            match RtpView::parse(&e.packet) {
                Ok(view) if view.ssrc() == ssrc => i.stream.handle_packet(e.at, e.arrival, &view),
                _ => rest.push_back(e),
            }
        }
        self.early = rest;
        self.after_receive(now, ssrc);
    }

    fn handle_trickle(&mut self, now: Instant, t: &pb::TrickleRequest) {
        let Ok(init) = serde_json::from_str::<serde_json::Value>(&t.candidate_init) else {
            return;
        };
        let Some(line) = init.get("candidate").and_then(|c| c.as_str()) else {
            return;
        };
        let Some(addr) = lkr_sdp::parse_candidate(line)
            .ok()
            .and_then(|c| sdp::candidate_address(&c))
        else {
            return;
        };
        let which = if !self.settings.single_pc && t.target == pb::SignalTarget::Subscriber as i32 {
            Which::Subscriber
        } else {
            Which::Primary
        };
        if let Some(pc) = self.pc(which) {
            pc.pc.add_remote_candidate(now, addr);
        }
    }

    async fn handle_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Publish { spec, reply } => {
                let cid = format!("lkr-{:016x}", rand::random::<u64>());
                let req = add_track_request(&cid, &spec);
                self.pending.push(PendingPublish {
                    cid,
                    spec,
                    reply,
                    deadline: now + PUBLISH_TIMEOUT,
                });
                if let Err(e) = self.send_signal(Req::AddTrack(req)).await {
                    self.finish(e.to_string());
                }
            }
            Command::Media {
                track,
                layer,
                payload,
                timestamp,
                marker,
            } => {
                let Some(p) = self.published.get_mut(track.0) else {
                    return;
                };
                if !p.negotiated {
                    return;
                }
                let Some(s) = p.streams.get_mut(layer) else {
                    return;
                };
                let packet = s.packetize(now, &payload, timestamp, marker);
                if let Err(e) = self.primary.pc.send_rtp(&packet) {
                    tracing::debug!("RTP not sent: {e}");
                }
            }
            Command::Data {
                payload,
                topic,
                reliable,
            } => {
                self.data_sequence += 1;
                #[allow(deprecated)] // the kind is still read by clients
                let packet = pb::DataPacket {
                    kind: if reliable {
                        pb::data_packet::Kind::Reliable as i32
                    } else {
                        pb::data_packet::Kind::Lossy as i32
                    },
                    sequence: if reliable { self.data_sequence } else { 0 },
                    value: Some(pb::data_packet::Value::User(pb::UserPacket {
                        payload,
                        topic,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let label = if reliable { "_reliable" } else { "_lossy" };
                self.queued_data
                    .push((label.to_owned(), packet.encode_to_vec()));
                self.send_queued_data(now);
            }
            Command::Subscribe {
                track_sids,
                subscribe,
            } => {
                let r = self
                    .send_signal(Req::Subscription(pb::UpdateSubscription {
                        track_sids,
                        subscribe,
                        participant_tracks: Vec::new(),
                    }))
                    .await;
                if let Err(e) = r {
                    self.finish(e.to_string());
                }
            }
            Command::RequestKeyframe { track_sid } => {
                let found = self
                    .inbound
                    .iter()
                    .find(|(_, i)| *i.track_sid == *track_sid)
                    .map(|(ssrc, i)| (*ssrc, i.which));
                if let Some((ssrc, which)) = found {
                    let mut buf = [0u8; 12];
                    if let Ok(n) = lkr_rtp::write_pli(&mut buf, self.rtcp_ssrc, ssrc)
                        && let Some(pc) = self.pc(which)
                    {
                        let _ = pc.pc.send_rtcp(&buf[..n]);
                    }
                }
            }
            Command::Stats { reply } => {
                let mut all = self.retired.clone();
                all.extend(self.inbound.values().map(|i| TrackStats {
                    track_sid: i.track_sid.to_string(),
                    stats: i.stream.stats(),
                }));
                let _ = reply.send(all);
            }
            Command::Close { reply } => {
                let _ = self.send_signal(Req::Leave(leave_request())).await;
                self.closing = Some(reply);
                self.ended = true;
                self.emit(RoomEvent::Disconnected {
                    reason: "left the room".into(),
                });
            }
        }
    }

    fn send_queued_data(&mut self, now: Instant) {
        let mut keep = Vec::new();
        for (label, data) in std::mem::take(&mut self.queued_data) {
            if !self.channels_open.contains(&label) {
                keep.push((label, data));
                continue;
            }
            if let Err(e) = self.primary.pc.send_data(now, &label, &data) {
                tracing::warn!("data packet not sent: {e}");
            }
        }
        self.queued_data = keep;
    }

    async fn handle_timeout(&mut self) {
        let now = Instant::now();
        self.primary.pc.handle_timeout(now);
        if let Some(s) = self.subscriber.as_mut() {
            s.pc.handle_timeout(now);
        }
        let ssrcs: Vec<u32> = self.inbound.keys().copied().collect();
        for ssrc in ssrcs {
            if let Some(i) = self.inbound.get_mut(&ssrc) {
                i.stream.handle_timeout(now);
            }
            self.after_receive(now, ssrc);
        }
        for p in &mut self.published {
            if !p.negotiated
                && now >= p.deadline
                && let Some(reply) = p.reply.take()
            {
                let _ = reply.send(Err(ClientError::PublishTimeout(p.info.name.clone())));
            }
        }
        let expired: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(i, _)| i)
            .collect();
        for i in expired.into_iter().rev() {
            let p = self.pending.remove(i);
            let _ = p.reply.send(Err(ClientError::PublishTimeout(p.spec.name)));
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            let wall = SystemTime::now();
            let reports: Vec<Vec<u8>> = self
                .published
                .iter()
                .filter(|p| p.negotiated)
                .flat_map(|p| p.streams.iter())
                .filter_map(|s| s.sender_report(now, wall))
                .collect();
            for r in reports {
                let _ = self.primary.pc.send_rtcp(&r);
            }
        }
        if self.ready.is_none() && now >= self.next_ping {
            let interval = u64::try_from(self.join.ping_interval.max(1)).unwrap_or(5);
            self.next_ping = now + Duration::from_secs(interval);
            let ts = now_ms();
            let _ = self
                .send_signal(Req::PingReq(pb::Ping {
                    timestamp: ts,
                    rtt: 0,
                }))
                .await;
            let _ = self.send_signal(Req::Ping(ts)).await;
        }
    }

    /// Delivers what a stream has ready and sends the NACKs it wants.
    fn after_receive(&mut self, now: Instant, ssrc: u32) {
        let Some(i) = self.inbound.get_mut(&ssrc) else {
            return;
        };
        while let Some(mut packet) = i.stream.poll_packet() {
            if packet.payload.is_empty() {
                // Padding only (bandwidth probes): nothing to deliver but the loss before it.
                i.carried_loss += packet.lost_before;
                continue;
            }
            packet.lost_before += std::mem::take(&mut i.carried_loss);
            let codec = i
                .payload_types
                .iter()
                .find(|(pt, _)| *pt == packet.payload_type)
                .map(|(_, c)| *c);
            let _ = self.events.send(RoomEvent::Media {
                track_sid: i.track_sid.clone(),
                codec,
                packet,
            });
        }
        let lost = i.stream.poll_nacks(now);
        let which = i.which;
        if lost.is_empty() {
            return;
        }
        let mut buf = vec![0u8; 12 + 4 * lost.len()];
        if let Ok(n) = lkr_rtp::write_nack(&mut buf, self.rtcp_ssrc, ssrc, &lost)
            && let Some(pc) = self.pc(which)
        {
            let _ = pc.pc.send_rtcp(&buf[..n]);
        }
    }

    async fn flush(&mut self, which: Which) {
        let Some(pc) = self.pc(which) else { return };
        let mut events = Vec::new();
        while let Some(e) = pc.pc.poll_event() {
            events.push(e);
        }
        for e in events {
            self.handle_peer_event(which, e);
        }
        let Some(pc) = self.pc(which) else { return };
        while let Some((dest, data)) = pc.pc.poll_transmit() {
            if let Err(e) = pc.socket.send_to(&data, dest).await {
                tracing::debug!(%dest, "send failed: {e}");
            }
        }
    }

    fn handle_peer_event(&mut self, which: Which, e: PeerEvent) {
        let now = Instant::now();
        match e {
            PeerEvent::Connected => {
                tracing::debug!(?which, "peer connection connected");
                let all = self.primary.pc.is_connected()
                    && self.subscriber.as_ref().is_none_or(|s| s.pc.is_connected());
                if all && let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            PeerEvent::ChannelOpen { label } => {
                if which == Which::Primary && !self.channels_open.contains(&label) {
                    self.channels_open.push(label);
                    self.send_queued_data(now);
                }
            }
            PeerEvent::Data { label, data } => {
                let Ok(packet) = pb::DataPacket::decode(data.as_slice()) else {
                    return;
                };
                if let Some(pb::data_packet::Value::User(u)) = packet.value {
                    self.emit(RoomEvent::Data {
                        from: packet.participant_identity,
                        topic: u.topic,
                        payload: u.payload,
                        reliable: label == "_reliable",
                    });
                }
            }
            PeerEvent::Rtp(packet) => {
                let Ok(view) = RtpView::parse(&packet) else {
                    return;
                };
                let ssrc = view.ssrc();
                if let Some(i) = self.inbound.get_mut(&ssrc) {
                    i.stream.handle_packet(now, SystemTime::now(), &view);
                    self.after_receive(now, ssrc);
                } else {
                    while self.early.len() >= EARLY_MAX
                        || self
                            .early
                            .front()
                            .is_some_and(|e| now.saturating_duration_since(e.at) > EARLY_KEEP)
                    {
                        self.early.pop_front();
                    }
                    self.early.push_back(Early {
                        at: now,
                        arrival: SystemTime::now(),
                        packet,
                    });
                }
            }
            PeerEvent::Rtcp(packet) => self.handle_rtcp(which, &packet),
            PeerEvent::Failed(reason) => {
                self.finish(format!("{which:?} peer connection failed: {reason}"));
            }
        }
    }

    fn handle_rtcp(&mut self, which: Which, packet: &[u8]) {
        let mut keyframes = Vec::new();
        let mut resend = Vec::new();
        for p in lkr_rtp::rtcp_packets(packet) {
            let Ok(p) = p else { break };
            match p {
                RtcpPacket::Pli { media_ssrc, .. } => keyframes.push(media_ssrc),
                RtcpPacket::Fir { entries, .. } => {
                    keyframes.extend(entries.iter().map(|(ssrc, _)| ssrc));
                }
                RtcpPacket::Nack {
                    media_ssrc, pairs, ..
                } => {
                    for seq in pairs.take(256) {
                        resend.push((media_ssrc, seq));
                    }
                }
                _ => {}
            }
        }
        for ssrc in keyframes {
            if let Some(&(track, layer)) = self.ssrc_to_local.get(&ssrc) {
                self.emit(RoomEvent::KeyframeRequested {
                    track: LocalTrackId(track),
                    layer,
                });
            }
        }
        if which != Which::Primary {
            return;
        }
        for (ssrc, seq) in resend {
            let Some(&(track, layer)) = self.ssrc_to_local.get(&ssrc) else {
                continue;
            };
            let packet = self
                .published
                .get_mut(track)
                .and_then(|p| p.streams.get_mut(layer))
                .and_then(|s| s.retransmission(seq));
            if let Some(packet) = packet {
                let _ = self.primary.pc.send_rtp(&packet);
            }
        }
    }
}

async fn recv_opt(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn leave_request() -> pb::LeaveRequest {
    pb::LeaveRequest {
        can_reconnect: false,
        reason: pb::DisconnectReason::ClientInitiated as i32,
        action: pb::leave_request::Action::Disconnect as i32,
        regions: None,
    }
}

fn add_track_request(cid: &str, spec: &TrackSpec) -> pb::AddTrackRequest {
    let layers: Vec<pb::VideoLayer> = spec
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| pb::VideoLayer {
            quality: match l.rid.as_str() {
                "q" => pb::VideoQuality::Low as i32,
                "h" => pb::VideoQuality::Medium as i32,
                "f" => pb::VideoQuality::High as i32,
                _ => i32::try_from(i).unwrap_or(0),
            },
            width: l.width,
            height: l.height,
            bitrate: l.bitrate,
            rid: l.rid.clone(),
            ..Default::default()
        })
        .collect();
    let layers = if layers.is_empty() && spec.kind() == MediaKind::Video {
        vec![pb::VideoLayer {
            quality: pb::VideoQuality::High as i32,
            width: spec.width,
            height: spec.height,
            ..Default::default()
        }]
    } else {
        layers
    };
    pb::AddTrackRequest {
        cid: cid.to_owned(),
        name: spec.name.clone(),
        r#type: spec.kind().track_type() as i32,
        width: spec.width,
        height: spec.height,
        source: spec.source as i32,
        simulcast_codecs: vec![pb::SimulcastCodec {
            codec: spec.codec.sdp_name().to_ascii_lowercase(),
            cid: cid.to_owned(),
            layers: layers.clone(),
            ..Default::default()
        }],
        layers,
        ..Default::default()
    }
}
