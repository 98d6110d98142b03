//! The node page's track counters: bitrate and loss per layer since the previous look.

use std::time::Duration;

use lkr_sfu::{MediaKind, TrackId};
use lkr_sim::{ClientId, MediaSource, Sim, SimConfig, VideoConfig};

/// `n` packets of 255 bytes of padding from `publisher` on the media SSRC of `track`, next
/// in its sequence, as libwebrtc probes bandwidth without RTX.
fn send_padding(sim: &mut Sim, publisher: ClientId, track: TrackId, n: usize) {
    let from = sim.client(publisher).addr;
    let to = sim.server_addr();
    for _ in 0..n {
        let c = sim.client_mut(publisher);
        let pkt = c
            .publisher_mut(track)
            .expect("published")
            .padding_packet(255);
        let data = c.protect_rtp(pkt).expect("connected");
        sim.inject(from, to, data);
    }
}

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

/// libwebrtc publishers without RTX (the Rust SDK's offer carries none) probe bandwidth with
/// packets of nothing but padding on a media SSRC, in the Rust SDK's simulcast on the lowest
/// layer. They are no media: the layer's rate stays what its frames cost, and they are no
/// loss either.
#[test]
fn probe_padding_on_the_media_ssrc_does_not_count_toward_the_layer_rate() {
    let mut sim = Sim::new(SimConfig::seeded(12));
    let publisher = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    let video = VideoConfig::default();
    sim.publish(publisher, track, MediaSource::Video(video));
    let frame = Duration::from_secs(1) / video.fps;
    // Between frames, 20 padding packets of 255 bytes: about 1.3 Mbit/s of probes next to
    // about 0.7 Mbit/s of media.
    let probe = |sim: &mut Sim, d: Duration| {
        let end = sim.elapsed() + d;
        while sim.elapsed() < end {
            sim.run_for(frame);
            send_padding(sim, publisher, track, 20);
        }
    };
    probe(&mut sim, Duration::from_secs(1));
    let mut out = Vec::new();
    let now = sim.now();
    sim.parts().0.track_stats(now, &mut out);
    probe(&mut sim, Duration::from_secs(2));
    let now = sim.now();
    sim.parts().0.track_stats(now, &mut out);
    let l = &out[0].layers[0];
    let media = f64::from(video.fps)
        * f64::from(video.packets_per_frame)
        * (video.payload_len as f64 + 12.0)
        * 8.0;
    let ratio = l.bitrate_bps as f64 / media;
    assert!(
        (0.9..1.1).contains(&ratio),
        "{} bit/s for {media} bit/s of media",
        l.bitrate_bps
    );
    assert_eq!(l.loss, 0.0, "{l:?}");
    // The probes are packets received all the same: 30 fps x (3 + 20) over 3 s.
    assert!(l.packets > 1_800, "{l:?}");
}

/// Those probes are not forwarded either, as LiveKit does not: a subscriber receives the
/// frames only, in a sequence without gaps (so it NACKs nothing and its PictureIDs run on),
/// and the server counts each probe it left out once.
#[test]
fn probe_padding_on_the_media_ssrc_is_not_forwarded() {
    let mut sim = Sim::new(SimConfig::seeded(13));
    let publisher = sim.add_client();
    let subscriber = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    let video = VideoConfig::default();
    sim.publish(publisher, track, MediaSource::Video(video));
    sim.subscribe(subscriber, track);
    sim.run_for(Duration::from_secs(1));
    let frame = Duration::from_secs(1) / video.fps;
    let before = sim
        .client(subscriber)
        .stream_of(track)
        .expect("receives")
        .unique_packets();
    let padding_before = sim.parts().0.drops.padding;
    let frames = 60;
    for _ in 0..frames {
        sim.run_for(frame);
        send_padding(&mut sim, publisher, track, 5);
    }
    sim.run_for(Duration::from_millis(200));
    let s = sim.client(subscriber).stream_of(track).expect("receives");
    let got = s.unique_packets() - before;
    let per_frame = video.packets_per_frame as usize;
    assert!(
        (frames - 2) * per_frame <= got && got <= (frames + 8) * per_frame,
        "{got} packets for {frames} frames of {per_frame}: probes were forwarded"
    );
    assert!(s.gaps().is_empty(), "gaps {:?}", s.gaps());
    assert_eq!(s.stats.nacks_sent, 0);
    assert!(
        s.packets.iter().all(|p| p.tag.is_some()),
        "a packet without media reached the subscriber"
    );
    s.check_picture_ids().expect("PictureIDs run on");
    let left_out = sim.parts().0.drops.padding - padding_before;
    assert_eq!(left_out, frames as u64 * 5);
}
