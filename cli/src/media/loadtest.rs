//! `perf load-test`: synthetic publishers and counting subscribers against a server.
//!
//! Every participant is a real client (`lkr-client`): its own signalling connection, ICE,
//! DTLS, SRTP and SCTP. Video publishers send VP8-shaped frames (a valid frame tag, and a
//! keyframe header with the frame size on keyframes, so the server's keyframe detection and
//! layer switching work) in three simulcast layers (`q`, `h`, `f`) at realistic bitrates, or
//! one layer with `--no-simulcast`; a keyframe goes out every two seconds and whenever the
//! server asks. Audio publishers send 20 ms Opus-shaped packets at 32 kbit/s. Every RTP
//! payload ends with a 12-byte trailer, a magic number and the send time in microseconds,
//! from which subscribers measure forwarding latency. Subscribers subscribe to everything
//! and count what arrives; loss is what stayed missing after NACKs.
//!
//! Participants join at `--num-per-second`, publishers first; the measured run lasts
//! `--duration` from the moment everyone has joined. A progress line goes to stderr every
//! second; the summary is a table, or JSON with `--json`.
//!
//! So that the load tester is not what it measures, participants are spread over
//! `--threads` worker threads (default: one per core), each running its own single-threaded
//! runtime: a participant's socket driver and its counting loop share a thread and never
//! wake each other across cores. The summary says how busy the busiest worker was.
//!
//! Loss is told apart by where it happened: every participant socket counts the datagrams
//! the kernel dropped because we did not read them in time (`SO_RXQ_OVFL`, see
//! [`lkr_client::udp`]); a subscriber's loss up to its sockets' drops is ours, the rest was
//! lost by the server or on the way. With `--server-metrics` the server's own drop counters
//! (`livekit_media_dropped_total`) over the run are printed next to them, and with
//! `--server-pid` its CPU time per packet our subscribers received.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use lkr_client::udp::{WAIT_BUCKETS, wait_percentile};
use lkr_client::{
    Codec, JoinSettings, LayerSpec, ReceiveStats, Room, RoomEvent, RoomOptions, TrackSpec,
};
use lkr_proto::pb;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::vp8::Vp8Packetizer;
use super::{MediaError, RTP_PAYLOAD_MTU};
use crate::admin::Report;
use crate::admin::command::parse_duration;
use crate::admin::connection::{Credentials, ServerUrl};
use crate::admin::output::Table;

/// `perf load-test` flags (the `lk perf load-test` names).
#[derive(Debug, Clone, Args)]
pub struct LoadTestArgs {
    /// Room to test in (default: a new random name)
    #[arg(long)]
    pub room: Option<String>,
    /// How long to run once everyone has joined, e.g. 30s or 1m
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Participants publishing a synthetic video track
    #[arg(long, alias = "publishers", default_value_t = 0)]
    pub video_publishers: u32,
    /// Participants publishing a synthetic audio track
    #[arg(long, default_value_t = 0)]
    pub audio_publishers: u32,
    /// Participants subscribing to every track
    #[arg(long, default_value_t = 0)]
    pub subscribers: u32,
    /// Video resolution of the top layer: high (720p), medium (360p) or low (180p)
    #[arg(long, default_value = "high", value_parser = ["high", "medium", "low"])]
    pub video_resolution: String,
    /// Publish one video layer instead of three simulcast layers
    #[arg(long)]
    pub no_simulcast: bool,
    /// Participants joining per second
    #[arg(long, default_value_t = 5.0)]
    pub num_per_second: f64,
    /// Prefix of the participants' identities
    #[arg(long, default_value = "tester")]
    pub identity_prefix: String,
    /// Also report the CPU time and peak memory of this server process (Linux /proc)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Use two peer connections per participant over /rtc
    #[arg(long)]
    pub dual_pc: bool,
    /// Publishers also subscribe to every other track (a meeting: e.g. 10 video publishers
    /// and no subscribers is a 10×10 meeting)
    #[arg(long)]
    pub publishers_subscribe: bool,
    /// Worker threads the participants are spread over (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Receive buffer of each participant socket in bytes (SO_RCVBUF; default: the system's)
    #[arg(long, value_name = "BYTES")]
    pub recv_buffer: Option<usize>,
    /// Read segmented runs of datagrams whole (UDP_GRO): on one machine the server is then
    /// not charged for splitting its runs and queueing each piece on a participant's
    /// socket, work a network card and the participants' own hosts do in a deployment
    #[arg(long)]
    pub udp_gro: bool,
    /// The server's Prometheus endpoint (e.g. http://127.0.0.1:6789/metrics): its drop
    /// counters over the run are reported next to ours
    #[arg(long, value_name = "URL")]
    pub server_metrics: Option<String>,
}

/// Marks the trailer of a load-test payload.
pub(crate) const TRAILER_MAGIC: u32 = 0x4c4b_4c54;
pub(crate) const TRAILER_LEN: usize = 12;
/// Bytes of an audio publisher's Opus-shaped payload (32 kbit/s in 20 ms), trailer included.
pub(crate) const AUDIO_PAYLOAD_LEN: usize = 80;
/// Time between keyframes.
pub(crate) const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

/// One simulcast layer of a resolution preset: rid, width, height, bits per second.
pub(crate) type Layer = (&'static str, u32, u32, u32);

pub(crate) fn preset(resolution: &str) -> (&'static [Layer], u32) {
    const HIGH: [Layer; 3] = [
        ("q", 320, 180, 150_000),
        ("h", 640, 360, 500_000),
        ("f", 1280, 720, 1_700_000),
    ];
    const MEDIUM: [Layer; 3] = [
        ("q", 160, 90, 60_000),
        ("h", 320, 180, 150_000),
        ("f", 640, 360, 500_000),
    ];
    const LOW: [Layer; 3] = [
        ("q", 80, 45, 30_000),
        ("h", 160, 90, 60_000),
        ("f", 320, 180, 150_000),
    ];
    match resolution {
        "medium" => (&MEDIUM, 30),
        "low" => (&LOW, 15),
        _ => (&HIGH, 30),
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn with_trailer(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&TRAILER_MAGIC.to_be_bytes());
    payload.extend_from_slice(&unix_micros().to_be_bytes());
    payload
}

/// The send time in a payload's trailer.
pub(crate) fn trailer_time(payload: &[u8]) -> Option<u64> {
    let t = payload.get(payload.len().checked_sub(TRAILER_LEN)?..)?;
    if t[..4] != TRAILER_MAGIC.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(t[4..12].try_into().ok()?))
}

/// A VP8-shaped frame of `size` bytes: frame tag, and on keyframes the start code and size.
pub(crate) fn synthetic_vp8_frame(
    key: bool,
    width: u32,
    height: u32,
    size: usize,
    n: u64,
) -> Vec<u8> {
    let mut f = if key {
        let (w, h) = (width as u16 & 0x3fff, height as u16 & 0x3fff);
        let mut v = vec![0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
        v
    } else {
        vec![0x11, 0x00, 0x00]
    };
    f.resize(size.max(16), (n % 251) as u8);
    f
}

/// Counters shared by every subscriber, for the progress line.
#[derive(Debug, Default)]
struct Live {
    joined: AtomicU64,
    failed: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    subscribed: AtomicU64,
    /// Everyone has joined: the measured run (and its wind-down) is on.
    measuring: AtomicBool,
}

/// What one subscriber saw of one track.
#[derive(Debug, Clone, Default)]
struct SubTrack {
    kind: String,
    publisher: String,
    bytes: u64,
    packets: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    stats: ReceiveStats,
}

/// What one participant saw.
#[derive(Debug, Default)]
struct ParticipantResult {
    /// Whether it subscribed (its tracks and loss count).
    subscribing: bool,
    tracks: HashMap<String, SubTrack>,
    /// Forwarding latencies once everyone had joined.
    latencies_us: Vec<u32>,
    /// Forwarding latencies while others were still joining.
    joining_latencies_us: Vec<u32>,
    /// Datagrams the kernel dropped on its sockets (`None`: not counted on this system).
    socket_drops: Option<u64>,
    /// How long its datagrams waited in the kernel before it read them (histogram).
    socket_waits: [u64; WAIT_BUCKETS],
}

#[derive(Debug, Clone, Default)]
struct Joined {
    join_ms: Vec<f64>,
    failures: Vec<String>,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU seconds (user + system) and peak resident memory (kB) of a process.
pub(crate) type Usage = (f64, u64);

/// A process's CPU time at one moment: /proc's user and system tick counts (10 ms) and,
/// where there is one, its CPU-time clock (to the nanosecond).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuTime {
    user: f64,
    system: f64,
    exact: Option<f64>,
}

impl CpuTime {
    /// CPU seconds so far: the clock's, else the ticks'.
    pub(crate) fn total(&self) -> f64 {
        self.exact.unwrap_or(self.user + self.system)
    }

    /// User and system CPU seconds from `earlier` to this reading: the clock's difference
    /// split in the proportion of the ticks counted in between (as the kernel itself splits
    /// it), else the ticks' differences.
    pub(crate) fn since(&self, earlier: &CpuTime) -> (f64, f64) {
        let (user, system) = (self.user - earlier.user, self.system - earlier.system);
        match self.exact.zip(earlier.exact) {
            Some((now, then)) => split_like(now - then, user, system),
            None => (user, system),
        }
    }
}

/// A process's [`CpuTime`] now.
pub(crate) fn process_cpu(pid: u32) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = stat_cpu(&stat)?;
    Some(CpuTime {
        user,
        system,
        exact: lkr_driver::cputime::process_cpu_seconds(pid),
    })
}

/// `total` split into user and system time in the proportion of `user` to `system`; all of
/// it system time when no tick was counted (the split is unknown, and no user time is
/// claimed).
fn split_like(total: f64, user: f64, system: f64) -> (f64, f64) {
    let ticks = user + system;
    let u = if ticks > 0.0 {
        (total * user / ticks).clamp(0.0, total.max(0.0))
    } else {
        0.0
    };
    (u, total - u)
}

/// The [`Usage`] of a process: its CPU time ([`process_cpu`]) and its peak memory from /proc.
pub(crate) fn process_usage(pid: u32) -> Option<Usage> {
    let cpu = process_cpu(pid)?.total();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((cpu, hwm))
}

fn token(creds: &Credentials, room: &str, identity: &str) -> Result<String, MediaError> {
    let grant = lkr_proto::token::VideoGrant {
        room_join: true,
        room: room.to_owned(),
        ..Default::default()
    };
    lkr_proto::token::AccessToken::new(&creds.api_key, &creds.api_secret)
        .with_identity(identity)
        .with_grant(grant)
        .with_ttl(Duration::from_secs(6 * 3600))
        .to_jwt()
        .map_err(|e| MediaError::BadArgument(format!("could not sign a token: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Video,
    Audio,
    Subscriber,
}

/// Worker threads, each running a single-threaded runtime that participants are spawned on.
pub(crate) struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    threads: Vec<(
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

/// Name prefix of the worker threads (also how their CPU time is found in /proc).
const WORKER_NAME: &str = "load-worker-";

impl Workers {
    pub(crate) fn start(n: usize) -> Result<Self, MediaError> {
        let mut w = Workers {
            handles: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("{WORKER_NAME}{i}"))
                .spawn(move || {
                    rt.block_on(async {
                        let _ = done_rx.await;
                    });
                })?;
            w.threads.push((thread, done_tx));
        }
        Ok(w)
    }

    /// Spawns participant `n` on its worker.
    pub(crate) fn spawn<F>(&self, n: usize, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[n % self.handles.len()].spawn(f)
    }

    /// Ends the workers; what still runs on them is dropped.
    pub(crate) fn stop(self) {
        for (thread, done) in self.threads {
            let _ = done.send(());
            let _ = thread.join();
        }
    }
}

/// The worker thread count: `--threads`, or one per core.
pub(crate) fn worker_threads(arg: Option<usize>) -> Result<usize, MediaError> {
    match arg {
        Some(0) => Err(MediaError::BadArgument(
            "--threads must be at least 1".into(),
        )),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)),
    }
}

/// CPU seconds of each worker thread of this process, from /proc/self/task.
fn worker_cpu() -> BTreeMap<String, f64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for e in dir.flatten() {
        let path = e.path();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let name = name.trim_end();
        if !name.starts_with(WORKER_NAME) {
            continue;
        }
        if let Some(cpu) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
            .map(|(user, system)| user + system)
        {
            out.insert(name.to_owned(), cpu);
        }
    }
    out
}

/// User and system CPU seconds from a /proc `stat` line.
fn stat_cpu(stat: &str) -> Option<(f64, f64)> {
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime / 100.0, stime / 100.0))
}

/// The load tester's own CPU time at one moment of the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    client: Option<Usage>,
    /// CPU seconds of each worker thread, by name.
    workers: BTreeMap<String, f64>,
}

impl Sample {
    pub(crate) fn take() -> Self {
        Sample {
            client: process_usage(std::process::id()),
            workers: worker_cpu(),
        }
    }
}

/// The server's drop counters, by reason, from its Prometheus text.
fn parse_server_drops(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("livekit_media_dropped_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(reason) = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("reason=\""))
            .and_then(|r| r.strip_suffix('"'))
        else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        *out.entry(reason.to_owned()).or_insert(0) += v as u64;
    }
    out
}

/// Reads the server's drop counters from its metrics endpoint (plain HTTP).
async fn server_drops(url: &str) -> Result<BTreeMap<String, u64>, String> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok(parse_server_drops(&String::from_utf8_lossy(&body)))
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("{url}: no answer within 5 s"))?
}

/// The server's drops over the run: the difference of two readings, reasons that moved.
fn drops_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(r, &n)| {
            (
                r.clone(),
                n.saturating_sub(before.get(r).copied().unwrap_or(0)),
            )
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Runs the load test and returns its report.
pub async fn run(
    url: &ServerUrl,
    creds: &Credentials,
    args: &LoadTestArgs,
) -> Result<Report, MediaError> {
    if args.video_publishers + args.audio_publishers + args.subscribers == 0 {
        return Err(MediaError::BadArgument(
            "nothing to do: give --video-publishers, --audio-publishers or --subscribers".into(),
        ));
    }
    if args.num_per_second.is_nan() || args.num_per_second <= 0.0 {
        return Err(MediaError::BadArgument(
            "--num-per-second must be above zero".into(),
        ));
    }
    let threads = worker_threads(args.threads)?;
    let room = args
        .room
        .clone()
        .unwrap_or_else(|| format!("load-test-{:06x}", rand::random::<u32>() & 0xff_ffff));
    let server_url = url.given().to_owned();
    let live = Arc::new(Live::default());
    let stop = Arc::new(AtomicBool::new(false));
    let joined = Arc::new(Mutex::new(Joined::default()));
    let server_start = args.server_pid.and_then(process_usage);
    let self_start = process_usage(std::process::id());
    let started = Instant::now();
    let workers = Workers::start(threads)?;

    let mut plan: Vec<(Role, String)> = Vec::new();
    for i in 0..args.video_publishers {
        plan.push((Role::Video, format!("{}_video_{i}", args.identity_prefix)));
    }
    for i in 0..args.audio_publishers {
        plan.push((Role::Audio, format!("{}_audio_{i}", args.identity_prefix)));
    }
    for i in 0..args.subscribers {
        plan.push((
            Role::Subscriber,
            format!("{}_sub_{i}", args.identity_prefix),
        ));
    }
    let total = plan.len() as u64;
    let (layers, fps) = preset(&args.video_resolution);
    let layers: Vec<Layer> = if args.no_simulcast {
        vec![*layers.last().expect("presets have three layers")]
    } else {
        layers.to_vec()
    };
    let settings = JoinSettings {
        single_pc: !args.dual_pc,
        auto_subscribe: false,
    };

    let mut tasks = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / args.num_per_second);
    let progress = tokio::spawn(progress_line(live.clone(), stop.clone(), total));
    for (n, (role, identity)) in plan.into_iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(gap).await;
        }
        let tok = token(creds, &room, &identity)?;
        let (url, live, stop, joined) = (
            server_url.clone(),
            live.clone(),
            stop.clone(),
            joined.clone(),
        );
        let layers = layers.clone();
        let subscribing = role == Role::Subscriber || args.publishers_subscribe;
        let options = RoomOptions {
            settings: JoinSettings {
                auto_subscribe: subscribing,
                ..settings
            },
            recv_buffer: args.recv_buffer,
            // Nobody here needs to know the other subscribers: without this, every
            // participant keeps every other's info, quadratic in the room size.
            publishers_only: true,
            udp_gro: args.udp_gro,
        };
        tasks.push(workers.spawn(n, async move {
            let connected = Room::connect(&url, &tok, options).await;
            let (room, events) = match connected {
                Ok(ok) => ok,
                Err(e) => {
                    live.failed.fetch_add(1, Ordering::Relaxed);
                    lock(&joined).failures.push(format!("{identity}: {e}"));
                    return None;
                }
            };
            live.joined.fetch_add(1, Ordering::Relaxed);
            lock(&joined)
                .join_ms
                .push(room.join_time().as_secs_f64() * 1000.0);
            Some(run_participant(room, events, role, subscribing, &layers, fps, live, stop).await)
        }));
    }
    // Everyone has been asked to join; wait for the joins to settle before the run starts.
    let settle = Instant::now() + Duration::from_secs(20);
    while live.joined.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) < total
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics_before = match &args.server_metrics {
        Some(u) => Some(server_drops(u).await),
        None => None,
    };
    live.measuring.store(true, Ordering::Relaxed);
    let Measured {
        start: run_start,
        end: run_end,
        time: run_time,
        steady,
        interrupted,
    } = measure(args.server_pid, &live.packets, args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let results = gather(&mut tasks).await;
    workers.stop();
    let _ = progress.await;
    let server_drops = match (&args.server_metrics, metrics_before) {
        (Some(u), Some(Ok(before))) => Some(
            server_drops(u)
                .await
                .map(|after| drops_between(&before, &after)),
        ),
        (_, Some(Err(e))) => Some(Err(e)),
        _ => None,
    };
    let server_end = args.server_pid.and_then(process_usage);
    let self_end = process_usage(std::process::id());
    let joined = lock(&joined).clone();
    Ok(summarise(Summary {
        room,
        args: args.clone(),
        threads,
        layers,
        run_time,
        total_time: started.elapsed(),
        interrupted,
        joined,
        results,
        server: server_start.zip(server_end),
        client: self_start.zip(self_end),
        steady,
        window: (run_start, run_end),
        server_drops,
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn progress_line(live: Arc<Live>, stop: Arc<AtomicBool>, total: u64) {
    use std::io::IsTerminal as _;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_bytes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let bytes = live.bytes.load(Ordering::Relaxed);
        let mbps = (bytes - last_bytes) as f64 * 8.0 / 1e6;
        last_bytes = bytes;
        eprint!(
            "{}[{:>4}s] joined {}/{} (failed {}) | tracks subscribed {} | received {} packets, {:.2} Mbit/s   {}",
            if tty { "\r" } else { "" },
            start.elapsed().as_secs(),
            live.joined.load(Ordering::Relaxed),
            total,
            live.failed.load(Ordering::Relaxed),
            live.subscribed.load(Ordering::Relaxed),
            live.packets.load(Ordering::Relaxed),
            mbps,
            if tty { "" } else { "\n" },
        );
    }
    if tty {
        eprintln!();
    }
}

/// One participant: publishes its track (if any) while counting what arrives, until the
/// run stops; then reads its receive counters and socket drops and leaves.
#[allow(clippy::too_many_arguments)]
async fn run_participant(
    room: Room,
    events: mpsc::UnboundedReceiver<RoomEvent>,
    role: Role,
    subscribing: bool,
    layers: &[Layer],
    fps: u32,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> ParticipantResult {
    let layer_count = if role == Role::Video { layers.len() } else { 0 };
    let flags: Vec<Arc<AtomicBool>> = (0..layer_count)
        .map(|_| Arc::new(AtomicBool::new(true)))
        .collect();
    let publishing = match role {
        Role::Video => publish_video(&room, layers, fps, stop.clone(), flags.clone()).await,
        Role::Audio => publish_audio(&room, stop.clone()).await,
        Role::Subscriber => None,
    };
    let mut result = receive(events, &flags, &live, &stop).await;
    if let Some(p) = publishing {
        let _ = p.await;
    }
    result.subscribing = subscribing;
    for s in room.stats().await {
        let t = &mut result.tracks.entry(s.track_sid).or_default().stats;
        t.packets += s.stats.packets;
        t.octets += s.stats.octets;
        t.duplicates += s.stats.duplicates;
        t.lost += s.stats.lost;
        t.nacked += s.stats.nacked;
        t.recovered += s.stats.recovered;
    }
    result.socket_drops = room.socket_drops();
    result.socket_waits = room.socket_waits();
    room.close().await;
    result
}

/// Publishes the video track and starts sending frames on a task of its own until the run
/// stops; keyframes whenever a flag of `flags` (one per layer) is set.
async fn publish_video(
    room: &Room,
    layers: &[Layer],
    fps: u32,
    stop: Arc<AtomicBool>,
    flags: Vec<Arc<AtomicBool>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (_, top_w, top_h, _) = *layers.last().expect("at least one layer");
    let spec = TrackSpec {
        name: "load-test-video".into(),
        codec: Codec::Vp8,
        source: pb::TrackSource::Camera,
        width: top_w,
        height: top_h,
        layers: if layers.len() > 1 {
            layers
                .iter()
                .map(|&(rid, width, height, bitrate)| LayerSpec {
                    rid: rid.into(),
                    width,
                    height,
                    bitrate,
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    let track = match room.publish_track(spec).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("\nvideo publisher could not publish: {e}");
            return None;
        }
    };
    let sender = room.media_sender(track.id);
    let layers = layers.to_vec();
    Some(tokio::spawn(async move {
        let mut packetizers: Vec<Vp8Packetizer> =
            layers.iter().map(|_| Vp8Packetizer::default()).collect();
        let frame_time = Duration::from_secs(1) / fps;
        let start = Instant::now();
        let mut last_key = vec![start; layers.len()];
        let mut tick = tokio::time::interval(frame_time);
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let ts = (start.elapsed().as_micros() as u64 * 90 / 1000) as u32;
            for (i, &(_, w, h, bitrate)) in layers.iter().enumerate() {
                let now = Instant::now();
                let key = flags[i].swap(false, Ordering::Relaxed)
                    || now.duration_since(last_key[i]) >= KEYFRAME_INTERVAL;
                if key {
                    last_key[i] = now;
                }
                let average = (bitrate / 8 / fps) as usize;
                let size = if key { average * 3 } else { average * 9 / 10 };
                let frame = synthetic_vp8_frame(key, w, h, size, n);
                let parts = packetizers[i].packetize(&frame, RTP_PAYLOAD_MTU - TRAILER_LEN);
                let count = parts.len();
                for (j, p) in parts.into_iter().enumerate() {
                    if sender.send(i, with_trailer(p), ts, j + 1 == count).is_err() {
                        return;
                    }
                }
            }
            n += 1;
        }
    }))
}

/// Publishes the audio track and starts sending 20 ms packets on a task of its own until
/// the run stops.
async fn publish_audio(room: &Room, stop: Arc<AtomicBool>) -> Option<tokio::task::JoinHandle<()>> {
    let spec = TrackSpec {
        name: "load-test-audio".into(),
        codec: Codec::Opus,
        source: pb::TrackSource::Microphone,
        width: 0,
        height: 0,
        layers: Vec::new(),
    };
    let track = match room.publish_track(spec).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("\naudio publisher could not publish: {e}");
            return None;
        }
    };
    let sender = room.media_sender(track.id);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let ts_base: u32 = rand::random();
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            // 32 kbit/s: 80 bytes per 20 ms, TOC byte of CELT 20 ms first.
            let mut p = vec![31 << 3];
            p.resize(AUDIO_PAYLOAD_LEN - TRAILER_LEN, (n % 251) as u8);
            if sender
                .send(0, with_trailer(p), ts_base.wrapping_add(n * 960), n == 0)
                .is_err()
            {
                return;
            }
            n = n.wrapping_add(1);
        }
    }))
}

/// Counts what arrives and raises the keyframe flags the server asks for, until a second
/// after the run stops (so that packets in flight and their retransmissions arrive).
async fn receive(
    mut events: mpsc::UnboundedReceiver<RoomEvent>,
    flags: &[Arc<AtomicBool>],
    live: &Live,
    stop: &AtomicBool,
) -> ParticipantResult {
    let mut result = ParticipantResult::default();
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let mut stopping_at: Option<Instant> = None;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    RoomEvent::TrackSubscribed(t) => {
                        live.subscribed.fetch_add(1, Ordering::Relaxed);
                        let e = result.tracks.entry(t.sid.clone()).or_default();
                        e.kind = t.kind.as_str().to_owned();
                        e.publisher = t.participant_identity.clone();
                    }
                    RoomEvent::Media { track_sid, packet, .. } => {
                        let now = Instant::now();
                        let e = result.tracks.entry(track_sid.to_string()).or_default();
                        e.packets += 1;
                        e.bytes += packet.payload.len() as u64;
                        e.first.get_or_insert(now);
                        e.last = Some(now);
                        live.packets.fetch_add(1, Ordering::Relaxed);
                        live.bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                        if let Some(sent) = trailer_time(&packet.payload) {
                            let arrived = packet
                                .arrival
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_micros() as u64);
                            let us = arrived.saturating_sub(sent).min(u64::from(u32::MAX));
                            if live.measuring.load(Ordering::Relaxed) {
                                result.latencies_us.push(us as u32);
                            } else {
                                result.joining_latencies_us.push(us as u32);
                            }
                        }
                    }
                    RoomEvent::KeyframeRequested { layer, .. } => {
                        if let Some(f) = flags.get(layer) {
                            f.store(true, Ordering::Relaxed);
                        }
                    }
                    RoomEvent::Disconnected { .. } => break,
                    _ => {}
                }
            }
            _ = check.tick() => {
                if stop.load(Ordering::Relaxed) {
                    let at = *stopping_at.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
                    if Instant::now() >= at {
                        break;
                    }
                }
            }
        }
    }
    result
}

/// How a subscriber's loss splits: up to its sockets' drops it is ours (a datagram our
/// socket dropped and no retransmission replaced), the rest was lost by the server or on
/// the way. Returns (ours, elsewhere).
/// What the participants' tasks return once told to stop: those that end within 15 s are
/// kept; the rest are aborted.
pub(crate) async fn gather<T>(tasks: &mut [tokio::task::JoinHandle<Option<T>>]) -> Vec<T> {
    let mut results = Vec::new();
    let collect = async {
        for t in tasks.iter_mut() {
            if let Ok(Some(r)) = t.await {
                results.push(r);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), collect).await;
    for t in tasks.iter() {
        t.abort();
    }
    results
}

/// Latencies (ms, sorted) for a JSON report: p50, p90, p99, max and how many.
pub(crate) fn latency_json(sorted: &[f64]) -> Value {
    json!({
        "p50": percentile(sorted, 50.0),
        "p90": percentile(sorted, 90.0),
        "p99": percentile(sorted, 99.0),
        "max": sorted.last().copied().unwrap_or(0.0),
        "samples": sorted.len(),
    })
}

/// A process's CPU and peak memory (from [`usage_over`]) for a JSON report, with `extra`
/// fields (its pid, threads); `null` when it was not measured.
pub(crate) fn usage_json(usage: Option<(f64, f64, u64)>, extra: Value) -> Value {
    usage.map_or(Value::Null, |(cpu, pct, hwm)| {
        let mut v = json!({ "cpu_seconds": cpu, "cpu_percent": pct, "peak_memory_kb": hwm });
        if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
            m.extend(x);
        }
        v
    })
}

/// CPU seconds, share of one core and peak memory (KiB) between two samples over `wall` s.
pub(crate) fn usage_over(u: &Option<(Usage, Usage)>, wall: f64) -> Option<(f64, f64, u64)> {
    u.map(|((c0, _), (c1, hwm))| {
        let cpu = c1 - c0;
        (cpu, cpu * 100.0 / wall, hwm)
    })
}

/// The report's line on a process's CPU and memory: the server's (`pid` given, named in
/// the line; says so when it could not be read) or the load tester's own.
pub(crate) fn usage_line(
    human: &mut String,
    who: &str,
    pid: Option<u32>,
    usage: Option<(f64, f64, u64)>,
    wall: f64,
) {
    let mb = |hwm: u64| hwm as f64 / 1024.0;
    match (usage, pid) {
        (Some((cpu, pct, hwm)), Some(pid)) => {
            let _ = writeln!(
                human,
                "{who} (pid {pid}): {cpu:.2} CPU s over {wall:.1} s ({pct:.1}% of one core), peak memory {:.1} MB",
                mb(hwm)
            );
        }
        (Some((cpu, pct, hwm)), None) => {
            let _ = writeln!(
                human,
                "{who}: {cpu:.2} CPU s ({pct:.1}% of one core), peak memory {:.1} MB",
                mb(hwm)
            );
        }
        (None, Some(pid)) => {
            let _ = writeln!(human, "{who} (pid {pid}): /proc/{pid} could not be read");
        }
        (None, None) => {}
    }
}

pub(crate) fn split_loss(lost: u64, socket_drops: Option<u64>) -> (u64, u64) {
    let ours = lost.min(socket_drops.unwrap_or(0));
    (ours, lost - ours)
}

struct Summary {
    room: String,
    args: LoadTestArgs,
    layers: Vec<Layer>,
    run_time: Duration,
    total_time: Duration,
    interrupted: bool,
    joined: Joined,
    threads: usize,
    results: Vec<ParticipantResult>,
    server: Option<(Usage, Usage)>,
    client: Option<(Usage, Usage)>,
    /// The measured window: packets and the server's CPU time.
    steady: Steady,
    /// The load tester's own CPU readings at the measured window's ends.
    window: (Sample, Sample),
    /// The server's drops over the run, by reason (with `--server-metrics`).
    server_drops: Option<Result<BTreeMap<String, u64>, String>>,
}

/// The load tester's own figures over the measured window.
pub(crate) struct Window {
    /// Its CPU seconds, and µs per packet its subscribers received.
    client: Option<(f64, f64)>,
    busiest_worker_pct: f64,
}

impl Window {
    /// The summary line.
    pub(crate) fn line(&self, threads: usize) -> String {
        self.client.map_or_else(String::new, |(cpu, per)| {
            format!(
                "Load tester in the measured window: {cpu:.2} CPU s, {per:.2} CPU us per packet received, on {threads} worker threads (busiest {:.0}% of a core)\n",
                self.busiest_worker_pct
            )
        })
    }

    pub(crate) fn json(&self, threads: usize) -> Value {
        json!({
            "cpu_seconds": self.client.map(|(c, _)| c),
            "cpu_us_per_packet": self.client.map(|(_, p)| p),
            "threads": threads,
            "busiest_worker_percent": self.busiest_worker_pct,
        })
    }
}

/// A wait histogram bucket's upper bound, readably.
fn wait_bound(us: u64) -> String {
    if us < 1000 {
        format!("< {us} us")
    } else {
        format!("< {:.0} ms", us as f64 / 1000.0)
    }
}

/// Adds a participant's socket wait histogram to a total.
pub(crate) fn add_waits(total: &mut [u64; WAIT_BUCKETS], waits: &[u64; WAIT_BUCKETS]) {
    for (t, w) in total.iter_mut().zip(waits) {
        *t += w;
    }
}

/// The summary line of how long datagrams waited in the kernel before the load tester read
/// them (empty where the kernel does not timestamp them).
pub(crate) fn socket_wait_line(waits: &[u64; WAIT_BUCKETS]) -> String {
    let (Some(p50), Some(p99), Some(max)) = (
        wait_percentile(waits, 50.0),
        wait_percentile(waits, 99.0),
        wait_percentile(waits, 100.0),
    ) else {
        return String::new();
    };
    format!(
        "load tester socket wait (kernel receipt to our read): p50 {}, p99 {}, max {} ({} datagrams)\n",
        wait_bound(p50),
        wait_bound(p99),
        wait_bound(max),
        waits.iter().sum::<u64>()
    )
}

/// The JSON of a socket wait histogram: percentiles as bucket upper bounds in µs.
pub(crate) fn socket_wait_json(waits: &[u64; WAIT_BUCKETS]) -> Value {
    json!({
        "p50_below_us": wait_percentile(waits, 50.0),
        "p99_below_us": wait_percentile(waits, 99.0),
        "max_below_us": wait_percentile(waits, 100.0),
        "datagrams": waits.iter().sum::<u64>(),
    })
}

/// The summary line of the load tester's own socket drops.
pub(crate) fn socket_drops_line(drops: Option<u64>) -> String {
    match drops {
        Some(n) => format!("load tester socket drops: {n}\n"),
        None => "load tester socket drops: not counted on this system (no SO_RXQ_OVFL)\n".into(),
    }
}

pub(crate) fn window_figures((a, b): &(Sample, Sample), steady: &Steady) -> Window {
    let secs = steady.seconds.max(0.001);
    let client = a.client.zip(b.client).map(|((c0, _), (c1, _))| {
        let cpu = c1 - c0;
        (cpu, cpu * 1e6 / steady.packets.max(1) as f64)
    });
    let busiest = b
        .workers
        .iter()
        .map(|(name, &end)| end - a.workers.get(name).copied().unwrap_or(0.0))
        .fold(0.0, f64::max);
    Window {
        client,
        busiest_worker_pct: busiest * 100.0 / secs,
    }
}

/// One measured window of load, between two samples of our own usage.
pub(crate) struct Measured {
    pub(crate) start: Sample,
    pub(crate) end: Sample,
    pub(crate) time: Duration,
    /// What the process under test spent and what was delivered meanwhile.
    pub(crate) steady: Steady,
    /// Ctrl-C ended the window early.
    pub(crate) interrupted: bool,
}

/// Lets the load run for `duration` (or until Ctrl-C) and measures it: the CPU of the
/// process under test (`pid`), the `packets` delivered, and our own usage.
pub(crate) async fn measure(pid: Option<u32>, packets: &AtomicU64, duration: Duration) -> Measured {
    let start = Sample::take();
    let started = Instant::now();
    let mark = SteadyMark::take(pid, packets);
    let mut interrupted = false;
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = tokio::signal::ctrl_c() => interrupted = true,
    }
    let steady = mark.until(pid, packets);
    Measured {
        start,
        end: Sample::take(),
        time: started.elapsed(),
        steady,
        interrupted,
    }
}

/// The start of the measured window: when, the server's CPU time, packets delivered so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SteadyMark {
    at: Instant,
    server_cpu: Option<CpuTime>,
    packets: u64,
}

impl SteadyMark {
    pub(crate) fn take(server_pid: Option<u32>, packets: &AtomicU64) -> Self {
        Self {
            at: Instant::now(),
            server_cpu: server_pid.and_then(process_cpu),
            packets: packets.load(Ordering::Relaxed),
        }
    }

    /// The window from this mark to now.
    pub(crate) fn until(self, server_pid: Option<u32>, packets: &AtomicU64) -> Steady {
        let end = Self::take(server_pid, packets);
        Steady {
            seconds: end.at.duration_since(self.at).as_secs_f64(),
            packets: end.packets.saturating_sub(self.packets),
            server_cpu: self
                .server_cpu
                .zip(end.server_cpu)
                .map(|(start, end)| end.since(&start)),
        }
    }
}

/// The measured window (everyone joined, media flowing): packets delivered to subscribers
/// (each forwarded packet counted once per subscriber that got it) and the server's CPU time
/// (user, system) over the same window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Steady {
    pub(crate) seconds: f64,
    pub(crate) packets: u64,
    pub(crate) server_cpu: Option<(f64, f64)>,
}

impl Steady {
    /// Server CPU microseconds (user + system) per forwarded packet.
    pub(crate) fn cpu_us_per_packet(&self) -> Option<f64> {
        let (user, system) = self.server_cpu?;
        (self.packets > 0).then(|| (user + system) * 1e6 / self.packets as f64)
    }

    /// Server user-space CPU microseconds per forwarded packet.
    pub(crate) fn user_us_per_packet(&self) -> Option<f64> {
        let (user, _) = self.server_cpu?;
        (self.packets > 0).then(|| user * 1e6 / self.packets as f64)
    }

    /// The summary line (parsed by `benches/scripts/janus-compare.sh`).
    pub(crate) fn line(&self) -> String {
        let per = self
            .cpu_us_per_packet()
            .zip(self.user_us_per_packet())
            .map_or_else(
                || "-".to_owned(),
                |(us, user)| format!("{us:.2} CPU us per forwarded packet ({user:.2} user)"),
            );
        let cpu = self.server_cpu.map_or_else(
            || "-".to_owned(),
            |(u, s)| format!("{:.2} CPU s ({u:.2} user, {s:.2} system)", u + s),
        );
        format!(
            "Steady state: {} packets forwarded in {:.1} s ({:.0}/s); server {cpu}; {per}\n",
            self.packets,
            self.seconds,
            self.packets as f64 / self.seconds.max(0.001)
        )
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "packets": self.packets,
            "server_cpu_seconds": self.server_cpu.map(|(u, s)| u + s),
            "server_user_cpu_seconds": self.server_cpu.map(|(u, _)| u),
            "server_system_cpu_seconds": self.server_cpu.map(|(_, s)| s),
            "cpu_us_per_packet": self.cpu_us_per_packet(),
            "user_cpu_us_per_packet": self.user_us_per_packet(),
        })
    }
}

#[derive(Debug, Default)]
struct TrackTotals {
    kind: String,
    publisher: String,
    subscribers: u64,
    packets: u64,
    lost: u64,
    nacked: u64,
    recovered: u64,
    kbps: Vec<f64>,
}

fn summarise(s: Summary) -> Report {
    let mut by_track: BTreeMap<String, TrackTotals> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut joining: Vec<f64> = Vec::new();
    let (mut socket_drops, mut drops_counted) = (0u64, false);
    let (mut lost_ours, mut lost_elsewhere) = (0u64, 0u64);
    let mut waits = [0u64; WAIT_BUCKETS];
    for r in &s.results {
        add_waits(&mut waits, &r.socket_waits);
        if let Some(d) = r.socket_drops {
            socket_drops += d;
            drops_counted = true;
        }
        if r.subscribing {
            let lost = r.tracks.values().map(|t| t.stats.lost).sum();
            let (ours, elsewhere) = split_loss(lost, r.socket_drops);
            lost_ours += ours;
            lost_elsewhere += elsewhere;
        }
    }
    for sub in s.results.iter().filter(|r| r.subscribing) {
        latencies.extend(sub.latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
        joining.extend(
            sub.joining_latencies_us
                .iter()
                .map(|&us| f64::from(us) / 1000.0),
        );
        for (sid, t) in &sub.tracks {
            let e = by_track.entry(sid.clone()).or_default();
            if e.kind.is_empty() {
                e.kind.clone_from(&t.kind);
            }
            if e.publisher.is_empty() {
                e.publisher.clone_from(&t.publisher);
            }
            e.subscribers += 1;
            e.packets += t.stats.packets;
            e.lost += t.stats.lost;
            e.nacked += t.stats.nacked;
            e.recovered += t.stats.recovered;
            if let (Some(a), Some(b)) = (t.first, t.last) {
                let secs = b.duration_since(a).as_secs_f64();
                if secs > 0.5 {
                    e.kbps.push(t.bytes as f64 * 8.0 / secs / 1000.0);
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    joining.sort_by(f64::total_cmp);
    let mut joins = s.joined.join_ms.clone();
    joins.sort_by(f64::total_cmp);
    let packets: u64 = by_track.values().map(|t| t.packets).sum();
    let lost: u64 = by_track.values().map(|t| t.lost).sum();
    let nacked: u64 = by_track.values().map(|t| t.nacked).sum();
    let recovered: u64 = by_track.values().map(|t| t.recovered).sum();
    let loss_pct = if packets + lost > 0 {
        lost as f64 * 100.0 / (packets + lost) as f64
    } else {
        0.0
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let expected_tracks = u64::from(s.args.video_publishers + s.args.audio_publishers);
    let expected_subscriptions = expected_tracks * u64::from(s.args.subscribers)
        + if s.args.publishers_subscribe {
            expected_tracks * expected_tracks.saturating_sub(1)
        } else {
            0
        };
    let subscriptions: u64 = by_track.values().map(|t| t.subscribers).sum();

    let mut human = String::new();
    let a = &s.args;
    let layers: Vec<String> = s
        .layers
        .iter()
        .map(|(rid, w, h, b)| format!("{rid} {w}x{h} {} kbit/s", b / 1000))
        .collect();
    let _ = writeln!(
        human,
        "Load test in room {}: {:.1} s measured{}; {} video publishers ({}), {} audio publishers, {} subscribers",
        s.room,
        s.run_time.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" },
        a.video_publishers,
        layers.join(", "),
        a.audio_publishers,
        a.subscribers
    );
    let _ = writeln!(
        human,
        "Joined {} of {} participants; join time p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        s.joined.join_ms.len(),
        s.joined.join_ms.len() + s.joined.failures.len(),
        percentile(&joins, 50.0),
        percentile(&joins, 95.0),
        joins.last().copied().unwrap_or(0.0)
    );
    for f in &s.joined.failures {
        let _ = writeln!(human, "  join failed: {f}");
    }
    let _ = writeln!(
        human,
        "Subscriptions: {subscriptions} of {} expected",
        expected_subscriptions
    );
    let mut table = Table::new(&[
        "TRACK",
        "PUBLISHER",
        "KIND",
        "SUBSCRIBERS",
        "KBIT/S (AVG)",
        "KBIT/S (MIN)",
        "PACKETS",
        "LOST",
        "LOSS",
    ]);
    for (sid, t) in &by_track {
        let min = t.kbps.iter().copied().fold(f64::INFINITY, f64::min);
        table.row(vec![
            sid.clone(),
            t.publisher.clone(),
            t.kind.clone(),
            t.subscribers.to_string(),
            format!("{:.0}", mean(&t.kbps)),
            if min.is_finite() {
                format!("{min:.0}")
            } else {
                "-".into()
            },
            t.packets.to_string(),
            t.lost.to_string(),
            format!(
                "{:.3}%",
                if t.packets + t.lost > 0 {
                    t.lost as f64 * 100.0 / (t.packets + t.lost) as f64
                } else {
                    0.0
                }
            ),
        ]);
    }
    human.push_str(&table.render());
    let _ = writeln!(
        human,
        "Received {packets} packets; lost {lost} ({loss_pct:.3}%); {nacked} NACKed, {recovered} recovered"
    );
    let _ = writeln!(
        human,
        "Loss: {lost_elsewhere} lost by the server or on the way, {lost_ours} dropped by our own sockets"
    );
    human.push_str(&socket_drops_line(drops_counted.then_some(socket_drops)));
    human.push_str(&socket_wait_line(&waits));
    match &s.server_drops {
        Some(Ok(d)) if d.is_empty() => {
            let _ = writeln!(human, "Server drops over the run (its metrics): none");
        }
        Some(Ok(d)) => {
            let list: Vec<String> = d.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                human,
                "Server drops over the run (its metrics): {}",
                list.join(", ")
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(human, "Server drops: could not read its metrics: {e}");
        }
        None => {}
    }
    let _ = writeln!(
        human,
        "Forwarding latency (ms): p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2} ({} samples, once everyone had joined)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    );
    if !joining.is_empty() {
        let _ = writeln!(
            human,
            "  while others were joining: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2} ({} samples)",
            percentile(&joining, 50.0),
            percentile(&joining, 90.0),
            percentile(&joining, 99.0),
            joining.last().copied().unwrap_or(0.0),
            joining.len()
        );
    }
    let wall = s.total_time.as_secs_f64().max(0.001);
    let server = usage_over(&s.server, wall);
    let client = usage_over(&s.client, wall);
    usage_line(&mut human, "Server", a.server_pid, server, wall);
    human.push_str(&s.steady.line());
    usage_line(&mut human, "This load tester", None, client, wall);
    let window = window_figures(&s.window, &s.steady);
    human.push_str(&window.line(s.threads));
    let tracks: Vec<Value> = by_track
        .iter()
        .map(|(sid, t)| {
            json!({
                "sid": sid, "publisher": t.publisher, "kind": t.kind,
                "subscribers": t.subscribers, "kbps_avg": mean(&t.kbps),
                "kbps_min": t.kbps.iter().copied().fold(f64::INFINITY, f64::min).min(f64::MAX),
                "packets": t.packets, "lost": t.lost, "nacked": t.nacked, "recovered": t.recovered,
            })
        })
        .collect();
    let json = json!({
        "room": s.room,
        "duration_s": s.run_time.as_secs_f64(),
        "interrupted": s.interrupted,
        "video_publishers": a.video_publishers,
        "audio_publishers": a.audio_publishers,
        "subscribers": a.subscribers,
        "simulcast": !a.no_simulcast,
        "video_resolution": a.video_resolution,
        "joined": s.joined.join_ms.len(),
        "join_failures": s.joined.failures,
        "join_ms": {
            "p50": percentile(&joins, 50.0),
            "p95": percentile(&joins, 95.0),
            "max": joins.last().copied().unwrap_or(0.0),
        },
        "subscriptions": subscriptions,
        "expected_subscriptions": expected_subscriptions,
        "tracks": tracks,
        "packets": packets,
        "lost": lost,
        "loss_percent": loss_pct,
        "nacked": nacked,
        "recovered": recovered,
        "latency_ms": latency_json(&latencies),
        "latency_while_joining_ms": latency_json(&joining),
        "server": usage_json(server, json!({ "pid": a.server_pid })),
        "client": usage_json(client, json!({ "threads": s.threads })),
        "socket_drops": drops_counted.then_some(socket_drops),
        "socket_wait": socket_wait_json(&waits),
        "lost_by_own_sockets": lost_ours,
        "lost_elsewhere": lost_elsewhere,
        "server_drops": match &s.server_drops {
            Some(Ok(d)) => json!(d),
            Some(Err(e)) => json!({ "error": e }),
            None => Value::Null,
        },
        "load_tester_window": window.json(s.threads),
        "steady": s.steady.json(),
    });
    Report { human, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_round_trip() {
        let p = with_trailer(vec![1, 2, 3]);
        let t = trailer_time(&p).unwrap();
        assert!(t.abs_diff(unix_micros()) < 10_000_000);
        assert_eq!(trailer_time(&[0u8; 20]), None);
        assert_eq!(trailer_time(&[1, 2]), None);
    }

    #[test]
    fn synthetic_frames_look_like_vp8() {
        let key = synthetic_vp8_frame(true, 1280, 720, 500, 0);
        let mut p = Vp8Packetizer::default();
        let parts = p.packetize(&key, 200);
        assert!(lkr_rtp::vp8::is_keyframe(&parts[0]));
        let delta = synthetic_vp8_frame(false, 1280, 720, 500, 1);
        assert!(!lkr_rtp::vp8::is_keyframe(&p.packetize(&delta, 200)[0]));
        assert_eq!(u16::from_le_bytes([key[6], key[7]]), 1280);
    }

    #[test]
    fn loss_up_to_our_socket_drops_is_ours() {
        assert_eq!(split_loss(3, Some(10)), (3, 0));
        assert_eq!(split_loss(10, Some(3)), (3, 7));
        assert_eq!(split_loss(5, None), (0, 5));
        assert_eq!(split_loss(0, Some(4)), (0, 0));
    }

    #[test]
    fn server_drops_come_from_its_metrics_text() {
        let before = parse_server_drops(
            "# TYPE livekit_media_dropped_total counter\n\
             livekit_media_dropped_total{node_id=\"a\",reason=\"socket_full\"} 5\n\
             livekit_media_dropped_total{node_id=\"a\",reason=\"late\"} 0\n\
             livekit_packet_loss_total{node_id=\"a\",direction=\"incoming\"} 9\n",
        );
        assert_eq!(before.get("socket_full"), Some(&5));
        assert_eq!(before.get("late"), Some(&0));
        assert_eq!(before.len(), 2);
        let after = parse_server_drops(
            "livekit_media_dropped_total{node_id=\"a\",reason=\"socket_full\"} 12\n\
             livekit_media_dropped_total{node_id=\"a\",reason=\"late\"} 0\n\
             livekit_media_dropped_total{node_id=\"a\",reason=\"srtp_error\"} 2\n",
        );
        let d = drops_between(&before, &after);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![("socket_full".to_owned(), 7), ("srtp_error".to_owned(), 2)]
        );
    }

    #[test]
    fn participants_are_spread_over_the_worker_threads() {
        let workers = Workers::start(3).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let names: Vec<String> = rt.block_on(async {
            let mut names = Vec::new();
            for n in 0..6 {
                let h = workers.spawn(n, async {
                    std::thread::current().name().unwrap_or_default().to_owned()
                });
                names.push(h.await.unwrap());
            }
            names
        });
        workers.stop();
        assert_eq!(
            names,
            ["0", "1", "2", "0", "1", "2"].map(|i| format!("{WORKER_NAME}{i}"))
        );
    }

    #[test]
    fn steady_state_is_cpu_per_forwarded_packet() {
        let s = Steady {
            seconds: 10.0,
            packets: 200_000,
            server_cpu: Some((0.6, 0.4)),
        };
        assert_eq!(s.cpu_us_per_packet(), Some(5.0));
        assert_eq!(s.user_us_per_packet(), Some(3.0));
        assert_eq!(
            s.line(),
            "Steady state: 200000 packets forwarded in 10.0 s (20000/s); server 1.00 CPU s \
             (0.60 user, 0.40 system); 5.00 CPU us per forwarded packet (3.00 user)\n"
        );
        let none = Steady { packets: 0, ..s };
        assert_eq!(none.cpu_us_per_packet(), None);
        assert!(none.line().ends_with("; -\n"));
    }

    #[test]
    fn percentiles_and_proc() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let (cpu, hwm) = process_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0 && hwm > 0);
    }

    #[test]
    fn a_precise_total_is_split_like_the_ticks() {
        let (u, s) = split_like(0.205, 0.15, 0.05);
        assert!((u - 0.15375).abs() < 1e-9 && (s - 0.05125).abs() < 1e-9);
        assert_eq!(split_like(0.004, 0.0, 0.0), (0.0, 0.004));
        // A window's split comes from the ticks counted in it, not from the proportions
        // at its two ends: user time never exceeds the total.
        let start = CpuTime {
            user: 0.5,
            system: 0.5,
            exact: Some(1.0),
        };
        let end = CpuTime {
            user: 0.9,
            system: 0.5,
            exact: Some(1.05),
        };
        let (u, s) = end.since(&start);
        assert!((u - 0.05).abs() < 1e-9 && s.abs() < 1e-9, "{u} {s}");
        let no_clock = CpuTime { exact: None, ..end };
        let (u, s) = no_clock.since(&CpuTime {
            exact: None,
            ..start
        });
        assert!((u - 0.4).abs() < 1e-9 && s.abs() < 1e-9);
        // Within a tick of /proc, and finer.
        #[cfg(target_os = "linux")]
        {
            let me = std::process::id();
            let t = process_cpu(me).unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
            let (tu, ts) = stat_cpu(&stat).unwrap();
            assert!(
                (t.total() - (tu + ts)).abs() <= 0.02 + 1e-9,
                "{t:?} {tu} {ts}"
            );
            assert!(t.exact.is_some());
        }
    }
}
