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
