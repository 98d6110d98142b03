//! Reliable data sent to a peer before its reliable channel is open (a client that has
//! connected but not yet opened its data channels) is held and delivered, in order, once the
//! channel opens; what is held is capped per peer and for the engine as a whole, and what
//! comes past the caps is dropped and counted.

use std::time::Duration;

use bytes::Bytes;
use lkr_sfu::{Command, PeerId};
use lkr_sim::{ClientId, Sim, SimConfig};

fn send(sim: &mut Sim, peer: PeerId, reliable: bool, data: &[u8]) {
    sim.command(Command::SendData {
        peer,
        reliable,
        data: Bytes::copy_from_slice(data),
    });
}

/// What `c` received on `_reliable`, in order.
fn reliable_data(sim: &Sim, c: ClientId) -> Vec<Vec<u8>> {
    sim.client(c)
        .data
        .iter()
        .filter(|(l, _)| l == "_reliable")
        .map(|(_, d)| d.clone())
        .collect()
}

#[test]
fn reliable_data_sent_before_the_channel_opens_arrives_in_order_once_it_does() {
    let mut sim = Sim::new(SimConfig::seeded(71));
    let c = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let peer = sim.client(c).peer;

    // Connected, no data channel yet: two reliable messages and a lossy one.
    send(&mut sim, peer, true, b"early-1");
    send(&mut sim, peer, false, b"lossy-early");
    send(&mut sim, peer, true, b"early-2");
    sim.run_for(Duration::from_secs(1));
    assert!(sim.client(c).data.is_empty());

    let now = sim.now();
    sim.client_mut(c).open_reliable_channel(now);
    // one more sent while the channel is opening
    send(&mut sim, peer, true, b"early-3");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.client(c).channels_open, vec!["_reliable".to_owned()]);
    send(&mut sim, peer, true, b"late");
    sim.run_for(Duration::from_secs(1));

    assert_eq!(
        reliable_data(&sim, c),
        vec![
            b"early-1".to_vec(),
            b"early-2".to_vec(),
            b"early-3".to_vec(),
            b"late".to_vec()
        ]
    );
    // lossy data has nothing to wait for
    assert_eq!(sim.client(c).data.len(), 4);
    assert_eq!(sim.engine.drops.data_over_hold, 0);
}

#[test]
fn held_data_is_capped_per_peer_by_count_and_bytes() {
    let mut sim = Sim::new(SimConfig::seeded(72));
    let by_count = sim.add_client();
    let by_bytes = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));

    // 40 small messages: 32 are held, 8 dropped
    let peer = sim.client(by_count).peer;
    for i in 0..40u32 {
        send(&mut sim, peer, true, format!("m{i}").as_bytes());
    }
    assert_eq!(sim.engine.drops.data_over_hold, 8);
    // three of 200 KiB: two fit in 512 KiB, the third is dropped
    let peer = sim.client(by_bytes).peer;
    let big = vec![7u8; 200 * 1024];
    for _ in 0..3 {
        send(&mut sim, peer, true, &big);
    }
    assert_eq!(sim.engine.drops.data_over_hold, 9);

    let now = sim.now();
    sim.client_mut(by_count).open_reliable_channel(now);
    sim.run_for(Duration::from_secs(2));
    let got = reliable_data(&sim, by_count);
    let want: Vec<Vec<u8>> = (0..32u32).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(got, want, "the first 32, in order");
}

#[test]
fn held_data_is_capped_for_all_peers_together_and_freed_with_the_peer() {
    let mut sim = Sim::new(SimConfig::seeded(73));
    // Peers that never connect: 20 of them hold 2 × 200 KiB each (8000 KiB of the 8 MiB).
    let clients: Vec<ClientId> = (0..21).map(|_| sim.add_client()).collect();
    let big = vec![9u8; 200 * 1024];
    for &c in &clients[..20] {
        let peer = sim.client(c).peer;
        send(&mut sim, peer, true, &big);
        send(&mut sim, peer, true, &big);
    }
    assert_eq!(sim.engine.drops.data_over_hold, 0);
    // The 21st peer has room of its own, but the engine has not.
    let last = sim.client(clients[20]).peer;
    send(&mut sim, last, true, &big);
    assert_eq!(sim.engine.drops.data_over_hold, 1);
    // A peer that goes away takes what it held with it.
    let gone = sim.client(clients[0]).peer;
    sim.command(Command::RemovePeer { peer: gone });
    send(&mut sim, last, true, &big);
    assert_eq!(sim.engine.drops.data_over_hold, 1);
}
