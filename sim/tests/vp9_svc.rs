//! VP9 SVC: one stream whose pictures carry three spatial layers (livekit-client's
//! `L3T3_KEY`). A subscriber capped to a layer receives that layer and those below with
//! contiguous sequence numbers, the marker bit where its top layer ends each picture; raised,
//! it stays where it is until a keyframe (asking the publisher for one), then takes the
//! layers up to its new cap. A subscriber without a cap receives every packet.

mod common;

use std::time::Duration;

use common::vp9::{LAYERS, PER_LAYER, publish, send_picture, subscribe};
use lkr_sfu::{Command, TrackId};
use lkr_sim::{ClientId, Sim, SimConfig};

/// (extended sequence numbers, marker bits) of what `who` received on `ssrc` since its
/// packet `from`.
fn received(sim: &Sim, who: ClientId, ssrc: u32, from: usize) -> (Vec<u64>, Vec<bool>) {
    let s = sim.client(who).stream(ssrc).expect("stream");
    let pkts = &s.packets[from..];
    (
        pkts.iter().map(|p| p.ext).collect(),
        pkts.iter().map(|p| p.marker).collect(),
    )
}

#[test]
fn a_capped_subscriber_gets_its_spatial_layers_and_goes_up_at_a_keyframe() {
    let mut sim = Sim::new(SimConfig::seeded(7));
    let publisher = sim.add_client();
    let capped = sim.add_client();
    let whole = sim.add_client();
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    let peer_of = |sim: &Sim, c: ClientId| sim.client(c).peer;
    publish(&mut sim, publisher, track);
    let mut ssrcs = Vec::new();
    for (who, ssrc) in [(capped, 0x1111_0001u32), (whole, 0x2222_0001u32)] {
        subscribe(&mut sim, who, track, ssrc);
        ssrcs.push(ssrc);
    }
    sim.command(Command::SetMaxLayer {
        peer: peer_of(&sim, capped),
        track,
        max_layer: 0,
    });

    // A keyframe and nine more pictures.
    let mut seq = 1000;
    seq = send_picture(&mut sim, publisher, seq, 0, true);
    for pic in 1..10 {
        seq = send_picture(&mut sim, publisher, seq, pic, false);
    }
    let per_picture = usize::from(LAYERS) * usize::from(PER_LAYER);
    let (ext, markers) = received(&sim, whole, ssrcs[1], 0);
    assert_eq!(
        ext.len(),
        10 * per_picture,
        "the uncapped subscriber gets every packet"
    );
    assert_eq!(markers.iter().filter(|m| **m).count(), 10);
    let (ext, markers) = received(&sim, capped, ssrcs[0], 0);
    assert_eq!(
        ext.len(),
        10 * usize::from(PER_LAYER),
        "layer 0 only: {ext:?}"
    );
    assert!(
        ext.windows(2).all(|w| w[1] == w[0] + 1),
        "the layers left out leave no gap: {ext:?}"
    );
    assert_eq!(
        markers,
        (0..10).flat_map(|_| [false, true]).collect::<Vec<_>>(),
        "each picture ends where layer 0 ends"
    );

    // Raised to layer 1: not before a keyframe, which is asked for.
    let plis = sim.parts().0.traffic.pli_out;
    sim.command(Command::SetMaxLayer {
        peer: peer_of(&sim, capped),
        track,
        max_layer: 1,
    });
    let before = sim.client(capped).stream(ssrcs[0]).unwrap().packets.len();
    for pic in 10..13 {
        seq = send_picture(&mut sim, publisher, seq, pic, false);
    }
    let (ext, _) = received(&sim, capped, ssrcs[0], before);
    assert_eq!(
        ext.len(),
        3 * usize::from(PER_LAYER),
        "still layer 0 until a keyframe"
    );
    assert!(
        sim.parts().0.traffic.pli_out > plis,
        "going up asks the publisher for a keyframe"
    );
    let at_key = sim.client(capped).stream(ssrcs[0]).unwrap().packets.len();
    seq = send_picture(&mut sim, publisher, seq, 13, true);
    let _ = send_picture(&mut sim, publisher, seq, 14, false);
    let (ext, markers) = received(&sim, capped, ssrcs[0], before);
    assert_eq!(
        ext.len(),
        3 * usize::from(PER_LAYER) + 2 * 2 * usize::from(PER_LAYER),
        "layers 0 and 1 from the keyframe on"
    );
    assert!(ext.windows(2).all(|w| w[1] == w[0] + 1), "{ext:?}");
    assert_eq!(
        markers[at_key - before..],
        [false, false, false, true, false, false, false, true],
        "each picture ends where layer 1 ends"
    );
}
