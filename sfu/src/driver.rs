//! The driver: one thread that owns the UDP socket and the [`Engine`], passes it time,
//! datagrams and commands, and sends what it produces. The only media code that knows about
//! clocks and sockets.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::Certificate;
use tokio::sync::mpsc;

use crate::api::{Command, Event};
use crate::batch::{BATCH, RecvBatch, SendBatch};
use crate::engine::{Engine, Transmit};

/// Receive batches handled before the engine's output is flushed.
const RECV_BATCHES: usize = 2;

/// Handles to a running media core.
pub struct MediaCore {
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Our DTLS fingerprint for SDP: (`sha-256`, `AB:CD:…`).
    pub fingerprint: (String, String),
    pub local_addr: SocketAddr,
}

/// Binds `addr` and starts the media thread.
pub fn spawn(addr: SocketAddr) -> std::io::Result<MediaCore> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let local_addr = socket.local_addr()?;
    let cert = Certificate::generate().map_err(|e| std::io::Error::other(e.to_string()))?;
    let engine = Engine::new(cert);
    let fingerprint = engine.fingerprint();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
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
            rt.block_on(run(socket, engine, cmd_rx, ev_tx));
        })?;
    Ok(MediaCore {
        commands: cmd_tx,
        events: ev_rx,
        fingerprint,
        local_addr,
    })
}

async fn run(
    socket: UdpSocket,
    mut engine: Engine,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
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
    loop {
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
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
                if r.is_err() {
                    continue;
                }
                for _ in 0..RECV_BATCHES {
                    match rx.recv(&socket) {
                        Ok(0) => break,
                        Ok(_) => rx.for_each(|from, d| engine.handle_receive(Instant::now(), from, d)),
                        Err(e) => {
                            tracing::debug!("media recv: {e}");
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                engine.handle_timeout(Instant::now());
            }
        }
        // Send everything the engine produced, a batch per system call.
        loop {
            while out.len() < BATCH {
                match engine.poll_transmit() {
                    Some(t) => out.push(t),
                    None => break,
                }
            }
            if out.is_empty() {
                break;
            }
            match tx.send(&socket, &out) {
                Ok(n) => {
                    for t in out.drain(..n.min(out.len())) {
                        engine.recycle(t.data);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::trace!("media send: {e}");
                    for t in out.drain(..) {
                        engine.recycle(t.data);
                    }
                }
            }
        }
        while let Some(e) = engine.poll_event() {
            if events.send(e).is_err() {
                return;
            }
        }
    }
}
