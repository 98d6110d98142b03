//! A subscriber's whole path down for a while, then back: the first reports after it count
//! everything sent meanwhile as lost. That loss is the outage's, not congestion's, and must
//! not pause or cap the subscriber's video once the path is back.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{VIDEO, room};
use lkr_rtp::ReportBlock;
use lkr_sfu::Event;
use lkr_sim::{ClientId, LinkConfig, NackPolicy, VideoConfig};

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
