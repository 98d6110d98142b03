//! A track's fan-out across two engines (two media shards): the owner relays each packet
//! once to the shard that mirrors the track, whose subscribers receive it; the mirror asks
//! the owner for keyframes, throttled, and relaying stops when it is switched off. The
//! hand-off itself allocates nothing in steady state.

use std::time::Duration;

use lkr_driver::alloc_count::{Counting, count_allocations};
use lkr_sfu::{Command, PeerId, PublishSpec, Relay, TrackId};
use lkr_sim::{AudioConfig, ClientId, MediaSource, Sim, SimConfig, VideoConfig};

#[global_allocator]
static GLOBAL: Counting = Counting;

const TRACK: TrackId = TrackId(1);

/// A publisher (client 0) of `TRACK` and `subs` subscribers, all receiving, the publisher's
/// clock stopped. Returns the subscribers' SSRCs.
fn established(seed: u64, subs: usize, source: MediaSource) -> (Sim, Vec<u32>) {
    let mut sim = Sim::new(SimConfig::seeded(seed));
    sim.add_client();
    let (_, ssrcs) = sim.fan_out(
        TRACK,
        source,
        subs,
        0,
        Duration::from_secs(5),
        Duration::from_millis(1500),
    );
    (sim, ssrcs)
}

/// Turns `TRACK` of `sim`'s engine into a mirror of shard 0's and subscribes its `subs`
/// clients to it (fresh downstream SSRCs); returns the relays that produced.
fn make_mirror(sim: &mut Sim, subs: usize, source: MediaSource) -> Vec<Relay> {
    let pt = source.payload_type();
    sim.command(Command::Unpublish { track: TRACK });
    let spec = PublishSpec {
        peer: PeerId(u64::MAX),
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
    sim.parts().0.add_mirror(&spec, 0);
    for i in 1..=subs {
        sim.subscribe(ClientId(i), TRACK);
    }
    let mut relays = Vec::new();
    sim.parts().0.drain_relays(|r, _| relays.push(*r));
    relays
}

/// RTP packets a client decrypted.
fn received(sim: &Sim, client: usize) -> u64 {
    sim.client(ClientId(client)).stats.rtp_received
}

#[test]
fn a_mirrored_track_reaches_the_other_shards_subscribers_once_per_packet() {
    let audio = MediaSource::Audio(AudioConfig::default());
    let (mut a, _) = established(61, 1, audio);
    let (mut b, _) = established(62, 2, audio);
    let relays = make_mirror(&mut b, 2, audio);
    assert!(relays.is_empty(), "audio needs no keyframe: {relays:?}");
    let from = a.client(ClientId(0)).addr;
    a.parts().0.set_relay(TRACK, 1, true);
    let before = [received(&a, 1), received(&b, 1), received(&b, 2)];
    let mut handoffs = 0;
    let mut bytes = Vec::with_capacity(1500);
    for _ in 0..50 {
        let now = a.now();
        let (engine, clients) = a.parts();
        let mut d = clients[0].next_media_datagram(TRACK).expect("keyed");
        engine.handle_receive(now, from, &mut d);
        let mut relay = None;
        engine.drain_relays(|r, pkt| {
            handoffs += 1;
            bytes.clear();
            bytes.extend_from_slice(pkt);
            relay = Some(*r);
        });
        let Some(Relay::Media { to, track, layer }) = relay else {
            panic!("a media relay per packet: {relay:?}");
        };
        assert_eq!(to, 1 << 1, "for shard 1 only");
        let now_b = b.now();
        b.parts().0.handle_relayed(now_b, track, layer, &bytes);
        a.run_for(Duration::from_millis(20));
        b.run_for(Duration::from_millis(20));
    }
    a.run_for(Duration::from_millis(200));
    b.run_for(Duration::from_millis(200));
    assert_eq!(handoffs, 50, "one hand-off per packet, not per subscriber");
    let after = [received(&a, 1), received(&b, 1), received(&b, 2)];
    for (i, (x, y)) in before.iter().zip(after).enumerate() {
        assert_eq!(
            y - x,
            50,
            "subscriber {i} got every packet: {before:?} -> {after:?}"
        );
    }

    // Steady state (every retransmission-cache slot filled once): receiving, relaying and
    // the mirror's fan-out allocate nothing.
    let datagrams: Vec<Vec<u8>> = (0..1200)
        .map(|_| a.parts().1[0].next_media_datagram(TRACK).expect("keyed"))
        .collect();
    let (now_a, now_b) = (a.now(), b.now());
    let (ea, _) = a.parts();
    // `b` is borrowed separately; its engine takes the relayed bytes.
    let eb = b.parts().0;
    let mut datagrams = datagrams.into_iter();
    let mut pass = |d: &mut Vec<u8>| {
        ea.handle_receive(now_a, from, d);
        ea.drain_relays(|r, pkt| {
            if let Relay::Media { track, layer, .. } = *r {
                eb.handle_relayed(now_b, track, layer, pkt);
            }
        });
        while let Some(t) = ea.poll_transmit() {
            ea.recycle(t.data);
        }
        while let Some(t) = eb.poll_transmit() {
            eb.recycle(t.data);
        }
    };
    for mut d in datagrams.by_ref().take(1100) {
        pass(&mut d);
    }
    let allocations = count_allocations(|| {
        for mut d in datagrams.by_ref() {
            pass(&mut d);
            drop(d);
        }
    });
    // The datagrams themselves are freed inside the window; nothing is allocated.
    assert_eq!(allocations, 0, "the relayed path allocates nothing");

    // Switched off: the owner relays no more.
    a.parts().0.set_relay(TRACK, 1, false);
    let now = a.now();
    let (engine, clients) = a.parts();
    let mut d = clients[0].next_media_datagram(TRACK).expect("keyed");
    engine.handle_receive(now, from, &mut d);
    assert!(!engine.has_relays());
}

#[test]
fn a_mirror_asks_its_owner_for_keyframes_once_per_interval() {
    let video = MediaSource::Video(VideoConfig::default());
    let (mut b, _) = established(63, 2, video);
    let relays = make_mirror(&mut b, 2, video);
    assert_eq!(
        relays,
        vec![Relay::Keyframe {
            to: 1,
            track: TRACK,
            layer: None
        }],
        "two new subscribers, one request to shard 0"
    );
    // A resumed subscription wants a keyframe: after the interval, a new request.
    b.run_for(Duration::from_millis(400));
    let now = b.now();
    let peer = b.client(ClientId(1)).peer;
    let engine = b.parts().0;
    for paused in [true, false] {
        engine.handle_command(
            now,
            Command::SetPaused {
                peer,
                track: TRACK,
                paused,
            },
        );
    }
    let mut again = Vec::new();
    engine.drain_relays(|r, _| again.push(*r));
    assert_eq!(
        again,
        vec![Relay::Keyframe {
            to: 1,
            track: TRACK,
            layer: None
        }]
    );
}
