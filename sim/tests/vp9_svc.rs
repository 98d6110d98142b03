//! VP9 SVC: one stream whose pictures carry three spatial layers (livekit-client's
//! `L3T3_KEY`). A subscriber capped to a layer receives that layer and those below with
//! contiguous sequence numbers, the marker bit where its top layer ends each picture; raised,
//! it stays where it is until a keyframe (asking the publisher for one), then takes the
//! layers up to its new cap. A subscriber without a cap receives every packet.

use std::time::Duration;

use lkr_sfu::{
    CodecKind, Command, ExtIds, MediaKind, PayloadType, PublishSpec, SubscribeSpec, TrackId,
};
use lkr_sim::{ClientId, Sim, SimConfig};

const PT: u8 = 98;
const SSRC: u32 = 0x5151_0001;
const LAYERS: u8 = 3;
/// Packets per layer frame.
const PER_LAYER: u16 = 2;

/// A packet of picture `pic`, spatial layer `sid`, packet `i` of its layer frame.
fn packet(seq: u16, pic: u16, sid: u8, i: u16, keyframe: bool) -> Vec<u8> {
    let begins = i == 0;
    let ends = i + 1 == PER_LAYER;
    let marker = ends && sid + 1 == LAYERS;
    let ts = u32::from(pic) * 3000;
    let mut p = vec![0x80, (u8::from(marker) << 7) | PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    // I, P (unless a keyframe), L, B, E, V (the scalability structure on a keyframe's
    // first packet).
    let ss = keyframe && sid == 0 && begins;
    let b0 = 0x80
        | if keyframe { 0 } else { 0x40 }
        | 0x20
        | if begins { 0x08 } else { 0 }
        | if ends { 0x04 } else { 0 }
        | if ss { 0x02 } else { 0 };
    p.push(b0);
    p.extend_from_slice(&(0x8000 | (pic & 0x7fff)).to_be_bytes());
    p.push((sid << 1) | u8::from(sid > 0));
    p.push(pic as u8);
    if ss {
        p.push((LAYERS - 1) << 5);
    }
    p.extend_from_slice(&[sid; 200]);
    p
}

/// Sends one picture from the publisher, layer by layer; returns the next sequence number.
fn send_picture(sim: &mut Sim, publisher: ClientId, seq: u16, pic: u16, keyframe: bool) -> u16 {
    let mut seq = seq;
    let (from, to) = (sim.client(publisher).addr, sim.server_addr());
    for sid in 0..LAYERS {
        for i in 0..PER_LAYER {
            let plain = packet(seq, pic, sid, i, keyframe);
            let dg = sim
                .client_mut(publisher)
                .protect_rtp(plain)
                .expect("SRTP keyed");
            sim.inject(from, to, dg);
            seq = seq.wrapping_add(1);
        }
    }
    sim.run_for(Duration::from_millis(33));
    seq
}

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
    sim.command(Command::Publish(PublishSpec {
        peer: peer_of(&sim, publisher),
        track,
        kind: MediaKind::Video,
        mid: "1".into(),
        rids: vec![],
        ssrcs: vec![SSRC],
        payload_types: vec![PayloadType {
            pt: PT,
            codec: CodecKind::Vp9,
            clock_rate: 90_000,
        }],
        ext: ExtIds::default(),
        rtx: vec![],
        rtx_ssrcs: vec![],
    }));
    let mut ssrcs = Vec::new();
    for (who, ssrc) in [(capped, 0x1111_0001u32), (whole, 0x2222_0001u32)] {
        sim.client_mut(who)
            .expect_stream(ssrc, track, CodecKind::Vp9);
        sim.command(Command::Subscribe(SubscribeSpec {
            peer: peer_of(&sim, who),
            track,
            ssrc,
            payload_types: vec![(CodecKind::Vp9, PT)],
            transport_cc: 0,
            rtx: None,
            priority: 0,
            playout_delay: None,
        }));
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
