//! `perf janus-load-test`: the load of `perf load-test`, driven against a Janus VideoRoom
//! over Janus's HTTP API, so that the two servers can be compared with the same client.
//!
//! The media side is our own client stack (`lkr-client`'s [`PeerConnection`]: controlling
//! ICE, DTLS client, SRTP; its [`RtpStream`] and [`ReceiveStream`] for RTP out and in, NACKs
//! and loss), and the payloads are those of the load tester: VP8-shaped frames of the same
//! sizes (one layer: Janus is driven without simulcast), 20 ms Opus-shaped packets, every
//! payload ending with the same send-time trailer from which subscribers measure latency.
//!
//! Signalling follows Janus's HTTP API: one Janus session for the whole test (a long-poll
//! `GET /janus/<session>` collects every handle's events and keeps the session alive), one
//! handle per participant attached to `janus.plugin.videoroom`. A `create` makes the room;
//! publishers `join` as `publisher` with a fixed feed id and `publish` with our offer
//! (`a=setup:active`: we are always the DTLS client), subscribers `join` as `subscriber` to
//! every feed, take Janus's offer and `start` with our answer. Our single host candidate is
//! in every description we send (with `a=end-of-candidates`); Janus's are read from its
//! descriptions and trickle events. Janus must run with `ice_lite = true` (we are always
//! the controlling agent).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lkr_client::peer::{PeerConnection, PeerEvent, Received, RemoteParams};
use lkr_client::rtp_in::ReceiveStream;
use lkr_client::rtp_out::RtpStream;
use lkr_client::sdp::{LocalTransport, OfferSection};
use lkr_client::udp::{PeerSocket, SocketDrops};
use lkr_client::{Codec, MediaKind, ReceiveStats};
use lkr_dtls_glue::cert::Certificate;
use lkr_rtp::{RtcpPacket, RtpView};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::loadtest::{
    KEYFRAME_INTERVAL, Layer, TRAILER_LEN, Usage, Workers, gather, percentile, preset,
    process_usage, split_loss, synthetic_vp8_frame, trailer_time, usage_line, usage_over,
    window_figures, with_trailer, worker_threads,
};
use super::vp8::Vp8Packetizer;
use super::{MediaError, RTP_PAYLOAD_MTU};
use crate::admin::Report;
use crate::admin::command::parse_duration;

/// `perf janus-load-test` flags: those of `perf load-test` that apply, and where Janus is.
#[derive(Debug, Clone, Args)]
pub struct JanusLoadTestArgs {
    /// Janus's HTTP API endpoint
    #[arg(long, default_value = "http://127.0.0.1:8088/janus")]
    pub janus_url: String,
    /// VideoRoom room number to create (default: a random one)
    #[arg(long)]
    pub room: Option<u64>,
    /// How long to run once everyone has joined, e.g. 30s or 1m
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Participants publishing a synthetic video track (one layer: the top one)
    #[arg(long, default_value_t = 0)]
    pub video_publishers: u32,
    /// Participants publishing a synthetic audio track
    #[arg(long, default_value_t = 0)]
    pub audio_publishers: u32,
    /// Participants subscribing to every feed
    #[arg(long, default_value_t = 0)]
    pub subscribers: u32,
    /// Video resolution: high (720p), medium (360p) or low (180p)
    #[arg(long, default_value = "high", value_parser = ["high", "medium", "low"])]
    pub video_resolution: String,
    /// Participants joining per second
    #[arg(long, default_value_t = 5.0)]
    pub num_per_second: f64,
    /// Also report the CPU time and peak memory of this server process (Linux /proc)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Worker threads the participants are spread over (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Longest one HTTP request may take (the long poll returns within 30 s by itself).
const HTTP_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest we wait for one event of a handle.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest ICE and DTLS may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest HTTP response read.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Events the long poll asks for at once.
const MAX_EVENTS: u32 = 100;
/// Largest participant count one run takes (each has a handle, a socket and a task).
const MAX_PARTICIPANTS: u32 = 5000;

/// What Janus or the HTTP exchange with it got wrong.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    /// The HTTP request failed (connection, timeout, body).
    #[error("HTTP request to Janus failed: {0}")]
    Http(String),
    /// Janus answered with an error.
    #[error("Janus refused {request}: {reason}")]
    Refused {
        /// What we asked.
        request: String,
        /// Janus's `error.reason` or the plugin's `error`.
        reason: String,
    },
    /// Janus answered with something we did not expect.
    #[error("unexpected answer from Janus to {request}: {answer}")]
    Unexpected {
        /// What we asked.
        request: String,
        /// The answer.
        answer: String,
    },
    /// No event came in time.
    #[error("no {0} from Janus in time")]
    Timeout(&'static str),
    /// ICE or DTLS with Janus failed.
    #[error("media connection to Janus failed: {0}")]
    Media(String),
    /// The local side (socket, certificate) failed.
    #[error("{0}")]
    Local(String),
}

/// A Janus HTTP API client for one session, with the long poll that dispatches events to
/// the handles.
struct Janus {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    session: u64,
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    next_tx: AtomicU64,
}

impl Janus {
    async fn connect(base: &str) -> Result<Arc<Self>, JanusError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let mut j = Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            session: 0,
            handles: Mutex::new(HashMap::new()),
            next_tx: AtomicU64::new(1),
        };
        let r = j.post("", json!({"janus": "create"})).await?;
        j.session = data_id(&r, "create")?;
        Ok(Arc::new(j))
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next_tx.fetch_add(1, Ordering::Relaxed))
    }

    async fn request(&self, req: Request<Full<Bytes>>, what: &str) -> Result<Value, JanusError> {
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| JanusError::Http(e.to_string()))?;
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| JanusError::Http(e.to_string()))?
                .to_bytes();
            serde_json::from_slice::<Value>(&body).map_err(|e| JanusError::Unexpected {
                request: what.to_owned(),
                answer: format!("not JSON ({e})"),
            })
        };
        tokio::time::timeout(HTTP_TIMEOUT, fut)
            .await
            .map_err(|_| JanusError::Http(format!("{what}: no answer in time")))?
    }

    /// POSTs `body` (a transaction added) to `base + path`; a `janus: error` answer is an
    /// error.
    async fn post(&self, path: &str, mut body: Value) -> Result<Value, JanusError> {
        let what = body["janus"].as_str().unwrap_or("request").to_owned();
        body["transaction"] = self.transaction().into();
        let req = Request::post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| JanusError::Http(e.to_string()))?;
        let r = self.request(req, &what).await?;
        if r["janus"] == "error" {
            return Err(JanusError::Refused {
                request: what,
                reason: r["error"]["reason"].as_str().unwrap_or("?").to_owned(),
            });
        }
        Ok(r)
    }

    /// Attaches a VideoRoom handle whose events come on the returned channel.
    async fn attach(&self) -> Result<Handle, JanusError> {
        let r = self
            .post(
                &format!("/{}", self.session),
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        let id = data_id(&r, "attach")?;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.handles).insert(id, tx);
        Ok(Handle { id, events: rx })
    }

    /// Sends a plugin message (and a JSEP) on a handle; returns the synchronous answer
    /// (`success` with plugin data, or `ack` when the answer comes as an event).
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, JanusError> {
        let request = body["request"].as_str().unwrap_or("message").to_owned();
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let r = self.post(&format!("/{}/{handle}", self.session), m).await?;
        if let Some(e) = r["plugindata"]["data"]["error"].as_str() {
            return Err(JanusError::Refused {
                request,
                reason: e.to_owned(),
            });
        }
        Ok(r)
    }

    /// Tells Janus we have no more candidates than those in our description.
    async fn trickle_done(&self, handle: u64) -> Result<(), JanusError> {
        self.post(
            &format!("/{}/{handle}", self.session),
            json!({"janus": "trickle", "candidate": {"completed": true}}),
        )
        .await
        .map(|_| ())
    }

    /// The long poll: hands every event to its handle until `stop`.
    async fn poll_events(self: Arc<Self>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let url = format!("{}/{}?maxev={MAX_EVENTS}", self.base, self.session);
            let Ok(req) = Request::get(url).body(Full::new(Bytes::new())) else {
                return;
            };
            match self.request(req, "long poll").await {
                Ok(Value::Array(events)) => events.into_iter().for_each(|e| self.dispatch(e)),
                Ok(e) => self.dispatch(e),
                Err(e) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    eprintln!("\nJanus long poll failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn dispatch(&self, e: Value) {
        let Some(sender) = e["sender"].as_u64() else {
            return;
        };
        if let Some(tx) = lock(&self.handles).get(&sender) {
            let _ = tx.send(e);
        }
    }

    async fn destroy(&self) {
        let _ = self
            .post(&format!("/{}", self.session), json!({"janus": "destroy"}))
            .await;
    }
}

fn data_id(r: &Value, what: &str) -> Result<u64, JanusError> {
    r["data"]["id"]
        .as_u64()
        .ok_or_else(|| JanusError::Unexpected {
            request: what.to_owned(),
            answer: r.to_string(),
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One VideoRoom handle and its events.
struct Handle {
    id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Handle {
    /// Waits for the plugin event that has `key` in its data (or a JSEP when `key` is
    /// `"jsep"`); a plugin error event is an error. Trickle candidates seen meanwhile are
    /// kept.
    async fn wait(
        &mut self,
        key: &'static str,
        candidates: &mut Vec<SocketAddr>,
    ) -> Result<Value, JanusError> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| JanusError::Timeout(key))?
                .ok_or(JanusError::Timeout(key))?;
            if let Some(a) = trickle_address(&e) {
                candidates.push(a);
                continue;
            }
            let data = &e["plugindata"]["data"];
            if let Some(err) = data["error"].as_str() {
                return Err(JanusError::Refused {
                    request: key.to_owned(),
                    reason: err.to_owned(),
                });
            }
            if e["janus"] == "hangup" {
                return Err(JanusError::Media(format!(
                    "Janus hung up: {}",
                    e["reason"].as_str().unwrap_or("?")
                )));
            }
            let found = if key == "jsep" {
                !e["jsep"].is_null()
            } else {
                !data[key].is_null()
            };
            if found {
                return Ok(e);
            }
        }
    }
}

/// The address of a `trickle` event's UDP candidate.
fn trickle_address(e: &Value) -> Option<SocketAddr> {
    if e["janus"] != "trickle" {
        return None;
    }
    let line = e["candidate"]["candidate"].as_str()?;
    let c = lkr_sdp::parse_candidate(line.strip_prefix("candidate:").unwrap_or(line)).ok()?;
    lkr_client::sdp::candidate_address(&c)
}

/// A peer connection to Janus over its own UDP socket.
struct Link {
    socket: PeerSocket,
    /// What the kernel dropped on `socket`.
    drops: Arc<SocketDrops>,
    pc: PeerConnection,
    local_ip: IpAddr,
    port: u16,
}

impl Link {
    async fn new(janus_ip: IpAddr) -> Result<Self, JanusError> {
        let drops = Arc::new(SocketDrops::default());
        let socket = PeerSocket::bind(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            None,
            drops.clone(),
            0,
        )
        .await
        .map_err(|e| JanusError::Local(format!("UDP socket: {e}")))?;
        let port = socket
            .local_addr()
            .map_err(|e| JanusError::Local(e.to_string()))?
            .port();
        let local_ip = local_ip_toward(janus_ip);
        let cert = Certificate::generate().map_err(|e| JanusError::Local(e.to_string()))?;
        Ok(Self {
            socket,
            drops,
            pc: PeerConnection::new(cert),
            local_ip,
            port,
        })
    }

    fn local(&self) -> LocalTransport {
        self.pc.local_transport(self.local_ip, self.port)
    }

    /// Applies Janus's description (credentials, fingerprint, candidates) and extra
    /// trickled candidates.
    fn set_remote(
        &mut self,
        sd: &lkr_sdp::SessionDescription,
        extra: &[SocketAddr],
    ) -> Result<(), JanusError> {
        let params: RemoteParams =
            lkr_client::sdp::remote_params(sd).map_err(|e| JanusError::Media(e.to_string()))?;
        let now = Instant::now();
        self.pc.set_remote(now, &params);
        for a in lkr_client::sdp::remote_candidates(sd)
            .into_iter()
            .chain(extra.iter().copied())
        {
            if a.is_ipv4() {
                self.pc.add_remote_candidate(now, a);
            }
        }
        Ok(())
    }

    async fn flush(&mut self) {
        while let Some((dest, d)) = self.pc.poll_transmit() {
            let _ = self.socket.send_to(&d, dest).await;
        }
    }

    /// Runs ICE and DTLS until media may flow.
    async fn connect(&mut self, handle: &mut Handle) -> Result<(), JanusError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut buf = vec![0u8; 2048];
        loop {
            self.flush().await;
            while let Some(e) = self.pc.poll_event() {
                match e {
                    PeerEvent::Connected => return Ok(()),
                    PeerEvent::Failed(r) => return Err(JanusError::Media(r)),
                    _ => {}
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(JanusError::Timeout("ICE/DTLS connection"));
            }
            let wake = self
                .pc
                .poll_timeout()
                .unwrap_or(now + Duration::from_millis(50))
                .min(deadline);
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.pc.handle_receive(Instant::now(), from, &mut buf[..n]);
                    }
                }
                e = handle.events.recv() => {
                    if let Some(a) = e.as_ref().and_then(trickle_address) {
                        self.pc.add_remote_candidate(Instant::now(), a);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.pc.handle_timeout(Instant::now());
                }
            }
        }
    }

    async fn send_protected(&mut self, plain: Vec<u8>, rtcp: bool) {
        let Some(dest) = self.pc.remote_address() else {
            return;
        };
        let p = if rtcp {
            self.pc.protect_rtcp(plain)
        } else {
            self.pc.protect_rtp(plain)
        };
        if let Ok(Some(d)) = p {
            let _ = self.socket.send_to(&d, dest).await;
        }
    }
}

/// Our address toward Janus, from a connected UDP socket.
fn local_ip_toward(janus_ip: IpAddr) -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(SocketAddr::new(janus_ip, 9))?;
            s.local_addr()
        })
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

fn parse_sdp(e: &Value) -> Result<lkr_sdp::SessionDescription, JanusError> {
    let sdp = e["jsep"]["sdp"]
        .as_str()
        .ok_or_else(|| JanusError::Unexpected {
            request: "jsep".into(),
            answer: e.to_string(),
        })?;
    lkr_sdp::parse(sdp).map_err(|e| JanusError::Media(format!("Janus's SDP: {e}")))
}

/// Counters shared by every participant, for the progress line and the measured window.
#[derive(Debug, Default)]
struct Live {
    joined: AtomicU64,
    failed: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// What a publisher sends.
#[derive(Debug, Clone, Copy)]
enum Publish {
    Video { layer: Layer, fps: u32 },
    Audio,
}

#[derive(Debug, Default)]
struct SubscriberResult {
    stats: ReceiveStats,
    latencies_us: Vec<u32>,
    profile: Option<String>,
    /// Datagrams the kernel dropped on its socket (`None`: not counted on this system).
    socket_drops: Option<u64>,
    /// How long its datagrams waited in the kernel before it read them (histogram).
    socket_waits: [u64; lkr_client::udp::WAIT_BUCKETS],
}

struct Ctx {
    janus: Arc<Janus>,
    janus_ip: IpAddr,
    room: u64,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
}

/// Runs the load test against Janus and returns its report.
pub async fn run(args: &JanusLoadTestArgs) -> Result<Report, MediaError> {
    let publishers = args.video_publishers + args.audio_publishers;
    if publishers == 0 {
        return Err(MediaError::BadArgument(
            "nothing to forward: give --video-publishers or --audio-publishers".into(),
        ));
    }
    if publishers + args.subscribers > MAX_PARTICIPANTS {
        return Err(MediaError::BadArgument(format!(
            "at most {MAX_PARTICIPANTS} participants"
        )));
    }
    if args.num_per_second.is_nan() || args.num_per_second <= 0.0 {
        return Err(MediaError::BadArgument(
            "--num-per-second must be above zero".into(),
        ));
    }
    let threads = worker_threads(args.threads)?;
    let bad = |e: JanusError| MediaError::Disconnected(e.to_string());
    let janus_ip = janus_ip(&args.janus_url).map_err(MediaError::BadArgument)?;
    let janus = Janus::connect(&args.janus_url).await.map_err(bad)?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(janus.clone().poll_events(stop.clone()));
    let room = args
        .room
        .unwrap_or_else(|| 1_000_000 + u64::from(rand::random::<u32>() >> 4));
    let admin = janus.attach().await.map_err(bad)?;
    janus
        .message(
            admin.id,
            json!({
                "request": "create", "room": room, "publishers": publishers,
                "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
                "notify_joining": false,
            }),
            None,
        )
        .await
        .map_err(bad)?;

    let live = Arc::new(Live::default());
    let server_start = args.server_pid.and_then(process_usage);
    let self_start = process_usage(std::process::id());
    let started = Instant::now();
    let workers = Workers::start(threads)?;
    let (layers, fps) = preset(&args.video_resolution);
    let top = *layers.last().expect("presets have three layers");
    let mut plan: Vec<Option<Publish>> = Vec::new();
    plan.extend((0..args.video_publishers).map(|_| Some(Publish::Video { layer: top, fps })));
    plan.extend((0..args.audio_publishers).map(|_| Some(Publish::Audio)));
    plan.extend((0..args.subscribers).map(|_| None));
    let total = plan.len() as u64;
    let feeds: Vec<u64> = (1..=u64::from(publishers)).collect();
    let ctx = Arc::new(Ctx {
        janus: janus.clone(),
        janus_ip,
        room,
        live: live.clone(),
        stop: stop.clone(),
    });
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let join_ms = Arc::new(Mutex::new(Vec::<f64>::new()));
    let progress = tokio::spawn(progress_line(live.clone(), stop.clone(), total));
    let mut tasks = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / args.num_per_second);
    for (n, role) in plan.into_iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(gap).await;
        }
        if role.is_none() && n == feeds.len() {
            // Subscribers need the feeds: wait for the publishers to be up.
            let deadline = Instant::now() + CONNECT_TIMEOUT + EVENT_TIMEOUT;
            while live.joined.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed)
                < feeds.len() as u64
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (ctx, failures, join_ms, feeds) = (
            ctx.clone(),
            failures.clone(),
            join_ms.clone(),
            feeds.clone(),
        );
        let name = match role {
            Some(Publish::Video { .. }) => format!("video publisher {}", n + 1),
            Some(Publish::Audio) => format!("audio publisher {}", n + 1),
            None => format!("subscriber {}", n + 1 - feeds.len()),
        };
        tasks.push(workers.spawn(n, async move {
            let t0 = Instant::now();
            let r = match role {
                Some(p) => publish(&ctx, n as u64 + 1, p, t0, &join_ms)
                    .await
                    .map(|()| None),
                None => subscribe(&ctx, &feeds, t0, &join_ms).await.map(Some),
            };
            match r {
                Ok(r) => r,
                Err(e) => {
                    ctx.live.failed.fetch_add(1, Ordering::Relaxed);
                    lock(&failures).push(format!("{name}: {e}"));
                    None
                }
            }
        }));
    }
    let settle = Instant::now() + Duration::from_secs(30);
    while live.joined.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) < total
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let super::loadtest::Measured {
        start,
        end,
        time: run_time,
        steady,
        interrupted,
    } = super::loadtest::measure(args.server_pid, &live.packets, args.duration).await;
    let window = window_figures(&(start, end), &steady);
    stop.store(true, Ordering::Relaxed);
    let subscribers = gather(&mut tasks).await;
    let _ = progress.await;
    let server_end = args.server_pid.and_then(process_usage);
    let self_end = process_usage(std::process::id());
    janus.destroy().await;
    poller.abort();
    // After the last request to Janus: the HTTP client's connections may live on the workers.
    workers.stop();

    let mut stats = ReceiveStats::default();
    let mut latencies: Vec<f64> = Vec::new();
    let mut profiles: Vec<String> = Vec::new();
    let (mut socket_drops, mut drops_counted) = (0u64, false);
    let (mut lost_ours, mut lost_elsewhere) = (0u64, 0u64);
    let mut waits = [0u64; lkr_client::udp::WAIT_BUCKETS];
    for s in &subscribers {
        super::loadtest::add_waits(&mut waits, &s.socket_waits);
        if let Some(d) = s.socket_drops {
            socket_drops += d;
            drops_counted = true;
        }
        let (ours, elsewhere) = split_loss(s.stats.lost, s.socket_drops);
        lost_ours += ours;
        lost_elsewhere += elsewhere;
        stats.packets += s.stats.packets;
        stats.lost += s.stats.lost;
        stats.nacked += s.stats.nacked;
        stats.recovered += s.stats.recovered;
        latencies.extend(s.latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
        if let Some(p) = &s.profile
            && !profiles.contains(p)
        {
            profiles.push(p.clone());
        }
    }
    latencies.sort_by(f64::total_cmp);
    let mut joins = lock(&join_ms).clone();
    joins.sort_by(f64::total_cmp);
    let failures = lock(&failures).clone();
    Ok(summarise(&Summary {
        args,
        room,
        layer: top,
        run_time,
        interrupted,
        total_time: started.elapsed(),
        joins,
        failures,
        stats,
        latencies,
        profiles,
        server: server_start.zip(server_end),
        client: self_start.zip(self_end),
        steady,
        threads,
        window,
        socket_drops: drops_counted.then_some(socket_drops),
        socket_waits: waits,
        lost_ours,
        lost_elsewhere,
    }))
}

/// The host of the Janus URL, as an IP address (we write candidates toward it).
fn janus_ip(url: &str) -> Result<IpAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--janus-url must be http://IP:PORT/janus, not {url}"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    hostport
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| hostport.parse::<IpAddr>())
        .map_err(|_| format!("--janus-url needs a literal IP address: {url}"))
}

async fn publish(
    ctx: &Ctx,
    feed: u64,
    what: Publish,
    t0: Instant,
    join_ms: &Mutex<Vec<f64>>,
) -> Result<(), JanusError> {
    let j = &ctx.janus;
    let mut handle = j.attach().await?;
    let mut cands = Vec::new();
    j.message(
        handle.id,
        json!({"request": "join", "ptype": "publisher", "room": ctx.room, "id": feed,
               "display": format!("publisher-{feed}")}),
        None,
    )
    .await?;
    handle.wait("videoroom", &mut cands).await?;
    let mut link = Link::new(ctx.janus_ip).await?;
    let codec = match what {
        Publish::Video { .. } => Codec::Vp8,
        Publish::Audio => Codec::Opus,
    };
    let ssrc: u32 = rand::random::<u32>() | 1;
    let section = OfferSection::Send {
        mid: "0".into(),
        codec,
        stream: format!("stream-{feed}"),
        cid: format!("track-{feed}"),
        ssrcs: vec![ssrc],
        rids: Vec::new(),
    };
    let mut offer =
        lkr_client::sdp::offer(&link.local(), rand::random::<u32>().into(), 1, &[section]);
    // We are always the DTLS client; Janus takes the server role for `active`.
    for m in &mut offer.media {
        m.setup = Some(lkr_sdp::Setup::Active);
    }
    j.message(
        handle.id,
        json!({"request": "publish"}),
        Some(json!({"type": "offer", "sdp": offer.write()})),
    )
    .await?;
    let answer = handle.wait("jsep", &mut cands).await?;
    let sd = parse_sdp(&answer)?;
    let pt = lkr_client::sdp::answered_payload_type(&sd, "0", codec)
        .ok_or_else(|| JanusError::Media(format!("Janus did not accept {codec:?}")))?;
    j.trickle_done(handle.id).await?;
    link.set_remote(&sd, &cands)?;
    link.connect(&mut handle).await?;
    ctx.live.joined.fetch_add(1, Ordering::Relaxed);
    lock(join_ms).push(t0.elapsed().as_secs_f64() * 1000.0);
    let stream = RtpStream::new(ssrc, codec.clock_rate(), pt, "0".into(), None);
    send_media(ctx, link, handle, stream, what).await;
    Ok(())
}

/// Sends the synthetic media until `stop`, answering NACKs and keyframe requests.
async fn send_media(
    ctx: &Ctx,
    mut link: Link,
    mut handle: Handle,
    mut stream: RtpStream,
    what: Publish,
) {
    let period = match what {
        Publish::Video { fps, .. } => Duration::from_secs(1) / fps,
        Publish::Audio => Duration::from_millis(20),
    };
    let mut tick = tokio::time::interval(period);
    let mut packetizer = Vp8Packetizer::default();
    let start = Instant::now();
    let mut last_key = start;
    let mut key_wanted = true;
    let ts_base: u32 = rand::random();
    let mut n: u64 = 0;
    let mut buf = vec![0u8; 2048];
    while !ctx.stop.load(Ordering::Relaxed) {
        let wake = link
            .pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                match what {
                    Publish::Video { layer: (_, w, h, bitrate), fps } => {
                        let key = std::mem::take(&mut key_wanted)
                            || now.duration_since(last_key) >= KEYFRAME_INTERVAL;
                        if key {
                            last_key = now;
                        }
                        let ts = ts_base.wrapping_add((start.elapsed().as_micros() as u64 * 90 / 1000) as u32);
                        let average = (bitrate / 8 / fps) as usize;
                        let size = if key { average * 3 } else { average * 9 / 10 };
                        let frame = synthetic_vp8_frame(key, w, h, size, n);
                        let parts = packetizer.packetize(&frame, RTP_PAYLOAD_MTU - TRAILER_LEN);
                        let count = parts.len();
                        for (i, p) in parts.into_iter().enumerate() {
                            let pkt = stream.packetize(now, &with_trailer(p), ts, i + 1 == count);
                            link.send_protected(pkt, false).await;
                        }
                    }
                    Publish::Audio => {
                        // 32 kbit/s: 80 bytes per 20 ms, TOC byte of CELT 20 ms first.
                        let mut p = vec![31 << 3];
                        p.resize(80 - TRAILER_LEN, (n % 251) as u8);
                        let ts = ts_base.wrapping_add((n as u32).wrapping_mul(960));
                        let pkt = stream.packetize(now, &with_trailer(p), ts, n == 0);
                        link.send_protected(pkt, false).await;
                    }
                }
                n += 1;
            }
            r = link.socket.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                if let Received::Rtcp(m) = link.pc.receive(Instant::now(), from, &mut buf[..len]) {
                    let mut resend = Vec::new();
                    for p in lkr_rtp::rtcp_packets(&buf[..m]).flatten() {
                        match p {
                            RtcpPacket::Nack { media_ssrc, pairs, .. } if media_ssrc == stream.ssrc() => {
                                resend.extend(pairs.filter_map(|s| stream.retransmission(s)));
                            }
                            RtcpPacket::Pli { .. } | RtcpPacket::Fir { .. } => key_wanted = true,
                            _ => {}
                        }
                    }
                    for p in resend {
                        link.send_protected(p, false).await;
                    }
                }
                link.flush().await;
            }
            e = handle.events.recv() => {
                if e.is_none() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                link.pc.handle_timeout(Instant::now());
                link.flush().await;
            }
        }
    }
}

async fn subscribe(
    ctx: &Ctx,
    feeds: &[u64],
    t0: Instant,
    join_ms: &Mutex<Vec<f64>>,
) -> Result<SubscriberResult, JanusError> {
    let j = &ctx.janus;
    let mut handle = j.attach().await?;
    let mut cands = Vec::new();
    let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
    j.message(
        handle.id,
        json!({"request": "join", "ptype": "subscriber", "room": ctx.room, "streams": streams}),
        None,
    )
    .await?;
    let offer = handle.wait("jsep", &mut cands).await?;
    let sd = parse_sdp(&offer)?;
    let mut link = Link::new(ctx.janus_ip).await?;
    let answer = lkr_client::sdp::answer(&sd, &link.local(), rand::random::<u32>().into(), 1);
    j.message(
        handle.id,
        json!({"request": "start"}),
        Some(json!({"type": "answer", "sdp": answer.write()})),
    )
    .await?;
    j.trickle_done(handle.id).await?;
    link.set_remote(&sd, &cands)?;
    link.connect(&mut handle).await?;
    ctx.live.joined.fetch_add(1, Ordering::Relaxed);
    lock(join_ms).push(t0.elapsed().as_secs_f64() * 1000.0);
    let kinds: Vec<MediaKind> = lkr_client::sdp::incoming_sections(&sd, &HashMap::new())
        .into_iter()
        .map(|s| s.kind)
        .collect();
    if kinds.is_empty() {
        return Err(JanusError::Media("Janus's offer sends no media".into()));
    }
    Ok(receive_media(ctx, link, handle, kinds.len()).await)
}

/// Most SSRCs one subscriber tracks (Janus sends one per stream; more is a misbehaving peer).
const MAX_STREAMS: usize = 64;

/// Receives until `stop` (and one more second for packets in flight), NACKing gaps.
async fn receive_media(
    ctx: &Ctx,
    mut link: Link,
    mut handle: Handle,
    expected_streams: usize,
) -> SubscriberResult {
    let mut result = SubscriberResult {
        profile: link.pc.srtp_profile().map(|p| format!("{p:?}")),
        latencies_us: Vec::with_capacity(4096),
        ..Default::default()
    };
    let mut streams: HashMap<u32, ReceiveStream> = HashMap::with_capacity(expected_streams);
    let rtcp_ssrc: u32 = rand::random();
    let mut buf = vec![0u8; 2048];
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let mut stopping_at: Option<Instant> = None;
    loop {
        let wake = link
            .pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = link.socket.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                let now = Instant::now();
                if let Received::Rtp(m) = link.pc.receive(now, from, &mut buf[..len]) {
                    let Ok(view) = RtpView::parse(&buf[..m]) else { continue };
                    if !streams.contains_key(&view.ssrc()) && streams.len() >= MAX_STREAMS {
                        continue;
                    }
                    let s = streams.entry(view.ssrc()).or_default();
                    s.handle_packet(now, SystemTime::now(), &view);
                    while let Some(p) = s.poll_packet() {
                        ctx.live.packets.fetch_add(1, Ordering::Relaxed);
                        ctx.live.bytes.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                        if let Some(sent) = trailer_time(&p.payload) {
                            let arrived = p.arrival.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
                            result.latencies_us.push(arrived.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                        }
                    }
                } else {
                    link.flush().await;
                }
            }
            _ = check.tick() => {
                let now = Instant::now();
                let mut nacks = Vec::new();
                for (&ssrc, s) in &mut streams {
                    s.handle_timeout(now);
                    while s.poll_packet().is_some() {
                        ctx.live.packets.fetch_add(1, Ordering::Relaxed);
                    }
                    let lost = s.poll_nacks(now);
                    let mut fb = [0u8; 1200];
                    if !lost.is_empty()
                        && let Ok(n) = lkr_rtp::write_nack(&mut fb, rtcp_ssrc, ssrc, &lost)
                    {
                        nacks.push(fb[..n].to_vec());
                    }
                }
                for n in nacks {
                    link.send_protected(n, true).await;
                }
                if ctx.stop.load(Ordering::Relaxed) {
                    let at = *stopping_at.get_or_insert(now + Duration::from_secs(1));
                    if now >= at {
                        break;
                    }
                }
            }
            e = handle.events.recv() => {
                if let Some(a) = e.as_ref().and_then(trickle_address) {
                    link.pc.add_remote_candidate(Instant::now(), a);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                link.pc.handle_timeout(Instant::now());
                link.flush().await;
            }
        }
    }
    for s in streams.values() {
        let st = s.stats();
        result.stats.packets += st.packets;
        result.stats.lost += st.lost;
        result.stats.nacked += st.nacked;
        result.stats.recovered += st.recovered;
    }
    result.socket_drops = link.drops.total();
    result.socket_waits = link.drops.waits();
    result
}

async fn progress_line(live: Arc<Live>, stop: Arc<AtomicBool>, total: u64) {
    let start = Instant::now();
    let mut last_bytes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let bytes = live.bytes.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4}s] joined {}/{} (failed {}) | received {} packets, {:.2} Mbit/s",
            start.elapsed().as_secs(),
            live.joined.load(Ordering::Relaxed),
            total,
            live.failed.load(Ordering::Relaxed),
            live.packets.load(Ordering::Relaxed),
            (bytes - last_bytes) as f64 * 8.0 / 1e6,
        );
        last_bytes = bytes;
    }
}

struct Summary<'a> {
    args: &'a JanusLoadTestArgs,
    room: u64,
    layer: Layer,
    run_time: Duration,
    interrupted: bool,
    total_time: Duration,
    joins: Vec<f64>,
    failures: Vec<String>,
    stats: ReceiveStats,
    latencies: Vec<f64>,
    profiles: Vec<String>,
    server: Option<(Usage, Usage)>,
    client: Option<(Usage, Usage)>,
    steady: super::loadtest::Steady,
    threads: usize,
    /// The load tester's own CPU time over the measured window.
    window: super::loadtest::Window,
    /// Datagrams the kernel dropped on the subscribers' sockets (`None`: not counted here).
    socket_drops: Option<u64>,
    /// How long the subscribers' datagrams waited in the kernel before we read them.
    socket_waits: [u64; lkr_client::udp::WAIT_BUCKETS],
    /// Subscribers' loss up to their sockets' drops, and the rest.
    lost_ours: u64,
    lost_elsewhere: u64,
}

fn summarise(s: &Summary<'_>) -> Report {
    let a = s.args;
    let st = s.stats;
    let loss_pct = if st.packets + st.lost > 0 {
        st.lost as f64 * 100.0 / (st.packets + st.lost) as f64
    } else {
        0.0
    };
    let lat = |p| percentile(&s.latencies, p);
    let mut human = String::new();
    let (rid, w, h, b) = s.layer;
    let _ = writeln!(
        human,
        "Janus load test in room {}: {:.1} s measured{}; {} video publishers ({rid} {w}x{h} {} kbit/s, one layer), {} audio publishers, {} subscribers",
        s.room,
        s.run_time.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" },
        a.video_publishers,
        b / 1000,
        a.audio_publishers,
        a.subscribers
    );
    let _ = writeln!(
        human,
        "Joined {} of {} participants; join time p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        s.joins.len(),
        s.joins.len() + s.failures.len(),
        percentile(&s.joins, 50.0),
        percentile(&s.joins, 95.0),
        s.joins.last().copied().unwrap_or(0.0)
    );
    for f in &s.failures {
        let _ = writeln!(human, "  join failed: {f}");
    }
    let _ = writeln!(
        human,
        "SRTP profile: {}",
        if s.profiles.is_empty() {
            "-".to_owned()
        } else {
            s.profiles.join(", ")
        }
    );
    let _ = writeln!(
        human,
        "Received {} packets; lost {} ({loss_pct:.3}%); {} NACKed, {} recovered",
        st.packets, st.lost, st.nacked, st.recovered
    );
    let _ = writeln!(
        human,
        "Loss: {} lost by the server or on the way, {} dropped by our own sockets",
        s.lost_elsewhere, s.lost_ours
    );
    human.push_str(&super::loadtest::socket_drops_line(s.socket_drops));
    human.push_str(&super::loadtest::socket_wait_line(&s.socket_waits));
    let _ = writeln!(
        human,
        "Forwarding latency (ms): p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2} ({} samples)",
        lat(50.0),
        lat(90.0),
        lat(99.0),
        s.latencies.last().copied().unwrap_or(0.0),
        s.latencies.len()
    );
    let wall = s.total_time.as_secs_f64().max(0.001);
    let server = usage_over(&s.server, wall);
    let client = usage_over(&s.client, wall);
    usage_line(&mut human, "Server", a.server_pid, server, wall);
    human.push_str(&s.steady.line());
    usage_line(&mut human, "This load tester", None, client, wall);
    human.push_str(&s.window.line(s.threads));
    let json = json!({
        "target": "janus",
        "room": s.room,
        "duration_s": s.run_time.as_secs_f64(),
        "interrupted": s.interrupted,
        "video_publishers": a.video_publishers,
        "audio_publishers": a.audio_publishers,
        "subscribers": a.subscribers,
        "joined": s.joins.len(),
        "join_failures": s.failures,
        "srtp_profiles": s.profiles,
        "packets": st.packets,
        "lost": st.lost,
        "loss_percent": loss_pct,
        "nacked": st.nacked,
        "recovered": st.recovered,
        "latency_ms": super::loadtest::latency_json(&s.latencies),
        "server": super::loadtest::usage_json(server, json!({ "pid": a.server_pid })),
        "client": super::loadtest::usage_json(client, json!({})),
        "steady": s.steady.json(),
        "socket_drops": s.socket_drops,
        "socket_wait": super::loadtest::socket_wait_json(&s.socket_waits),
        "lost_by_own_sockets": s.lost_ours,
        "lost_elsewhere": s.lost_elsewhere,
        "load_tester_window": s.window.json(s.threads),
    });
    Report { human, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_janus_url_must_name_an_ip() {
        assert_eq!(
            janus_ip("http://10.77.80.1:18000/janus"),
            Ok("10.77.80.1".parse().unwrap())
        );
        assert!(
            janus_ip("http://janus.example:8088/janus")
                .unwrap_err()
                .contains("literal IP")
        );
        assert!(janus_ip("https://10.0.0.1/janus").is_err());
    }

    #[test]
    fn trickle_events_give_udp_addresses() {
        let e = json!({"janus": "trickle", "sender": 1, "candidate": {
            "sdpMid": "0", "sdpMLineIndex": 0,
            "candidate": "candidate:1 1 udp 2013266431 10.77.80.1 20001 typ host"}});
        assert_eq!(
            trickle_address(&e),
            Some("10.77.80.1:20001".parse().unwrap())
        );
        let done = json!({"janus": "trickle", "candidate": {"completed": true}});
        assert_eq!(trickle_address(&done), None);
        let tcp = json!({"janus": "trickle", "candidate": {
            "candidate": "candidate:2 1 tcp 1 10.77.80.1 9 typ host tcptype active"}});
        assert_eq!(trickle_address(&tcp), None);
    }
}
