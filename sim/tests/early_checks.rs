//! A client's first checks can reach the engine before the command that adds its peer (the
//! client has the server's credentials from the SDP while the command is still on its way
//! to the shard). Those checks are kept and answered when the peer arrives, so the client
//! connects without waiting for its next check; what is kept is capped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use lkr_sfu::EARLY_CHECKS;
use lkr_sim::{ClientConfig, Rng, Sim, SimConfig};

/// The client checks again this long after an unanswered first check (`lkr-ice`'s first
/// check interval).
const RETRY: Duration = Duration::from_millis(50);

#[test]
fn a_check_that_comes_before_its_peer_is_answered_when_the_peer_arrives() {
    let mut sim = Sim::new(SimConfig::seeded(91));
    let t0 = sim.now();
    let (c, add) = sim.add_client_unannounced(ClientConfig::default());
    // The first check arrives (10 ms link) before the engine knows the peer: kept.
    sim.run_for(Duration::from_millis(15));
    assert_eq!(sim.engine.early_checks(), 1);
    assert_eq!(sim.engine.drops.unknown_source, 1);
    assert!(!sim.client(c).ice_connected());
    // The peer arrives 15 ms in; the kept check is answered at once and the answer is back
    // 10 ms later, well before the client would have checked again.
    sim.command(add);
    assert_eq!(sim.engine.early_checks(), 0);
    assert!(sim.run_until_condition(RETRY, |s| s.client(c).ice_connected()));
    assert!(
        sim.now() - t0 < RETRY,
        "connected {:?} after the first check",
        sim.now() - t0
    );
    assert!(sim.connect_all(Duration::from_secs(2)));
}

#[test]
fn checks_for_unknown_peers_are_kept_up_to_the_cap_and_a_real_one_still_gets_through() {
    let mut sim = Sim::new(SimConfig::seeded(92));
    let mut rng = Rng::new(9292);
    // Ten thousand forged checks, each for a ufrag nobody has, from as many sources.
    for i in 0..10_000u32 {
        let mut check = Vec::new();
        let username = format!("f{:08x}:x", rng.next_u64() as u32);
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&i.to_be_bytes());
        lkr_ice::write_binding_request(&mut check, tid, &username, "whatever-password", 1, 2, true)
            .unwrap();
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xC0A8_0000 + i)), 4000);
        sim.deliver_to_engine(from, &mut check);
        assert!(sim.engine.early_checks() <= EARLY_CHECKS);
    }
    assert_eq!(sim.engine.early_checks(), EARLY_CHECKS);
    assert_eq!(sim.engine.drops.unknown_source, 10_000);
    // None was answered.
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.undeliverable, 0);
    // A real client's early check is kept among them and answered when its peer comes.
    let t0 = sim.now();
    let (c, add) = sim.add_client_unannounced(ClientConfig::default());
    sim.run_for(Duration::from_millis(15));
    assert!(!sim.client(c).ice_connected());
    sim.command(add);
    assert!(sim.run_until_condition(RETRY, |s| s.client(c).ice_connected()));
    assert!(sim.now() - t0 < RETRY);
    assert!(sim.connect_all(Duration::from_secs(2)));
    assert_eq!(sim.undeliverable, 0);
}

#[test]
fn an_ice_restart_check_that_comes_before_the_restart_is_answered_by_it() {
    let mut sim = Sim::new(SimConfig::seeded(93));
    let c = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(2)));
    let (peer, from) = (sim.client(c).peer, sim.client(c).addr);
    // The client restarts ICE with fresh credentials on both sides and checks at once,
    // from its known address, before the engine has the restart.
    let (ufrag, pwd) = ("rstU", "restart-password-0123456789");
    let mut check = Vec::new();
    let tid = [7u8; 12];
    lkr_ice::write_binding_request(&mut check, tid, &format!("{ufrag}:rstC"), pwd, 1, 2, true)
        .unwrap();
    let now = sim.now();
    while sim.engine.poll_transmit().is_some() {}
    sim.engine.handle_receive(now, from, &mut check);
    assert!(sim.engine.poll_transmit().is_none(), "not answerable yet");
    assert_eq!(sim.engine.early_checks(), 1);
    sim.engine.handle_command(
        now,
        lkr_sfu::Command::RestartIce {
            peer,
            local_ufrag: ufrag.into(),
            local_pwd: pwd.into(),
            remote_ufrag: "rstC".into(),
            remote_pwd: "client-restart-password-0123".into(),
        },
    );
    let answer = std::iter::from_fn(|| sim.engine.poll_transmit())
        .find(|t| t.dest == from && t.data.first().is_some_and(|b| *b <= 3))
        .expect("the kept check is answered");
    let r = lkr_ice::parse_binding_response(&answer.data, pwd).unwrap();
    assert!(r.success);
    assert_eq!(r.transaction_id, tid);
    assert_eq!(sim.engine.early_checks(), 0);
}
