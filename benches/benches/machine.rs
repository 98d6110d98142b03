//! The participant and room machine, without sockets: what one input costs in a room of
//! N, as the control task drives it (the input, its outputs drained, `poll_timeout`), and
//! a participant's join to a room of N and its leave, and the audio levels of a node of N
//! rooms with a speaker each. An input's cost should not grow with the number of
//! participants or tracks it does not concern.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lkr_proto::pb;
use lkr_proto::token::{Claims, VideoGrant};
use lkr_room::{Config, Join, Limits, Machine, RoomDefaults, Rooms};
use lkr_sfu::Event;

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
        enable_remote_unmute: false,
        ice_servers: Vec::new(),
        limits: Limits::default(),
    }
}

fn join(identity: &str) -> Join {
    join_to("r", identity)
}

fn join_to(room: &str, identity: &str) -> Join {
    let claims = Claims {
        sub: identity.into(),
        video: Some(VideoGrant {
            room_join: true,
            room: room.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Join::new(room, identity, claims)
}

/// A publisher's offer with one Opus section, sent after `add_track` for cid "mic".
const AUDIO_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:cliU\r\n\
a=ice-pwd:clientpasswordclientpass\r\na=fingerprint:sha-256 \
11:17:5E:9E:C8:A8:D7:60:78:46:72:FD:EB:C7:A5:A1:ED:4B:62:44:56:58:22:D8:32:8D:7B:ED:BE:93:D0:44\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\na=msid:stream mic\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1000 cname:c\r\n";

/// A machine with `n` rooms, each with one participant publishing a microphone, and the
/// audio levels a media shard reports for all of them (every 400 ms while they speak).
fn speakers_in_rooms(n: usize) -> (Machine, Instant, Vec<(lkr_sfu::TrackId, f32, bool)>) {
    let now = Instant::now();
    let mut m = Machine::new(config(), Rooms::new(RoomDefaults::default()), now);
    for i in 0..n {
        let sid = m
            .handle_join(now, join_to(&format!("room{i}"), &format!("p{i}")))
            .expect("a join");
        settle(&mut m);
        let add = pb::AddTrackRequest {
            cid: "mic".into(),
            r#type: pb::TrackType::Audio as i32,
            source: pb::TrackSource::Microphone as i32,
            ..Default::default()
        };
        m.handle_signal(now, &sid, Req::AddTrack(add))
            .expect("add_track");
        let offer = pb::SessionDescription {
            r#type: "offer".into(),
            sdp: AUDIO_OFFER.into(),
            id: 1,
            ..Default::default()
        };
        m.handle_signal(now, &sid, Req::Offer(offer))
            .expect("an offer");
        settle(&mut m);
    }
    let tracks = m.published_tracks();
    assert_eq!(tracks.len(), n, "every room has its track published");
    let levels = tracks.iter().map(|t| (t.track_id, 0.5, true)).collect();
    (m, now, levels)
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
    for n in [10usize, 1000] {
        let (mut m, now, levels) = speakers_in_rooms(n);
        g.bench_with_input(
            BenchmarkId::new("audio_levels_of_a_node_of_rooms", n),
            &n,
            |b, _| {
                let mut level = 0.2;
                b.iter(|| {
                    // A level that moves, so that every room is told of its speaker.
                    level = if level > 0.5 { 0.2 } else { level + 0.1 };
                    let levels = levels.iter().map(|(t, _, a)| (*t, level, *a)).collect();
                    m.handle_media_event(now, Event::AudioLevels { levels });
                    black_box(settle(&mut m))
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, machine);
criterion_main!(benches);
