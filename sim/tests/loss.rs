//! Loss and its repair: NACKs from the server to the publisher for upstream loss, NACKs from
//! subscribers answered from the server's cache for downstream loss, reordering, and the
//! same run twice giving the same result.

mod common;

use std::time::Duration;

use common::{AUDIO, VIDEO, assert_complete, room, stop_and_drain};
use lkr_sim::{LinkConfig, VideoConfig};

#[test]
fn upstream_loss_is_repaired_by_the_servers_nacks() {
    let mut r = room(11, 2, VideoConfig::default());
    r.sim.set_uplink(r.publisher, LinkConfig::lossy(0.05));
    r.sim.run_for(Duration::from_secs(30));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));

    let pub_addr = r.sim.client(r.publisher).addr;
    let up = r.sim.net.stats(pub_addr, r.sim.server_addr());
    let video = r.sim.client(r.publisher).publisher(VIDEO).unwrap().stats;
    let audio = r.sim.client(r.publisher).publisher(AUDIO).unwrap().stats;
    assert!(up.lost > 100, "{up:?}");
    // The server's receiver reports count what was still missing at each report (most gaps
    // are repaired within the report interval): some, never more than was lost.
    let counted = r.sim.engine.traffic.upstream_lost;
    assert!(
        counted > 0 && counted <= up.lost,
        "{counted} counted, {} lost",
        up.lost
    );
    // The server NACKed the losses and the publisher answered from its history.
    assert!(video.nack_packets_received > 50, "{video:?}");
    assert!(
        video.nacks_received >= video.retransmitted && video.retransmitted > 50,
        "{video:?}"
    );
    assert_eq!(video.nack_misses, 0);
    assert!(audio.retransmitted > 10, "{audio:?}");
    // Each lost datagram was asked for about once: the retry timer (40 ms) is longer than
    // the round trip (20 ms), so a NACK is repeated only when the retransmission was lost too.
    let nacked = video.nacks_received + audio.nacks_received;
    assert!(
        nacked <= up.lost + up.lost / 4,
        "{nacked} NACKed for {} lost",
        up.lost
    );

    for &(sub, v, a) in &r.subscribers {
        let (n, skipped) = assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
        assert_eq!(
            (n + skipped) as u64,
            video.packets_sent,
            "every packet after the first keyframe"
        );
        // Only a lost start of the very first keyframe skips anything: up to the keyframe
        // the server's PLI brings, two frames later at most.
        assert!(skipped <= 6, "{skipped}");
        assert_complete(&r.sim, r.publisher, sub, a, AUDIO);
        let s = r.sim.client(sub).stream(v).unwrap();
        assert!(s.stats.repaired > 0, "gaps were seen and filled");
    }
}

#[test]
fn downstream_loss_is_repaired_from_the_servers_cache() {
    let mut r = room(12, 2, VideoConfig::default());
    let (lossy, lv, la) = r.subscribers[0];
    let (clean, cv, _) = r.subscribers[1];
    // A subscriber cannot know a stream's very first packet is missing (libwebrtc's decoder
    // would ask for a keyframe); start clean.
    r.sim.run_for(Duration::from_millis(200));
    r.sim.set_downlink(lossy, LinkConfig::lossy(0.05));
    r.sim.run_for(Duration::from_secs(30));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));

    let down = r
        .sim
        .net
        .stats(r.sim.server_addr(), r.sim.client(lossy).addr);
    assert!(down.lost > 100, "{down:?}");
    let sent = r.sim.client(r.publisher).publisher(VIDEO).unwrap().stats;
    for (sub, ssrc, track) in [(lossy, lv, VIDEO), (lossy, la, AUDIO), (clean, cv, VIDEO)] {
        let (n, skipped) = assert_complete(&r.sim, r.publisher, sub, ssrc, track);
        if track == VIDEO {
            assert_eq!((n as u64, skipped), (sent.packets_sent, 0));
        }
    }
    let s = r.sim.client(lossy).stream(lv).unwrap().stats;
    assert!(s.nacks_sent > 50 && s.repaired > 50, "{s:?}");
    assert_eq!(s.given_up, 0);
    // The cache answered: nothing was lost upstream, so the publisher was never asked.
    assert_eq!(sent.nacks_received, 0);
    assert_eq!(r.sim.client(clean).stream(cv).unwrap().stats.nacks_sent, 0);
    // What went down the lossy link: every packet, plus one resend per loss of media.
    let media = r
        .sim
        .client(lossy)
        .streams()
        .map(|s| s.unique_packets() as u64)
        .sum::<u64>();
    assert!(
        down.rtp > media,
        "{} RTP sent for {media} packets",
        down.rtp
    );
}

#[test]
fn reordering_and_jitter_do_not_lose_or_duplicate_anything() {
    let mut r = room(13, 1, VideoConfig::default());
    // Clean start: a keyframe whose packets arrive out of order is another matter (below).
    r.sim.run_for(Duration::from_secs(1));
    let jittery = LinkConfig {
        jitter: Duration::from_millis(8),
        reorder: 0.05,
        ..LinkConfig::lossy(0.02)
    };
    r.sim.set_uplink(r.publisher, jittery);
    let (sub, v, a) = r.subscribers[0];
    r.sim.set_downlink(sub, jittery);
    r.sim.run_for(Duration::from_secs(20));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));
    assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
    assert_complete(&r.sim, r.publisher, sub, a, AUDIO);
    let s = r.sim.client(sub).stream(v).unwrap();
    assert!(
        s.packets.windows(2).any(|w| w[1].ext < w[0].ext),
        "some packets did arrive out of order"
    );
}

#[test]
fn a_late_subscriber_whose_keyframe_start_was_lost_upstream_gets_the_whole_keyframe() {
    // The first packet of the keyframe the new subscriber waits for is lost on the way to
    // the server; the rest of the frame arrives first, the lost packet comes later by NACK.
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    let mut r = room(14, 0, video);
    let late = r.sim.add_client();
    assert!(r.sim.connect_all(Duration::from_secs(5)));
    r.sim.run_for(Duration::from_secs(2));
    let v = r.sim.subscribe(late, VIDEO);
    let p = r.publisher;
    assert!(r.sim.run_until_condition(Duration::from_secs(1), |sim| {
        sim.client(p).publisher(VIDEO).unwrap().stats.plis_received == 1
    }));
    // The next frame is the keyframe: lose its first packet once.
    let key_seq = r.sim.client(p).publisher(VIDEO).unwrap().next_seq();
    let (from, to) = (r.sim.client(p).addr, r.sim.server_addr());
    r.sim.net.drop_rtp_once(from, to, r.video_ssrc, key_seq);
    r.sim.run_for(Duration::from_secs(3));
    stop_and_drain(&mut r.sim, p, Duration::from_secs(2));

    let s = r.sim.client(late).stream(v).unwrap();
    let (tag, _) = s.first().unwrap().tag.unwrap();
    assert_eq!(tag.seq, key_seq, "starts on the keyframe");
    assert_complete(&r.sim, p, late, v, VIDEO);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed: u64| {
        let mut r = room(seed, 2, VideoConfig::default());
        r.sim.set_uplink(r.publisher, LinkConfig::lossy(0.05));
        let sub = r.subscribers[0].0;
        r.sim.set_downlink(sub, LinkConfig::lossy(0.05));
        r.sim.run_for(Duration::from_secs(10));
        let start = r.sim.now() - r.sim.elapsed();
        let pub_addr = r.sim.client(r.publisher).addr;
        let sub_addr = r.sim.client(sub).addr;
        let server = r.sim.server_addr();
        let arrivals: Vec<(u16, Duration)> = r
            .sim
            .client(sub)
            .stream(r.subscribers[0].1)
            .unwrap()
            .packets
            .iter()
            .map(|p| (p.tag.unwrap().0.seq, p.at - start))
            .collect();
        (
            r.sim.net.stats(pub_addr, server),
            r.sim.net.stats(server, sub_addr),
            r.sim.client(r.publisher).publisher(VIDEO).unwrap().stats,
            r.sim.client(sub).stream(r.subscribers[0].1).unwrap().stats,
            arrivals,
        )
    };
    let a = run(21);
    assert_eq!(a, run(21));
    assert_ne!(a.0, run(22).0, "another seed loses other packets");
}

#[test]
fn retransmissions_a_round_trip_late_pass_the_replay_window_at_high_packet_rates() {
    // 900 packets/s (a 720p-class layer) over an 80 ms round trip: a retransmission arrives
    // some 70 packets behind the newest one.
    let video = VideoConfig {
        packets_per_frame: 30,
        ..VideoConfig::default()
    };
    let mut r = room(61, 1, video);
    r.sim.run_for(Duration::from_millis(300));
    let far = LinkConfig {
        delay: Duration::from_millis(40),
        ..LinkConfig::lossy(0.02)
    };
    r.sim.set_uplink(r.publisher, far);
    r.sim.run_for(Duration::from_secs(10));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));
    assert_eq!(
        r.sim.engine.drops.srtp_error, 0,
        "retransmissions refused as replays"
    );
    let (sub, v, _) = r.subscribers[0];
    assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
}
