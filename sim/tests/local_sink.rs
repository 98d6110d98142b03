//! Local sinks (track egress): the engine hands one track's packets to a sink, starting on a
//! keyframe it asks the publisher for, in order and complete on a clean network, without
//! allocating per packet, and stops when the sink is removed or the track goes.

use std::time::Duration;

use lkr_driver::alloc_count::{Counting, count_allocations};
use lkr_rtp::RtpView;
use lkr_sfu::{CodecKind, Command, Engine, SinkId, TrackId};
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs the simulation for `d` in steps, collecting what `sink` was handed.
fn run_collecting(sim: &mut Sim, d: Duration, sink: SinkId, got: &mut Vec<(CodecKind, Vec<u8>)>) {
    let end = sim.now() + d;
    while sim.now() < end {
        sim.run_for(Duration::from_millis(20));
        sim.parts().0.drain_sinks(|s, codec, pkt| {
            assert_eq!(s, sink, "packets only for the sink that was added");
            got.push((codec, pkt.to_vec()));
        });
    }
}

#[test]
fn a_sink_gets_one_track_from_a_keyframe_on_and_nothing_after_removal() {
    let mut sim = Sim::new(SimConfig::seeded(7));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    // No periodic keyframes: only the first frame and those asked for.
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    sim.publish(publisher, track, MediaSource::Video(video));
    sim.run_for(Duration::from_secs(1));
    let plis_before = sim.parts().0.traffic.pli_out;

    let sink = SinkId(9);
    sim.command(Command::AddSink { sink, track });
    let mut got = Vec::new();
    run_collecting(&mut sim, Duration::from_secs(2), sink, &mut got);
    assert!(
        sim.parts().0.traffic.pli_out > plis_before,
        "adding a sink asks the publisher for a keyframe"
    );
    assert!(got.len() > 100, "{} packets", got.len());
    let first = RtpView::parse(&got[0].1).expect("plain RTP");
    assert!(
        lkr_rtp::vp8::is_keyframe(first.payload()),
        "the sink starts on a keyframe"
    );
    assert!(got.iter().all(|(c, _)| *c == CodecKind::Vp8));
    let seqs: Vec<u16> = got
        .iter()
        .map(|(_, p)| RtpView::parse(p).unwrap().sequence())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "in order and complete on a clean network"
    );

    sim.command(Command::RemoveSink { sink });
    let mut after = Vec::new();
    run_collecting(&mut sim, Duration::from_millis(500), sink, &mut after);
    assert!(after.is_empty(), "{} packets after removal", after.len());

    // A sink of a track that goes gets nothing more either.
    sim.command(Command::AddSink { sink, track });
    run_collecting(&mut sim, Duration::from_millis(500), sink, &mut after);
    assert!(!after.is_empty());
    sim.command(Command::Unpublish { track });
    after.clear();
    run_collecting(&mut sim, Duration::from_millis(500), sink, &mut after);
    assert!(after.is_empty());
}

#[test]
fn a_track_feeds_at_most_max_sinks() {
    let mut sim = Sim::new(SimConfig::seeded(8));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    sim.publish(publisher, track, MediaSource::video());
    for i in 0..(lkr_sfu::engine::MAX_SINKS_PER_TRACK as u64 + 5) {
        sim.command(Command::AddSink {
            sink: SinkId(i),
            track,
        });
    }
    sim.run_for(Duration::from_secs(1));
    let mut sinks = std::collections::BTreeSet::new();
    sim.parts().0.drain_sinks(|s, _, _| {
        sinks.insert(s);
    });
    assert_eq!(sinks.len(), lkr_sfu::engine::MAX_SINKS_PER_TRACK);
}

#[test]
fn feeding_a_sink_allocates_nothing() {
    let mut sim = Sim::new(SimConfig::seeded(9));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    sim.publish(publisher, track, MediaSource::video());
    let sink = SinkId(1);
    sim.command(Command::AddSink { sink, track });
    sim.run_for(Duration::from_secs(2));
    sim.stop_publisher(publisher, track);
    let from = sim.client(publisher).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    engine.drain_sinks(|_, _, _| {});
    let feed = |engine: &mut Engine, d: &mut [u8]| {
        engine.handle_receive(now, from, d);
        let mut n = 0;
        engine.drain_sinks(|_, _, pkt| n += pkt.len().min(1));
        n
    };
    for _ in 0..2_000 {
        let mut d = clients[0].next_media_datagram(track).expect("keyed");
        assert_eq!(feed(engine, &mut d), 1);
    }
    let mut batch: Vec<Vec<u8>> = (0..10_000)
        .map(|_| clients[0].next_media_datagram(track).expect("keyed"))
        .collect();
    let mut fed = 0;
    let allocations = count_allocations(|| {
        for d in &mut batch {
            fed += feed(engine, d);
        }
    });
    assert_eq!(fed, 10_000, "every packet reached the sink");
    assert_eq!(allocations, 0, "allocations while feeding a sink");
}
