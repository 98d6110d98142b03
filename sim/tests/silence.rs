//! A peer whose path goes silent while media flows is checked by the server itself, every
//! 500 ms, until it answers: a client whose network comes back hears from the server at
//! once instead of waiting for its own backed-off checks or an ICE restart.

use std::time::Duration;

use lkr_sfu::TrackId;
use lkr_sim::{LinkConfig, MediaSource, Sim, SimConfig};

#[test]
fn a_silent_subscriber_is_checked_every_500_ms_until_its_path_answers() {
    let mut sim = Sim::new(SimConfig::seeded(71));
    let publisher = sim.add_client();
    let subscriber = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    sim.publish(publisher, TrackId(1), MediaSource::audio());
    sim.subscribe(subscriber, TrackId(1));
    sim.run_for(Duration::from_secs(2));
    let server = sim.server_addr();
    let to_sub = |sim: &Sim| sim.net.stats(server, sim.client(subscriber).addr).stun;
    let to_pub = |sim: &Sim| sim.net.stats(server, sim.client(publisher).addr).stun;

    // The subscriber's uplink dies for 12 s: nothing it sends reaches the server.
    sim.set_uplink(subscriber, LinkConfig::lossy(1.0));
    let (sub_before, pub_before) = (to_sub(&sim), to_pub(&sim));
    sim.run_for(Duration::from_secs(12));
    // Its last check was at most 4 s before the cut: silent for 6 s within 2-6 s of it,
    // then a check every 500 ms (the sweep runs once a second with the media timers).
    let probes = to_sub(&sim) - sub_before;
    assert!(
        (10..=21).contains(&probes),
        "{probes} checks of the silent subscriber"
    );
    // The publisher, heard all along, only got answers to its own checks (one per 4 s).
    assert!(to_pub(&sim) - pub_before <= 4, "the publisher was checked");

    // Back: its next answer (or check) ends the checking.
    sim.set_uplink(subscriber, LinkConfig::default());
    sim.run_for(Duration::from_secs(1));
    let after = to_sub(&sim);
    sim.run_for(Duration::from_secs(8));
    // Only answers to its own consent checks from then on.
    assert!(
        to_sub(&sim) - after <= 3,
        "still checked after its path came back"
    );
    assert!(sim.client(subscriber).ice_connected());
}
