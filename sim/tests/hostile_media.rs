//! A connected peer turned hostile: NACK storms, ICE checks from ever new source ports,
//! repeated subscriptions, bursts of sender reports. Each is bounded per peer, and media to
//! the others keeps flowing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{AUDIO, VIDEO, assert_complete, room, stop_and_drain};
use lkr_sfu::{Command, MediaLimits, SubscribeSpec};
use lkr_sim::{ClientId, VideoConfig};

/// RTCP NACK (RFC 4585 §6.2.1) for `media_ssrc` with the given (PID, BLP) pairs.
fn nack(out: &mut [u8], sender: u32, media_ssrc: u32, pairs: &[(u16, u16)]) -> Option<usize> {
    let len = 12 + 4 * pairs.len();
    let out = out.get_mut(..len)?;
    out[0] = 0x81; // V=2, FMT=1 (generic NACK)
    out[1] = 205; // RTPFB
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    for (i, (pid, blp)) in pairs.iter().enumerate() {
        out[12 + 4 * i..14 + 4 * i].copy_from_slice(&pid.to_be_bytes());
        out[14 + 4 * i..16 + 4 * i].copy_from_slice(&blp.to_be_bytes());
    }
    Some(len)
}

/// Hands `datagram` to the engine as from `from` and counts the datagrams it answers with
/// toward `to` (taken off the engine, not delivered).
fn answers(r: &mut common::Room, from: SocketAddr, to: SocketAddr, datagram: &mut [u8]) -> usize {
    let now = r.sim.now();
    r.sim.engine.handle_receive(now, from, datagram);
    let mut n = 0;
    while let Some(t) = r.sim.engine.poll_transmit() {
        if t.dest == to {
            n += 1;
        }
    }
    n
}

fn subscriber(r: &common::Room, i: usize) -> (ClientId, SocketAddr, u32) {
    let (id, video_ssrc, _) = r.subscribers[i];
    (id, r.sim.client(id).addr, video_ssrc)
}

#[test]
fn a_nack_storm_gets_each_packet_once_and_no_more_than_the_budget() {
    let mut r = room(71, 2, VideoConfig::default());
    // As the server sets them: a command ahead of the others.
    r.sim.command(Command::SetLimits(MediaLimits {
        max_nacks_per_packet: 64,
        max_retransmissions_per_sec: 200,
        ..MediaLimits::default()
    }));
    r.sim.run_for(Duration::from_secs(4));
    let (bad, bad_addr, video_ssrc) = subscriber(&r, 0);
    let highest = r
        .sim
        .client(bad)
        .stream(video_ssrc)
        .and_then(|s| s.packets.iter().max_by_key(|p| p.ext).map(|p| p.seq))
        .expect("video received");
    // The same 17 recent packets asked for by 80 NACKs in one datagram: each resent once.
    let pid = highest.wrapping_sub(40);
    let mut datagram = r
        .sim
        .client_mut(bad)
        .rtcp_datagram(&[], |out| {
            let mut at = 0;
            for _ in 0..80 {
                at += nack(&mut out[at..], 7, video_ssrc, &[(pid, 0xffff)])?;
            }
            Some(at)
        })
        .unwrap();
    let before = r.sim.engine.drops;
    let resent = answers(&mut r, bad_addr, bad_addr, &mut datagram);
    assert_eq!(resent, 17, "{:?}", r.sim.engine.drops);
    // Of the 80 × 17 asked, the first 64 were read (the cap), 47 of them repeats.
    let d = r.sim.engine.drops;
    assert_eq!(d.nack_over_cap - before.nack_over_cap, 80 * 17 - 64);
    assert_eq!(d.nack_duplicate - before.nack_duplicate, 64 - 17);
    // Every packet of the last 256, in one datagram: cut at max_nacks_per_packet.
    let pairs: Vec<(u16, u16)> = (0..16)
        .map(|i| (highest.wrapping_sub(255).wrapping_add(i * 17), 0xffff))
        .collect();
    let mut datagram = r
        .sim
        .client_mut(bad)
        .rtcp_datagram(&[], |out| nack(out, 7, video_ssrc, &pairs))
        .unwrap();
    let before = r.sim.engine.drops;
    let resent = answers(&mut r, bad_addr, bad_addr, &mut datagram);
    assert!(resent <= 64, "{resent}");
    assert!(r.sim.engine.drops.nack_over_cap > before.nack_over_cap);
    // Repeated within the same second: the budget of 200 holds, whatever is asked.
    let mut total = 17 + resent;
    for _ in 0..20 {
        let mut datagram = r
            .sim
            .client_mut(bad)
            .rtcp_datagram(&[], |out| nack(out, 7, video_ssrc, &pairs[..4]))
            .unwrap();
        total += answers(&mut r, bad_addr, bad_addr, &mut datagram);
    }
    assert!(total <= 200, "{total}");
    assert!(r.sim.engine.drops.nack_over_rate > 0);
    // A second later the budget is back.
    r.sim.run_for(Duration::from_millis(1100));
    let mut datagram = r
        .sim
        .client_mut(bad)
        .rtcp_datagram(&[], |out| nack(out, 7, video_ssrc, &[(highest, 0)]))
        .unwrap();
    assert_eq!(answers(&mut r, bad_addr, bad_addr, &mut datagram), 1);
    // The other subscriber never noticed.
    let (good, _, good_video) = subscriber(&r, 1);
    stop_and_drain(&mut r.sim, r.publisher, Duration::from_secs(2));
    assert_complete(&r.sim, r.publisher, good, good_video, VIDEO);
    assert_complete(&r.sim, r.publisher, good, r.subscribers[1].2, AUDIO);
}

#[test]
fn checks_from_ever_new_source_ports_do_not_grow_the_address_map() {
    let mut r = room(72, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let (bad, bad_addr, _) = subscriber(&r, 0);
    let before = r.sim.engine.address_count();
    let creds = r.sim.client(bad).credentials().clone();
    let username = format!("{}:{}", creds.server_ufrag, creds.client_ufrag);
    for port in 0..5_000u16 {
        let mut check = Vec::new();
        let mut txid = [0u8; 12];
        txid[..2].copy_from_slice(&port.to_be_bytes());
        lkr_ice::write_binding_request(&mut check, txid, &username, &creds.server_pwd, 1, 7, false)
            .unwrap();
        let from = SocketAddr::new(bad_addr.ip(), 20_000 + port);
        let now = r.sim.now();
        r.sim.engine.handle_receive(now, from, &mut check);
        while r.sim.engine.poll_transmit().is_some() {}
    }
    // ICE keeps at most MAX_VALID_SOURCES per peer; the map follows it.
    let after = r.sim.engine.address_count();
    assert!(
        after <= before + lkr_ice::MAX_VALID_SOURCES,
        "{before} -> {after}"
    );
    // After consent expiry of the bogus ports, only the live addresses remain.
    r.sim
        .run_for(lkr_ice::CONSENT_TIMEOUT + Duration::from_secs(2));
    assert_eq!(r.sim.engine.address_count(), before);
}

#[test]
fn resubscribing_keeps_one_entry_per_subscriber() {
    let mut r = room(73, 1, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(1));
    let (sub, sub_addr, _) = subscriber(&r, 0);
    let peer = r.sim.client(sub).peer;
    let entries = r.sim.engine.subscription_entries(peer);
    assert_eq!(entries, 4, "video and audio: two tracks, two SSRCs");
    let mut last = 0;
    for i in 0..500u32 {
        last = 0x5000_0000 | i;
        r.sim
            .client_mut(sub)
            .expect_stream(last, VIDEO, lkr_sfu::CodecKind::Vp8);
        r.sim.command(Command::Subscribe(SubscribeSpec {
            peer,
            track: VIDEO,
            ssrc: last,
            payload_types: vec![(lkr_sfu::CodecKind::Vp8, 96)],
            transport_cc: 0,
            rtx: None,
            priority: 0,
            playout_delay: None,
        }));
    }
    r.sim.run_for(Duration::from_secs(2));
    // Media arrives once, on the latest SSRC only.
    let latest = r
        .sim
        .client(sub)
        .stream(last)
        .map_or(0, |s| s.stats.received);
    assert!(latest > 0, "nothing on the latest subscription");
    let earlier = r
        .sim
        .client(sub)
        .stream(last - 1)
        .map_or(0, |s| s.stats.received);
    assert_eq!(earlier, 0);
    // The engine holds one entry per track, not one per subscription ever made, and an
    // old SSRC no longer names the track (a NACK on it repairs nothing).
    assert_eq!(r.sim.engine.subscription_entries(peer), entries);
    let seq = r.sim.client(sub).stream(last).unwrap().packets[0].seq;
    let mut stale = r
        .sim
        .client_mut(sub)
        .rtcp_datagram(&[], |out| nack(out, 7, last - 1, &[(seq, 0)]))
        .unwrap();
    assert_eq!(answers(&mut r, sub_addr, sub_addr, &mut stale), 0);
    let mut current = r
        .sim
        .client_mut(sub)
        .rtcp_datagram(&[], |out| nack(out, 7, last, &[(seq, 0)]))
        .unwrap();
    assert_eq!(answers(&mut r, sub_addr, sub_addr, &mut current), 1);
}

#[test]
fn sender_reports_packed_by_a_publisher_reach_each_subscriber_once() {
    let mut r = room(74, 3, VideoConfig::default());
    r.sim.run_for(Duration::from_secs(2));
    let from = r.sim.client(r.publisher).addr;
    let subs: Vec<SocketAddr> = (0..3).map(|i| subscriber(&r, i).1).collect();
    let video_ssrc = r.video_ssrc;
    // A burst of sender reports for the publisher's video, each in one compound datagram.
    let send = |r: &mut common::Room, reports: usize, ntp: u64| {
        let mut datagram = r
            .sim
            .client_mut(r.publisher)
            .rtcp_datagram(&[], |out| {
                let mut at = 0;
                for i in 0..reports as u64 {
                    at += lkr_rtp::write_sender_report(
                        &mut out[at..],
                        video_ssrc,
                        ntp + i,
                        90_000,
                        100,
                        100_000,
                        &[],
                    )
                    .ok()?;
                }
                Some(at)
            })
            .unwrap();
        let now = r.sim.now();
        r.sim.engine.handle_receive(now, from, &mut datagram);
        let mut to = [0usize; 3];
        while let Some(t) = r.sim.engine.poll_transmit() {
            if let Some(i) = subs.iter().position(|a| *a == t.dest) {
                to[i] += 1;
            }
        }
        to
    };
    // 40 in one datagram, another 40 right after: the subscribers hear the first only.
    let before = r.sim.engine.drops.sender_report_over_rate;
    assert!(send(&mut r, 40, 1 << 40).iter().all(|n| *n <= 1));
    assert_eq!(send(&mut r, 40, 1 << 41), [0; 3]);
    assert!(r.sim.engine.drops.sender_report_over_rate - before >= 79);
    // A report a second later is sent on to every subscriber.
    r.sim.run_for(Duration::from_secs(1));
    assert_eq!(send(&mut r, 1, 1 << 42), [1; 3]);
}
