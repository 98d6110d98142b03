//! ICE consent freshness (RFC 7675): a peer that stops sending consent checks is let go after
//! 30 s; one that keeps checking stays.

use std::time::Duration;

use lkr_sfu::{Event, TrackId};
use lkr_sim::{MediaSource, Sim, SimConfig};

fn disconnected_at(sim: &Sim, peer: lkr_sfu::PeerId) -> Option<std::time::Instant> {
    sim.events().iter().find_map(|(at, e)| match e {
        Event::PeerDisconnected { peer: p, .. } if *p == peer => Some(*at),
        _ => None,
    })
}

#[test]
fn a_silent_peer_is_disconnected_after_the_consent_timeout() {
    let mut sim = Sim::new(SimConfig::seeded(31));
    let silent = sim.add_client();
    let chatty = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    // Media alone does not keep consent: the silent peer publishes throughout.
    sim.publish(silent, TrackId(1), MediaSource::video());
    sim.subscribe(chatty, TrackId(1));
    sim.run_for(Duration::from_secs(7));

    let now = sim.now();
    sim.client_mut(silent).set_silent(true, now);
    let last_check = sim
        .client(silent)
        .last_check_sent()
        .expect("checks were sent");
    // The server saw that check one link delay later.
    let consent_from = last_check + Duration::from_millis(10);
    let silent_peer = sim.client(silent).peer;
    let chatty_peer = sim.client(chatty).peer;

    sim.run_until(consent_from + Duration::from_millis(29_900));
    assert_eq!(disconnected_at(&sim, silent_peer), None, "not before 30 s");

    sim.run_for(Duration::from_secs(15));
    let at = disconnected_at(&sim, silent_peer).expect("the silent peer is let go");
    let after = at - consent_from;
    // Consent expires on its own deadline, not on a periodic tick.
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_millis(30_005),
        "{after:?}"
    );
    assert_eq!(
        disconnected_at(&sim, chatty_peer),
        None,
        "consent checks keep the other one"
    );
    let reported = sim
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == silent_peer))
        .count();
    assert_eq!(reported, 1, "reported once");
    assert!(sim.client(chatty).stats.check_responses >= 10);

    // Once consent is gone the server stops sending the silent peer anything.
    let to_silent = |sim: &Sim| {
        sim.net
            .stats(sim.server_addr(), sim.client(silent).addr)
            .sent
    };
    let before = to_silent(&sim);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(to_silent(&sim), before);
}
