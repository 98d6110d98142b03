//! The media thread: owns the UDP socket and the [`Engine`], passes it time, datagrams and
//! commands, sends what it produces and hands its events to the control plane.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::Certificate;
use lkr_sfu::{Command, Engine, Event, Transmit};
use tokio::sync::mpsc;

use crate::batch::{BATCH, RecvBatch, SendBatch};
use crate::stats::MediaStats;

/// How often the per-peer drop table is published.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// State events kept while the event channel is full. They are a few per peer and peers
/// are bounded by the control plane, so this is only a guard against a control plane that
/// stopped reading altogether.
const OVERFLOW_LIMIT: usize = 1 << 16;

/// Sizes of a media core.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The UDP address every participant's media uses.
    pub addr: SocketAddr,
    /// Commands that may wait for the media thread.
    pub command_capacity: usize,
    /// Events that may wait for the control plane.
    pub event_capacity: usize,
}

impl DriverConfig {
    /// Default capacities on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            command_capacity: 4096,
            event_capacity: 4096,
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
    /// Commands to the media thread (bounded; prefer [`MediaHandle::send`]).
    pub commands: mpsc::Sender<Command>,
    /// Our DTLS fingerprint for SDP: (`sha-256`, `AB:CD:…`).
    pub fingerprint: (String, String),
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// What the core dropped.
    pub stats: Arc<MediaStats>,
}

impl MediaHandle {
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

    /// The UDP port to advertise in ICE candidates.
    pub fn candidate_port(&self) -> u16 {
        self.local_addr.port()
    }
}

/// A started media core: the handle and the event stream (one reader).
#[derive(Debug)]
pub struct Media {
    pub handle: MediaHandle,
    /// Events from the media thread (bounded).
    pub events: mpsc::Receiver<Event>,
}

/// Binds the socket and starts the media thread.
pub fn spawn(config: DriverConfig) -> std::io::Result<Media> {
    let socket = UdpSocket::bind(config.addr)?;
    socket.set_nonblocking(true)?;
    let local_addr = socket.local_addr()?;
    let cert = Certificate::generate().map_err(|e| std::io::Error::other(e.to_string()))?;
    let engine = Engine::new(cert);
    let fingerprint = engine.fingerprint();
    let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity.max(1));
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let stats = Arc::new(MediaStats::default());
    let thread_stats = stats.clone();
    std::thread::Builder::new()
        .name("media".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("media runtime: {e}");
                    return;
                }
            };
            rt.block_on(run(socket, engine, cmd_rx, ev_tx, thread_stats));
        })?;
    Ok(Media {
        handle: MediaHandle {
            commands: cmd_tx,
            fingerprint,
            local_addr,
            stats,
        },
        events: ev_rx,
    })
}

/// Sends what the engine produced, a batch per system call, while at least `min` datagrams
/// wait. Never waits for the socket: when it is full (`EAGAIN`/`ENOBUFS`) what is waiting
/// is dropped and counted, per peer in the engine and in total in `stats`, so that one
/// congested path cannot stop receiving and sending for everyone.
fn flush(
    engine: &mut Engine,
    socket: &tokio::net::UdpSocket,
    tx: &mut SendBatch,
    out: &mut Vec<Transmit>,
    stats: &MediaStats,
    min: usize,
) {
    let min = min.max(1);
    while engine.pending_transmits() + out.len() >= min {
        while out.len() < BATCH {
            match engine.poll_transmit() {
                Some(t) => out.push(t),
                None => break,
            }
        }
        match tx.send(socket, out) {
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

/// Hands events to the control plane without ever waiting for it.
struct EventOut {
    tx: mpsc::Sender<Event>,
    /// State events that found the channel full, oldest first; drained before anything new.
    overflow: VecDeque<Event>,
    stats: Arc<MediaStats>,
}

impl EventOut {
    /// Queues `e`; `false` once the control plane is gone.
    fn push(&mut self, e: Event) -> bool {
        if self.overflow.is_empty() {
            match self.tx.try_send(e) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(e)) => self.defer(e),
            }
        } else {
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

async fn run(
    socket: UdpSocket,
    mut engine: Engine,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    stats: Arc<MediaStats>,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("media socket: {e}");
            return;
        }
    };
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::default();
    let mut out: Vec<Transmit> = Vec::with_capacity(BATCH);
    let mut events = EventOut {
        tx: events,
        overflow: VecDeque::new(),
        stats: stats.clone(),
    };
    let mut next_stats = Instant::now() + STATS_INTERVAL;
    loop {
        let deadline = engine
            .poll_timeout()
            .map_or(next_stats, |t| t.min(next_stats));
        let waiting = !events.overflow.is_empty();
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                engine.handle_command(Instant::now(), cmd);
                while let Ok(cmd) = commands.try_recv() {
                    engine.handle_command(Instant::now(), cmd);
                }
            }
            r = socket.readable() => {
                if r.is_ok() {
                    match rx.recv(&socket) {
                        Ok(_) => rx.for_each(|from, d| {
                            engine.handle_receive(Instant::now(), from, d);
                            // A batch's worth goes out at once, so buffers return to the
                            // pool before the next packet's fan-out.
                            if engine.pending_transmits() >= BATCH {
                                flush(&mut engine, &socket, &mut tx, &mut out, &stats, BATCH);
                            }
                        }),
                        Err(e) => tracing::debug!("media recv: {e}"),
                    }
                }
            }
            permit = events.tx.reserve(), if waiting => {
                match (permit, events.overflow.pop_front()) {
                    (Ok(p), Some(e)) => p.send(e),
                    (Err(_), _) => break,
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        stats.wakeups.fetch_add(1, Relaxed);
        // Timers run even while the socket stays readable.
        let now = Instant::now();
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
        }
        flush(&mut engine, &socket, &mut tx, &mut out, &stats, 1);
        if !events.drain() {
            break;
        }
        let mut open = true;
        while let Some(e) = engine.poll_event() {
            open &= events.push(e);
        }
        if !open {
            break;
        }
        if now >= next_stats {
            next_stats = now + STATS_INTERVAL;
            stats.store_engine(&engine.drops);
            stats.store_traffic(&engine.traffic);
            stats.try_store_per_peer(|v| engine.unsent_by_peer(v));
        }
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
            stats: Arc::new(MediaStats::default()),
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
    fn a_full_command_channel_is_reported_not_waited_for() {
        let (tx, mut rx) = mpsc::channel(1);
        let handle = MediaHandle {
            commands: tx,
            fingerprint: (String::new(), String::new()),
            local_addr: "127.0.0.1:1".parse().unwrap(),
            stats: Arc::new(MediaStats::default()),
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
