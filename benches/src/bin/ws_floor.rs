//! The floor under an idle participant's signalling cost on this machine: a bare WebSocket
//! server (tokio and tungstenite, as the server's signalling uses, nothing else) that answers
//! each binary message with one, and `--connections` clients in the same process that each
//! send one message every `--interval` (LiveKit's clients ping every 5 s) and wait for its
//! answer. Prints the server threads' CPU (from `/proc`, user and system) per connection per
//! second over `--measure`, once every client has connected.
//!
//! With `--raw 1` the server is a single thread of plain `epoll` (mio) echoing TCP bytes, no
//! runtime and no WebSocket framing, and the clients speak plain TCP: what the kernel alone
//! costs for a message and its answer every interval (the wake-up, the read, the write and,
//! on loopback, the delivery to the client, charged to the sender).
//!
//! With `--udp-interval S` each client also sends a 100-byte UDP datagram every `S` seconds
//! (the size of a STUN consent check; our load tester's clients send one every 4 s) to one
//! server socket, which echoes it: the rest of an idle participant's traffic. The raw server
//! serves that socket from its one `epoll` as well; the WebSocket server, from a task of its
//! runtime.
//!
//! `ws-floor --connections 1000 --interval 5 --measure 20 [--raw 1] [--udp-interval 4]`

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// The server's threads are named so, the clients' otherwise.
const SERVER_THREAD: &str = "floor-server";

struct Args {
    connections: usize,
    interval: Duration,
    measure: Duration,
    raw: bool,
    /// Zero: no datagrams.
    udp_interval: Duration,
}

/// Answers the clients have had: messages, datagrams.
static ANSWERS: [std::sync::atomic::AtomicU64; 2] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

fn answered(kind: usize) {
    ANSWERS[kind].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn answers() -> [u64; 2] {
    [0, 1].map(|k| ANSWERS[k].load(std::sync::atomic::Ordering::Relaxed))
}

/// The datagram each client sends every `udp_interval`: a STUN consent check's size.
const DATAGRAM: usize = 100;

fn args() -> Result<Args, String> {
    let mut a = Args {
        connections: 1000,
        interval: Duration::from_secs(5),
        measure: Duration::from_secs(20),
        raw: false,
        udp_interval: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--connections" => a.connections = n as usize,
            "--interval" => a.interval = Duration::from_secs(n),
            "--measure" => a.measure = Duration::from_secs(n),
            "--raw" => a.raw = n != 0,
            "--udp-interval" => a.udp_interval = Duration::from_secs(n),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// User and system clock ticks of this process's threads named `name`.
fn thread_ticks(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut ticks = 0;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks
}

async fn serve(listener: tokio::net::TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Binary(b) = m
                    && ws.send(Message::Binary(b)).await.is_err()
                {
                    break;
                }
            }
        });
    }
}

/// The WebSocket server's datagram echo.
async fn serve_udp(socket: tokio::net::UdpSocket) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let _ = socket.send_to(&buf[..n], from).await;
    }
}

/// The token of the raw server's UDP socket.
const UDP_TOKEN: mio::Token = mio::Token(usize::MAX);

/// The raw server: one thread, one `epoll`, every read echoed (TCP and UDP).
fn serve_raw(mut listener: mio::net::TcpListener, mut udp: mio::net::UdpSocket) {
    use mio::{Events, Interest, Poll, Token};
    use std::io::{Read, Write};
    let Ok(mut poll) = Poll::new() else { return };
    if poll
        .registry()
        .register(&mut listener, Token(0), Interest::READABLE)
        .is_err()
        || poll
            .registry()
            .register(&mut udp, UDP_TOKEN, Interest::READABLE)
            .is_err()
    {
        return;
    }
    let mut conns: Vec<Option<mio::net::TcpStream>> = vec![None];
    let mut events = Events::with_capacity(256);
    let mut buf = [0u8; 4096];
    loop {
        if poll.poll(&mut events, None).is_err() {
            return;
        }
        for e in events.iter() {
            if e.token() == UDP_TOKEN {
                while let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
                continue;
            }
            if e.token() == Token(0) {
                while let Ok((mut s, _)) = listener.accept() {
                    let _ = s.set_nodelay(true);
                    let token = Token(conns.len());
                    if poll
                        .registry()
                        .register(&mut s, token, Interest::READABLE)
                        .is_ok()
                    {
                        conns.push(Some(s));
                    }
                }
                continue;
            }
            let Some(Some(s)) = conns.get_mut(e.token().0) else {
                continue;
            };
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        conns[e.token().0] = None;
                        break;
                    }
                    Ok(n) => {
                        let _ = s.write_all(&buf[..n]);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// One raw client: 16 bytes every `interval`, then its echo.
async fn raw_client(addr: std::net::SocketAddr, interval: Duration, offset: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let _ = s.set_nodelay(true);
    tokio::spawn(async move {
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(interval);
        let mut buf = [0u8; 16];
        loop {
            tick.tick().await;
            if s.write_all(&[0u8; 16]).await.is_err() || s.read_exact(&mut buf).await.is_err() {
                return;
            }
            answered(0);
        }
    });
    true
}

/// One client's datagrams: `DATAGRAM` bytes every `interval` to `server`, then the echo
/// (given up after a second, so that a lost one does not stop the client).
async fn udp_client(server: std::net::SocketAddr, interval: Duration, offset: Duration) -> bool {
    let Ok(s) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    if s.connect(server).await.is_err() {
        return false;
    }
    tokio::spawn(async move {
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(interval);
        let mut buf = [0u8; 2048];
        loop {
            tick.tick().await;
            if s.send(&[0u8; DATAGRAM]).await.is_err() {
                return;
            }
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), s.recv(&mut buf)).await
            {
                answered(1);
            }
        }
    });
    true
}

/// One WebSocket client: a binary message every `interval`, then its answer.
async fn ws_client(addr: std::net::SocketAddr, interval: Duration, offset: Duration) -> bool {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await else {
        return false;
    };
    tokio::spawn(async move {
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if ws
                .send(Message::Binary(vec![0u8; 16].into()))
                .await
                .is_err()
            {
                return;
            }
            if !matches!(ws.next().await, Some(Ok(_))) {
                return;
            }
            answered(0);
        }
    });
    true
}

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws-floor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Kept alive until the end: the WebSocket server runs on it.
    let server = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let (addr, udp_addr) = if a.raw {
        let any = "127.0.0.1:0".parse().expect("address");
        let listener = mio::net::TcpListener::bind(any).expect("bind");
        let udp = mio::net::UdpSocket::bind(any).expect("bind");
        let addrs = (
            listener.local_addr().expect("address"),
            udp.local_addr().expect("address"),
        );
        std::thread::Builder::new()
            .name(SERVER_THREAD.into())
            .spawn(move || serve_raw(listener, udp))
            .expect("server thread");
        addrs
    } else {
        let (listener, udp) = server.block_on(async {
            (
                tokio::net::TcpListener::bind("127.0.0.1:0").await,
                tokio::net::UdpSocket::bind("127.0.0.1:0").await,
            )
        });
        let (listener, udp) = (listener.expect("bind"), udp.expect("bind"));
        let addrs = (
            listener.local_addr().expect("address"),
            udp.local_addr().expect("address"),
        );
        server.spawn(serve(listener));
        server.spawn(serve_udp(udp));
        addrs
    };
    let clients = tokio::runtime::Builder::new_multi_thread()
        .thread_name("floor-client")
        .enable_all()
        .build()
        .expect("client runtime");
    let (n, interval, raw, udp_interval) = (a.connections, a.interval, a.raw, a.udp_interval);
    let connected = clients.block_on(async move {
        let mut connected = 0;
        for i in 0..n {
            // Spread over the interval, as clients that joined over time are.
            let offset = interval.mul_f64(i as f64 / n as f64);
            let ok = if raw {
                raw_client(addr, interval, offset).await
            } else {
                ws_client(addr, interval, offset).await
            };
            let udp_ok = udp_interval.is_zero()
                || udp_client(
                    udp_addr,
                    udp_interval,
                    udp_interval.mul_f64(i as f64 / n as f64),
                )
                .await;
            connected += usize::from(ok && udp_ok);
        }
        // Every client sends at least once before the window opens.
        tokio::time::sleep(interval.max(udp_interval) + Duration::from_secs(1)).await;
        connected
    });
    if connected < n {
        eprintln!("ws-floor: {connected} of {n} clients connected");
        return std::process::ExitCode::FAILURE;
    }
    // `/proc` counts in USER_HZ, 100 on Linux whatever the kernel's own tick.
    let hz = 100.0;
    let (before, answers_before) = (thread_ticks(SERVER_THREAD), answers());
    std::thread::sleep(a.measure);
    let (after, answers_after) = (thread_ticks(SERVER_THREAD), answers());
    let cpu_s = (after - before) as f64 / hz;
    let per = cpu_s * 1e6 / a.measure.as_secs_f64() / n as f64;
    let datagrams = if udp_interval.is_zero() {
        String::new()
    } else {
        format!(" and a datagram every {} s", udp_interval.as_secs())
    };
    println!(
        "ws-floor{}: {n} connections, a message every {} s{datagrams} each: server {cpu_s:.2} CPU s over {} s, {per:.1} us/s per connection; answered {} messages, {} datagrams",
        if raw { " (raw epoll)" } else { "" },
        interval.as_secs(),
        a.measure.as_secs(),
        answers_after[0] - answers_before[0],
        answers_after[1] - answers_before[1],
    );
    std::process::ExitCode::SUCCESS
}
