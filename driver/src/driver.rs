//! The media threads: each shard owns a UDP socket on the media port and an [`Engine`],
//! passes it time, datagrams, commands and what the other shards hand it, sends what it
//! produces and hands its events to the control plane. A router thread sends each command
//! to the shard(s) it concerns.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::Certificate;
use lkr_sfu::{Command, Engine, Event, PublishSpec, Relay, SinkId, TrackId, Transmit};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;

use crate::batch::{BATCH, BatchSocket, RecvBatch, SendBatch, WINDOW};
use crate::ring::{self, Consumer, Handoff, Producer};
use crate::router::Router;
use crate::routes::Routes;
use crate::sink::{SinkRegistry, SinkSender};
use crate::stats::MediaStats;
use crate::tcp::{TcpConfig, TcpPort};
use crate::wake::{ShardWaker, Wakers};

/// How soon a shard tries again to hand the control plane the events that found its
/// channel full.
const EVENT_RETRY: Duration = Duration::from_millis(2);
/// How often the per-peer drop table is published.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// State events kept while the event channel is full. They are a few per peer and peers
/// are bounded by the control plane, so this is only a guard against a control plane that
/// stopped reading altogether.
const OVERFLOW_LIMIT: usize = 1 << 16;
/// Bytes of data messages that may wait in the event channel for the control plane; a data
/// event that would pass it is dropped and counted (a data message is up to 256 KiB, so a
/// channel of 4096 events could otherwise hold a gigabyte).
pub const EVENT_DATA_BYTES: usize = 16 << 20;

/// A shard whose socket woke it at least this often in the last second, for nothing but
/// idle peers' upkeep, reads it on a schedule instead (`MediaSocket::poll_instead`); the
/// default of [`DriverConfig::idle_poll_wakeups`].
pub const IDLE_POLL_WAKEUPS: u32 = 50;
/// How often a polling shard reads its socket: an idle peer's consent check is answered
/// up to this late (clients allow seconds).
const POLL_PERIOD: Duration = Duration::from_millis(50);
/// A polling shard that read fewer datagrams than this share of the wake-ups that made it
/// poll in the last second goes back to waking on each: polling would cost it more
/// wake-ups than it saves (20 for the default 50).
fn poll_below(wakeups: u32) -> u64 {
    u64::from(wakeups) * 2 / 5
}
/// Batches a polling shard reads at most per round, so that a flood cannot hold it.
const POLL_BATCHES: usize = 16;

/// A shard's UDP socket: in the shard's poll, which wakes the shard for every datagram,
/// or out of it while the shard only hears idle peers' consent checks, read every
/// [`POLL_PERIOD`] instead. On a virtual machine a wake-up costs tens of microseconds, more
/// than answering a check, so a shard with a thousand idle peers spends most of its time
/// waking up; reading their checks together costs a wake-up per period. Anything that
/// wants an answer at once (media, a handshake, a command, an event for the control plane)
/// puts the socket back in the poll. The poll watches it for reading only: the shard never
/// waits for the socket to take a datagram (what does not fit is dropped and counted).
pub struct MediaSocket {
    socket: mio::net::UdpSocket,
    polled: bool,
}

/// The poll token of a shard's socket.
const SOCKET: mio::Token = mio::Token(0);
/// The poll token of a shard's waker.
const WAKER: mio::Token = mio::Token(1);

impl MediaSocket {
    /// Registers `socket` (non-blocking) in `registry`.
    fn new(socket: UdpSocket, registry: &mio::Registry) -> std::io::Result<Self> {
        let mut s = Self {
            socket: mio::net::UdpSocket::from_std(socket),
            polled: true,
        };
        s.wake_on_each(registry)?;
        Ok(s)
    }

    fn is_polled(&self) -> bool {
        self.polled
    }

    /// Takes the socket out of the poll (it stays non-blocking).
    fn poll_instead(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        if !self.polled {
            registry.deregister(&mut self.socket)?;
            self.polled = true;
        }
        Ok(())
    }

    /// Puts the socket back in the poll.
    fn wake_on_each(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        if self.polled {
            registry.register(&mut self.socket, SOCKET, mio::Interest::READABLE)?;
            self.polled = false;
        }
        Ok(())
    }
}

impl BatchSocket for MediaSocket {
    fn try_io<R>(
        &self,
        _interest: tokio::io::Interest,
        f: impl FnOnce() -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        // No readiness to track: the poll is edge-triggered and the shard reads until a
        // read comes back short.
        f()
    }
    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }
    #[cfg(not(target_os = "linux"))]
    fn try_recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf)
    }
    #[cfg(not(target_os = "linux"))]
    fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        self.socket.send_to(buf, to)
    }
}

/// What a shard counts to choose between waking on each datagram and polling.
struct PollCounts {
    /// Wake-ups by the socket since the last decision.
    wakes: u32,
    /// Datagrams read by polling since the last decision.
    polled: u64,
    /// [`Engine::urgent_inputs`] at the last decision.
    urgent: u64,
    /// When a polling shard reads next.
    next: Instant,
}

/// Sizes of a media core.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The UDP address every participant's media uses.
    pub addr: SocketAddr,
    /// Commands that may wait for the media thread.
    pub command_capacity: usize,
    /// Events that may wait for the control plane.
    pub event_capacity: usize,
    /// Media shards: threads, each with its own engine and its own socket on `addr`
    /// (`SO_REUSEPORT` when more than one). Capped at 64.
    pub shards: usize,
    /// How many more peers a room's home shard may hold than the least loaded shard before
    /// the room's next peers go to other shards (its fan-out then crosses shards).
    pub spill: u32,
    /// The ICE-TCP port (`rtc.tcp_port`), if any.
    pub tcp: Option<TcpConfig>,
    /// Datagrams to one subscriber that leave together go out as one segmented send where
    /// the kernel offers it (`rtc.udp_segmentation`; see [`crate::batch`]).
    pub segmentation: bool,
    /// Wake-ups in a second, for nothing but idle peers' upkeep, past which a shard reads
    /// its socket on a schedule (`rtc.idle_poll_wakeups`; 0: never).
    pub idle_poll_wakeups: u32,
    /// Called after an event was queued for the control plane (the control plane's threads
    /// may be resting: see `lkr_signal::pacing`).
    pub on_event: Option<EventHook>,
}

/// A call made by a media thread after it queued an event.
#[derive(Clone)]
pub struct EventHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

impl DriverConfig {
    /// Default capacities on `addr`, one shard.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            command_capacity: 4096,
            event_capacity: 4096,
            shards: 1,
            spill: crate::router::DEFAULT_SPILL,
            tcp: None,
            segmentation: true,
            idle_poll_wakeups: IDLE_POLL_WAKEUPS,
            on_event: None,
        }
    }
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The command channel is full: the media thread is behind. The command is dropped.
    #[error("media command queue is full")]
    Full,
    /// The media thread has stopped.
    #[error("media core has stopped")]
    Closed,
}

/// The control plane's side of a running media core: commands in, counters out. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    /// Commands to the media core (bounded; prefer [`MediaHandle::send`]). A sharded core
    /// routes each to the shard(s) of its peer or track.
    pub commands: mpsc::Sender<Command>,
    /// Our DTLS fingerprint for SDP: (`sha-256`, `AB:CD:…`).
    pub fingerprint: (String, String),
    /// The bound UDP address (every shard's).
    pub local_addr: SocketAddr,
    /// The bound ICE-TCP address, when the TCP port is open.
    pub tcp_addr: Option<SocketAddr>,
    /// What the core dropped.
    pub stats: Arc<MediaStats>,
    /// Sinks registered and not yet taken by their shard.
    sinks: SinkRegistry,
}

impl MediaHandle {
    /// Hands the media core the shard end of local sink `sink`; the shard that owns the
    /// sink's track takes it when `Command::AddSink` arrives. `false` when too many sinks
    /// wait already.
    pub fn register_sink(&self, sink: SinkId, tx: SinkSender) -> bool {
        self.sinks.insert(sink, tx)
    }

    /// Drops a registered sink that no `AddSink` will take (its consumer then sees the
    /// sink closed).
    pub fn forget_sink(&self, sink: SinkId) {
        drop(self.sinks.take(sink));
    }

    /// Queues a command without waiting. A full channel drops the command, counts it and
    /// says so.
    pub fn send(&self, cmd: Command) -> Result<(), SendError> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.commands_rejected.fetch_add(1, Relaxed);
                Err(SendError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// The UDP port to advertise in ICE candidates (the same for every shard).
    pub fn candidate_port(&self) -> u16 {
        self.local_addr.port()
    }
}

/// A started media core: the handle and the event stream (one reader).
#[derive(Debug)]
pub struct Media {
    pub handle: MediaHandle,
    /// Events from the media threads (bounded).
    pub events: mpsc::Receiver<Event>,
    /// Bytes of data messages in `events`: the reader takes each [`Event::Data`]'s length
    /// off when it receives it (at most [`EVENT_DATA_BYTES`] wait).
    pub data_queued: Arc<AtomicUsize>,
}

/// Binds `n` sockets on `addr` (with `SO_REUSEPORT` when `n > 1`; port 0 picks one port
/// for all).
fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if n <= 1 {
        let s = UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        return Ok(vec![s]);
    }
    let mut out: Vec<UdpSocket> = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        let s: UdpSocket = s.into();
        if at.port() == 0 {
            at = s.local_addr()?;
        }
        out.push(s);
    }
    Ok(out)
}

/// Binds the socket(s) and starts the media thread(s).
pub fn spawn(config: DriverConfig) -> std::io::Result<Media> {
    let n = config.shards.clamp(1, crate::router::MAX_SHARDS);
    let sockets = bind(config.addr, n)?;
    let local_addr = sockets[0].local_addr()?;
    let cert = Certificate::generate().map_err(|e| std::io::Error::other(e.to_string()))?;
    let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity.max(1));
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let stats = Arc::new(MediaStats::new(n));
    let data_queued = Arc::new(AtomicUsize::new(0));
    // The TCP port is a fallback: a port that cannot be opened is logged and left out of
    // the candidates rather than stopping the server.
    let tcp = config
        .tcp
        .clone()
        .and_then(|c| match crate::tcp::bind(c.addr) {
            Ok(l) => Some((l, c)),
            Err(e) => {
                tracing::error!(
                    "cannot open the media TCP port {}: {e}; ICE-TCP is off",
                    c.addr
                );
                None
            }
        });
    let tcp_addr = match &tcp {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    // A poll and its waker per shard.
    let mut polls = Vec::with_capacity(n);
    let mut shard_wakers = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = mio::Poll::new()?;
        shard_wakers.push(ShardWaker::new(mio::Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    let wakers = Arc::new(Wakers::new(shard_wakers));
    // Rings between each shard and the TCP port.
    let mut tcp_links: Vec<(Option<Producer>, Option<Consumer>)> = Vec::with_capacity(n);
    let mut tcp_rings = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        if tcp.is_some() {
            let (to_shard, from_port) = ring::ring(1024);
            let (to_port, from_shard) = ring::ring(1024);
            tcp_links.push((Some(to_port), Some(from_port)));
            tcp_rings.0.push(to_shard);
            tcp_rings.1.push(from_shard);
        } else {
            tcp_links.push((None, None));
        }
    }
    let sinks = SinkRegistry::default();
    let stop = Arc::new(AtomicBool::new(false));
    // A ring per ordered pair of shards; about 1024 slots (1.5 kB each) into each shard in
    // all, at least 64 per ring: 3 MB for 2 shards, 47 MB for 16.
    let ring_slots = (1024 / n.saturating_sub(1).max(1)).clamp(64, 1024);
    let mut producers: Vec<Vec<Option<Producer>>> = (0..n).map(|_| Vec::new()).collect();
    let mut consumers: Vec<Vec<Consumer>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in producers.iter_mut().enumerate() {
        for (to, inbox) in consumers.iter_mut().enumerate() {
            if from == to {
                row.push(None);
            } else {
                let (p, c) = ring::ring(ring_slots);
                row.push(Some(p));
                inbox.push(c);
            }
        }
    }
    let mut fingerprint = None;
    let mut shard_tx = Vec::with_capacity(n);
    for (index, ((((socket, poll), to_peers), from_peers), (tcp_out, tcp_in))) in sockets
        .into_iter()
        .zip(polls)
        .zip(producers)
        .zip(consumers)
        .zip(tcp_links)
        .enumerate()
    {
        let engine = Engine::new(cert.clone());
        fingerprint.get_or_insert_with(|| engine.fingerprint());
        let (tx, rx) = mpsc::channel(config.command_capacity.max(1));
        shard_tx.push(tx);
        let events = EventOut {
            tx: ev_tx.clone(),
            overflow: VecDeque::new(),
            stats: stats.clone(),
            data_queued: data_queued.clone(),
            hook: config.on_event.clone(),
        };
        let (wakers, stop, stats) = (wakers.clone(), stop.clone(), stats.clone());
        let registry = sinks.clone();
        let name = if n == 1 {
            "media".to_string()
        } else {
            format!("media-{index}")
        };
        let segment = config.segmentation && crate::batch::segmentation_supported(&socket);
        let idle_poll_wakeups = config.idle_poll_wakeups;
        std::thread::Builder::new().name(name).spawn(move || {
            let shard = Shard {
                idle_poll_wakeups,
                handed_urgent: 0,
                index: index as u8,
                engine,
                to_peers,
                from_peers,
                wakers,
                wake: 0,
                routes: Routes::default(),
                stop,
                send: Outbound::with_tcp(segment, tcp_out),
                stats,
                latency: crate::stats::Latency::default(),
                tcp_in,
                registry,
                sinks: FxHashMap::default(),
                closed_sinks: Vec::new(),
            };
            shard.run(poll, socket, rx, events)
        })?;
    }
    drop(ev_tx);
    if let Some((listener, config)) = tcp {
        let port = TcpPort {
            listener,
            config,
            to_shards: tcp_rings.0,
            from_shards: tcp_rings.1,
            wakers: wakers.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("media-tcp".into())
            .spawn(move || port.run())?;
    }
    let router = Router::new(shard_tx, config.spill);
    let (rw, rs) = (wakers.clone(), stop.clone());
    std::thread::Builder::new()
        .name("media-router".into())
        .spawn(move || on_runtime(router.run(cmd_rx, rw, rs)))?;
    Ok(Media {
        handle: MediaHandle {
            commands: cmd_tx,
            fingerprint: fingerprint.unwrap_or_default(),
            local_addr,
            tcp_addr,
            stats,
            sinks,
        },
        events: ev_rx,
        data_queued,
    })
}

/// Runs `f` to its end on a single-threaded runtime of this thread.
fn on_runtime(f: impl Future<Output = ()>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => tracing::error!("media runtime: {e}"),
    }
}

/// A shard's sending side: the send headers, the datagrams gathered from the engine for
/// the current round, and its side of the ICE-TCP port.
pub struct Outbound {
    tx: SendBatch,
    out: Vec<Transmit>,
    tcp: TcpSide,
}

impl Outbound {
    /// UDP only (no ICE-TCP port); runs to one destination leave as one segmented send when
    /// `segment` (see [`crate::batch::segmentation_supported`]).
    pub fn new(segment: bool) -> Self {
        Self::with_tcp(segment, None)
    }

    fn with_tcp(segment: bool, tcp_out: Option<Producer>) -> Self {
        Self {
            tx: SendBatch::grouping(segment),
            out: Vec::with_capacity(WINDOW),
            tcp: TcpSide {
                out: tcp_out,
                peers: FxHashSet::default(),
                wake: false,
            },
        }
    }

    /// How many waiting datagrams make a send round worth starting before the end of a wake
    /// (see [`SendBatch::window`]).
    pub fn window(&self) -> usize {
        self.tx.window()
    }

    /// Sends what the engine produced, a batch per system call, while at least `min`
    /// datagrams wait. Never waits for the socket: when it is full (`EAGAIN`/`ENOBUFS`) what
    /// is waiting is dropped and counted, per peer in the engine and in total in `stats`, so
    /// that one congested path cannot stop receiving and sending for everyone. With
    /// segmentation, up to [`WINDOW`] datagrams are gathered per round so that each
    /// subscriber's share of them can leave as one segmented send.
    pub fn flush(
        &mut self,
        engine: &mut Engine,
        socket: &impl BatchSocket,
        stats: &MediaStats,
        min: usize,
    ) {
        let Self { tx, out, tcp } = self;
        let min = min.max(1);
        while engine.pending_transmits() + out.len() >= min {
            // With segmentation a window is gathered and ordered once, then sent to its end
            // before the next, so that each destination's datagrams keep their order.
            if !tx.segments() || out.is_empty() {
                gather(engine, out, tx.window(), tcp, stats);
                tx.by_destination(out);
            }
            if out.is_empty() {
                continue;
            }
            let sent = tx.send_runs(socket, out);
            let (sends, datagrams) = tx.take_segmented();
            if sends > 0 {
                stats.segmented_sends.fetch_add(sends, Relaxed);
                stats.segmented_datagrams.fetch_add(datagrams, Relaxed);
            }
            match sent {
                // A partial send leaves the rest in `out` for the next round.
                Ok(n) if n > 0 => {
                    for t in out.drain(..n.min(out.len())) {
                        engine.recycle(t.data);
                    }
                }
                Err(e) if !crate::batch::is_full(&e) => {
                    tracing::trace!("media send: {e}");
                    stats.send_failed.fetch_add(out.len() as u64, Relaxed);
                    for t in out.drain(..) {
                        engine.recycle(t.data);
                    }
                }
                _ => {
                    // Full: this batch and everything behind it would find it full too.
                    let mut dropped = 0;
                    for t in out.drain(..) {
                        dropped += 1;
                        engine.note_unsent(t);
                    }
                    while let Some(t) = engine.poll_transmit() {
                        dropped += 1;
                        engine.note_unsent(t);
                    }
                    stats.send_dropped.fetch_add(dropped, Relaxed);
                    return;
                }
            }
        }
    }
}

/// Takes the engine's datagrams into `out` until it holds `up_to`; those for ICE-TCP
/// connections go to the TCP port's ring instead.
fn gather(
    engine: &mut Engine,
    out: &mut Vec<Transmit>,
    up_to: usize,
    tcp: &mut TcpSide,
    stats: &MediaStats,
) {
    while out.len() < up_to {
        match engine.poll_transmit() {
            Some(t) if !tcp.peers.is_empty() && tcp.peers.contains(&t.dest) => {
                tcp.send(&t, stats);
                engine.recycle(t.data);
            }
            Some(t) => out.push(t),
            None => break,
        }
    }
}

/// A shard's side of the ICE-TCP port.
struct TcpSide {
    /// The ring to the TCP port (`None`: no TCP port).
    out: Option<Producer>,
    /// Source addresses that are ICE-TCP connections: what the engine sends there goes to
    /// the TCP port. Kept while the engine knows the address (checked once a second) and
    /// capped at [`TCP_PEERS`].
    peers: FxHashSet<SocketAddr>,
    /// Something was handed to the TCP port since it was last woken.
    wake: bool,
}

/// ICE-TCP addresses a shard keeps at most before forgetting those its engine does not
/// know.
const TCP_PEERS: usize = 4096;

impl TcpSide {
    fn send(&mut self, t: &Transmit, stats: &MediaStats) {
        let pushed = self
            .out
            .as_mut()
            .is_some_and(|p| p.push(Handoff::TcpOut { to: t.dest }, &t.data));
        if pushed {
            self.wake = true;
        } else {
            stats.tcp.frames_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Notes that `from` is an ICE-TCP connection.
    fn note(&mut self, from: SocketAddr, engine: &Engine) {
        if self.peers.len() >= TCP_PEERS && !self.peers.contains(&from) {
            self.peers.retain(|a| engine.knows_address(*a));
            if self.peers.len() >= TCP_PEERS {
                self.peers.clear();
            }
        }
        self.peers.insert(from);
    }
}

/// Hands events to the control plane without ever waiting for it.
struct EventOut {
    tx: mpsc::Sender<Event>,
    /// State events that found the channel full, oldest first; drained before anything new.
    overflow: VecDeque<Event>,
    stats: Arc<MediaStats>,
    /// Bytes of data messages in the channel (see [`EVENT_DATA_BYTES`]).
    data_queued: Arc<AtomicUsize>,
    /// Told of each event queued.
    hook: Option<EventHook>,
}

impl EventOut {
    /// Queues `e`; `false` once the control plane is gone.
    fn push(&mut self, e: Event) -> bool {
        let data = match &e {
            Event::Data { data, .. } => data.len(),
            _ => 0,
        };
        if data > 0 {
            let queued = self.data_queued.fetch_add(data, Relaxed);
            if queued + data > EVENT_DATA_BYTES {
                self.data_queued.fetch_sub(data, Relaxed);
                self.stats.events_dropped.fetch_add(1, Relaxed);
                return true;
            }
        }
        if self.overflow.is_empty() {
            match self.tx.try_send(e) {
                Ok(()) => {
                    if let Some(h) = &self.hook {
                        (h.0)();
                    }
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(e)) => {
                    // Data is never deferred: it leaves the budget now.
                    self.data_queued.fetch_sub(data, Relaxed);
                    self.defer(e)
                }
            }
        } else {
            self.data_queued.fetch_sub(data, Relaxed);
            self.defer(e);
        }
        true
    }

    fn defer(&mut self, e: Event) {
        if e.is_droppable() || self.overflow.len() >= OVERFLOW_LIMIT {
            if !e.is_droppable() {
                tracing::error!("media event queue overflow: control plane stopped reading");
            }
            self.stats.events_dropped.fetch_add(1, Relaxed);
        } else {
            self.stats.events_deferred.fetch_add(1, Relaxed);
            self.overflow.push_back(e);
        }
    }

    /// Moves deferred events into the channel while it has room.
    fn drain(&mut self) -> bool {
        while let Some(e) = self.overflow.pop_front() {
            match self.tx.try_send(e) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.overflow.push_front(e);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// What the router tells a shard.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// A control-plane command for this shard's engine.
    Command(Command),
    /// Datagrams naming `ufrag` belong to shard `shard` (`None`: forget it).
    Ufrag { ufrag: String, shard: Option<u8> },
    /// Mirror a track that shard `owner` publishes.
    Mirror { spec: Box<PublishSpec>, owner: u8 },
    /// Start or stop handing an owned track's packets to shard `to`.
    Relay { track: TrackId, to: u8, on: bool },
}

/// One media shard: a thread with its own engine and socket, rings to and from the other
/// shards.
struct Shard {
    index: u8,
    engine: Engine,
    /// Idle wake-ups a second past which the socket is polled (0: never).
    idle_poll_wakeups: u32,
    /// Datagrams other than STUN that landed on our socket and were handed to the shard of
    /// their peer: urgent for polling like the engine's own (see [`Shard::urgent`]).
    handed_urgent: u64,
    /// Rings to the other shards, by shard index (`None` at our own).
    to_peers: Vec<Option<Producer>>,
    from_peers: Vec<Consumer>,
    /// Every thread's waker.
    wakers: Arc<Wakers>,
    /// Shards (bit each) we handed something to since we last woke them.
    wake: u64,
    /// Other shards' peers, by local ufrag and by the sources their checks came from.
    routes: Routes,
    stop: Arc<AtomicBool>,
    send: Outbound,
    stats: Arc<MediaStats>,
    /// Time from a batch's receive to the end of the wake that forwarded it.
    latency: crate::stats::Latency,
    /// Frames from the ICE-TCP port.
    tcp_in: Option<Consumer>,
    /// Sinks registered by the control plane, taken at their `AddSink`.
    registry: SinkRegistry,
    /// The sinks this shard feeds.
    sinks: FxHashMap<SinkId, SinkSender>,
    /// Sinks whose consumer went away during the last feeding (reused).
    closed_sinks: Vec<SinkId>,
}

impl Shard {
    /// The other shard that a datagram we do not own belongs to, if any.
    fn owner_of(&mut self, from: SocketAddr, d: &[u8]) -> Option<u8> {
        if matches!(d.first(), Some(0..=3))
            && let Some(local) = lkr_ice::stun_username_str(d).and_then(|u| u.split(':').next())
        {
            return self.routes.by_ufrag(local, from);
        }
        self.routes.by_source(from)
    }

    /// Puts one hand-off in the ring to shard `to`; counts it when the ring is full.
    fn hand_off(
        to_peers: &mut [Option<Producer>],
        wake: &mut u64,
        stats: &MediaStats,
        to: u8,
        what: Handoff,
        bytes: &[u8],
    ) {
        let pushed = to_peers
            .get_mut(usize::from(to))
            .and_then(Option::as_mut)
            .is_some_and(|p| p.push(what, bytes));
        if pushed {
            *wake |= 1 << to;
        } else {
            stats.handoff_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Hands the packets the engine queued for local sinks to their channels; a sink whose
    /// consumer is gone is removed.
    fn feed_sinks(&mut self) {
        if !self.engine.has_sink_packets() {
            return;
        }
        let Shard {
            engine,
            sinks,
            closed_sinks,
            ..
        } = self;
        engine.drain_sinks(|sink, codec, pkt| {
            if let Some(tx) = sinks.get_mut(&sink)
                && tx.push(codec, pkt).is_err()
                && !closed_sinks.contains(&sink)
            {
                closed_sinks.push(sink);
            }
        });
        while let Some(sink) = self.closed_sinks.pop() {
            tracing::debug!(?sink, "sink consumer gone");
            self.sinks.remove(&sink);
            self.engine
                .handle_command(Instant::now(), Command::RemoveSink { sink });
        }
    }

    /// Moves the engine's relays into the rings of the shards they are for, and its sink
    /// packets into their channels.
    fn relay(&mut self) {
        self.feed_sinks();
        if !self.engine.has_relays() {
            return;
        }
        let Shard {
            engine,
            to_peers,
            wake,
            stats,
            ..
        } = self;
        engine.drain_relays(|r, bytes| {
            let (to, what) = match *r {
                Relay::Media { to, track, layer } => (to, Handoff::Media { track, layer }),
                Relay::SenderReport {
                    to,
                    track,
                    layer,
                    ntp,
                    rtp_ts,
                } => (
                    to,
                    Handoff::SenderReport {
                        track,
                        layer,
                        ntp,
                        rtp_ts,
                    },
                ),
                Relay::Keyframe { to, track, layer } => (to, Handoff::Keyframe { track, layer }),
            };
            let mut bits = to;
            while bits != 0 {
                let s = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                Self::hand_off(to_peers, wake, stats, s, what, bytes);
            }
        });
    }

    /// One datagram from our socket: ours, or handed to the shard it belongs to.
    fn on_datagram(&mut self, socket: &MediaSocket, from: SocketAddr, d: &mut [u8]) {
        if self.to_peers.len() > 1
            && !self.engine.owns(from, d)
            && let Some(s) = self.owner_of(from, d)
        {
            // Media for another shard's peer that lands here must not wait for our polling.
            self.handed_urgent += u64::from(d.first().is_some_and(|b| *b > 3));
            let Shard {
                to_peers,
                wake,
                stats,
                ..
            } = self;
            Self::hand_off(to_peers, wake, stats, s, Handoff::Datagram { from }, d);
            return;
        }
        self.engine.handle_receive(Instant::now(), from, d);
        self.after_input(socket);
    }

    /// Relays what the last input produced and sends a batch once there is one.
    fn after_input(&mut self, socket: &MediaSocket) {
        self.relay();
        // A batch's worth (a window's with segmentation) goes out at once, so buffers
        // return to the pool before the next packets' fan-out.
        let batch = self.send.window();
        if self.engine.pending_transmits() >= batch {
            self.send
                .flush(&mut self.engine, socket, &self.stats, batch);
        }
    }

    /// Takes what the other shards handed us, at most a ring's worth each; `true` when some
    /// ring may still hold more.
    fn drain_rings(&mut self, socket: &MediaSocket) -> bool {
        let mut more = false;
        for i in 0..self.from_peers.len() {
            let mut budget = 1024;
            loop {
                if budget == 0 {
                    more = true;
                    break;
                }
                budget -= 1;
                let engine = &mut self.engine;
                let tcp = &mut self.send.tcp;
                let took = self.from_peers[i].pop(|what, bytes| {
                    let now = Instant::now();
                    match what {
                        Handoff::Datagram { from } => engine.handle_receive(now, from, bytes),
                        Handoff::TcpIn { from } => {
                            tcp.note(from, engine);
                            engine.handle_receive(now, from, bytes);
                        }
                        Handoff::TcpOut { .. } => {}
                        Handoff::Media { track, layer } => {
                            engine.handle_relayed(now, track, layer, bytes)
                        }
                        Handoff::SenderReport {
                            track,
                            layer,
                            ntp,
                            rtp_ts,
                        } => engine.handle_relayed_report(now, track, layer, ntp, rtp_ts),
                        Handoff::Keyframe { track, layer } => {
                            engine.handle_relayed_keyframe(now, track, layer)
                        }
                    }
                });
                if !took {
                    break;
                }
                self.after_input(socket);
            }
        }
        if let Some(mut tcp_in) = self.tcp_in.take() {
            let mut budget = 1024;
            while tcp_in.pop(|what, bytes| {
                if let Handoff::TcpIn { from } = what {
                    self.on_tcp_frame(socket, from, bytes);
                }
            }) {
                budget -= 1;
                if budget == 0 {
                    more = true;
                    break;
                }
            }
            self.tcp_in = Some(tcp_in);
        }
        more
    }

    /// One frame from an ICE-TCP connection: ours, or handed to the shard it belongs to.
    fn on_tcp_frame(&mut self, socket: &MediaSocket, from: SocketAddr, d: &mut [u8]) {
        if self.to_peers.len() > 1
            && !self.engine.owns(from, d)
            && let Some(s) = self.owner_of(from, d)
        {
            let Shard {
                to_peers,
                wake,
                stats,
                ..
            } = self;
            Self::hand_off(to_peers, wake, stats, s, Handoff::TcpIn { from }, d);
            return;
        }
        self.send.tcp.note(from, &self.engine);
        self.engine.handle_receive(Instant::now(), from, d);
        self.after_input(socket);
    }

    fn on_message(&mut self, msg: ShardMsg) {
        let now = Instant::now();
        match msg {
            ShardMsg::Command(cmd) => {
                match &cmd {
                    Command::AddSink { sink, .. } => {
                        if let Some(tx) = self.registry.take(*sink) {
                            self.sinks.insert(*sink, tx);
                        }
                    }
                    Command::RemoveSink { sink } => {
                        self.sinks.remove(sink);
                        drop(self.registry.take(*sink));
                    }
                    _ => {}
                }
                self.engine.handle_command(now, cmd)
            }
            ShardMsg::Ufrag { ufrag, shard } => {
                let other = shard.filter(|s| *s != self.index);
                if let Some(to) = other {
                    // Checks for this peer that came here before we knew whose it is.
                    self.engine.take_early_checks(now, &ufrag, |from, d| {
                        let what = Handoff::Datagram { from };
                        Self::hand_off(
                            &mut self.to_peers,
                            &mut self.wake,
                            &self.stats,
                            to,
                            what,
                            d,
                        );
                    });
                }
                self.routes.set_ufrag(ufrag, other);
            }
            ShardMsg::Mirror { spec, owner } => self.engine.add_mirror(&spec, owner),
            ShardMsg::Relay { track, to, on } => self.engine.set_relay(track, to, on),
        }
        self.relay();
    }

    /// Wakes the shards we handed something to.
    fn wake_others(&mut self) {
        while self.wake != 0 {
            let s = self.wake.trailing_zeros() as usize;
            self.wake &= self.wake - 1;
            if let Some(w) = self.wakers.shard(s) {
                w.wake();
            }
        }
        if self.send.tcp.wake {
            self.send.tcp.wake = false;
            self.wakers.tcp().notify_one();
        }
    }

    /// The shard's loop: sleeps in its poll until its socket has datagrams, its waker is
    /// woken (a command, a hand-off from another thread, the stop flag) or its next
    /// deadline, then handles what came and sends what that produced.
    fn run(
        mut self,
        mut poll: mio::Poll,
        socket: UdpSocket,
        mut inbox: mpsc::Receiver<ShardMsg>,
        mut events: EventOut,
    ) {
        let mut socket = match MediaSocket::new(socket, poll.registry()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("media socket: {e}");
                self.halt();
                return;
            }
        };
        let mut ready = mio::Events::with_capacity(4);
        let mut rx = RecvBatch::default();
        let mut next_stats = Instant::now() + STATS_INTERVAL;
        let mut counts = PollCounts {
            wakes: 0,
            polled: 0,
            urgent: 0,
            next: next_stats,
        };
        let wakers = self.wakers.clone();
        let Some(me) = wakers.shard(usize::from(self.index)) else {
            return;
        };
        // Datagrams may wait on the socket: the poll is edge-triggered, so it is read until
        // a read comes back short before the shard sleeps again.
        let mut readable = true;
        // Something is left for the next round (a ring with more): no sleep before it.
        let mut again = false;
        'run: loop {
            let mut deadline = self
                .engine
                .poll_timeout()
                .map_or(next_stats, |t| t.min(next_stats));
            if socket.is_polled() {
                deadline = deadline.min(counts.next);
            }
            if !events.overflow.is_empty() {
                // The control plane is behind: try it again shortly.
                deadline = deadline.min(Instant::now() + EVENT_RETRY);
            }
            let timeout = if again || (readable && !socket.is_polled()) {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            again = false;
            if let Err(e) = poll.poll(&mut ready, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("media poll: {e}");
                break;
            }
            readable |= ready.iter().any(|e| e.token() == SOCKET);
            me.take();
            let mut command = false;
            loop {
                match inbox.try_recv() {
                    Ok(msg) => {
                        command = true;
                        self.on_message(msg);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
                }
            }
            let mut received_at = None;
            if readable && !socket.is_polled() {
                counts.wakes += 1;
                received_at = Some(Instant::now());
                let n = self.read_batch(&mut rx, &socket);
                readable = n == BATCH;
            }
            if socket.is_polled() && Instant::now() >= counts.next {
                counts.next = Instant::now() + POLL_PERIOD;
                for _ in 0..POLL_BATCHES {
                    let n = self.read_batch(&mut rx, &socket);
                    counts.polled += n as u64;
                    if n < BATCH {
                        break;
                    }
                }
            }
            // Back in the poll as soon as something wants an answer at once.
            if socket.is_polled() && (command || self.urgent() != counts.urgent) {
                if let Err(e) = self.wake_on_each(&mut socket, poll.registry(), &mut counts) {
                    tracing::error!("media socket: {e}");
                    break;
                }
                readable = true;
            }
            if self.stop.load(Relaxed) {
                break;
            }
            self.stats.wakeups.fetch_add(1, Relaxed);
            if (!self.from_peers.is_empty() || self.tcp_in.is_some()) && self.drain_rings(&socket) {
                // More waits: come round again without sleeping.
                again = true;
            }
            // Timers run even while the socket stays readable.
            let now = Instant::now();
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
                self.relay();
            }
            self.send.flush(&mut self.engine, &socket, &self.stats, 1);
            self.wake_others();
            if let Some(at) = received_at {
                self.latency.observe(at.elapsed());
            }
            if !events.drain() {
                break;
            }
            let mut open = true;
            while let Some(e) = self.engine.poll_event() {
                open &= events.push(e);
            }
            if !open {
                break;
            }
            if now >= next_stats {
                next_stats = now + STATS_INTERVAL;
                if let Err(e) = self.choose_polling(&mut socket, poll.registry(), &mut counts, now)
                {
                    tracing::error!("media socket: {e}");
                    break;
                }
                readable = true;
                let i = usize::from(self.index);
                self.stats.store_engine(i, &self.engine.drops);
                self.stats.store_traffic(i, &self.engine.traffic);
                self.stats.store_latency(i, &self.latency);
                let engine = &self.engine;
                self.stats
                    .try_store_per_peer(i, |v| engine.unsent_by_peer(v));
                if !self.send.tcp.peers.is_empty() {
                    self.send.tcp.peers.retain(|a| engine.knows_address(*a));
                }
                let engine = &mut self.engine;
                self.stats
                    .try_store_tracks(i, |v| engine.track_stats(now, v));
            }
        }
        self.halt();
    }

    /// Inputs that want handling at once: the engine's ([`Engine::urgent_inputs`]) and what
    /// we handed to other shards.
    fn urgent(&self) -> u64 {
        self.engine.urgent_inputs() + self.handed_urgent
    }

    /// Once a second: polls the socket when it woke the shard at least
    /// [`Shard::idle_poll_wakeups`] times and nothing urgent came in; wakes on each datagram
    /// again when polling read fewer than [`poll_below`] of them.
    fn choose_polling(
        &self,
        socket: &mut MediaSocket,
        registry: &mio::Registry,
        counts: &mut PollCounts,
        now: Instant,
    ) -> std::io::Result<()> {
        let urgent = self.urgent();
        let above = self.idle_poll_wakeups;
        if !socket.is_polled() && above > 0 && counts.wakes >= above && urgent == counts.urgent {
            tracing::debug!(
                shard = self.index,
                wakes = counts.wakes,
                "media socket: idle peers only, polling"
            );
            counts.next = now + POLL_PERIOD;
            socket.poll_instead(registry)?;
        } else if socket.is_polled() && counts.polled < poll_below(above) {
            return self.wake_on_each(socket, registry, counts);
        }
        self.stats
            .set_polling(usize::from(self.index), socket.is_polled());
        counts.wakes = 0;
        counts.polled = 0;
        counts.urgent = urgent;
        Ok(())
    }

    /// Puts a polled socket back in the poll and starts counting afresh.
    fn wake_on_each(
        &self,
        socket: &mut MediaSocket,
        registry: &mio::Registry,
        counts: &mut PollCounts,
    ) -> std::io::Result<()> {
        socket.wake_on_each(registry)?;
        tracing::debug!(shard = self.index, "media socket: waking on each datagram");
        self.stats.set_polling(usize::from(self.index), false);
        counts.wakes = 0;
        counts.polled = 0;
        counts.urgent = self.urgent();
        Ok(())
    }

    /// Reads what waits on the socket (one batch) and takes each datagram; how many.
    fn read_batch(&mut self, rx: &mut RecvBatch, socket: &MediaSocket) -> usize {
        match rx.recv(socket) {
            Ok(n) => {
                rx.for_each(|from, d| self.on_datagram(socket, from, d));
                n
            }
            Err(e) => {
                tracing::debug!("media recv: {e}");
                0
            }
        }
    }

    /// Stops every shard and the router: one stopped shard stops the media core.
    fn halt(&self) {
        self.stop.store(true, Relaxed);
        self.wakers.all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_sfu::PeerId;

    fn out(capacity: usize) -> (EventOut, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        let out = EventOut {
            tx,
            overflow: VecDeque::new(),
            stats: Arc::new(MediaStats::new(1)),
            data_queued: Arc::new(AtomicUsize::new(0)),
            hook: None,
        };
        (out, rx)
    }

    fn data(peer: u64) -> Event {
        Event::Data {
            peer: PeerId(peer),
            label: "_lossy".into(),
            binary: true,
            data: vec![1],
        }
    }

    #[test]
    fn a_full_event_channel_drops_data_but_keeps_state_in_order() {
        let (mut ev, mut rx) = out(2);
        assert!(ev.push(data(1)));
        assert!(ev.push(Event::PeerConnected { peer: PeerId(1) }));
        // Full from here on.
        assert!(ev.push(data(2)));
        assert!(ev.push(Event::PeerConnected { peer: PeerId(2) }));
        assert!(ev.push(data(3)));
        assert!(ev.push(Event::PeerDisconnected {
            peer: PeerId(1),
            reason: "gone".into()
        }));
        let s = ev.stats.snapshot();
        assert_eq!(s.events_dropped, 2, "two data events dropped");
        assert_eq!(s.events_deferred, 2, "two state events kept aside");
        assert_eq!(rx.try_recv().unwrap(), data(1));
        assert_eq!(
            rx.try_recv().unwrap(),
            Event::PeerConnected { peer: PeerId(1) }
        );
        assert!(rx.try_recv().is_err());
        // Room again: the deferred ones go first, in order, before anything new.
        assert!(ev.drain());
        assert!(ev.push(Event::TrackStarted {
            track: lkr_sfu::TrackId(9)
        }));
        assert_eq!(
            rx.try_recv().unwrap(),
            Event::PeerConnected { peer: PeerId(2) }
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Event::PeerDisconnected {
                peer: PeerId(1),
                ..
            }
        ));
        assert!(ev.drain());
        assert_eq!(
            rx.try_recv().unwrap(),
            Event::TrackStarted {
                track: lkr_sfu::TrackId(9)
            }
        );
        drop(rx);
        assert!(!ev.push(data(4)), "a closed channel stops the thread");
    }

    #[test]
    fn data_waiting_for_the_control_plane_is_bounded_in_bytes() {
        let (mut ev, mut rx) = out(4096);
        let big = |peer| Event::Data {
            peer: PeerId(peer),
            label: "_reliable".into(),
            binary: true,
            data: vec![7; 256 * 1024],
        };
        // The channel has room for 4096 events; the budget for 64 of these.
        for i in 0..200 {
            assert!(ev.push(big(i)));
        }
        assert_eq!(rx.len(), EVENT_DATA_BYTES / (256 * 1024));
        assert_eq!(ev.data_queued.load(Relaxed), EVENT_DATA_BYTES);
        assert_eq!(ev.stats.snapshot().events_dropped, 200 - rx.len() as u64);
        // State events still pass.
        assert!(ev.push(Event::PeerConnected { peer: PeerId(1) }));
        // The reader takes one off: room for one more.
        let Some(Event::Data { data, .. }) = rx.try_recv().ok() else {
            panic!("data first");
        };
        ev.data_queued.fetch_sub(data.len(), Relaxed);
        assert!(ev.push(big(300)));
        assert_eq!(ev.data_queued.load(Relaxed), EVENT_DATA_BYTES);
        assert!(ev.push(big(301)));
        assert_eq!(ev.stats.snapshot().events_dropped, 200 - 64 + 1);
    }

    #[test]
    fn shards_share_one_port_and_stop_together() {
        let mut config = DriverConfig::new("127.0.0.1:0".parse().unwrap());
        config.shards = 2;
        let Media {
            handle, mut events, ..
        } = spawn(config).expect("spawned");
        let port = handle.candidate_port();
        assert_ne!(port, 0);
        // Both shards hold the port; a socket outside the group cannot take it.
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_err());
        let peer = PeerId(1);
        assert_eq!(handle.send(Command::RemovePeer { peer }), Ok(()));
        // The control plane hangs up: the router ends, then every shard, then the events.
        drop(handle);
        assert!(events.blocking_recv().is_none(), "the core stopped");
    }

    #[test]
    fn a_full_command_channel_is_reported_not_waited_for() {
        let (tx, mut rx) = mpsc::channel(1);
        let handle = MediaHandle {
            commands: tx,
            fingerprint: (String::new(), String::new()),
            local_addr: "127.0.0.1:1".parse().unwrap(),
            tcp_addr: None,
            stats: Arc::new(MediaStats::default()),
            sinks: SinkRegistry::default(),
        };
        let cmd = || Command::RemovePeer { peer: PeerId(1) };
        assert_eq!(handle.send(cmd()), Ok(()));
        assert_eq!(handle.send(cmd()), Err(SendError::Full));
        assert_eq!(handle.stats.snapshot().commands_rejected, 1);
        assert!(rx.try_recv().is_ok());
        assert_eq!(handle.send(cmd()), Ok(()));
        drop(rx);
        assert_eq!(handle.send(cmd()), Err(SendError::Closed));
    }
}
