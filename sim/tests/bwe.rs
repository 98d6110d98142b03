//! Downstream bandwidth estimation: packets to a subscriber that negotiated transport-cc carry
//! consecutive transport-wide sequence numbers across all its streams.

mod common;

use std::time::Duration;

use common::{AUDIO, VIDEO};
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

#[test]
fn every_downstream_packet_carries_the_next_transport_wide_sequence_number() {
    let mut sim = Sim::new(SimConfig::seeded(7));
    let publisher = sim.add_client();
    let sub = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)), "peers connect");
    sim.publish(publisher, VIDEO, MediaSource::Video(VideoConfig::default()));
    sim.publish(publisher, AUDIO, MediaSource::audio());
    sim.subscribe_with(sub, VIDEO, 3);
    sim.subscribe_with(sub, AUDIO, 3);
    sim.run_for(Duration::from_secs(5));
    let c = sim.client(sub);
    let seqs = &c.twcc_seqs;
    assert!(seqs.len() > 500, "{} stamped packets", seqs.len());
    assert_eq!(
        seqs.len() as u64,
        c.stats.rtp_received,
        "every RTP packet is stamped"
    );
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "consecutive: {:?}", &seqs[..20]);
    }
}

#[test]
fn video_carries_the_playout_delay_beside_the_transport_wide_sequence_number() {
    // The playout delay in the one-byte form (ids 3 and 5), and in the two-byte form when the
    // transport-cc id does not fit the one-byte form (id 20).
    for twcc in [3u8, 20] {
        let mut sim = Sim::new(SimConfig::seeded(11));
        let publisher = sim.add_client();
        let sub = sim.add_client();
        assert!(sim.connect_all(Duration::from_secs(5)), "peers connect");
        sim.publish(publisher, VIDEO, MediaSource::Video(VideoConfig::default()));
        sim.publish(publisher, AUDIO, MediaSource::audio());
        let delay = lkr_sfu::playout_delay(400, 2000);
        let video = sim.subscribe_full(sub, VIDEO, twcc, Some((5, delay)));
        let audio = sim.subscribe_with(sub, AUDIO, twcc);
        sim.run_for(Duration::from_secs(3));
        let c = sim.client(sub);
        let on = |ssrc: u32| c.playout_delays.iter().filter(|(s, _)| *s == ssrc).count();
        assert!(
            on(video) > 50,
            "twcc id {twcc}: {} video packets with the delay",
            on(video)
        );
        assert_eq!(on(audio), 0, "audio carries no playout delay");
        assert!(
            c.playout_delays.iter().all(|(_, v)| v.as_slice() == delay),
            "twcc id {twcc}: {:?}",
            &c.playout_delays[..3]
        );
        // 400 ms and 2000 ms in 10 ms units, 12 bits each: 40 = 0x028, 200 = 0x0C8.
        assert_eq!(delay, [0x02, 0x80, 0xC8]);
        let seqs = &c.twcc_seqs;
        assert_eq!(
            seqs.len() as u64,
            c.stats.rtp_received,
            "twcc id {twcc}: every packet stamped"
        );
        for w in seqs.windows(2) {
            assert_eq!(
                w[1],
                w[0].wrapping_add(1),
                "twcc id {twcc}: {:?}",
                &seqs[..20]
            );
        }
    }
}
