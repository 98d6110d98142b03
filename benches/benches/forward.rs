//! Core work per forwarded packet (DESIGN.md §4): one SRTP-protected VP8 packet from a
//! publisher through `Engine::handle_receive` (unprotect, route, cache) and out of
//! `poll_transmit` to every subscriber (header rewrite, protect), buffers recycled, for
//! 1 → 1, 1 → 10 and 1 → 100 fan-out. No sockets and no syscalls.
//!
//! The peers are real: `lkr-sim` runs ICE, DTLS and SRTP keying between simulated clients
//! and the engine first. Every iteration gets a freshly encrypted packet with the next
//! sequence number (SRTP rejects replays), made in `iter_batched`'s untimed setup.
//!
//! Time per iteration is per packet; throughput counts packet × subscriber deliveries.
//! The `+twcc` variants stamp every downstream packet with a transport-wide sequence number
//! for the subscriber's bandwidth estimate (each subscriber negotiated transport-cc).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lkr_sfu::TrackId;
use lkr_sim::SrtpProfile;
use lkr_sim::{ClientId, MediaSource, Sim, SimConfig, VideoConfig};

const TRACK: TrackId = TrackId(1);

/// A publisher of VP8 (1000-byte payloads) and `subscribers` subscribers, all connected,
/// past the first keyframe, with the publisher's own clock stopped so that only the
/// benchmark sends.
fn established(subscribers: usize, transport_cc: u8) -> Sim {
    let mut sim = Sim::new(SimConfig::seeded(subscribers as u64));
    sim.add_client();
    sim.fan_out(
        TRACK,
        MediaSource::Video(VideoConfig::default()),
        subscribers,
        transport_cc,
        Duration::from_secs(10),
        Duration::from_secs(1),
    );
    sim
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    for (subscribers, twcc) in [(1usize, 0u8), (10, 0), (100, 0), (1, 3), (10, 3), (100, 3)] {
        let mut sim = established(subscribers, twcc);
        let from = sim.client(ClientId(0)).addr;
        let profile = match sim.client(ClientId(0)).srtp_profile() {
            Some(SrtpProfile::AeadAes128Gcm) => "srtp_gcm",
            Some(SrtpProfile::Aes128CmHmacSha1_80) => "srtp_cm80",
            None => unreachable!("established peers are keyed"),
        };
        let now = sim.now();
        let (engine, clients) = sim.parts();
        let publisher = &mut clients[0];
        group.throughput(Throughput::Elements(subscribers as u64));
        let suffix = if twcc != 0 { "+twcc" } else { "" };
        let id = BenchmarkId::new(format!("{profile}{suffix}"), subscribers);
        group.bench_function(id, |b| {
            b.iter_batched(
                || publisher.next_media_datagram(TRACK).expect("keyed"),
                |mut datagram| {
                    engine.handle_receive(now, from, &mut datagram);
                    let mut sent = 0;
                    while let Some(t) = engine.poll_transmit() {
                        sent += 1;
                        engine.recycle(black_box(t).data);
                    }
                    debug_assert_eq!(sent, subscribers);
                    datagram
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
