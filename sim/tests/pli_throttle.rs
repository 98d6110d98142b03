//! Keyframe requests to a publisher are throttled per layer by `MediaLimits::pli_throttle`
//! (LiveKit's `rtc.pli_throttle`): however often they are asked for, the publisher is asked at
//! most once per interval.

use std::time::Duration;

use lkr_sfu::{Command, MediaLimits, PliThrottle, TrackId};
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

/// Keyframe requests the engine sent the publisher while the track was asked for one every
/// 50 ms for 3 s, under `throttle`.
fn plis_sent(throttle: PliThrottle) -> u64 {
    let mut sim = Sim::new(SimConfig::seeded(11));
    sim.command(Command::SetLimits(MediaLimits {
        pli_throttle: throttle,
        ..MediaLimits::default()
    }));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    let video = VideoConfig {
        keyframe_interval: None,
        ..VideoConfig::default()
    };
    sim.publish(publisher, track, MediaSource::Video(video));
    sim.run_for(Duration::from_secs(1));
    let before = sim.parts().0.traffic.pli_out;
    for _ in 0..60 {
        sim.command(Command::RequestKeyframe { track });
        sim.run_for(Duration::from_millis(50));
    }
    sim.parts().0.traffic.pli_out - before
}

#[test]
fn keyframe_requests_follow_the_configured_interval() {
    let default = plis_sent(PliThrottle::default());
    let second = Duration::from_secs(1);
    let slow = plis_sent(PliThrottle {
        low: second,
        mid: second,
        high: second,
    });
    // 3 s of requests: every 300 ms by default (10 or 11), every second when so configured
    // (3 or 4).
    assert!(
        (10..=11).contains(&default),
        "default: {default} PLIs in 3 s"
    );
    assert!((3..=4).contains(&slow), "1 s throttle: {slow} PLIs in 3 s");
}
