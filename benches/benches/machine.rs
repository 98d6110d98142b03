//! The participant and room machine, without sockets: what one input costs in a room of
//! N, as the control task drives it (the input, its outputs drained, `poll_timeout`), and
//! a participant's join to a room of N and its leave. An input's cost should not grow with
//! the number of participants it does not concern.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lkr_proto::pb;
use lkr_proto::token::{Claims, VideoGrant};
use lkr_room::{Config, Join, Limits, Machine, RoomDefaults, Rooms};

use pb::signal_request::Message as Req;

fn config() -> Config {
    Config {
        auto_create: true,
        node_ip: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
        udp_port: 7882,
        tcp_port: None,
        turn: None,
        region: String::new(),
        node_id: "ND_bench".into(),
        fingerprint: ("sha-256".into(), "AA:BB".into()),
        max_metadata_size: 0,
        max_attributes_size: 0,
        limits: Limits::default(),
    }
}

fn join(identity: &str) -> Join {
    let claims = Claims {
        sub: identity.into(),
        video: Some(VideoGrant {
            room_join: true,
            room: "r".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Join::new("r", identity, claims)
}

/// Drains the outputs and asks for the next deadline, as the control task does after
/// every input.
fn settle(m: &mut Machine) -> Option<Instant> {
    while let Some(o) = m.poll_output() {
        black_box(o);
    }
    m.poll_timeout()
}

/// A machine with `n` participants in room "r", their join updates sent.
fn room_of(n: usize) -> (Machine, Instant, Vec<String>) {
    let mut now = Instant::now();
    let mut m = Machine::new(config(), Rooms::new(RoomDefaults::default()), now);
    let mut sids = Vec::with_capacity(n);
    for i in 0..n {
        sids.push(m.handle_join(now, join(&format!("p{i}"))).expect("a join"));
        settle(&mut m);
    }
    // Past the longest batch: every update told, nothing due.
    now += Duration::from_secs(5);
    m.handle_timeout(now);
    settle(&mut m);
    (m, now, sids)
}

fn machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    for n in [10usize, 1000] {
        let (mut m, now, sids) = room_of(n);
        let who = sids[n / 2].clone();
        g.bench_with_input(BenchmarkId::new("ping_in_a_room_of", n), &n, |b, _| {
            b.iter(|| {
                m.handle_signal(now, &who, Req::Ping(1)).expect("a ping");
                black_box(settle(&mut m))
            });
        });
    }
    for n in [10usize, 1000] {
        let (mut m, mut now, _) = room_of(n);
        g.bench_with_input(
            BenchmarkId::new("join_and_leave_a_room_of", n),
            &n,
            |b, _| {
                b.iter(|| {
                    let sid = m.handle_join(now, join("newcomer")).expect("a join");
                    settle(&mut m);
                    m.handle_signal(now, &sid, Req::Leave(pb::LeaveRequest::default()))
                        .expect("a leave");
                    // Its departure is batched: let the batch go out.
                    now += Duration::from_secs(5);
                    m.handle_timeout(now);
                    black_box(settle(&mut m))
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, machine);
criterion_main!(benches);
