//! ICE-TCP (RFC 6544): the passive TCP candidate on `rtc.tcp_port`.
//!
//! One thread owns the listener and every connection. Each connection carries packets framed
//! as RFC 4571 says (a two-byte big-endian length before each packet). Its frames go, as they
//! are, into the ring of the shard that owns the peer ([`Handoff::TcpIn`]), where they take
//! the same engine input path as UDP datagrams; what an engine sends to the connection's
//! address comes back through a ring ([`Handoff::TcpOut`]) and is framed into the
//! connection's send buffer. Before the owner is known (the first check) frames go to shard
//! 0, which hands them on like a datagram from an unknown source; the shard that answers
//! becomes the connection's owner.
//!
//! Bounds: at most `max_connections` connections (more are closed at once); a frame larger
//! than a ring slot (a datagram), empty, or not STUN/DTLS/RTP closes its connection, as does
//! anything but STUN before a check was answered; a connection with no answered check after
//! `handshake_timeout`, or silent for `idle_timeout` (half-open), is closed; a connection's
//! send buffer holds at most `send_buffer` bytes and drops whole frames past that. None of it
//! touches another connection.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ring::{Consumer, Handoff, Producer, SLOT_BYTES};
use crate::stats::MediaStats;
use crate::wake::Wakers;

/// The largest frame accepted: one datagram, as a ring slot holds.
pub const MAX_FRAME: usize = SLOT_BYTES;

/// Where and how the ICE-TCP port runs.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// The listening address (`rtc.tcp_port`).
    pub addr: SocketAddr,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A connection must have a check answered within this time.
    pub handshake_timeout: Duration,
    /// A connection with nothing received for this long is closed (consent, RFC 7675, would
    /// have expired anyway).
    pub idle_timeout: Duration,
    /// Bytes waiting to be written per connection; whole frames past it are dropped.
    pub send_buffer: usize,
}

impl TcpConfig {
    /// Default bounds on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: lkr_ice::CONSENT_TIMEOUT,
            send_buffer: 128 * 1024,
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("peer closed")]
    Eof,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is larger than a datagram (peer's fault)")]
    Oversized(usize),
    #[error("frame is not STUN, DTLS or RTP, or not STUN before the first check (peer's fault)")]
    Garbage,
    #[error("no check answered in time")]
    Handshake,
    #[error("nothing received within the idle timeout")]
    Idle,
    #[error("media core stopped")]
    Stopped,
}

struct Conn {
    /// The shard whose engine answered this connection.
    shard: Option<u8>,
    /// Framed packets waiting to be written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    flush: Rc<Notify>,
}

/// State shared by the accept loop and the connection tasks (one thread, no lock).
struct Gateway {
    to_shards: Vec<Producer>,
    conns: FxHashMap<SocketAddr, Conn>,
    /// Shards (bit each) handed something since they were last woken.
    wake: u64,
    stats: Arc<MediaStats>,
    send_buffer: usize,
}

impl Gateway {
    /// Checks one frame from `from` and hands it to its shard.
    fn deliver(&mut self, from: SocketAddr, frame: &[u8]) -> Result<(), Closed> {
        let Some(conn) = self.conns.get(&from) else {
            return Err(Closed::Stopped);
        };
        let ok = match frame.first() {
            Some(0..=3) => true,
            Some(20..=63 | 128..=191) => conn.shard.is_some(),
            _ => false,
        };
        if !ok {
            return Err(Closed::Garbage);
        }
        let shard = conn.shard.unwrap_or(0);
        let pushed = self
            .to_shards
            .get_mut(usize::from(shard))
            .is_some_and(|p| p.push(Handoff::TcpIn { from }, frame));
        if pushed {
            self.wake |= 1 << shard;
        } else {
            self.stats.tcp.frames_dropped.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Frames what shard `shard` sent to `to` into that connection's send buffer.
    fn queue(&mut self, shard: u8, to: SocketAddr, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&to) else {
            // Closed meanwhile.
            self.stats.tcp.frames_dropped.fetch_add(1, Relaxed);
            return;
        };
        conn.shard = Some(shard);
        let need = 2 + bytes.len();
        if conn.out.len() - conn.sent + need > self.send_buffer {
            self.stats.tcp.frames_dropped.fetch_add(1, Relaxed);
            return;
        }
        if conn.out.len() + need > self.send_buffer {
            conn.out.drain(..conn.sent);
            conn.sent = 0;
        }
        // `bytes` fits a slot, so its length fits two bytes.
        conn.out
            .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        conn.out.extend_from_slice(bytes);
        conn.flush.notify_one();
    }

    /// Writes what `peer`'s send buffer holds, as far as the socket takes it.
    fn write(&mut self, peer: SocketAddr, stream: &TcpStream) -> Result<(), Closed> {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return Ok(());
        };
        while conn.sent < conn.out.len() {
            match stream.try_write(&conn.out[conn.sent..]) {
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if conn.sent == conn.out.len() {
            conn.out.clear();
            conn.sent = 0;
        }
        Ok(())
    }

    fn pending(&self, peer: SocketAddr) -> bool {
        self.conns.get(&peer).is_some_and(|c| c.sent < c.out.len())
    }

    fn answered(&self, peer: SocketAddr) -> bool {
        self.conns.get(&peer).is_some_and(|c| c.shard.is_some())
    }
}

/// The thread's parts, made by [`crate::spawn`].
pub(crate) struct TcpPort {
    pub listener: std::net::TcpListener,
    pub config: TcpConfig,
    /// Rings to each shard, and from each shard.
    pub to_shards: Vec<Producer>,
    pub from_shards: Vec<Consumer>,
    /// Every thread's waker (ours among them).
    pub(crate) wakers: Arc<Wakers>,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<MediaStats>,
}

/// Binds the listening socket (`SO_REUSEADDR`, non-blocking).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

impl TcpPort {
    /// Runs the port until the media core stops.
    pub(crate) fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("media TCP runtime: {e}");
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, self.serve());
    }

    async fn serve(self) {
        let TcpPort {
            listener,
            config,
            to_shards,
            mut from_shards,
            wakers,
            stop,
            stats,
        } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("media TCP listener: {e}");
                return;
            }
        };
        let gw = Rc::new(RefCell::new(Gateway {
            to_shards,
            conns: FxHashMap::default(),
            wake: 0,
            stats: stats.clone(),
            send_buffer: config.send_buffer.max(2 + MAX_FRAME),
        }));
        let config = Rc::new(config);
        let me = wakers.tcp();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => admit(&gw, &config, &wakers, &stop, stream, peer),
                    Err(e) => {
                        // Out of descriptors and the like: the next accept may work.
                        tracing::debug!("media TCP accept: {e}");
                        tokio::task::yield_now().await;
                    }
                },
                _ = me.notified() => {}
            }
            if stop.load(Relaxed) {
                break;
            }
            let mut g = gw.borrow_mut();
            let mut more = false;
            for (i, c) in from_shards.iter_mut().enumerate() {
                // At most a ring's worth per shard per round, so accepting goes on.
                let mut budget = 1024;
                while c.pop(|what, bytes| {
                    if let Handoff::TcpOut { to } = what {
                        g.queue(i as u8, to, bytes);
                    }
                }) {
                    budget -= 1;
                    if budget == 0 {
                        more = true;
                        break;
                    }
                }
            }
            if more {
                me.notify_one();
            }
        }
        // Ending the loop drops every connection task with the runtime.
        gw.borrow_mut().conns.clear();
    }
}

/// Takes a new connection, or closes it when the cap is reached.
fn admit(
    gw: &Rc<RefCell<Gateway>>,
    config: &Rc<TcpConfig>,
    wakers: &Arc<Wakers>,
    stop: &Arc<AtomicBool>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let mut g = gw.borrow_mut();
    if g.conns.len() >= config.max_connections || g.conns.contains_key(&peer) {
        g.stats.tcp.refused.fetch_add(1, Relaxed);
        tracing::debug!(%peer, "media TCP connection refused: {} open", g.conns.len());
        return;
    }
    let _ = stream.set_nodelay(true);
    let flush = Rc::new(Notify::new());
    g.conns.insert(
        peer,
        Conn {
            shard: None,
            out: Vec::new(),
            sent: 0,
            flush: flush.clone(),
        },
    );
    g.stats.tcp.accepted.fetch_add(1, Relaxed);
    drop(g);
    let (gw, config, wakers, stop) = (gw.clone(), config.clone(), wakers.clone(), stop.clone());
    tokio::task::spawn_local(async move {
        let why = connection(&gw, &config, &wakers, &stop, &stream, peer, &flush).await;
        let mut g = gw.borrow_mut();
        g.conns.remove(&peer);
        match why {
            Closed::Oversized(_) | Closed::Garbage => {
                g.stats.tcp.bad_frames.fetch_add(1, Relaxed);
            }
            Closed::Handshake | Closed::Idle => {
                g.stats.tcp.timed_out.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        tracing::debug!(%peer, "media TCP connection closed: {why}");
    });
}

/// Reads, checks and hands on one connection's frames and writes its send buffer, until it
/// ends; says why it ended.
async fn connection(
    gw: &RefCell<Gateway>,
    config: &TcpConfig,
    wakers: &Wakers,
    stop: &AtomicBool,
    stream: &TcpStream,
    peer: SocketAddr,
    flush: &Notify,
) -> Closed {
    let start = Instant::now();
    let mut last_rx = start;
    let mut buf = [0u8; 2 + MAX_FRAME];
    let mut have = 0usize;
    loop {
        let (answered, pending) = {
            let g = gw.borrow();
            if !g.conns.contains_key(&peer) {
                return Closed::Stopped;
            }
            (g.answered(peer), g.pending(peer))
        };
        let deadline = if answered {
            last_rx + config.idle_timeout
        } else {
            start + config.handshake_timeout
        };
        tokio::select! {
            r = stream.readable() => {
                if let Err(e) = r {
                    return e.into();
                }
                // A few reads per wake, so one busy connection does not starve the others.
                for _ in 0..16 {
                    match stream.try_read(&mut buf[have..]) {
                        Ok(0) => return Closed::Eof,
                        Ok(n) => {
                            have += n;
                            last_rx = Instant::now();
                            match frames(gw, peer, &mut buf, &mut have) {
                                Ok(()) => {}
                                Err(e) => return e,
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return e.into(),
                    }
                }
                let mut g = gw.borrow_mut();
                while g.wake != 0 {
                    let s = g.wake.trailing_zeros() as usize;
                    g.wake &= g.wake - 1;
                    if let Some(w) = wakers.shard(s) {
                        w.wake();
                    }
                }
            }
            _ = flush.notified() => {}
            r = stream.writable(), if pending => {
                if let Err(e) = r {
                    return e.into();
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return if answered { Closed::Idle } else { Closed::Handshake };
            }
        }
        if stop.load(Relaxed) {
            return Closed::Stopped;
        }
        if let Err(e) = gw.borrow_mut().write(peer, stream) {
            return e;
        }
    }
}

/// Hands on every whole frame in `buf[..have]` and keeps the partial one at the front.
fn frames(
    gw: &RefCell<Gateway>,
    peer: SocketAddr,
    buf: &mut [u8],
    have: &mut usize,
) -> Result<(), Closed> {
    let mut at = 0;
    let mut g = gw.borrow_mut();
    while *have - at >= 2 {
        let len = usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
        if len > MAX_FRAME {
            return Err(Closed::Oversized(len));
        }
        if *have - at < 2 + len {
            break;
        }
        g.deliver(peer, &buf[at + 2..at + 2 + len])?;
        at += 2 + len;
    }
    buf.copy_within(at..*have, 0);
    *have -= at;
    Ok(())
}
