//! The client's session machine, sans-IO: everything a joined participant does between the
//! JoinResponse and the end of the session, with no socket, task, channel or clock of its
//! own. [`crate::room`] pumps it over the signalling WebSocket and one UDP socket per peer
//! connection; tests drive it by hand.
//!
//! Inputs, each with `now`: [`Session::handle_signal`] (a server message),
//! [`Session::handle_datagram`] (a datagram on one of the peer connections' sockets),
//! [`Session::handle_timeout`], and the application's requests ([`Session::publish`],
//! [`Session::send_media`], [`Session::publish_data`], [`Session::set_subscribed`],
//! [`Session::request_keyframe`], [`Session::close`]).
//!
//! Outputs, polled after every input: [`Session::poll_transmit`] (datagrams, with the peer
//! connection whose socket sends them), [`Session::poll_signal`] (signal requests to send),
//! [`Session::poll_event`] (room events, readiness, publish results) and
//! [`Session::poll_timeout`] (when to call [`Session::handle_timeout`] next).
//!
//! Single PC (`/rtc/v1`, the default): one peer connection carries our data channels, our
//! published tracks (`sendonly` sections) and downstream tracks (`recvonly` sections the
//! server fills, named by `mid_to_track_id` and msid in its answers; it asks for more with
//! `media_sections_requirement`). Dual PC (`/rtc`): the publisher PC carries our data
//! channels and tracks, and the server offers downstream tracks on the subscriber PC, which
//! we answer.
//!
//! Wall-clock times (RTCP sender reports, arrival times, pings) are derived from `now` and
//! the wall-clock reading given at construction, so that the machine reads no clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lkr_dtls_glue::cert::Certificate;
use lkr_proto::pb;
use lkr_rtp::{RtcpPacket, RtpView};
use prost::Message as _;

use crate::ClientError;
use crate::codec::{Codec, MediaKind};
use crate::peer::{PeerConnection, PeerEvent, Received};
use crate::room::{LocalTrack, LocalTrackId, RemoteTrack, RoomEvent, TrackSpec, TrackStats};
use crate::rtp_in::ReceiveStream;
use crate::rtp_out::RtpStream;
use crate::sdp::{self, LocalTransport, OfferSection};
use crate::signal::JoinSettings;

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

/// How long the server may take to answer an AddTrackRequest and the offer that follows.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between sender reports on each published stream.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Most early packets kept, and for how long.
const EARLY_MAX: usize = 512;
const EARLY_KEEP: Duration = Duration::from_secs(2);
/// Most NACKed sequence numbers acted on per RTCP packet.
const MAX_RESENDS: usize = 256;

/// Which of our peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcId {
    /// The single PC, or the publisher PC of a dual-PC session.
    Primary,
    /// The subscriber PC of a dual-PC session.
    Subscriber,
}

/// A datagram to send from the socket of peer connection `pc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Whose socket sends it.
    pub pc: PcId,
    /// Where to.
    pub dest: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// Identifies one [`Session::publish`] call in its [`SessionEvent::Published`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishRequest(pub u64);

/// What the session reports to its driver.
#[derive(Debug)]
pub enum SessionEvent {
    /// For the application.
    Room(RoomEvent),
    /// Every peer connection connected (`Ok`), or the session ended first (`Err`). Reported
    /// once.
    Ready(Result<(), ClientError>),
    /// The outcome of a [`Session::publish`].
    Published {
        /// Which call.
        request: PublishRequest,
        /// The track, once the server answered, or why not.
        result: Result<LocalTrack, ClientError>,
    },
}

struct Pc {
    pc: PeerConnection,
    port: u16,
    remote_set: bool,
}

impl Pc {
    fn local(&self, ip: IpAddr) -> LocalTransport {
        self.pc.local_transport(ip, self.port)
    }
}

struct PendingPublish {
    request: PublishRequest,
    cid: String,
    spec: TrackSpec,
    deadline: Instant,
}

struct Published {
    sid: String,
    mid: String,
    codec: Codec,
    streams: Vec<RtpStream>,
    info: pb::TrackInfo,
    request: Option<PublishRequest>,
    negotiated: bool,
    deadline: Instant,
}

struct Inbound {
    track_sid: Arc<str>,
    which: PcId,
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

/// One joined participant's protocol state. See the module documentation.
pub struct Session {
    join: pb::JoinResponse,
    settings: JoinSettings,
    local_ip: IpAddr,
    primary: Pc,
    subscriber: Option<Pc>,
    /// `now` and the wall clock at construction.
    epoch: (Instant, SystemTime),
    ready: bool,
    ended: bool,
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
    early: VecDeque<Early>,
    participants: HashMap<String, pb::ParticipantInfo>,
    /// Keep (and report) only the remote participants that publish tracks.
    publishers_only: bool,
    rtcp_ssrc: u32,
    data_sequence: u32,
    channels_open: Vec<String>,
    queued_data: Vec<(String, Vec<u8>)>,
    next_ping: Instant,
    next_report: Instant,
    last_timeout: Option<Instant>,
    signals: VecDeque<Req>,
    events: VecDeque<SessionEvent>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("primary", &self.primary.pc)
            .field("ready", &self.ready)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `join`, answered on signalling at `now` (`wall` is the wall clock at
    /// that instant). Our peer connections present `cert`; their sockets are bound to
    /// `primary_port` and, for a dual-PC session, `subscriber_port`, and we advertise
    /// `local_ip`. The first offer (data channels) is queued at once.
    pub fn new(
        join: pb::JoinResponse,
        settings: JoinSettings,
        cert: Certificate,
        local_ip: IpAddr,
        ports: (u16, Option<u16>),
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let (primary_port, subscriber_port) = ports;
        let mut s = Self {
            join,
            settings,
            local_ip,
            primary: Pc {
                pc: PeerConnection::new(cert.clone()),
                port: primary_port,
                remote_set: false,
            },
            subscriber: subscriber_port.map(|port| Pc {
                pc: PeerConnection::new(cert),
                port,
                remote_set: false,
            }),
            epoch: (now, wall),
            ready: false,
            ended: false,
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
            early: VecDeque::new(),
            participants: HashMap::new(),
            publishers_only: false,
            rtcp_ssrc: rand::random::<u32>() | 1,
            data_sequence: 0,
            channels_open: Vec::new(),
            queued_data: Vec::new(),
            next_ping: now,
            next_report: now + REPORT_INTERVAL,
            last_timeout: None,
            signals: VecDeque::new(),
            events: VecDeque::new(),
        };
        let others = std::mem::take(&mut s.join.other_participants);
        for p in &others {
            s.participants.insert(p.sid.clone(), p.clone());
            s.emit(RoomEvent::ParticipantConnected(p.clone()));
        }
        s.join.other_participants = others;
        let mid = s.next_mid();
        s.sections.push(OfferSection::Data { mid });
        s.primary.pc.open_channel("_reliable", true, None);
        s.primary.pc.open_channel("_lossy", false, Some(0));
        s.primary.pc.enable_sctp(now);
        s.negotiate();
        s
    }

    /// Whether the session is over (left, refused, or failed); the driver stops after
    /// sending what is still queued.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((dest, data)) = self.primary.pc.poll_transmit() {
            return Some(Transmit {
                pc: PcId::Primary,
                dest,
                data,
            });
        }
        let (dest, data) = self.subscriber.as_mut()?.pc.poll_transmit()?;
        Some(Transmit {
            pc: PcId::Subscriber,
            dest,
            data,
        })
    }

    /// The next signal request to send.
    pub fn poll_signal(&mut self) -> Option<Req> {
        self.signals.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] has work: the peer connections' timers, lost-packet
    /// waits and NACK retries, publish deadlines, sender reports and pings. Never earlier
    /// than a millisecond after the last timeout handled, so that a timer the handling did
    /// not move cannot spin the driver.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let negotiated = self.published.iter().any(|p| p.negotiated);
        let next = [
            self.primary.pc.poll_timeout(),
            self.subscriber.as_ref().and_then(|s| s.pc.poll_timeout()),
            self.inbound
                .values()
                .filter_map(|i| i.stream.poll_timeout())
                .min(),
            self.pending.iter().map(|p| p.deadline).min(),
            self.published
                .iter()
                .filter(|p| p.request.is_some())
                .map(|p| p.deadline)
                .min(),
            negotiated.then_some(self.next_report),
            self.ready.then_some(self.next_ping),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(match self.last_timeout {
            Some(last) if next <= last => last + Duration::from_millis(1),
            _ => next,
        })
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0)
    }

    fn pc(&mut self, which: PcId) -> Option<&mut Pc> {
        match which {
            PcId::Primary => Some(&mut self.primary),
            PcId::Subscriber => self.subscriber.as_mut(),
        }
    }

    fn emit(&mut self, ev: RoomEvent) {
        self.events.push_back(SessionEvent::Room(ev));
    }

    fn next_mid(&mut self) -> String {
        let mid = self.next_mid.to_string();
        self.next_mid += 1;
        mid
    }

    /// Ends the session for `reason` (signalling lost, a peer connection failed, the server
    /// left): unanswered requests fail and the application hears `Disconnected`.
    pub fn finish(&mut self, reason: String) {
        if self.ended {
            return;
        }
        self.ended = true;
        if !self.ready {
            self.ready = true;
            self.events
                .push_back(SessionEvent::Ready(Err(ClientError::SessionEnded(
                    reason.clone(),
                ))));
        }
        for p in std::mem::take(&mut self.pending) {
            self.events.push_back(SessionEvent::Published {
                request: p.request,
                result: Err(ClientError::Closed),
            });
        }
        self.emit(RoomEvent::Disconnected { reason });
    }

    /// Leaves the room at the application's request: a LeaveRequest goes out and the
    /// application hears `Disconnected`.
    pub fn close(&mut self) {
        self.signals.push_back(Req::Leave(leave_request()));
        self.ended = true;
        self.emit(RoomEvent::Disconnected {
            reason: "left the room".into(),
        });
    }

    /// Leaves the room because the application is gone: a LeaveRequest, nothing more.
    pub fn abandon(&mut self) {
        self.signals.push_back(Req::Leave(leave_request()));
        self.ended = true;
    }

    /// Sends an offer on the publisher (or single) PC, or notes that one is due.
    fn negotiate(&mut self) {
        if self.offer_in_flight.is_some() {
            self.negotiation_needed = true;
            return;
        }
        self.negotiation_needed = false;
        self.version += 1;
        let local = self.primary.local(self.local_ip);
        let sd = sdp::offer(&local, self.session_id, self.version, &self.sections);
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        self.offer_in_flight = Some(id);
        self.signals.push_back(Req::Offer(pb::SessionDescription {
            r#type: "offer".into(),
            sdp: sd.write(),
            id,
            mid_to_track_id: HashMap::new(),
        }));
    }

    /// A message from the server. An error names a description we could not use; the
    /// session goes on.
    pub fn handle_signal(&mut self, now: Instant, m: Resp) -> Result<(), ClientError> {
        let r = self.signal(now, m);
        self.after_input(now);
        r
    }

    fn signal(&mut self, now: Instant, m: Resp) -> Result<(), ClientError> {
        match m {
            Resp::Answer(a) => self.handle_answer(now, a)?,
            Resp::Offer(o) => self.handle_offer(now, o)?,
            Resp::Trickle(t) => self.handle_trickle(now, &t),
            Resp::Update(u) => {
                for p in u.participants {
                    self.update_participant(p);
                }
            }
            Resp::TrackPublished(tp) => self.handle_track_published(tp),
            Resp::RequestResponse(r) => {
                let reason = pb::request_response::Reason::try_from(r.reason).unwrap_or_default();
                if reason != pb::request_response::Reason::Ok && !self.pending.is_empty() {
                    let p = self.pending.remove(0);
                    self.events.push_back(SessionEvent::Published {
                        request: p.request,
                        result: Err(ClientError::PublishRefused {
                            name: p.spec.name,
                            reason: r.message,
                        }),
                    });
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
                self.negotiate();
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

    /// From now on, keeps only the remote participants that publish tracks and raises no
    /// events for the others: in a room of N where few publish, every client knowing every
    /// other costs memory quadratic in N (a load tester runs them all in one process). The
    /// join response keeps only the publishers too.
    pub fn keep_publishers_only(&mut self) {
        self.publishers_only = true;
        self.participants.retain(|_, p| !p.tracks.is_empty());
        self.join
            .other_participants
            .retain(|p| !p.tracks.is_empty());
    }

    fn update_participant(&mut self, p: pb::ParticipantInfo) {
        if Some(p.sid.as_str()) == self.join.participant.as_ref().map(|me| me.sid.as_str()) {
            return;
        }
        if self.publishers_only && p.tracks.is_empty() {
            // Gone or never publishing: forget it silently, as it was never reported.
            self.participants.remove(&p.sid);
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

    /// Publishes a track: an AddTrackRequest now, an offer with its section once the server
    /// accepted it; [`SessionEvent::Published`] answers `request`.
    pub fn publish(&mut self, now: Instant, request: PublishRequest, spec: TrackSpec) {
        let cid = format!("lkr-{:016x}", rand::random::<u64>());
        let req = add_track_request(&cid, &spec);
        self.pending.push(PendingPublish {
            request,
            cid,
            spec,
            deadline: now + PUBLISH_TIMEOUT,
        });
        self.signals.push_back(Req::AddTrack(req));
    }

    /// Sends one RTP payload of a published track on simulcast layer `layer`. Dropped
    /// before the track is negotiated.
    pub fn send_media(
        &mut self,
        now: Instant,
        track: LocalTrackId,
        layer: usize,
        payload: &[u8],
        timestamp: u32,
        marker: bool,
    ) {
        let Some(p) = self.published.get_mut(track.0) else {
            return;
        };
        if !p.negotiated {
            return;
        }
        let Some(s) = p.streams.get_mut(layer) else {
            return;
        };
        let packet = s.packetize(now, payload, timestamp, marker);
        if let Err(e) = self.primary.pc.send_rtp(&packet) {
            tracing::debug!("RTP not sent: {e}");
        }
    }

    /// Sends a user data packet to everyone else, on `_reliable` or `_lossy`; queued until
    /// that channel is open.
    pub fn publish_data(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        topic: Option<String>,
        reliable: bool,
    ) {
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

    /// Subscribes to (or unsubscribes from) tracks by sid.
    pub fn set_subscribed(&mut self, track_sids: Vec<String>, subscribe: bool) {
        self.signals
            .push_back(Req::Subscription(pb::UpdateSubscription {
                track_sids,
                subscribe,
                participant_tracks: Vec::new(),
            }));
    }

    /// Asks the publisher of a downstream track for a keyframe (RTCP PLI).
    pub fn request_keyframe(&mut self, track_sid: &str) {
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

    /// Receive counters of every downstream track, including those that stopped.
    pub fn stats(&self) -> Vec<TrackStats> {
        let mut all = self.retired.clone();
        all.extend(self.inbound.values().map(|i| TrackStats {
            track_sid: i.track_sid.to_string(),
            stats: i.stream.stats(),
        }));
        all
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

    /// Timers: the peer connections', lost-packet waits and NACK retries, publish
    /// deadlines, sender reports, pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_timeout = Some(now);
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
                && let Some(request) = p.request.take()
            {
                self.events.push_back(SessionEvent::Published {
                    request,
                    result: Err(ClientError::PublishTimeout(p.info.name.clone())),
                });
            }
        }
        let (expired, live) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| now >= p.deadline);
        self.pending = live;
        for p in expired {
            self.events.push_back(SessionEvent::Published {
                request: p.request,
                result: Err(ClientError::PublishTimeout(p.spec.name)),
            });
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            let wall = self.wall(now);
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
        if self.ready && now >= self.next_ping {
            let interval = u64::try_from(self.join.ping_interval.max(1)).unwrap_or(5);
            self.next_ping = now + Duration::from_secs(interval);
            let ts = self
                .wall(now)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.signals.push_back(Req::PingReq(pb::Ping {
                timestamp: ts,
                rtt: 0,
            }));
            self.signals.push_back(Req::Ping(ts));
        }
        self.after_input(now);
    }

    /// A datagram that arrived on the socket of peer connection `which` from `from`.
    pub fn handle_datagram(&mut self, now: Instant, which: PcId, from: SocketAddr, buf: &mut [u8]) {
        let Some(pc) = self.pc(which) else { return };
        match pc.pc.receive(now, from, buf) {
            Received::Rtp(n) => self.handle_rtp(now, &buf[..n]),
            Received::Rtcp(n) => self.handle_rtcp(which, &buf[..n]),
            _ => {}
        }
        self.after_input(now);
    }

    /// Handles what the peer connections reported.
    fn after_input(&mut self, now: Instant) {
        for which in [PcId::Primary, PcId::Subscriber] {
            while let Some(e) = self.pc(which).and_then(|pc| pc.pc.poll_event()) {
                self.handle_peer_event(now, which, e);
            }
        }
    }

    fn handle_peer_event(&mut self, now: Instant, which: PcId, e: PeerEvent) {
        match e {
            PeerEvent::Connected => {
                tracing::debug!(?which, "peer connection connected");
                let all = self.primary.pc.is_connected()
                    && self.subscriber.as_ref().is_none_or(|s| s.pc.is_connected());
                if all && !self.ready && !self.ended {
                    self.ready = true;
                    self.events.push_back(SessionEvent::Ready(Ok(())));
                }
            }
            PeerEvent::ChannelOpen { label } => {
                if which == PcId::Primary && !self.channels_open.contains(&label) {
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
            PeerEvent::Rtp(packet) => self.handle_rtp(now, &packet),
            PeerEvent::Rtcp(packet) => self.handle_rtcp(which, &packet),
            PeerEvent::Failed(reason) => {
                self.finish(format!("{which:?} peer connection failed: {reason}"));
            }
        }
    }

    fn handle_rtp(&mut self, now: Instant, packet: &[u8]) {
        let Ok(view) = RtpView::parse(packet) else {
            return;
        };
        let ssrc = view.ssrc();
        let wall = self.wall(now);
        if let Some(i) = self.inbound.get_mut(&ssrc) {
            i.stream.handle_packet(now, wall, &view);
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
                arrival: wall,
                packet: packet.to_vec(),
            });
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
            self.events.push_back(SessionEvent::Room(RoomEvent::Media {
                track_sid: i.track_sid.clone(),
                codec,
                packet,
            }));
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

    fn handle_rtcp(&mut self, which: PcId, packet: &[u8]) {
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
                    for seq in pairs.take(MAX_RESENDS) {
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
        if which != PcId::Primary {
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

    fn handle_track_published(&mut self, tp: pb::TrackPublishedResponse) {
        let Some(idx) = self.pending.iter().position(|p| p.cid == tp.cid) else {
            return;
        };
        let p = self.pending.remove(idx);
        let Some(info) = tp.track else {
            self.events.push_back(SessionEvent::Published {
                request: p.request,
                result: Err(ClientError::PublishRefused {
                    name: p.spec.name,
                    reason: "track_published without a track".into(),
                }),
            });
            return;
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
            request: Some(p.request),
            negotiated: false,
            deadline: p.deadline,
        });
        self.negotiate();
    }

    fn handle_answer(
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
        let events = &mut self.events;
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
            if let Some(request) = p.request.take() {
                events.push_back(SessionEvent::Published {
                    request,
                    result: Ok(LocalTrack {
                        id: LocalTrackId(i),
                        sid: p.sid.clone(),
                        info: p.info.clone(),
                    }),
                });
            }
        }
        if self.settings.single_pc {
            let incoming = sdp::incoming_sections(&sd, &a.mid_to_track_id);
            self.apply_incoming(now, PcId::Primary, incoming);
        }
        if self.negotiation_needed {
            self.negotiate();
        }
        Ok(())
    }

    fn handle_offer(&mut self, now: Instant, o: pb::SessionDescription) -> Result<(), ClientError> {
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
        self.signals.push_back(Req::Answer(pb::SessionDescription {
            r#type: "answer".into(),
            sdp: answer.write(),
            id: o.id,
            mid_to_track_id: HashMap::new(),
        }));
        let incoming = sdp::incoming_sections(&sd, &o.mid_to_track_id);
        self.apply_incoming(now, PcId::Subscriber, incoming);
        Ok(())
    }

    /// Maps the SSRCs of the sections the server sends on to track sids, announcing new
    /// tracks and retiring sections that stopped.
    fn apply_incoming(&mut self, now: Instant, which: PcId, incoming: Vec<sdp::IncomingSection>) {
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
            self.replay_early(now, ssrc);
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
    fn replay_early(&mut self, now: Instant, ssrc: u32) {
        let Some(i) = self.inbound.get_mut(&ssrc) else {
            return;
        };
        let mut rest = VecDeque::with_capacity(self.early.len());
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
            PcId::Subscriber
        } else {
            PcId::Primary
        };
        if let Some(pc) = self.pc(which) {
            pc.pc.add_remote_candidate(now, addr);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::room::LayerSpec;
    use crate::testserver::LiteServer;

    const CLIENT: &str = "127.0.0.1:5000";
    const SERVER: &str = "127.0.0.1:7882";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn participant(sid: &str, identity: &str) -> pb::ParticipantInfo {
        pb::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            ..Default::default()
        }
    }

    fn session(now: Instant) -> Session {
        let join = pb::JoinResponse {
            participant: Some(participant("PA_me", "me")),
            other_participants: vec![participant("PA_other", "other")],
            ping_interval: 5,
            ..Default::default()
        };
        Session::new(
            join,
            JoinSettings {
                single_pc: true,
                auto_subscribe: true,
            },
            Certificate::generate().unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            (5000, None),
            now,
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        )
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn signals(s: &mut Session) -> Vec<Req> {
        std::iter::from_fn(|| s.poll_signal()).collect()
    }

    fn only_offer(s: &mut Session) -> pb::SessionDescription {
        match signals(s).as_slice() {
            [Req::Offer(o)] => o.clone(),
            other => panic!("expected one offer, got {other:?}"),
        }
    }

    fn answer_to(server: &LiteServer, offer: &pb::SessionDescription) -> Resp {
        Resp::Answer(pb::SessionDescription {
            r#type: "answer".into(),
            sdp: server.answer(&offer.sdp, addr(SERVER)),
            id: offer.id,
            mid_to_track_id: HashMap::new(),
        })
    }

    /// A server for the session's primary peer connection.
    fn server_for(s: &Session) -> LiteServer {
        let (ufrag, pwd) = s.primary.pc.ice_credentials();
        LiteServer::new(ufrag, pwd, s.primary.pc.fingerprint())
    }

    fn audio_spec() -> TrackSpec {
        TrackSpec {
            name: "mic".into(),
            codec: Codec::Opus,
            source: pb::TrackSource::Microphone,
            width: 0,
            height: 0,
            layers: Vec::new(),
        }
    }

    /// Runs the session against `server` over a perfect virtual network, at the session's
    /// own timeouts (and the server's every 5 ms), until `done` or 5 virtual seconds.
    fn run(
        now: &mut Instant,
        s: &mut Session,
        server: &mut LiteServer,
        mut done: impl FnMut(&mut Session, &LiteServer) -> bool,
    ) {
        let end = *now + Duration::from_secs(5);
        while *now < end {
            let mut moved = true;
            while moved {
                moved = false;
                while let Some(t) = s.poll_transmit() {
                    assert_eq!((t.pc, t.dest), (PcId::Primary, addr(SERVER)));
                    let mut d = t.data;
                    server.handle(*now, addr(CLIENT), &mut d);
                    moved = true;
                }
                for (dest, mut d) in std::mem::take(&mut server.out) {
                    assert_eq!(dest, addr(CLIENT));
                    s.handle_datagram(*now, PcId::Primary, addr(SERVER), &mut d);
                    moved = true;
                }
            }
            if done(s, server) {
                return;
            }
            let step = *now + Duration::from_millis(5);
            *now = s.poll_timeout().map_or(step, |t| t.min(step)).max(*now);
            s.handle_timeout(*now);
            server.handle_timeout(*now, addr(CLIENT));
        }
        panic!("no progress: {s:?}");
    }

    #[test]
    fn starts_with_the_room_and_a_data_channel_offer() {
        let now = Instant::now();
        let mut s = session(now);
        let evs = events(&mut s);
        assert!(
            matches!(evs.as_slice(), [SessionEvent::Room(RoomEvent::ParticipantConnected(p))] if p.sid == "PA_other"),
            "{evs:?}"
        );
        let offer = only_offer(&mut s);
        assert_eq!(offer.id, 1);
        let sd = lkr_sdp::parse(&offer.sdp).unwrap();
        assert_eq!(sd.media.len(), 1);
        assert_eq!(sd.media[0].kind, lkr_sdp::MediaKind::Application);
        assert_eq!(sd.media[0].setup, Some(lkr_sdp::Setup::ActPass));
        assert!(sd.media[0].candidates[0].contains("127.0.0.1 5000 typ host"));
        // Nothing to send and no timer before the server's answer.
        assert!(s.poll_transmit().is_none());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn connects_opens_data_channels_and_pings() {
        let mut now = Instant::now();
        let mut s = session(now);
        let mut server = server_for(&s);
        let offer = only_offer(&mut s);
        events(&mut s);
        s.handle_signal(now, answer_to(&server, &offer)).unwrap();
        let first = s.poll_transmit().expect("a connectivity check");
        assert_eq!(first.dest, addr(SERVER));
        assert!(lkr_ice::is_stun(&first.data));
        server.handle(now, addr(CLIENT), &mut first.data.clone());

        // Data published before the channel opens waits for it.
        s.publish_data(now, b"hello".to_vec(), Some("t".into()), true);
        let mut ready = false;
        run(&mut now, &mut s, &mut server, |s, server| {
            for e in events(s) {
                if let SessionEvent::Ready(r) = e {
                    assert!(r.is_ok(), "{r:?}");
                    ready = true;
                }
            }
            ready && !server.messages.is_empty()
        });
        let (label, data) = &server.messages[0];
        assert_eq!(label, "_reliable");
        let packet = pb::DataPacket::decode(data.as_slice()).unwrap();
        assert!(
            matches!(packet.value, Some(pb::data_packet::Value::User(ref u)) if u.payload == b"hello")
        );

        // Pings go out once ready, then every ping interval, stamped with the wall clock
        // derived from `now`.
        s.handle_timeout(now);
        let pings = signals(&mut s);
        let Some(Req::PingReq(p)) = pings.first() else {
            panic!("{pings:?}");
        };
        let elapsed = s.wall(now).duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(p.timestamp, elapsed.as_millis() as i64);
        assert!(p.timestamp >= 1_000_000_000);
        assert!(matches!(pings.get(1), Some(Req::Ping(_))));
        let next = s.poll_timeout().unwrap();
        assert!(next <= now + Duration::from_secs(5));
        s.handle_timeout(now + Duration::from_millis(4_900));
        assert!(signals(&mut s).is_empty(), "not before the interval");
        s.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(signals(&mut s).len(), 2);
    }

    #[test]
    fn publishing_waits_for_the_offer_in_flight_and_resolves_on_the_answer() {
        let now = Instant::now();
        let mut s = session(now);
        let server = server_for(&s);
        let first = only_offer(&mut s);
        s.publish(now, PublishRequest(7), audio_spec());
        let add = match signals(&mut s).as_slice() {
            [Req::AddTrack(a)] => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(add.name, "mic");
        s.handle_signal(
            now,
            Resp::TrackPublished(pb::TrackPublishedResponse {
                cid: add.cid.clone(),
                track: Some(pb::TrackInfo {
                    sid: "TR_a".into(),
                    name: "mic".into(),
                    ..Default::default()
                }),
            }),
        )
        .unwrap();
        assert!(signals(&mut s).is_empty(), "one offer at a time");
        s.handle_signal(now, answer_to(&server, &first)).unwrap();
        let second = only_offer(&mut s);
        assert_eq!(second.id, 2);
        let sd = lkr_sdp::parse(&second.sdp).unwrap();
        let m = &sd.media[1];
        assert_eq!(m.direction, Some(lkr_sdp::Direction::SendOnly));
        assert_eq!(m.msid.as_ref().unwrap().track, add.cid);
        assert_eq!(m.msid.as_ref().unwrap().stream, "PA_me");
        assert!(
            !events(&mut s)
                .iter()
                .any(|e| matches!(e, SessionEvent::Published { .. }))
        );
        s.handle_signal(now, answer_to(&server, &second)).unwrap();
        let published: Vec<_> = events(&mut s)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Published { request, result } => Some((request, result)),
                _ => None,
            })
            .collect();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].0, PublishRequest(7));
        let track = published[0].1.as_ref().unwrap();
        assert_eq!((track.id, track.sid.as_str()), (LocalTrackId(0), "TR_a"));
    }

    #[test]
    fn an_unanswered_publish_times_out_and_a_refused_one_fails() {
        let now = Instant::now();
        let mut s = session(now);
        signals(&mut s);
        s.publish(now, PublishRequest(1), audio_spec());
        let mut video = audio_spec();
        video.name = "cam".into();
        video.codec = Codec::Vp8;
        video.layers = vec![LayerSpec {
            rid: "q".into(),
            width: 320,
            height: 180,
            bitrate: 150_000,
        }];
        s.publish(now, PublishRequest(2), video);
        assert_eq!(signals(&mut s).len(), 2);
        s.handle_signal(
            now,
            Resp::RequestResponse(pb::RequestResponse {
                reason: pb::request_response::Reason::LimitExceeded as i32,
                message: "too many".into(),
                ..Default::default()
            }),
        )
        .unwrap();
        assert!(events(&mut s).iter().any(|e| matches!(e,
            SessionEvent::Published { request: PublishRequest(1), result: Err(ClientError::PublishRefused { reason, .. }) }
            if reason == "too many")));
        assert_eq!(s.poll_timeout(), Some(now + PUBLISH_TIMEOUT));
        s.handle_timeout(now + PUBLISH_TIMEOUT - Duration::from_millis(1));
        assert!(events(&mut s).is_empty());
        s.handle_timeout(now + PUBLISH_TIMEOUT);
        assert!(
            matches!(events(&mut s).as_slice(), [SessionEvent::Published {
            request: PublishRequest(2),
            result: Err(ClientError::PublishTimeout(name)),
        }] if name == "cam")
        );
    }

    #[test]
    fn receive_slots_follow_the_servers_requirement() {
        let now = Instant::now();
        let mut s = session(now);
        let server = server_for(&s);
        let first = only_offer(&mut s);
        s.handle_signal(now, answer_to(&server, &first)).unwrap();
        s.handle_signal(
            now,
            Resp::MediaSectionsRequirement(pb::MediaSectionsRequirement {
                num_audios: 1,
                num_videos: 2,
            }),
        )
        .unwrap();
        let sd = lkr_sdp::parse(&only_offer(&mut s).sdp).unwrap();
        let kinds: Vec<_> = sd.media.iter().map(|m| m.kind.clone()).collect();
        use lkr_sdp::MediaKind as K;
        assert_eq!(kinds, [K::Application, K::Audio, K::Video, K::Video]);
        assert!(
            sd.media[1..]
                .iter()
                .all(|m| m.direction == Some(lkr_sdp::Direction::RecvOnly))
        );
        assert_eq!(sd.bundle_mids, ["0", "1", "2", "3"]);
    }

    #[test]
    fn participants_come_and_go_and_we_are_not_one_of_them() {
        let now = Instant::now();
        let mut s = session(now);
        events(&mut s);
        let mut gone = participant("PA_other", "other");
        gone.state = pb::participant_info::State::Disconnected as i32;
        s.handle_signal(
            now,
            Resp::Update(pb::ParticipantUpdate {
                participants: vec![
                    participant("PA_me", "me"),
                    participant("PA_new", "new"),
                    participant("PA_new", "new"),
                    gone,
                ],
            }),
        )
        .unwrap();
        let evs = events(&mut s);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert!(
            matches!(&evs[0], SessionEvent::Room(RoomEvent::ParticipantConnected(p)) if p.sid == "PA_new")
        );
        assert!(
            matches!(&evs[1], SessionEvent::Room(RoomEvent::ParticipantDisconnected(p)) if p.sid == "PA_other")
        );
    }

    #[test]
    fn publishers_only_keeps_no_trackless_participant() {
        let now = Instant::now();
        let mut s = session(now);
        // "PA_other" of the join response publishes nothing: dropped.
        s.keep_publishers_only();
        assert!(s.participants.is_empty());
        assert!(s.join.other_participants.is_empty());
        events(&mut s);
        let mut publisher = participant("PA_pub", "pub");
        publisher.tracks.push(pb::TrackInfo {
            sid: "TR_a".into(),
            ..Default::default()
        });
        s.handle_signal(
            now,
            Resp::Update(pb::ParticipantUpdate {
                participants: vec![participant("PA_sub", "sub"), publisher.clone()],
            }),
        )
        .unwrap();
        let evs = events(&mut s);
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert!(
            matches!(&evs[0], SessionEvent::Room(RoomEvent::ParticipantConnected(p)) if p.sid == "PA_pub")
        );
        assert_eq!(s.participants.keys().collect::<Vec<_>>(), ["PA_pub"]);
        // A publisher that unpublishes everything is forgotten.
        publisher.tracks.clear();
        s.handle_signal(
            now,
            Resp::Update(pb::ParticipantUpdate {
                participants: vec![publisher],
            }),
        )
        .unwrap();
        assert!(s.participants.is_empty());
        assert!(events(&mut s).is_empty());
    }

    #[test]
    fn the_servers_leave_ends_everything_once() {
        let now = Instant::now();
        let mut s = session(now);
        events(&mut s);
        signals(&mut s);
        s.publish(now, PublishRequest(3), audio_spec());
        s.handle_signal(
            now,
            Resp::Leave(pb::LeaveRequest {
                reason: pb::DisconnectReason::RoomDeleted as i32,
                ..Default::default()
            }),
        )
        .unwrap();
        assert!(s.is_ended());
        let evs = events(&mut s);
        assert!(
            matches!(&evs[0], SessionEvent::Ready(Err(ClientError::SessionEnded(r))) if r.contains("ROOM_DELETED"))
        );
        assert!(matches!(
            &evs[1],
            SessionEvent::Published {
                request: PublishRequest(3),
                result: Err(ClientError::Closed)
            }
        ));
        assert!(matches!(
            &evs[2],
            SessionEvent::Room(RoomEvent::Disconnected { .. })
        ));
        assert_eq!(evs.len(), 3);
        s.finish("again".into());
        assert!(events(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn closing_sends_a_leave() {
        let now = Instant::now();
        let mut s = session(now);
        signals(&mut s);
        events(&mut s);
        s.close();
        assert!(s.is_ended());
        assert!(matches!(signals(&mut s).as_slice(), [Req::Leave(l)]
            if l.reason == pb::DisconnectReason::ClientInitiated as i32));
        assert!(matches!(events(&mut s).as_slice(),
            [SessionEvent::Room(RoomEvent::Disconnected { reason })] if reason == "left the room"));
    }

    /// A session connected to `server` (ICE, DTLS, data channels), its first offer answered.
    fn connected(now: &mut Instant) -> (Session, LiteServer) {
        let mut s = session(*now);
        let mut server = server_for(&s);
        let offer = only_offer(&mut s);
        s.handle_signal(*now, answer_to(&server, &offer)).unwrap();
        let mut ready = false;
        run(now, &mut s, &mut server, |s, _| {
            ready |= events(s)
                .iter()
                .any(|e| matches!(e, SessionEvent::Ready(Ok(()))));
            ready
        });
        (s, server)
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 12];
        lkr_rtp::RtpWriter::write_header(&mut buf, true, 111, seq, 960 * u32::from(seq), ssrc, &[])
            .unwrap();
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn media_goes_out_is_repaired_on_nack_and_comes_in_in_order() {
        let mut now = Instant::now();
        let (mut s, mut server) = connected(&mut now);
        // Publish a track and let the server accept it.
        s.publish(now, PublishRequest(1), audio_spec());
        let Some(Req::AddTrack(add)) = signals(&mut s).pop() else {
            panic!("no AddTrackRequest");
        };
        s.handle_signal(
            now,
            Resp::TrackPublished(pb::TrackPublishedResponse {
                cid: add.cid,
                track: Some(pb::TrackInfo {
                    sid: "TR_mine".into(),
                    ..Default::default()
                }),
            }),
        )
        .unwrap();
        let offer = only_offer(&mut s);
        let ssrc = lkr_sdp::parse(&offer.sdp).unwrap().media[1].primary_ssrcs()[0];
        s.handle_signal(now, answer_to(&server, &offer)).unwrap();
        s.send_media(now, LocalTrackId(0), 0, b"frame", 48_000, true);
        // The network loses it; its header is in the clear.
        let lost = s.poll_transmit().expect("the packet");
        let view = RtpView::parse(&lost.data).unwrap();
        assert_eq!(view.ssrc(), ssrc);

        // A NACK brings it again; a PLI asks the application for a keyframe.
        let mut fb = vec![0u8; 64];
        let n = lkr_rtp::write_nack(&mut fb, 1, ssrc, &[view.sequence()]).unwrap();
        let mut nack = server.protect(&fb[..n], true);
        s.handle_datagram(now, PcId::Primary, addr(SERVER), &mut nack);
        let n = lkr_rtp::write_pli(&mut fb, 1, ssrc).unwrap();
        let mut pli = server.protect(&fb[..n], true);
        s.handle_datagram(now, PcId::Primary, addr(SERVER), &mut pli);
        assert!(events(&mut s).iter().any(|e| matches!(
            e,
            SessionEvent::Room(RoomEvent::KeyframeRequested {
                track: LocalTrackId(0),
                layer: 0
            })
        )));
        run(&mut now, &mut s, &mut server, |_, server| {
            !server.rtp.is_empty()
        });
        let repaired = RtpView::parse(&server.rtp[0]).unwrap();
        assert_eq!(repaired.sequence(), view.sequence());
        assert_eq!(repaired.payload(), b"frame");

        // A downstream track: its first packet overtakes the description naming it.
        let early = rtp(100, 777, b"a");
        s.handle_datagram(
            now,
            PcId::Primary,
            addr(SERVER),
            &mut server.protect(&early, false),
        );
        s.handle_signal(
            now,
            Resp::MediaSectionsRequirement(pb::MediaSectionsRequirement {
                num_audios: 1,
                num_videos: 0,
            }),
        )
        .unwrap();
        let offer = only_offer(&mut s);
        let Resp::Answer(mut answer) = answer_to(&server, &offer) else {
            unreachable!()
        };
        let mut sd = lkr_sdp::parse(&answer.sdp).unwrap();
        let slot = sd.media.last_mut().unwrap();
        slot.set_sender("PA_other|TR_v", "TR_v", Some((777, "PA_other")));
        answer.sdp = sd.write();
        s.handle_signal(now, Resp::Answer(answer)).unwrap();
        // Then 102 before 101: delivered in order once 101 arrives.
        for seq in [102, 101] {
            let p = rtp(seq, 777, &[seq as u8]);
            s.handle_datagram(
                now,
                PcId::Primary,
                addr(SERVER),
                &mut server.protect(&p, false),
            );
        }
        let mut subscribed = None;
        let mut media = Vec::new();
        for e in events(&mut s) {
            match e {
                SessionEvent::Room(RoomEvent::TrackSubscribed(t)) => subscribed = Some(t),
                SessionEvent::Room(RoomEvent::Media {
                    track_sid, packet, ..
                }) => {
                    assert_eq!(&*track_sid, "TR_v");
                    media.push(packet.sequence);
                }
                _ => {}
            }
        }
        let t = subscribed.expect("a subscribed track");
        assert_eq!(
            (t.sid.as_str(), t.ssrc, t.participant_sid.as_str()),
            ("TR_v", 777, "PA_other")
        );
        assert_eq!(t.participant_identity, "other");
        assert_eq!(media, [100, 101, 102]);
        let stats = s.stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].stats.lost, 0);
    }
}
