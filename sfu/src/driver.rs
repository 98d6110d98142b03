//! The driver: one thread that owns the UDP socket and the [`Engine`], passes it time,
//! datagrams and commands, and sends what it produces. The only media code that knows about
//! clocks and sockets.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::Certificate;
use tokio::sync::mpsc;

use crate::api::{Command, Event};
use crate::engine::Engine;

/// Datagrams read in one go before the engine's output is flushed.
const RECV_BATCH: usize = 64;

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
    let mut buf = vec![0u8; 2048];
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
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => engine.handle_receive(Instant::now(), from, &mut buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
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
        while let Some(t) = engine.poll_transmit() {
            match socket.try_send_to(&t.data, t.dest) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = socket.send_to(&t.data, t.dest).await;
                }
                Err(e) => tracing::trace!(dest = %t.dest, "media send: {e}"),
            }
            engine.recycle(t.data);
        }
        while let Some(e) = engine.poll_event() {
            if events.send(e).is_err() {
                return;
            }
        }
    }
}
