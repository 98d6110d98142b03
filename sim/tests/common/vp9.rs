//! A VP9 SVC publisher made by hand: one stream whose pictures carry three spatial layers
//! (livekit-client's `L3T3_KEY`), each layer frame in `PER_LAYER` packets.

use std::time::Duration;

use lkr_sfu::{
    CodecKind, Command, ExtIds, MediaKind, PayloadType, PublishSpec, SubscribeSpec, TrackId,
};
use lkr_sim::{ClientId, Sim};

pub const PT: u8 = 98;
pub const SSRC: u32 = 0x5151_0001;
pub const LAYERS: u8 = 3;
/// Packets per layer frame.
pub const PER_LAYER: u16 = 2;

/// A packet of picture `pic`, spatial layer `sid`, packet `i` of its layer frame.
pub fn packet(seq: u16, pic: u16, sid: u8, i: u16, keyframe: bool) -> Vec<u8> {
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

/// One picture's packets from the publisher, layer by layer, SRTP-protected, from sequence
/// number `seq`; and the next sequence number.
pub fn picture(
    sim: &mut Sim,
    publisher: ClientId,
    seq: u16,
    pic: u16,
    keyframe: bool,
) -> (Vec<Vec<u8>>, u16) {
    let mut seq = seq;
    let mut out = Vec::new();
    for sid in 0..LAYERS {
        for i in 0..PER_LAYER {
            let plain = packet(seq, pic, sid, i, keyframe);
            out.push(
                sim.client_mut(publisher)
                    .protect_rtp(plain)
                    .expect("SRTP keyed"),
            );
            seq = seq.wrapping_add(1);
        }
    }
    (out, seq)
}

/// Sends one picture from the publisher, layer by layer; returns the next sequence number.
pub fn send_picture(sim: &mut Sim, publisher: ClientId, seq: u16, pic: u16, keyframe: bool) -> u16 {
    let (from, to) = (sim.client(publisher).addr, sim.server_addr());
    let (datagrams, seq) = picture(sim, publisher, seq, pic, keyframe);
    for dg in datagrams {
        sim.inject(from, to, dg);
    }
    sim.run_for(Duration::from_millis(33));
    seq
}

/// Publishes `track` from `publisher` as that VP9 stream.
pub fn publish(sim: &mut Sim, publisher: ClientId, track: TrackId) {
    let peer = sim.client(publisher).peer;
    sim.command(Command::Publish(PublishSpec {
        peer,
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
}

/// Subscribes `who` to `track`, received on `ssrc`.
pub fn subscribe(sim: &mut Sim, who: ClientId, track: TrackId, ssrc: u32) {
    let peer = sim.client(who).peer;
    sim.client_mut(who)
        .expect_stream(ssrc, track, CodecKind::Vp9);
    sim.command(Command::Subscribe(SubscribeSpec {
        peer,
        track,
        ssrc,
        payload_types: vec![(CodecKind::Vp9, PT)],
        transport_cc: 0,
        rtx: None,
        priority: 0,
        playout_delay: None,
    }));
}
