//! The engine wakes for real deadlines only: connected peers with no media cost a timer
//! wake-up per consent deadline, not a fixed tick over everyone.

use std::time::Duration;

use lkr_sfu::TrackId;
use lkr_sim::{MediaSource, Sim, SimConfig};

#[test]
fn idle_connected_peers_do_not_tick() {
    let mut sim = Sim::new(SimConfig::seeded(61));
    for _ in 0..10 {
        sim.add_client();
    }
    assert!(sim.connect_all(Duration::from_secs(5)));
    // Let the handshakes' retransmission timers and SCTP setup settle.
    sim.run_for(Duration::from_secs(2));
    let before = sim.engine_timeouts();
    sim.run_for(Duration::from_secs(60));
    let wakeups = sim.engine_timeouts() - before;
    // A 20 ms tick would be 3,000; peers' own timers (consent, SCTP) are a few a minute.
    // Consent deadlines (30 s after each peer's last check) come due and are re-armed.
    assert!(wakeups >= 1, "consent timers fire");
    assert!(
        wakeups <= 10 * 4,
        "{wakeups} timer wake-ups in 60 s for 10 idle peers"
    );
    let next = sim.parts().0.poll_timeout().expect("consent is pending");
    assert!(next > sim.now(), "nothing overdue");
}

#[test]
fn media_timers_run_only_while_there_is_media() {
    let mut sim = Sim::new(SimConfig::seeded(62));
    let publisher = sim.add_client();
    let subscriber = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    sim.publish(publisher, TrackId(1), MediaSource::video());
    sim.subscribe(subscriber, TrackId(1));
    sim.run_for(Duration::from_secs(3));
    let busy_from = sim.engine_timeouts();
    sim.run_for(Duration::from_secs(10));
    let busy = sim.engine_timeouts() - busy_from;
    // Receiver reports (1 s) and audio-level/loss intervals keep it going while media flows.
    assert!(busy >= 10, "{busy}");
    assert!(sim.client(subscriber).stats.rtp_received > 0);
}
