//! The forwarding hot path allocates nothing in steady state (DESIGN.md §4): one publisher,
//! ten subscribers, 10,000 packets through `handle_receive` and `poll_transmit`, every
//! transmitted buffer recycled.
//!
//! To find an allocation, run with `LKR_ALLOC_BACKTRACE=1` (and `-- --nocapture`): the first
//! few allocations inside the window print a backtrace.

use std::time::Duration;

use lkr_driver::alloc_count::{Counting, count_allocations};
use lkr_sfu::TrackId;
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIBERS: usize = 10;
const PACKETS: usize = 10_000;

#[test]
fn forwarding_one_to_ten_allocates_nothing() {
    // The counter does see allocations.
    assert!(count_allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);

    let mut sim = Sim::new(SimConfig::seeded(51));
    let publisher = sim.add_client();
    for _ in 0..SUBSCRIBERS {
        sim.add_client();
    }
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    sim.publish(publisher, track, MediaSource::Video(VideoConfig::default()));
    for i in 1..=SUBSCRIBERS {
        sim.subscribe(lkr_sim::ClientId(i), track);
    }
    // Warm up through the network: keyframe, PLI, NACK-free steady state.
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    sim.client_mut(publisher)
        .publisher_mut(track)
        .expect("published")
        .set_sending(false, now);
    sim.run_for(Duration::from_millis(100));

    let from = sim.client(publisher).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    let forward = |engine: &mut lkr_sfu::Engine, datagram: &mut [u8]| {
        let mut sent = 0;
        engine.handle_receive(now, from, datagram);
        while let Some(t) = engine.poll_transmit() {
            sent += 1;
            engine.recycle(t.data);
        }
        sent
    };
    // Warm up by hand: every slot of the retransmission cache and the buffer pool filled.
    for _ in 0..2_000 {
        let mut d = clients[0].next_media_datagram(track).expect("keyed");
        assert_eq!(forward(engine, &mut d), SUBSCRIBERS);
    }
    let mut batch: Vec<Vec<u8>> = (0..PACKETS)
        .map(|_| clients[0].next_media_datagram(track).expect("keyed"))
        .collect();

    let mut transmitted = 0;
    let allocations = count_allocations(|| {
        for d in &mut batch {
            transmitted += forward(engine, d);
        }
    });
    assert_eq!(
        transmitted,
        PACKETS * SUBSCRIBERS,
        "every packet reached every subscriber"
    );
    assert_eq!(
        allocations, 0,
        "allocations while forwarding {PACKETS} packets to {SUBSCRIBERS}"
    );
}
