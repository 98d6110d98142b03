//! Forwarding without loss: complete, consistent streams; late joiners start on a keyframe;
//! subscribing asks the publisher for a keyframe; nothing goes back to the publisher.

mod common;

use std::time::Duration;

use common::{AUDIO, VIDEO, assert_complete, room, stop_and_drain};
use lkr_sfu::{Command, Event, TrackId};
use lkr_sim::{LinkConfig, MediaSource, Sim, SimConfig, VideoConfig};

#[test]
fn subscribers_get_contiguous_streams_with_consistent_timestamps() {
    let mut r = room(1, 3, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(20));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(1));

    let sent = r
        .sim
        .client(r.publisher)
        .publisher(VIDEO)
        .unwrap()
        .stats
        .packets_sent;
    assert!(sent > 1_700, "{sent}");
    for &(sub, v, a) in &r.subscribers {
        let (n, skipped) = assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
        // Subscribed before the first frame: everything arrives.
        assert_eq!((n as u64, skipped), (sent, 0));
        assert_complete(&r.sim, r.publisher, sub, a, AUDIO);

        let s = r.sim.client(sub).stream(v).unwrap();
        let first = s.first().unwrap();
        assert!(first.keyframe, "video starts on a keyframe");
        s.check_picture_ids().unwrap();
        // Marker bit on the last packet of each frame; timestamps change only across it.
        for w in s.packets.windows(2) {
            let (tag, _) = w[0].tag.unwrap();
            assert_eq!(w[0].marker, tag.index == 2);
            if w[0].marker {
                assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 3_000, "30 fps at 90 kHz");
            } else {
                assert_eq!(w[1].ts, w[0].ts);
            }
        }
        assert_eq!(s.stats.nacks_sent, 0, "nothing was lost");
        assert!(s.packets.iter().all(|p| p.pt == 96));
        let a = r.sim.client(sub).stream(a).unwrap();
        for w in a.packets.windows(2) {
            assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 960, "20 ms at 48 kHz");
        }
    }
    assert_eq!(r.sim.engine.drops, Default::default());
}

#[test]
fn a_late_subscriber_starts_on_the_keyframe_its_subscription_asked_for() {
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    let mut r = room(2, 1, video);
    r.sim.run_for(Duration::from_secs(3));
    let late = r.sim.add_client();
    assert!(r.sim.connect_all(Duration::from_secs(5)));
    r.sim.run_for(Duration::from_secs(1));

    let plis_before = r
        .sim
        .client(r.publisher)
        .publisher(VIDEO)
        .unwrap()
        .stats
        .plis_received;
    let keyframes_before = r
        .sim
        .client(r.publisher)
        .publisher(VIDEO)
        .unwrap()
        .stats
        .keyframes_sent;
    let joined = r.sim.now();
    let v = r.sim.subscribe(late, VIDEO);
    let a = r.sim.subscribe(late, AUDIO);
    r.sim.run_for(Duration::from_secs(5));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(1));

    let stats = r.sim.client(r.publisher).publisher(VIDEO).unwrap().stats;
    assert_eq!(
        stats.plis_received,
        plis_before + 1,
        "one PLI for the new subscriber"
    );
    assert_eq!(stats.keyframes_sent, keyframes_before + 1);

    let s = r.sim.client(late).stream(v).unwrap();
    let first = s.first().unwrap();
    let (tag, _) = first.tag.unwrap();
    assert!(
        first.keyframe && tag.keyframe && tag.index == 0,
        "starts on a keyframe's first packet"
    );
    // PLI 10 ms up, the next frame within 33 ms, 10 ms down.
    let waited = first.at - joined;
    assert!(waited <= Duration::from_millis(60), "{waited:?}");
    assert_complete(&r.sim, r.publisher, late, v, VIDEO);
    s.check_picture_ids().unwrap();
    // Audio needs no keyframe: it starts with the next packet.
    let a_first = r.sim.client(late).stream(a).unwrap().first().unwrap().at;
    assert!(a_first - joined <= Duration::from_millis(40));
    assert_complete(&r.sim, r.publisher, late, a, AUDIO);
    // The early subscriber saw that keyframe too, in its one stream.
    let (early, ev, _) = r.subscribers[0];
    assert_complete(&r.sim, r.publisher, early, ev, VIDEO);
}

#[test]
fn a_paused_subscription_resumes_on_a_keyframe_and_continues_its_numbering() {
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    let mut r = room(7, 2, video);
    r.sim.run_for(Duration::from_secs(2));
    let (sub, v, _) = r.subscribers[0];
    let peer = r.sim.client(sub).peer;
    let plis = |sim: &Sim| {
        sim.client(r.publisher)
            .publisher(VIDEO)
            .unwrap()
            .stats
            .plis_received
    };

    let paused_at = r.sim.now();
    r.sim.command(Command::SetPaused {
        peer,
        track: VIDEO,
        paused: true,
    });
    r.sim.run_for(Duration::from_secs(2));
    let plis_before = plis(&r.sim);
    let resumed_at = r.sim.now();
    r.sim.command(Command::SetPaused {
        peer,
        track: VIDEO,
        paused: false,
    });
    r.sim.run_for(Duration::from_secs(3));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(1));
    assert_eq!(
        plis(&r.sim),
        plis_before + 1,
        "resuming asks for a keyframe"
    );

    let s = r.sim.client(sub).stream(v).unwrap();
    // Packets already on their way when the pause began may still land within a link delay.
    let quiet = paused_at + Duration::from_millis(20)..resumed_at;
    assert!(
        !s.packets.iter().any(|p| quiet.contains(&p.at)),
        "nothing while paused"
    );
    let i = s
        .packets
        .iter()
        .position(|p| p.at >= resumed_at)
        .expect("media after resuming");
    let (before, after) = (&s.packets[i - 1], &s.packets[i]);
    assert!(after.keyframe, "resumes on a keyframe");
    assert!(after.at - resumed_at <= Duration::from_millis(60));
    // One stream to the decoder: no gap in sequence numbers or PictureIDs, and the timestamp
    // moves on by about the time that passed.
    assert!(s.gaps().is_empty(), "{:?}", s.gaps());
    assert_eq!(after.ext, before.ext + 1);
    s.check_picture_ids().unwrap();
    let ticks = after.ts.wrapping_sub(before.ts);
    let expected = (after.at - before.at).as_micros() as u32 * 9 / 100;
    assert!(
        ticks.abs_diff(expected) <= 6_000,
        "{ticks} ticks for {expected}"
    );

    // The other subscriber never noticed.
    let (other, ov, _) = r.subscribers[1];
    assert_complete(&r.sim, r.publisher, other, ov, VIDEO);
}

#[test]
fn subscribing_sends_the_publisher_a_pli() {
    let mut sim = Sim::new(SimConfig::seeded(3));
    let p = sim.add_client();
    let subs = [sim.add_client(), sim.add_client()];
    assert!(sim.connect_all(Duration::from_secs(5)));
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    sim.publish(p, VIDEO, MediaSource::Video(video));
    sim.publish(p, AUDIO, MediaSource::audio());
    sim.run_for(Duration::from_secs(2));
    let plis = |sim: &Sim| sim.client(p).publisher(VIDEO).unwrap().stats.plis_received;
    assert_eq!(plis(&sim), 0, "nobody asked yet");

    sim.subscribe(subs[0], VIDEO);
    sim.run_for(Duration::from_millis(30));
    assert_eq!(plis(&sim), 1);
    // Audio has no keyframes to ask for.
    sim.subscribe(subs[0], AUDIO);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(plis(&sim), 1);
    assert_eq!(
        sim.client(p).publisher(AUDIO).unwrap().stats.plis_received,
        0
    );

    sim.subscribe(subs[1], VIDEO);
    sim.run_for(Duration::from_millis(30));
    assert_eq!(plis(&sim), 2);
}

#[test]
fn nothing_is_echoed_to_the_publisher() {
    let mut r = room(4, 3, VideoConfig::default());
    // Loss upstream makes the server talk to the publisher (NACKs), never with media.
    r.sim.set_uplink(r.publisher, LinkConfig::lossy(0.05));
    // The publisher also subscribes to a second participant's track: it gets that one only.
    let other = r.subscribers[0].0;
    r.sim.publish(other, TrackId(3), MediaSource::audio());
    let back = r.sim.subscribe(r.publisher, TrackId(3));
    r.sim.run_for(Duration::from_secs(10));

    let pub_addr = r.sim.client(r.publisher).addr;
    let to_pub = r.sim.net.stats(r.sim.server_addr(), pub_addr);
    let c = r.sim.client(r.publisher);
    let ssrcs: Vec<u32> = c.streams().map(|s| s.ssrc).collect();
    assert_eq!(ssrcs, vec![back], "only the subscribed track comes back");
    assert_eq!(c.stats.unknown_ssrc, 0);
    let received = c.stream(back).unwrap().unique_packets() as u64;
    assert!(received > 400);
    assert_eq!(to_pub.rtp, received, "no RTP besides the subscribed track");
    assert!(to_pub.rtcp > 0, "feedback does go to the publisher");

    // A publisher that subscribes to nothing receives no RTP at all.
    let mut r = room(5, 2, VideoConfig::default());
    r.sim.set_uplink(r.publisher, LinkConfig::lossy(0.05));
    r.sim.run_for(Duration::from_secs(10));
    let pub_addr = r.sim.client(r.publisher).addr;
    let to_pub = r.sim.net.stats(r.sim.server_addr(), pub_addr);
    assert_eq!(to_pub.rtp, 0);
    assert_eq!(r.sim.client(r.publisher).stats.rtp_received, 0);
    assert!(
        r.sim
            .client(r.publisher)
            .publisher(VIDEO)
            .unwrap()
            .stats
            .nacks_received
            > 0
    );
}

#[test]
fn peers_report_connected_and_tracks_start() {
    let mut r = room(6, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let events: Vec<&Event> = r.sim.events().iter().map(|(_, e)| e).collect();
    for c in r.sim.clients() {
        assert!(events.contains(&&Event::PeerConnected { peer: c.peer }));
    }
    assert!(
        events.contains(&&Event::TrackStarted { track: VIDEO }),
        "{events:?}"
    );
    assert!(
        events.contains(&&Event::TrackStarted { track: AUDIO }),
        "{events:?}"
    );
}

#[test]
fn a_video_stream_back_after_a_silence_without_a_keyframe_gets_one_asked_for_at_once() {
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    let mut r = room(6, 2, video);
    r.sim.run_for(Duration::from_secs(2));
    let plis = |sim: &Sim| {
        sim.client(r.publisher)
            .publisher(VIDEO)
            .unwrap()
            .stats
            .plis_received
    };
    let before = plis(&r.sim);

    // The publisher's path goes away for 2 s; its encoder goes on with delta frames.
    r.sim.set_uplink(r.publisher, LinkConfig::lossy(1.0));
    r.sim.run_for(Duration::from_secs(2));
    r.sim.set_uplink(r.publisher, LinkConfig::default());
    // The first frame after the silence (33 ms at 30 fps) brings a request back.
    r.sim.run_for(Duration::from_millis(60));
    assert!(
        plis(&r.sim) > before,
        "no keyframe request within 60 ms of the stream's return"
    );
}
