//! Datagrams the driver could not send are counted against the peer they were for.

use std::time::Duration;

use lkr_sfu::TrackId;
use lkr_sim::{MediaSource, Sim, SimConfig};

#[test]
fn unsent_datagrams_are_counted_per_subscriber() {
    let mut sim = Sim::new(SimConfig::seeded(71));
    let publisher = sim.add_client();
    let a = sim.add_client();
    let b = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    sim.publish(publisher, TrackId(1), MediaSource::video());
    sim.subscribe(a, TrackId(1));
    sim.subscribe(b, TrackId(1));
    sim.run_for(Duration::from_secs(1));
    let (a_addr, a_peer) = (sim.client(a).addr, sim.client(a).peer);
    let b_peer = sim.client(b).peer;
    let from = sim.client(publisher).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    let mut d = clients[0].next_media_datagram(TrackId(1)).expect("keyed");
    engine.handle_receive(now, from, &mut d);
    // The socket is full for A's packet only.
    let mut sent = 0;
    while let Some(t) = engine.poll_transmit() {
        if t.dest == a_addr {
            engine.note_unsent(t);
        } else {
            sent += 1;
            engine.recycle(t.data);
        }
    }
    assert!(sent >= 1, "B got its packet");
    let mut table = Vec::new();
    engine.unsent_by_peer(&mut table);
    assert_eq!(table, vec![(a_peer, 1)]);
    assert!(!table.iter().any(|(p, _)| *p == b_peer));
    assert_eq!(engine.drops.unsent, 1);
}
