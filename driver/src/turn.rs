//! The embedded TURN server's sockets: one thread runs [`lkr_turn::TurnServer`] behind a UDP
//! port, a TCP port and a TLS port (or plain TCP behind a TLS-terminating load balancer,
//! `external_tls`), with one UDP relay socket per allocation in the relay port range.
//!
//! Relayed media leaves the relay socket for this node's media port like any client's
//! datagram, so the media engine sees a relayed client as an ordinary source address. The
//! TURN machine accepts no other peer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lkr_turn::{
    Client, Credentials, Handled, Output, Transport, TurnConfig, TurnServer, frame_len,
};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes waiting to be written to one stream client; whole messages past it are dropped.
const STREAM_BUFFER: usize = 256 * 1024;
/// A stream client without an allocation after this long is closed.
pub const STREAM_HANDSHAKE: Duration = Duration::from_secs(10);
/// A stream client silent for this long is closed (its allocation with it).
pub const STREAM_IDLE: Duration = Duration::from_secs(120);
/// Stream connections at once (the default of [`TurnSettings::max_streams`]).
pub const MAX_STREAMS: usize = 1024;
/// Tries to find a free port in the relay range.
const RELAY_TRIES: u32 = 50;

/// Where the TURN server listens and relays.
#[derive(Clone)]
pub struct TurnSettings {
    /// TURN over UDP (`turn.udp_port`).
    pub udp: Option<SocketAddr>,
    /// TURN over TCP (the same port number as UDP, as RFC 8656 assigns 3478 to both).
    pub tcp: Option<SocketAddr>,
    /// TURN over TLS (`turn.tls_port`): the certificate, or `None` for plain TCP behind a
    /// TLS-terminating load balancer (`turn.external_tls`).
    pub tls: Option<(SocketAddr, Option<Arc<rustls::ServerConfig>>)>,
    /// The address relay sockets bind.
    pub relay_bind_ip: IpAddr,
    /// The address relayed addresses are given with (this node's advertised address).
    pub relay_ip: IpAddr,
    /// `turn.relay_range_start..=relay_range_end` (0, 0: any free port).
    pub relay_ports: (u16, u16),
    /// The only address relayed to: this node's media port, as clients name it.
    pub media_addr: SocketAddr,
    /// Where relayed datagrams are actually sent (the media socket's local address; the
    /// same as `media_addr` unless the node sits behind a NAT).
    pub media_local: SocketAddr,
    /// API keys, for the credentials.
    pub keys: BTreeMap<String, String>,
    /// Allocations at once.
    pub max_allocations: usize,
    /// A TCP/TLS client without an allocation after this long is closed
    /// ([`STREAM_HANDSHAKE`]).
    pub stream_handshake: Duration,
    /// A TCP/TLS client silent for this long is closed ([`STREAM_IDLE`]).
    pub stream_idle: Duration,
    /// TCP/TLS connections at once ([`MAX_STREAMS`]); more are closed when accepted.
    pub max_streams: usize,
}

impl std::fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSettings")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.as_ref().map(|t| (t.0, t.1.is_some())))
            .field("relay_ip", &self.relay_ip)
            .field("relay_ports", &self.relay_ports)
            .field("media_addr", &self.media_addr)
            .finish_non_exhaustive()
    }
}

/// The bound addresses of a running TURN server.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnAddrs {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

/// A TLS server configuration from PEM files (`turn.cert_file`, `turn.key_file`).
pub fn tls_config(cert_file: &str, key_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{cert_file}: no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("{key_file}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

struct Relay {
    /// A second handle on the relay socket for sending: a plain non-blocking send needs no
    /// readiness from the runtime (a socket just opened has none yet).
    send: std::net::UdpSocket,
    close: Rc<Notify>,
}

struct Stream {
    out: Vec<u8>,
    flush: Rc<Notify>,
}

/// The sockets side, apart from the machine so both can be borrowed at once.
struct Io {
    /// The TURN UDP port, for sending (see [`Relay::send`]).
    udp: Option<std::net::UdpSocket>,
    relays: FxHashMap<SocketAddr, Relay>,
    streams: FxHashMap<Client, Stream>,
    relay_bind_ip: IpAddr,
    relay_ip: IpAddr,
    relay_ports: (u16, u16),
    next_port: u32,
    media_addr: SocketAddr,
    media_local: SocketAddr,
    stream_handshake: Duration,
    stream_idle: Duration,
    max_streams: usize,
}

struct State {
    server: TurnServer,
    io: Io,
    /// Wakes the timer when a new deadline may be earlier.
    rearm: Rc<Notify>,
}

type Shared = Rc<RefCell<State>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Io {
    /// Opens a relay socket in the range (anywhere when the range is 0..0) and starts
    /// reading it.
    fn bind_relay(&mut self, me: &Shared) -> Option<SocketAddr> {
        let (lo, hi) = self.relay_ports;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        for _ in 0..RELAY_TRIES.min(span) {
            let port = if lo == 0 {
                0
            } else {
                self.next_port = (self.next_port + 1) % span;
                lo + self.next_port as u16
            };
            let Ok(s) = std::net::UdpSocket::bind(SocketAddr::new(self.relay_bind_ip, port)) else {
                continue;
            };
            let (Ok(()), Ok(local)) = (s.set_nonblocking(true), s.local_addr()) else {
                continue;
            };
            let addr = SocketAddr::new(self.relay_ip, local.port());
            let Ok(send) = s.try_clone() else {
                continue;
            };
            let Ok(socket) = UdpSocket::from_std(s) else {
                continue;
            };
            let socket = Rc::new(socket);
            let close = Rc::new(Notify::new());
            self.relays.insert(
                addr,
                Relay {
                    send,
                    close: close.clone(),
                },
            );
            let media = (self.media_local, self.media_addr);
            tokio::task::spawn_local(relay_task(me.clone(), addr, socket, close, media));
            return Some(addr);
        }
        None
    }

    /// Sends `msg` to `client` (a datagram, or queued on its stream).
    fn send_to_client(&mut self, client: Client, msg: &[u8]) {
        match client.transport {
            Transport::Udp => {
                if let Some(u) = &self.udp {
                    let _ = u.send_to(msg, client.remote);
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(s) = self.streams.get_mut(&client)
                    && s.out.len() + msg.len() <= STREAM_BUFFER
                {
                    s.out.extend_from_slice(msg);
                    s.flush.notify_one();
                }
            }
        }
    }
}

impl State {
    /// One message from a client.
    fn on_client(&mut self, me: &Shared, client: Client, msg: &[u8], out: &mut Vec<u8>) {
        let State { server, io, .. } = self;
        let handled = server.handle_client(
            Instant::now().into_std(),
            unix_now(),
            client,
            msg,
            out,
            &mut || io.bind_relay(me),
        );
        match handled {
            Ok(Handled::Reply) => io.send_to_client(client, out),
            Ok(Handled::Relay {
                relay,
                peer,
                payload,
            }) => {
                // The core relays to the media address only; send it where that socket is.
                let to = if peer == io.media_addr {
                    io.media_local
                } else {
                    peer
                };
                if let (Some(r), Some(p)) = (io.relays.get(&relay), msg.get(payload)) {
                    let _ = r.send.send_to(p, to);
                }
            }
            Ok(Handled::Nothing) => {}
            Err(e) => tracing::trace!(remote = %client.remote, "TURN message dropped: {e}"),
        }
        self.drain();
    }

    /// Closes the relay sockets of ended allocations.
    fn drain(&mut self) {
        while let Some(Output::Released { relay }) = self.server.poll_output() {
            if let Some(r) = self.io.relays.remove(&relay) {
                r.close.notify_one();
            }
        }
        self.rearm.notify_one();
    }
}

/// Reads one relay socket until its allocation ends.
async fn relay_task(
    me: Shared,
    addr: SocketAddr,
    socket: Rc<UdpSocket>,
    close: Rc<Notify>,
    (media_local, media_addr): (SocketAddr, SocketAddr),
) {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let from = if from == media_local { media_addr } else { from };
                let mut st = me.borrow_mut();
                let State { server, io, .. } = &mut *st;
                if let Some(client) = server.handle_peer(Instant::now().into_std(), addr, from, &buf[..n], &mut out) {
                    io.send_to_client(client, &out);
                }
            }
            _ = close.notified() => break,
        }
    }
}

/// Serves TURN over UDP.
async fn udp_task(me: Shared, socket: Rc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(1024);
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let client = Client {
            transport: Transport::Udp,
            remote: from,
        };
        me.borrow_mut().on_client(&me, client, &buf[..n], &mut out);
    }
}

/// Accepts TURN over TCP (`tls: None`) or TLS.
async fn stream_listener(
    me: Shared,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((tcp, remote)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let client = Client {
            transport: if tls.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            },
            remote,
        };
        {
            let mut st = me.borrow_mut();
            if st.io.streams.len() >= st.io.max_streams || st.io.streams.contains_key(&client) {
                tracing::debug!(%remote, "TURN connection refused: too many");
                continue;
            }
            st.io.streams.insert(
                client,
                Stream {
                    out: Vec::new(),
                    flush: Rc::new(Notify::new()),
                },
            );
        }
        let _ = tcp.set_nodelay(true);
        let me = me.clone();
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            let why = match tls {
                None => stream_task(&me, client, tcp).await,
                Some(acceptor) => {
                    let limit = me.borrow().io.stream_handshake;
                    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => stream_task(&me, client, s).await,
                        Ok(Err(e)) => format!("TLS handshake: {e}"),
                        Err(_) => "TLS handshake timed out".into(),
                    }
                }
            };
            let mut st = me.borrow_mut();
            st.io.streams.remove(&client);
            st.server.handle_closed(client);
            st.drain();
            tracing::debug!(remote = %client.remote, "TURN connection closed: {why}");
        });
    }
}

/// Reads framed messages from one stream client and writes what is queued for it.
async fn stream_task<S: AsyncRead + AsyncWrite + Unpin>(
    me: &Shared,
    client: Client,
    s: S,
) -> String {
    let (mut rd, mut wr) = tokio::io::split(s);
    let Some(flush) = me.borrow().io.streams.get(&client).map(|s| s.flush.clone()) else {
        return "closed".into();
    };
    let start = Instant::now();
    let mut last_rx = start;
    let (handshake, idle) = {
        let st = me.borrow();
        (st.io.stream_handshake, st.io.stream_idle)
    };
    let mut buf = vec![0u8; lkr_turn::MAX_MESSAGE * 2];
    let mut have = 0usize;
    let mut out = Vec::with_capacity(1024);
    loop {
        let allocated = me.borrow().server.has_allocation(client);
        let deadline = if allocated {
            last_rx + idle
        } else {
            start + handshake
        };
        tokio::select! {
            r = rd.read(&mut buf[have..]) => {
                let n = match r {
                    Ok(0) => return "peer closed".into(),
                    Ok(n) => n,
                    Err(e) => return e.to_string(),
                };
                have += n;
                last_rx = Instant::now();
                let mut at = 0;
                loop {
                    match frame_len(&buf[at..have]) {
                        Ok(Some(len)) if at + len <= have => {
                            me.borrow_mut().on_client(me, client, &buf[at..at + len], &mut out);
                            at += len;
                        }
                        Ok(Some(len)) if len > buf.len() => return "frame too large".into(),
                        Ok(_) => break,
                        Err(e) => return format!("bad frame: {e}"),
                    }
                }
                buf.copy_within(at..have, 0);
                have -= at;
            }
            _ = flush.notified() => {
                let taken = me.borrow_mut().io.streams.get_mut(&client).map(|s| std::mem::take(&mut s.out));
                let mut data = taken.unwrap_or_default();
                if !data.is_empty() {
                    if let Err(e) = wr.write_all(&data).await {
                        return e.to_string();
                    }
                    // Give the buffer back so its capacity is reused.
                    data.clear();
                    if let Some(s) = me.borrow_mut().io.streams.get_mut(&client)
                        && s.out.is_empty()
                    {
                        s.out = data;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return if allocated { "idle".into() } else { "no allocation in time".into() };
            }
        }
    }
}

/// Runs the timers.
async fn timer_task(me: Shared) {
    let rearm = me.borrow().rearm.clone();
    loop {
        let next = me.borrow().server.poll_timeout();
        let at = next.map_or(
            Instant::now() + Duration::from_secs(3600),
            Instant::from_std,
        );
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                let mut st = me.borrow_mut();
                st.server.handle_timeout(Instant::now().into_std());
                st.drain();
            }
            _ = rearm.notified() => {}
        }
    }
}

/// Binds the TURN ports and starts the TURN thread.
pub fn spawn(settings: TurnSettings) -> std::io::Result<TurnAddrs> {
    let udp = settings.udp.map(std::net::UdpSocket::bind).transpose()?;
    let tcp = settings.tcp.map(crate::tcp::bind).transpose()?;
    let tls = match &settings.tls {
        Some((addr, cfg)) => Some((crate::tcp::bind(*addr)?, cfg.clone())),
        None => None,
    };
    let addrs = TurnAddrs {
        udp: udp.as_ref().map(|u| u.local_addr()).transpose()?,
        tcp: tcp.as_ref().map(|t| t.local_addr()).transpose()?,
        tls: tls.as_ref().map(|t| t.0.local_addr()).transpose()?,
    };
    if let Some(u) = &udp {
        u.set_nonblocking(true)?;
    }
    let mut config = TurnConfig::new(settings.media_addr);
    config.max_allocations = settings.max_allocations;
    let server = TurnServer::new(config, Credentials::new(settings.keys.clone()));
    std::thread::Builder::new()
        .name("media-turn".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("TURN runtime: {e}");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let udp_send = udp.as_ref().and_then(|u| u.try_clone().ok());
                let udp = udp.and_then(|u| UdpSocket::from_std(u).ok()).map(Rc::new);
                let me: Shared = Rc::new(RefCell::new(State {
                    server,
                    io: Io {
                        udp: udp_send,
                        relays: FxHashMap::default(),
                        streams: FxHashMap::default(),
                        relay_bind_ip: settings.relay_bind_ip,
                        relay_ip: settings.relay_ip,
                        relay_ports: settings.relay_ports,
                        next_port: 0,
                        media_addr: settings.media_addr,
                        media_local: settings.media_local,
                        stream_handshake: settings.stream_handshake,
                        stream_idle: settings.stream_idle,
                        max_streams: settings.max_streams,
                    },
                    rearm: Rc::new(Notify::new()),
                }));
                if let Some(u) = udp {
                    tokio::task::spawn_local(udp_task(me.clone(), u));
                }
                if let Some(l) = tcp.and_then(|l| TcpListener::from_std(l).ok()) {
                    tokio::task::spawn_local(stream_listener(me.clone(), l, None));
                }
                if let Some((l, cfg)) = tls
                    && let Ok(l) = TcpListener::from_std(l)
                {
                    // External TLS: the load balancer terminates it and passes TCP on.
                    let acceptor = cfg.map(tokio_rustls::TlsAcceptor::from);
                    tokio::task::spawn_local(stream_listener(me.clone(), l, acceptor));
                }
                timer_task(me).await;
            });
        })?;
    Ok(addrs)
}
