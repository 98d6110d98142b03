//! The tokio driver around the sans-IO [`Session`]: one task per room session owns the
//! signalling WebSocket and the UDP socket of each peer connection, feeds the session what
//! arrives (with `now`), and carries out what it polls (datagrams, signal requests, events,
//! its next timeout). The application talks to it through [`Room`] (commands in) and a
//! channel of [`RoomEvent`]s (events out). All protocol logic is in [`crate::session`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt as _, StreamExt as _};
use lkr_dtls_glue::cert::Certificate;
use lkr_proto::pb;
use tokio::sync::{mpsc, oneshot};

use crate::ClientError;
use crate::codec::{Codec, MediaKind};
use crate::rtp_in::{MediaPacket, ReceiveStats};
use crate::session::{PcId, PublishRequest, Session, SessionEvent};
use crate::signal::{self, JoinSettings, SignalStream};
use crate::udp::{PeerSocket, SocketDrops};

pub use crate::session::PUBLISH_TIMEOUT;

/// How long the peer connections may take to connect after the join.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest the driver sleeps when the session has no timer.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// How to join.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomOptions {
    /// Single or dual PC, auto-subscribe.
    pub settings: JoinSettings,
    /// The receive buffer (`SO_RCVBUF`) of the peer connections' sockets, in bytes (the
    /// kernel's default when `None`).
    pub recv_buffer: Option<usize>,
    /// Keep only the remote participants that publish tracks, and raise events only for
    /// them (also in [`Room::join_response`]): for load tests, where thousands of
    /// subscribers each knowing all the others would cost memory quadratic in the room size.
    pub publishers_only: bool,
    /// Read segmented runs of datagrams whole (`UDP_GRO`, see [`PeerSocket::enable_gro`]),
    /// where the kernel offers it.
    pub udp_gro: bool,
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
    drops: Arc<SocketDrops>,
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
        let (ws, mut join) = signal::connect(url, token, &options.settings).await?;
        if options.publishers_only {
            join.other_participants.retain(|p| !p.tracks.is_empty());
        }
        let local_ip = local_ip_toward(url).await;
        let cert = Certificate::generate().map_err(|e| ClientError::Dtls(e.to_string()))?;
        let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let drops = Arc::new(SocketDrops::default());
        let mut primary = PeerSocket::bind(bind, options.recv_buffer, drops.clone(), 0).await?;
        let mut subscriber = if options.settings.single_pc {
            None
        } else {
            Some(PeerSocket::bind(bind, options.recv_buffer, drops.clone(), 1).await?)
        };
        if options.udp_gro {
            primary.enable_gro();
            if let Some(s) = subscriber.as_mut() {
                s.enable_gro();
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let ports = (
            primary.local_addr()?.port(),
            subscriber
                .as_ref()
                .map(PeerSocket::local_addr)
                .transpose()?
                .map(|a| a.port()),
        );
        let mut session = Session::new(
            join.clone(),
            options.settings,
            cert,
            local_ip,
            ports,
            Instant::now(),
            SystemTime::now(),
        );
        if options.publishers_only {
            session.keep_publishers_only();
        }
        let mut driver = Driver {
            session,
            ws,
            primary,
            subscriber,
            cmd_rx,
            events: ev_tx,
            ready: Some(ready_tx),
            replies: HashMap::new(),
            next_request: 0,
            closing: None,
        };
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
                drops,
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

    /// Datagrams the kernel dropped on our sockets because we did not read them in time
    /// (their receive queues were full), as of the last datagram read; `None` where the
    /// system does not count them (see [`crate::udp`]).
    pub fn socket_drops(&self) -> Option<u64> {
        self.drops.total()
    }

    /// How long the datagrams read so far waited between the kernel's receipt and our read,
    /// as a histogram (see [`crate::udp::SocketDrops::waits`]).
    pub fn socket_waits(&self) -> [u64; crate::udp::WAIT_BUCKETS] {
        self.drops.waits()
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

/// The I/O around one [`Session`].
struct Driver {
    session: Session,
    ws: SignalStream,
    primary: PeerSocket,
    subscriber: Option<PeerSocket>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RoomEvent>,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    replies: HashMap<PublishRequest, oneshot::Sender<Result<LocalTrack, ClientError>>>,
    next_request: u64,
    closing: Option<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(&mut self) {
        let mut buf = vec![0u8; 2048];
        let mut sub_buf = vec![0u8; 2048];
        loop {
            self.drain().await;
            if self.session.is_ended() {
                break;
            }
            let deadline = self
                .session
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + IDLE_WAKE);
            tokio::select! {
                frame = self.ws.next() => {
                    let now = Instant::now();
                    match frame {
                        Some(Ok(frame)) => {
                            if let Some(resp) = signal::decode(&frame)
                                && let Some(m) = resp.message
                                && let Err(e) = self.session.handle_signal(now, m)
                            {
                                tracing::warn!("signal message not handled: {e}");
                            }
                        }
                        Some(Err(e)) => {
                            self.session.finish(format!("signalling connection failed: {e}"));
                        }
                        None => self
                            .session
                            .finish("the server closed the signalling connection".into()),
                    }
                }
                r = self.primary.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.session.handle_datagram(Instant::now(), PcId::Primary, from, &mut buf[..n]);
                    }
                }
                r = recv_opt(self.subscriber.as_mut(), &mut sub_buf) => {
                    if let Ok((n, from)) = r {
                        self.session.handle_datagram(Instant::now(), PcId::Subscriber, from, &mut sub_buf[..n]);
                    }
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => self.session.abandon(),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
        let _ = self.ws.close(None).await;
        if let Some(reply) = self.closing.take() {
            let _ = reply.send(());
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Publish { spec, reply } => {
                let request = PublishRequest(self.next_request);
                self.next_request += 1;
                self.replies.insert(request, reply);
                self.session.publish(now, request, spec);
            }
            Command::Media {
                track,
                layer,
                payload,
                timestamp,
                marker,
            } => self
                .session
                .send_media(now, track, layer, &payload, timestamp, marker),
            Command::Data {
                payload,
                topic,
                reliable,
            } => self.session.publish_data(now, payload, topic, reliable),
            Command::Subscribe {
                track_sids,
                subscribe,
            } => self.session.set_subscribed(track_sids, subscribe),
            Command::RequestKeyframe { track_sid } => self.session.request_keyframe(&track_sid),
            Command::Stats { reply } => {
                let _ = reply.send(self.session.stats());
            }
            Command::Close { reply } => {
                self.session.close();
                self.closing = Some(reply);
            }
        }
    }

    /// Carries out everything the session has queued: signal requests, datagrams, events.
    async fn drain(&mut self) {
        // Requests queued together (a ping and a ping_req) leave in one write.
        let mut fed = false;
        while let Some(m) = self.session.poll_signal() {
            if let Err(e) = self.ws.feed(signal::encode(m)).await {
                self.session
                    .finish(format!("signalling connection failed: {e}"));
            }
            fed = true;
        }
        if fed && let Err(e) = self.ws.flush().await {
            self.session
                .finish(format!("signalling connection failed: {e}"));
        }
        while let Some(t) = self.session.poll_transmit() {
            let socket = match t.pc {
                PcId::Primary => &self.primary,
                PcId::Subscriber => match &self.subscriber {
                    Some(s) => s,
                    None => continue,
                },
            };
            if let Err(e) = socket.send_to(&t.data, t.dest).await {
                tracing::debug!(dest = %t.dest, "send failed: {e}");
            }
        }
        while let Some(e) = self.session.poll_event() {
            match e {
                SessionEvent::Room(ev) => {
                    let _ = self.events.send(ev);
                }
                SessionEvent::Ready(r) => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(r);
                    }
                }
                SessionEvent::Published { request, result } => {
                    if let Some(reply) = self.replies.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}

async fn recv_opt(
    socket: Option<&mut PeerSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
