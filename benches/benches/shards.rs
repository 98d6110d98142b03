//! Forwarding throughput of the sharded media core, 1 shard and 2 shards side by side in
//! one run: one audio publisher, `SUBSCRIBERS` subscribers spread evenly over the shards.
//!
//! Each shard is a thread with its own `Engine` (as in `lkr-driver`). Shard 0 holds the
//! publisher: it receives the SRTP datagrams, forwards to its own subscribers and hands
//! each packet once to every other shard through the driver's SPSC ring
//! (`lkr_driver::ring`); the other shards feed a mirror of the track
//! (`Engine::add_mirror`, `Engine::handle_relayed`) to theirs. No sockets, no clients
//! running during the measurement: the peers are keyed first by `lkr-sim` (ICE, DTLS,
//! SRTP), the publisher's datagrams are encrypted before the clock starts, and every
//! datagram the engines produce is counted and its buffer recycled.
//!
//! A full ring makes the publisher's shard wait here (the driver drops and counts
//! instead), so the figure is the sustained rate of the slowest shard.
//!
//! Run: `cargo bench -p lkr-benches --bench shards` (`SHARDS_BENCH_PACKETS`,
//! `SHARDS_BENCH_SUBSCRIBERS` and `SHARDS_BENCH_MAX` change the sizes).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lkr_driver::ring::{self, Handoff};
use lkr_sfu::{Command, PublishSpec, Relay, SubscribeSpec, TrackId};
use lkr_sim::{AudioConfig, ClientId, MediaSource, Sim, SimConfig};

const TRACK: TrackId = TrackId(1);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A simulation with a publisher (client 0) of `TRACK` and `subscribers` subscribers, all
/// receiving, the publisher's own clock stopped.
fn established(seed: u64, subscribers: usize, source: MediaSource) -> (Sim, Vec<u32>) {
    let mut sim = Sim::new(SimConfig::seeded(seed));
    sim.add_client();
    let (_, ssrcs) = sim.fan_out(
        TRACK,
        source,
        subscribers,
        0,
        Duration::from_secs(20),
        Duration::from_millis(500),
    );
    (sim, ssrcs)
}

/// Forwards `packets` packets through `shards` shards; returns datagrams sent per second.
fn run(shards: usize, subscribers: usize, packets: usize) -> f64 {
    let source = MediaSource::Audio(AudioConfig::default());
    let per_shard = subscribers / shards;
    let start = Arc::new(Barrier::new(shards));
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for _ in 1..shards {
        let (p, c) = ring::ring(1024);
        producers.push(p);
        consumers.push(Some(c));
    }
    let mut threads = Vec::new();
    for (k, consumer) in consumers.into_iter().enumerate() {
        let start = start.clone();
        let shard = (k + 1) as u8;
        threads.push(std::thread::spawn(move || {
            let mut consumer = consumer.expect("one each");
            // Keyed subscribers, then the track turned into a mirror of shard 0's.
            let (mut sim, ssrcs) = established(100 + u64::from(shard), per_shard, source);
            let now = sim.now();
            let pt = source.payload_type();
            let peers: Vec<_> = (1..=per_shard)
                .map(|i| sim.client(ClientId(i)).peer)
                .collect();
            let (engine, _) = sim.parts();
            engine.handle_command(now, Command::Unpublish { track: TRACK });
            let spec = PublishSpec {
                peer: lkr_sfu::PeerId(u64::MAX),
                track: TRACK,
                kind: source.kind(),
                mid: "1".into(),
                rids: vec![],
                ssrcs: vec![],
                payload_types: vec![pt],
                ext: Default::default(),
                rtx: vec![],
                rtx_ssrcs: vec![],
            };
            engine.add_mirror(&spec, 0);
            for (peer, ssrc) in peers.into_iter().zip(ssrcs) {
                engine.handle_command(
                    now,
                    Command::Subscribe(SubscribeSpec {
                        peer,
                        track: TRACK,
                        ssrc,
                        payload_types: vec![(pt.codec, pt.pt)],
                        transport_cc: 0,
                        rtx: None,
                        priority: 0,
                        playout_delay: None,
                    }),
                );
            }
            while engine.poll_transmit().is_some() {}
            engine.drain_relays(|_, _| {});
            start.wait();
            let mut sent = 0u64;
            let mut taken = 0usize;
            while taken < packets {
                let got = consumer.pop(|what, bytes| {
                    if let Handoff::Media { track, layer } = what {
                        engine.handle_relayed(now, track, layer, bytes);
                    }
                });
                if !got {
                    std::thread::yield_now();
                    continue;
                }
                taken += 1;
                while let Some(t) = engine.poll_transmit() {
                    sent += 1;
                    engine.recycle(t.data);
                }
            }
            sent
        }));
    }
    let (mut sim, _) = established(1, per_shard, source);
    let from = sim.client(ClientId(0)).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    for s in 1..shards {
        engine.set_relay(TRACK, s as u8, true);
    }
    let datagrams: Vec<Vec<u8>> = (0..packets)
        .map(|_| clients[0].next_media_datagram(TRACK).expect("keyed"))
        .collect();
    start.wait();
    let began = Instant::now();
    let mut sent = 0u64;
    for mut d in datagrams {
        engine.handle_receive(now, from, &mut d);
        engine.drain_relays(|r, bytes| {
            let Relay::Media { to, track, layer } = *r else {
                return;
            };
            for (i, p) in producers.iter_mut().enumerate() {
                if to & (1 << (i + 1)) != 0 {
                    while !p.push(Handoff::Media { track, layer }, bytes) {
                        std::thread::yield_now();
                    }
                }
            }
        });
        while let Some(t) = engine.poll_transmit() {
            sent += 1;
            engine.recycle(t.data);
        }
    }
    for t in threads {
        sent += t.join().expect("shard thread");
    }
    let elapsed = began.elapsed();
    let expected = (packets * per_shard * shards) as u64;
    assert_eq!(sent, expected, "every subscriber got every packet");
    sent as f64 / elapsed.as_secs_f64()
}

/// The machine's own ceiling: `n` independent engines, each with its own publisher and
/// `subscribers / n` subscribers, no hand-off; returns datagrams sent per second.
fn independent(n: usize, subscribers: usize, packets: usize) -> f64 {
    let source = MediaSource::Audio(AudioConfig::default());
    let per = subscribers / n;
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|k| {
            let start = start.clone();
            std::thread::spawn(move || {
                let (mut sim, _) = established(200 + k as u64, per, source);
                let from = sim.client(ClientId(0)).addr;
                let now = sim.now();
                let (engine, clients) = sim.parts();
                let datagrams: Vec<Vec<u8>> = (0..packets)
                    .map(|_| clients[0].next_media_datagram(TRACK).expect("keyed"))
                    .collect();
                start.wait();
                let began = Instant::now();
                let mut sent = 0u64;
                for mut d in datagrams {
                    engine.handle_receive(now, from, &mut d);
                    while let Some(t) = engine.poll_transmit() {
                        sent += 1;
                        engine.recycle(t.data);
                    }
                }
                (sent, began, Instant::now())
            })
        })
        .collect();
    let mut sent = 0;
    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    for t in threads {
        let (s, b, e) = t.join().expect("engine thread");
        sent += s;
        first = Some(first.map_or(b, |f| f.min(b)));
        last = Some(last.map_or(e, |l| l.max(e)));
    }
    let elapsed = last.zip(first).map_or(Duration::ZERO, |(l, f)| l - f);
    sent as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, small.
    let quick = !std::env::args().any(|a| a == "--bench");
    let packets = env("SHARDS_BENCH_PACKETS", if quick { 200 } else { 20_000 });
    let subscribers = env("SHARDS_BENCH_SUBSCRIBERS", if quick { 8 } else { 200 });
    let max = env("SHARDS_BENCH_MAX", 2).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sharded forwarding: 1 audio publisher -> {subscribers} subscribers, {packets} packets, SRTP, {cores} cores"
    );
    println!(
        "{:>6} {:>16} {:>8}   {:>24} {:>8}",
        "shards", "datagrams/s", "speed-up", "independent engines (/s)", "ceiling"
    );
    let mut base = None;
    for shards in 1..=max {
        let rate = run(shards, subscribers, packets);
        let reference = independent(shards, subscribers, packets);
        let b = *base.get_or_insert(rate);
        println!(
            "{shards:>6} {rate:>16.0} {:>7.2}x   {reference:>24.0} {:>7.2}x",
            rate / b,
            reference / b
        );
    }
    println!(
        "(independent engines: the same work on unconnected engines, no hand-off: how far this \
         machine's cores scale right now)"
    );
}
