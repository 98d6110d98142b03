//! Hostile and broken input: random datagrams from unknown addresses and from a connected
//! peer's address, and damaged copies of real packets. Everything is dropped and counted,
//! nothing panics, and media keeps flowing.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{AUDIO, VIDEO, assert_complete, room, stop_and_drain};
use lkr_sfu::Drops;
use lkr_sim::{Rng, VideoConfig};

fn total(d: &Drops) -> u64 {
    d.unknown_source
        + d.bad_stun
        + d.dtls_error
        + d.srtp_error
        + d.replayed
        + d.malformed_rtp
        + d.unknown_ssrc
        + d.unknown_first_byte
}

/// A random datagram, shaped now and then like STUN, DTLS or RTP so that it gets past the
/// first-byte demultiplexing.
fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = 1 + rng.below(1_400) as usize;
    let mut d = vec![0u8; len];
    rng.fill(&mut d);
    match rng.below(5) {
        // STUN: binding request type and the magic cookie.
        0 if len >= 20 => {
            d[0] = 0;
            d[1] = 1;
            d[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
            let body = u16::try_from(len - 20).unwrap_or(0) & !3;
            d[2..4].copy_from_slice(&body.to_be_bytes());
        }
        // DTLS record: handshake, DTLS 1.2 version, plausible length.
        1 if len >= 13 => {
            d[0] = 22;
            d[1] = 0xFE;
            d[2] = 0xFD;
            let body = u16::try_from(len - 13).unwrap_or(0);
            d[11..13].copy_from_slice(&body.to_be_bytes());
        }
        // RTP or RTCP: version 2.
        2 => d[0] = 0x80 | (d[0] & 0x3F),
        _ => {}
    }
    d
}

#[test]
fn random_datagrams_from_unknown_addresses_are_dropped_and_counted() {
    let mut r = room(41, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let mut rng = Rng::new(4141);
    let before = r.sim.engine.drops;
    let sent_before = r
        .sim
        .net
        .stats(r.sim.server_addr(), r.sim.client(r.subscribers[0].0).addr);
    let count = 20_000u64;
    for i in 0..count {
        let ip = Ipv4Addr::from(0xC0A8_0000 + (i as u32 % 500));
        let from = SocketAddr::new(IpAddr::V4(ip), 40_000 + (i % 7) as u16);
        let mut d = random_datagram(&mut rng);
        r.sim.deliver_to_engine(from, &mut d);
    }
    let after = r.sim.engine.drops;
    assert_eq!(
        total(&after) - total(&before),
        count,
        "every one counted once: {after:?}"
    );
    assert!(after.unknown_source > before.unknown_source);
    assert!(after.unknown_first_byte > before.unknown_first_byte);
    // None was answered: nothing went to an address that is not a peer.
    r.sim.run_for(Duration::from_secs(1));
    assert_eq!(r.sim.undeliverable, 0);
    // Media went on.
    r.sim.run_for(Duration::from_secs(2));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(1));
    let (sub, v, a) = r.subscribers[0];
    assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
    assert_complete(&r.sim, r.publisher, sub, a, AUDIO);
    let sent_after = r.sim.net.stats(r.sim.server_addr(), r.sim.client(sub).addr);
    assert!(sent_after.rtp > sent_before.rtp);
}

#[test]
fn random_and_damaged_datagrams_from_a_peers_address_do_no_harm() {
    let mut r = room(42, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let pub_addr = r.sim.client(r.publisher).addr;
    let mut rng = Rng::new(4242);
    let before = r.sim.engine.drops;

    // Random datagrams as if from the publisher, interleaved with its real traffic.
    for _ in 0..200 {
        for _ in 0..25 {
            let mut d = random_datagram(&mut rng);
            // Keep clear of DTLS here: a forged record from the peer's own address is the
            // subject of the next part.
            if (20..=63).contains(&d[0]) {
                d[0] = 0x80;
            }
            r.sim.deliver_to_engine(pub_addr, &mut d);
        }
        r.sim.run_for(Duration::from_millis(10));
    }
    // Damaged copies of real publisher packets (bits flipped, cut short) just ahead of the
    // originals: authentication fails, and the intact packet behind still gets through.
    let mut damaged = 0;
    for _ in 0..100 {
        for _ in 0..20 {
            let Some(mut good) = r.sim.client_mut(r.publisher).next_media_datagram(VIDEO) else {
                panic!("the publisher is keyed");
            };
            let mut bad = good.clone();
            if rng.chance(0.5) {
                let at = rng.below(bad.len() as u64) as usize;
                // Flip any bit but the version's, so that it still reads as SRTP.
                let bit = if at == 0 { rng.below(6) } else { rng.below(8) };
                bad[at] ^= 1 << bit;
            } else {
                bad.truncate(1 + rng.below(bad.len() as u64 - 1) as usize);
            }
            damaged += 1;
            r.sim.deliver_to_engine(pub_addr, &mut bad);
            r.sim.deliver_to_engine(pub_addr, &mut good);
        }
        r.sim.run_for(Duration::from_millis(10));
    }
    let after = r.sim.engine.drops;
    assert!(after.srtp_error >= before.srtp_error + damaged, "{after:?}");
    assert!(after.bad_stun > before.bad_stun, "{after:?}");
    assert_eq!(
        total(&after) - total(&before),
        5_000 + damaged,
        "every one counted once: {after:?}"
    );

    // Nothing was lost, and the stream goes on.
    r.sim.run_for(Duration::from_secs(3));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));
    let (sub, v, a) = r.subscribers[0];
    assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
    assert_complete(&r.sim, r.publisher, sub, a, AUDIO);
    assert!(
        r.sim
            .events()
            .iter()
            .all(|(_, e)| !matches!(e, lkr_sfu::Event::PeerDisconnected { .. }))
    );
}

#[test]
fn forged_dtls_records_from_a_peers_address_do_not_end_its_session() {
    let mut r = room(43, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let pub_addr = r.sim.client(r.publisher).addr;
    let mut rng = Rng::new(4343);
    for _ in 0..50 {
        for _ in 0..20 {
            let len = 13 + rng.below(300) as usize;
            let mut d = vec![0u8; len];
            rng.fill(&mut d);
            // Content types 20..=25 (change_cipher_spec, alert, handshake, application data,
            // heartbeat, tls12_cid), DTLS 1.2, a plausible epoch and length.
            d[0] = 20 + rng.below(6) as u8;
            d[1] = 0xFE;
            d[2] = 0xFD;
            d[3] = 0;
            d[4] = rng.below(2) as u8;
            let body = u16::try_from(len - 13).unwrap_or(0);
            d[11..13].copy_from_slice(&body.to_be_bytes());
            r.sim.deliver_to_engine(pub_addr, &mut d);
        }
        r.sim.run_for(Duration::from_millis(20));
    }
    r.sim.run_for(Duration::from_secs(2));
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(1));
    assert!(
        r.sim
            .events()
            .iter()
            .all(|(_, e)| !matches!(e, lkr_sfu::Event::PeerDisconnected { .. })),
        "{:?}",
        r.sim.events()
    );
    let (sub, v, _) = r.subscribers[0];
    assert_complete(&r.sim, r.publisher, sub, v, VIDEO);
}
