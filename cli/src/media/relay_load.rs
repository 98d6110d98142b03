//! `perf relay-load-test`: the audio load of `perf load-test --audio-publishers 1`, driven
//! through the plain UDP relay of `perf udp-relay`, so that the server's CPU per forwarded
//! packet can be set beside a relay's that does nothing but move the same datagrams.
//!
//! One sender socket sends a datagram every 20 ms, of the size the server forwards for the
//! load tester's audio publisher: a 12-byte RTP header, the same 80-byte Opus-shaped
//! payload (ending with the send-time trailer from which latency is measured) and a 16-byte
//! tag in place of SRTP's AES-GCM tag, 108 bytes in all. `--datagram-size` and `--rate`
//! change both (a video stream's packets: e.g. 1128 bytes, a full 1100-byte payload,
//! 190 a second for 720p at 1.7 Mbit/s), with the trailer always at the end of the payload,
//! before the tag. `--subscribers` receiver sockets
//! register with the relay first (each retries until the relay answers) and count what
//! arrives. They are the load tester's own sockets ([`PeerSocket`]: the datagrams the kernel
//! dropped on them are counted apart from the relay's loss), spread over `--threads` worker
//! threads as in `perf load-test`.
//!
//! The sender starts once every receiver is registered; after a second of warm-up the
//! measured window lasts `--duration`. With `--relay-pid` the relay's CPU time (user and
//! system, /proc) over that window is divided by the packets the receivers got in it, and
//! printed in the `Steady state: …` line of `perf load-test --server-pid`. Loss is what each
//! registered receiver did not get of what was sent, counted a second after the sender
//! stops.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use lkr_client::udp::{PeerSocket, SocketDrops, WAIT_BUCKETS};
use serde_json::json;

use super::MediaError;
use super::loadtest::{
    AUDIO_PAYLOAD_LEN, Measured, Sample, Steady, TRAILER_LEN, TRAILER_MAGIC, Usage, Workers,
    add_waits, gather, latency_json, measure, percentile, process_usage, socket_drops_line,
    socket_wait_json, socket_wait_line, split_loss, usage_json, usage_line, usage_over,
    window_figures, worker_threads,
};
use super::relay::{FULL_REPLY, JOIN_MARKER, JOINED_REPLY, seal_context};
use crate::admin::Report;
use crate::admin::command::parse_duration;

/// `perf relay-load-test` flags.
#[derive(Debug, Clone, Args)]
pub struct RelayLoadTestArgs {
    /// The relay's address (`perf udp-relay --bind`)
    #[arg(long)]
    pub relay: SocketAddr,
    /// Also report the CPU time and peak memory of the relay process (Linux /proc)
    #[arg(long, value_name = "PID")]
    pub relay_pid: Option<u32>,
    /// Receiver sockets, each getting every datagram sent
    #[arg(long, default_value_t = 100)]
    pub subscribers: u32,
    /// How long to measure once every receiver is registered and a second of warm-up has
    /// passed, e.g. 30s or 1m
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Worker threads the receivers are spread over (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Receive buffer of each receiver socket in bytes (SO_RCVBUF; default: the system's)
    #[arg(long, value_name = "BYTES")]
    pub recv_buffer: Option<usize>,
    /// Size of each datagram in bytes (default: a forwarded audio packet's, 108)
    #[arg(long, value_name = "BYTES", default_value_t = DATAGRAM_LEN as u16,
          value_parser = clap::value_parser!(u16).range(MIN_DATAGRAM_LEN as i64..=MAX_DATAGRAM_LEN as i64))]
    pub datagram_size: u16,
    /// Datagrams sent per second (default: one 20 ms audio frame each, 50)
    #[arg(long, value_name = "PER_SECOND", default_value_t = AUDIO_RATE,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Datagrams sent back to back at a time, as a video frame's packets leave a publisher
    /// together (the rate stays `--rate`: a burst every BURST/RATE seconds)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub burst: u32,
    /// The relay seals each copy (`perf udp-relay --seal`): each receiver opens what it gets
    /// with an SRTP context of its own before counting it
    #[arg(long)]
    pub sealed: bool,
}

/// RTP's fixed header.
const RTP_HEADER_LEN: usize = 12;
/// SRTP's AES-128-GCM tag (the profile our client negotiates first).
const SRTP_TAG_LEN: usize = 16;
/// One datagram: what the server sends each subscriber for the audio publisher.
pub const DATAGRAM_LEN: usize = RTP_HEADER_LEN + AUDIO_PAYLOAD_LEN + SRTP_TAG_LEN;
/// Datagrams a second of the audio publisher: one 20 ms Opus frame each.
const AUDIO_RATE: u32 = 50;
/// The smallest datagram that holds a header, a payload byte, the trailer and the tag.
const MIN_DATAGRAM_LEN: usize = RTP_HEADER_LEN + 1 + TRAILER_LEN + SRTP_TAG_LEN;
/// The largest: what fits an Ethernet MTU's IPv4 UDP datagram.
const MAX_DATAGRAM_LEN: usize = 1472;
/// Sending before the measured window starts.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long a receiver waits for the relay's answer before registering again.
const REGISTER_WAIT: Duration = Duration::from_millis(200);
/// Registrations a receiver sends at most.
const REGISTER_TRIES: u32 = 50;
/// Where the send-time trailer sits in a datagram of `len` bytes: at the end of the
/// payload, before the tag.
const fn trailer_at(len: usize) -> usize {
    len - SRTP_TAG_LEN - TRAILER_LEN
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes datagram `n` into `buf` (at least [`MIN_DATAGRAM_LEN`] bytes): RTP header
/// (version 2, payload type 111), the Opus-shaped payload with its trailer stamped now, and
/// a zero tag.
fn audio_datagram(buf: &mut [u8], n: u32, ts_base: u32, ssrc: u32) {
    let at = trailer_at(buf.len());
    buf[0] = 0x80;
    buf[1] = 111;
    buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&ts_base.wrapping_add(n.wrapping_mul(960)).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    // TOC byte of CELT 20 ms, then filler, as `perf load-test`'s audio publisher.
    buf[RTP_HEADER_LEN] = 31 << 3;
    buf[RTP_HEADER_LEN + 1..at].fill((n % 251) as u8);
    buf[at..at + 4].copy_from_slice(&TRAILER_MAGIC.to_be_bytes());
    buf[at + 4..at + 12].copy_from_slice(&unix_micros().to_be_bytes());
    buf[at + 12..].fill(0);
}

/// Whether `d` has the shape of one of our datagrams (the relay's answers do not).
fn rtp_shaped(d: &[u8]) -> bool {
    d.len() >= MIN_DATAGRAM_LEN && d[0] == 0x80
}

/// The send time of one of our datagrams; `None` for anything else (the relay's answers).
fn datagram_time(d: &[u8]) -> Option<u64> {
    if !rtp_shaped(d) {
        return None;
    }
    let at = trailer_at(d.len());
    if d[at..at + 4] != TRAILER_MAGIC.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(d[at + 4..at + 12].try_into().ok()?))
}

/// Counters shared by the receivers and the sender.
#[derive(Debug, Default)]
struct Live {
    registered: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    packets: AtomicU64,
    /// The measured window is on: latencies are kept.
    measuring: AtomicBool,
}

/// What one receiver saw.
#[derive(Debug, Default)]
struct ReceiverResult {
    packets: u64,
    /// With `--sealed`: datagrams that did not open.
    unopened: u64,
    latencies_us: Vec<u32>,
    socket_drops: Option<u64>,
    socket_waits: [u64; WAIT_BUCKETS],
}

/// The local address to bind receivers and the sender to: the relay's loopback if it is on
/// one, else any address of its family.
fn local_for(relay: SocketAddr) -> SocketAddr {
    let ip = match relay.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Runs the relay load test and returns its report.
pub async fn run(args: &RelayLoadTestArgs) -> Result<Report, MediaError> {
    if args.subscribers == 0 {
        return Err(MediaError::BadArgument(
            "--subscribers must be at least 1".into(),
        ));
    }
    let threads = worker_threads(args.threads)?;
    let relay_start = args.relay_pid.and_then(process_usage);
    let self_start = process_usage(std::process::id());
    let started = Instant::now();
    let live = Arc::new(Live::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = Workers::start(threads)?;
    let local = local_for(args.relay);
    let total = u64::from(args.subscribers);

    let mut tasks = Vec::new();
    for n in 0..args.subscribers as usize {
        let (live, stop) = (live.clone(), stop.clone());
        let (relay, recv_buffer, sealed) = (args.relay, args.recv_buffer, args.sealed);
        tasks.push(workers.spawn(n, async move {
            receiver(relay, local, (recv_buffer, sealed), &live, &stop).await
        }));
    }
    let settle = Instant::now() + Duration::from_secs(20);
    let done = |l: &Live| {
        l.registered.load(Ordering::Relaxed)
            + l.refused.load(Ordering::Relaxed)
            + l.failed.load(Ordering::Relaxed)
    };
    while done(&live) < total && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sender = tokio::net::UdpSocket::bind(local).await?;
    let every = Duration::from_secs(1) * args.burst / args.rate;
    let sending = tokio::spawn(send(
        sender,
        args.relay,
        (usize::from(args.datagram_size), every, args.burst),
        live.clone(),
        stop.clone(),
    ));
    let progress = tokio::spawn(progress_line(live.clone(), stop.clone(), total));
    tokio::time::sleep(WARM_UP).await;

    live.measuring.store(true, Ordering::Relaxed);
    let Measured {
        start: run_start,
        end: run_end,
        time: run_time,
        steady,
        interrupted,
    } = measure(args.relay_pid, &live.packets, args.duration).await;
    live.measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let send_error = sending.await.ok().and_then(Result::err);
    let results = gather(&mut tasks).await;
    workers.stop();
    let _ = progress.await;
    let relay_end = args.relay_pid.and_then(process_usage);
    let self_end = process_usage(std::process::id());
    Ok(summarise(&Summary {
        args,
        threads,
        run_time,
        total_time: started.elapsed(),
        interrupted,
        registered: live.registered.load(Ordering::Relaxed),
        refused: live.refused.load(Ordering::Relaxed),
        failed: live.failed.load(Ordering::Relaxed),
        sent: live.sent.load(Ordering::Relaxed),
        send_error,
        results,
        relay: relay_start.zip(relay_end),
        client: self_start.zip(self_end),
        steady,
        window: (run_start, run_end),
    }))
}

/// Sends `burst` datagrams of `size` bytes back to back `every` so often until the run
/// stops.
async fn send(
    socket: tokio::net::UdpSocket,
    relay: SocketAddr,
    (size, every, burst): (usize, Duration, u32),
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut buf = vec![0u8; size];
    let (ts_base, ssrc): (u32, u32) = (rand::random(), rand::random());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..burst {
            audio_datagram(&mut buf, n, ts_base, ssrc);
            socket
                .send_to(&buf, relay)
                .await
                .map_err(|e| format!("sending to {relay}: {e}"))?;
            live.sent.fetch_add(1, Ordering::Relaxed);
            n = n.wrapping_add(1);
        }
    }
    Ok(())
}

/// One receiver: registers with the relay, then counts what arrives until a second after the
/// run stops (when `sealed`, what opens under its own SRTP context). `None` when it could
/// not register.
async fn receiver(
    relay: SocketAddr,
    local: SocketAddr,
    (recv_buffer, sealed): (Option<usize>, bool),
    live: &Live,
    stop: &AtomicBool,
) -> Option<ReceiverResult> {
    let drops = Arc::new(SocketDrops::default());
    let Ok(mut socket) = PeerSocket::bind(local, recv_buffer, drops.clone(), 0).await else {
        live.failed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let mut buf = vec![0u8; 2048];
    let mut answer = None;
    for _ in 0..REGISTER_TRIES {
        if socket.send_to(JOIN_MARKER, relay).await.is_err() {
            break;
        }
        let deadline = tokio::time::Instant::now() + REGISTER_WAIT;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            if from == relay && (&buf[..n] == JOINED_REPLY || &buf[..n] == FULL_REPLY) {
                answer = Some(&buf[..n] == JOINED_REPLY);
                break;
            }
        }
        if answer.is_some() {
            break;
        }
    }
    match answer {
        Some(true) => live.registered.fetch_add(1, Ordering::Relaxed),
        Some(false) => {
            live.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        None => {
            live.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let mut result = ReceiverResult::default();
    let mut opener = sealed.then(seal_context);
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let mut stopping_at: Option<Instant> = None;
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { break };
                if let Some(ctx) = opener.as_mut() {
                    // A late answer to a repeated registration is not a copy that failed
                    // to open. The plaintext keeps its place; the tag's bytes stay behind it.
                    if !rtp_shaped(&buf[..n]) {
                        continue;
                    }
                    if ctx.unprotect_rtp(&mut buf[..n]).is_err() {
                        result.unopened += 1;
                        continue;
                    }
                }
                let Some(sent) = datagram_time(&buf[..n]) else { continue };
                result.packets += 1;
                live.packets.fetch_add(1, Ordering::Relaxed);
                if live.measuring.load(Ordering::Relaxed) {
                    let us = unix_micros().saturating_sub(sent).min(u64::from(u32::MAX));
                    result.latencies_us.push(us as u32);
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
    result.socket_drops = drops.total();
    result.socket_waits = drops.waits();
    Some(result)
}

async fn progress_line(live: Arc<Live>, stop: Arc<AtomicBool>, total: u64) {
    use std::io::IsTerminal as _;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        eprint!(
            "{}[{:>4}s] registered {}/{} (refused {}, failed {}) | sent {} | received {} packets   {}",
            if tty { "\r" } else { "" },
            start.elapsed().as_secs(),
            live.registered.load(Ordering::Relaxed),
            total,
            live.refused.load(Ordering::Relaxed),
            live.failed.load(Ordering::Relaxed),
            live.sent.load(Ordering::Relaxed),
            live.packets.load(Ordering::Relaxed),
            if tty { "" } else { "\n" },
        );
    }
    if tty {
        eprintln!();
    }
}

struct Summary<'a> {
    args: &'a RelayLoadTestArgs,
    threads: usize,
    run_time: Duration,
    total_time: Duration,
    interrupted: bool,
    registered: u64,
    refused: u64,
    failed: u64,
    sent: u64,
    send_error: Option<String>,
    results: Vec<ReceiverResult>,
    relay: Option<(Usage, Usage)>,
    client: Option<(Usage, Usage)>,
    steady: Steady,
    window: (Sample, Sample),
}

fn summarise(s: &Summary<'_>) -> Report {
    let a = s.args;
    let mut packets = 0u64;
    let mut lost = 0u64;
    let (mut lost_ours, mut lost_elsewhere) = (0u64, 0u64);
    let (mut socket_drops, mut drops_counted) = (0u64, false);
    let mut waits = [0u64; WAIT_BUCKETS];
    let mut latencies: Vec<f64> = Vec::new();
    let mut unopened = 0u64;
    for r in &s.results {
        packets += r.packets;
        unopened += r.unopened;
        let l = s.sent.saturating_sub(r.packets);
        lost += l;
        let (ours, elsewhere) = split_loss(l, r.socket_drops);
        lost_ours += ours;
        lost_elsewhere += elsewhere;
        if let Some(d) = r.socket_drops {
            socket_drops += d;
            drops_counted = true;
        }
        add_waits(&mut waits, &r.socket_waits);
        latencies.extend(r.latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
    }
    latencies.sort_by(f64::total_cmp);
    let loss_pct = if packets + lost > 0 {
        lost as f64 * 100.0 / (packets + lost) as f64
    } else {
        0.0
    };
    let lat = |p| percentile(&latencies, p);
    let mut human = String::new();
    let _ = writeln!(
        human,
        "Relay load test against {}: {:.1} s measured{}; 1 sender ({}-byte datagrams, {} a second{}{}), {} subscribers{}",
        a.relay,
        s.run_time.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" },
        a.datagram_size,
        a.rate,
        if a.burst > 1 {
            format!(", {} back to back at a time", a.burst)
        } else {
            String::new()
        },
        if (usize::from(a.datagram_size), a.rate) == (DATAGRAM_LEN, AUDIO_RATE) {
            ": what the server forwards for an audio publisher"
        } else {
            ""
        },
        a.subscribers,
        if a.sealed {
            format!(" opening SRTP ({unopened} did not open)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        human,
        "Registered {} of {} receivers ({} refused by the relay, {} without an answer)",
        s.registered, a.subscribers, s.refused, s.failed
    );
    let _ = writeln!(
        human,
        "Sent {} datagrams{}",
        s.sent,
        s.send_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (stopped: {e})"))
    );
    let _ = writeln!(
        human,
        "Received {packets} packets; lost {lost} ({loss_pct:.3}%)"
    );
    let _ = writeln!(
        human,
        "Loss: {lost_elsewhere} lost by the relay or on the way, {lost_ours} dropped by our own sockets"
    );
    human.push_str(&socket_drops_line(drops_counted.then_some(socket_drops)));
    human.push_str(&socket_wait_line(&waits));
    let _ = writeln!(
        human,
        "Forwarding latency (ms): p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2} ({} samples)",
        lat(50.0),
        lat(90.0),
        lat(99.0),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    );
    let wall = s.total_time.as_secs_f64().max(0.001);
    let relay = usage_over(&s.relay, wall);
    let client = usage_over(&s.client, wall);
    usage_line(&mut human, "Relay", a.relay_pid, relay, wall);
    human.push_str(&s.steady.line());
    usage_line(&mut human, "This load tester", None, client, wall);
    let window = window_figures(&s.window, &s.steady);
    human.push_str(&window.line(s.threads));
    let json = json!({
        "target": "udp-relay",
        "relay": a.relay.to_string(),
        "duration_s": s.run_time.as_secs_f64(),
        "interrupted": s.interrupted,
        "subscribers": a.subscribers,
        "registered": s.registered,
        "refused": s.refused,
        "registration_failures": s.failed,
        "datagram_bytes": a.datagram_size,
        "datagrams_per_second": a.rate,
        "burst": a.burst,
        "sealed": a.sealed,
        "unopened": unopened,
        "sent": s.sent,
        "send_error": s.send_error,
        "packets": packets,
        "lost": lost,
        "loss_percent": loss_pct,
        "latency_ms": latency_json(&latencies),
        "relay_process": usage_json(relay, json!({ "pid": a.relay_pid })),
        "client": usage_json(client, json!({ "threads": s.threads })),
        "socket_drops": drops_counted.then_some(socket_drops),
        "socket_wait": socket_wait_json(&waits),
        "lost_by_own_sockets": lost_ours,
        "lost_elsewhere": lost_elsewhere,
        "load_tester_window": window.json(s.threads),
        "steady": s.steady.json(),
    });
    Report { human, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_have_the_size_of_a_forwarded_audio_packet() {
        assert_eq!(DATAGRAM_LEN, 108);
        let mut buf = [0u8; DATAGRAM_LEN];
        audio_datagram(&mut buf, 3, 1000, 0xabcd);
        assert_eq!(
            trailer_at(DATAGRAM_LEN),
            RTP_HEADER_LEN + AUDIO_PAYLOAD_LEN - TRAILER_LEN
        );
        assert_eq!(buf[0] >> 6, 2);
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 3);
        assert_eq!(
            u32::from_be_bytes(buf[4..8].try_into().unwrap()),
            1000 + 3 * 960
        );
        let t = datagram_time(&buf).unwrap();
        assert!(t.abs_diff(unix_micros()) < 10_000_000);
        // The payload is the load tester's: its trailer is where `trailer_time` looks.
        let payload = &buf[RTP_HEADER_LEN..RTP_HEADER_LEN + AUDIO_PAYLOAD_LEN];
        assert_eq!(super::super::loadtest::trailer_time(payload), Some(t));
        assert_eq!(datagram_time(JOINED_REPLY), None);
        assert_eq!(datagram_time(&buf[..100]), None);
    }

    #[test]
    fn receivers_bind_to_the_relays_loopback() {
        assert_eq!(
            local_for(SocketAddr::from(([127, 0, 0, 1], 7900))),
            SocketAddr::from(([127, 0, 0, 1], 0))
        );
        assert_eq!(
            local_for(SocketAddr::from((Ipv6Addr::LOCALHOST, 7900))),
            SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
        );
        assert_eq!(
            local_for(SocketAddr::from(([10, 0, 0, 1], 7900))),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        );
    }

    #[cfg(target_os = "linux")]
    /// A relay doing `work`, on a thread of its own, driven by `args` (whose `relay` is set
    /// here); returns the report, the relay's counters and its receivers.
    fn through_relay(
        work: super::super::relay::Work,
        mut args: RelayLoadTestArgs,
    ) -> (Report, super::super::relay::RelayCounters, usize) {
        use super::super::relay::{DEFAULT_MAX_RECEIVERS, Relay};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (addr, stop, relay) = Relay::spawn_for_test(DEFAULT_MAX_RECEIVERS, work);
        args.relay = addr;
        let report = rt.block_on(run(&args)).unwrap();
        stop.send(()).unwrap();
        let (counters, receivers) = relay.join().unwrap();
        (report, counters, receivers)
    }

    /// Flags for a half-second run of `subscribers` receivers on two threads.
    fn short_run(subscribers: u32) -> RelayLoadTestArgs {
        RelayLoadTestArgs {
            relay: SocketAddr::from(([127, 0, 0, 1], 0)),
            relay_pid: None,
            subscribers,
            duration: Duration::from_millis(500),
            threads: Some(2),
            recv_buffer: None,
            datagram_size: 1128,
            rate: 200,
            burst: 1,
            sealed: false,
        }
    }

    #[test]
    fn a_short_run_of_video_sized_datagrams_through_a_relay_counts_every_one() {
        let args = RelayLoadTestArgs {
            // The relay runs in this process: its CPU time is read from /proc all the same.
            relay_pid: Some(std::process::id()),
            ..short_run(5)
        };
        let (report, counters, receivers) =
            through_relay(super::super::relay::Work::default(), args);
        assert_eq!(receivers, 5);
        assert!(counters.forwarded > 0);
        let j = &report.json;
        assert_eq!(j["registered"], 5, "{}", report.human);
        let sent = j["sent"].as_u64().unwrap();
        // A second of warm-up and half a second measured, at 200 a second.
        assert!(sent >= 250, "{}", report.human);
        assert_eq!(j["datagram_bytes"], 1128);
        assert_eq!(j["packets"].as_u64().unwrap(), 5 * sent, "{}", report.human);
        assert_eq!(j["lost"], 0);
        assert!(j["steady"]["packets"].as_u64().unwrap() > 0);
        assert!(
            report.human.contains("\nSteady state: "),
            "{}",
            report.human
        );
    }

    #[test]
    fn sealed_bursts_through_a_sealing_segmenting_relay_open_at_every_receiver() {
        let work = super::super::relay::Work {
            segment: true,
            seal: true,
        };
        let args = RelayLoadTestArgs {
            rate: 180,
            burst: 6,
            sealed: true,
            ..short_run(4)
        };
        let (report, counters, receivers) = through_relay(work, args);
        assert_eq!(receivers, 4);
        assert_eq!(counters.unsealable, 0);
        let j = &report.json;
        let sent = j["sent"].as_u64().unwrap();
        // Whole bursts: 30 a second for a second and a half.
        assert_eq!(sent % 6, 0, "{}", report.human);
        assert!(sent >= 6 * 30, "{}", report.human);
        assert_eq!(j["unopened"], 0, "{}", report.human);
        assert_eq!(j["packets"].as_u64().unwrap(), 4 * sent, "{}", report.human);
        assert_eq!(counters.forwarded, 4 * sent);
        assert!(
            report.human.contains("6 back to back at a time"),
            "{}",
            report.human
        );
        assert!(
            report.human.contains("opening SRTP (0 did not open)"),
            "{}",
            report.human
        );
    }
}
