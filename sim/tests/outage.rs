//! A subscriber's whole path down for a while, then back: the first reports after it count
//! everything sent meanwhile as lost. That loss is the outage's, not congestion's, and must
//! not pause or cap the subscriber's video once the path is back.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{VIDEO, room};
use lkr_rtp::ReportBlock;
use lkr_sfu::Event;
use lkr_sim::{ClientId, LinkConfig, MediaSource, NackPolicy, Sim, SimConfig, VideoConfig};

/// A receiver report from `sub` on its video stream: its extended highest sequence number and
/// what it is missing of the range it saw, as libwebrtc counts them; handed to the engine.
fn report(r: &mut common::Room, sub: ClientId, ssrc: u32) -> (u32, i32) {
    let stream = r.sim.client(sub).stream(ssrc).expect("video received");
    let seen: BTreeSet<u64> = stream.packets.iter().map(|p| p.ext).collect();
    let (first, last) = (
        *seen.first().expect("a packet"),
        *seen.last().expect("a packet"),
    );
    let lost = (last - first + 1 - seen.len() as u64) as i32;
    let block = ReportBlock {
        ssrc,
        fraction_lost: 0,
        cumulative_lost: lost,
        highest_seq: last as u32,
        jitter: 0,
        lsr: 0,
        dlsr: 0,
    };
    let addr = r.sim.client(sub).addr;
    let mut datagram = r
        .sim
        .client_mut(sub)
        .rtcp_datagram(&[block], |_| Some(0))
        .expect("connected");
    r.sim.deliver_to_engine(addr, &mut datagram);
    (last as u32, lost)
}

fn plis_received(sim: &Sim, publisher: ClientId) -> u64 {
    let p = sim
        .client(publisher)
        .publisher(VIDEO)
        .expect("video published");
    p.stats.plis_received
}

fn paused_events(r: &common::Room, sub_peer: lkr_sfu::PeerId) -> usize {
    r.sim
        .events()
        .iter()
        .filter(|(_, e)| {
            matches!(e, Event::StreamState { peer, track, paused: true } if *peer == sub_peer && *track == VIDEO)
        })
        .count()
}

/// A subscriber whose loss is judged from its receiver reports (no transport-cc) is cut off
/// both ways for 5 s. Its first report after the path is back counts the 5 s of video as
/// lost (more than 80% of its window); its video is not paused, and goes on at once.
#[test]
fn an_outages_loss_does_not_pause_the_video() {
    let mut r = room(91, 1, VideoConfig::default());
    let (sub, video_ssrc, _) = r.subscribers[0];
    let peer = r.sim.client(sub).peer;
    // libwebrtc NACKs a gap of at most 1000 packets and asks for a keyframe instead of
    // more (an 18 s outage of a camera is more than that); scaled to this 5 s outage.
    r.sim.client_mut(sub).set_nack_policy(NackPolicy {
        max_gap: 100,
        ..NackPolicy::default()
    });
    // Clean reports once a second.
    for _ in 0..4 {
        r.sim.run_for(Duration::from_secs(1));
        let (_, lost) = report(&mut r, sub, video_ssrc);
        assert_eq!(lost, 0);
    }
    assert_eq!(paused_events(&r, peer), 0);
    // The path goes down both ways for 5 s: the server keeps sending into it.
    r.sim.set_uplink(sub, LinkConfig::cut());
    r.sim.set_downlink(sub, LinkConfig::cut());
    r.sim.run_for(Duration::from_secs(5));
    r.sim.set_uplink(sub, LinkConfig::default());
    r.sim.set_downlink(sub, LinkConfig::default());
    r.sim.run_for(Duration::from_millis(200));
    let (highest, lost) = report(&mut r, sub, video_ssrc);
    assert!(lost > 300, "the report counts the outage's loss: {lost}");
    assert_eq!(r.sim.engine.traffic.path_returns, 1, "one return, counted");
    let back = r.sim.now();
    // Reports go on, with no new loss.
    for _ in 0..3 {
        r.sim.run_for(Duration::from_secs(1));
        let (_, now_lost) = report(&mut r, sub, video_ssrc);
        assert!(now_lost <= lost, "{now_lost} > {lost}");
    }
    assert_eq!(
        paused_events(&r, peer),
        0,
        "the outage's loss paused the video"
    );
    // And it went on without a gap after the outage: every packet sent after the report is
    // there.
    let stream = r.sim.client(sub).stream(video_ssrc).expect("video");
    let after: BTreeSet<u64> = stream
        .packets
        .iter()
        .filter(|p| p.at > back)
        .map(|p| p.ext)
        .collect();
    assert!(
        after.len() > 200,
        "{} packets after the outage",
        after.len()
    );
    let (first, last) = (*after.first().unwrap(), *after.last().unwrap());
    assert!(u64::from(highest) < first + 30);
    assert_eq!(
        after.len() as u64,
        last - first + 1,
        "a gap after the outage"
    );
}

/// Silences that are no outage: a peer that receives nothing is heard only by its consent
/// checks (every 5 s here, 2.5-5 s from real clients), longer apart than `PATH_SILENCE`;
/// nothing was sent into them, so nothing is restarted and no return is counted. The
/// subscriber, which reports every second, is never silent.
#[test]
fn a_peer_that_receives_nothing_is_not_taken_for_one_back_from_an_outage() {
    let mut r = room(92, 1, VideoConfig::default());
    let idle = r.sim.add_client();
    assert!(r.sim.connect_all(Duration::from_secs(5)), "peers connect");
    let (sub, video_ssrc, _) = r.subscribers[0];
    let checks_before = r.sim.client(idle).last_check_sent();
    for _ in 0..16 {
        r.sim.run_for(Duration::from_secs(1));
        report(&mut r, sub, video_ssrc);
    }
    // The idle peer did check in meanwhile (three times, 5 s apart).
    assert!(r.sim.client(idle).last_check_sent() > checks_before);
    assert!(r.sim.client(idle).ice_connected());
    assert_eq!(
        r.sim.engine.traffic.path_returns, 0,
        "a consent check after a quiet spell was taken for a return"
    );
}

/// A subscriber with transport-cc feedback is cut off both ways for 8 s while the camera
/// goes on: 720 packets went into the silence, more than the server's retransmission cache
/// holds, fewer than the 1000 past which libwebrtc gives up NACKing and asks for a keyframe
/// itself. It NACKs what it misses and, like libwebrtc, sends no PLI when its NACKs go
/// unanswered (it would wait 3 s without a decodable frame first). The camera sends no
/// periodic keyframes. When the subscriber is heard again, the server asks the publisher for
/// a keyframe at once, and the subscriber has one within half a second of its path coming
/// back. A receiver heard only by its consent checks, with no feedback between them, is
/// not back from an outage each time.
#[test]
fn a_subscriber_back_from_an_outage_gets_a_keyframe() {
    let mut sim = Sim::new(SimConfig::seeded(93));
    let publisher = sim.add_client();
    let sub = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)), "peers connect");
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    sim.publish(publisher, VIDEO, MediaSource::Video(video));
    let video_ssrc = sim.subscribe_with(sub, VIDEO, 3);
    let now = sim.now();
    sim.client_mut(sub).send_transport_feedback(now);
    sim.client_mut(sub).set_nack_policy(NackPolicy {
        pli_on_give_up: false,
        ..NackPolicy::default()
    });
    sim.run_for(Duration::from_secs(3));
    assert!(
        sim.client(sub).twcc_feedback_sent > 20,
        "transport feedback flows"
    );
    let plis_before = plis_received(&sim, publisher);
    sim.set_uplink(sub, LinkConfig::cut());
    sim.set_downlink(sub, LinkConfig::cut());
    sim.run_for(Duration::from_secs(8));
    sim.set_uplink(sub, LinkConfig::default());
    sim.set_downlink(sub, LinkConfig::default());
    let back = sim.now();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.engine.traffic.path_returns, 1, "one return, counted");
    let stream = sim.client(sub).stream(video_ssrc).expect("video");
    assert_eq!(
        stream.stats.plis_sent, 0,
        "the subscriber asked for a keyframe itself"
    );
    let keyframe_at = stream
        .packets
        .iter()
        .find(|p| p.at > back && p.keyframe)
        .map(|p| p.at - back);
    let plis = plis_received(&sim, publisher) - plis_before;
    assert!(
        keyframe_at.is_some_and(|d| d <= Duration::from_millis(500)),
        "first keyframe after the return: {keyframe_at:?}; PLIs the publisher received: {plis}"
    );
    assert_eq!(plis, 1, "one keyframe asked for");

    // Then only its downlink starves for 16 s: it is heard by its consent checks, 5 s
    // apart, with no feedback between them. The first is a return from a path that worked
    // (one more keyframe); the others are not.
    sim.set_downlink(sub, LinkConfig::cut());
    sim.run_for(Duration::from_secs(16));
    let returns = sim.engine.traffic.path_returns;
    let plis_starved = plis_received(&sim, publisher) - plis_before - plis;
    assert!(returns >= 3, "{returns} returns");
    assert_eq!(plis_starved, 1, "keyframes asked for a starved receiver");
}
