//! The node page's track counters: bitrate and loss per layer since the previous look.

use std::time::Duration;

use lkr_sfu::{MediaKind, TrackId};
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

#[test]
fn track_stats_report_the_bitrate_sent_and_no_loss_on_a_clean_network() {
    let mut sim = Sim::new(SimConfig::seeded(11));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    let video = VideoConfig::default();
    sim.publish(publisher, track, MediaSource::Video(video));
    sim.run_for(Duration::from_secs(1));
    let mut out = Vec::new();
    let now = sim.now();
    sim.parts().0.track_stats(now, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].layers[0].bitrate_bps, 0,
        "no rate before a previous look"
    );
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    sim.parts().0.track_stats(now, &mut out);
    let t = &out[0];
    assert_eq!((t.track, t.kind, t.sinks), (track, MediaKind::Video, 0));
    let l = &t.layers[0];
    // 30 fps x 3 packets of 1000 payload bytes (+ 12-byte header): about 728 kbit/s.
    let sent = f64::from(video.fps)
        * f64::from(video.packets_per_frame)
        * (video.payload_len as f64 + 12.0)
        * 8.0;
    let ratio = l.bitrate_bps as f64 / sent;
    assert!(
        (0.9..1.1).contains(&ratio),
        "{} bit/s for {sent}",
        l.bitrate_bps
    );
    assert_eq!(l.loss, 0.0);
    assert!(l.live && l.packets > 200 && l.bytes > 200_000, "{l:?}");
}
