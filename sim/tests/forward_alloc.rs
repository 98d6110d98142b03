//! The forwarding hot path allocates nothing in steady state (DESIGN.md §4): one publisher,
//! ten subscribers, 10,000 packets through `handle_receive` and `poll_transmit`, every
//! transmitted buffer recycled.
//!
//! To find an allocation, run with `LKR_ALLOC_BACKTRACE=1` (and `-- --nocapture`): the first
//! few allocations inside the window print a backtrace.

mod common;

use std::time::Duration;

use common::vp9;
use lkr_driver::alloc_count::{Counting, count_allocations};
use lkr_sfu::{Command, TrackId};
use lkr_sim::{ClientId, MediaSource, Sim, SimConfig};

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIBERS: usize = 10;
const CONNECT: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(2);
const PACKETS: usize = 10_000;

#[test]
fn forwarding_one_to_ten_allocates_nothing() {
    // The counter does see allocations.
    assert!(count_allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);

    let mut sim = Sim::new(SimConfig::seeded(51));
    let publisher = sim.add_client();
    let track = TrackId(1);
    // Warm up through the network: keyframe, PLI, NACK-free steady state.
    sim.fan_out(
        track,
        MediaSource::video(),
        SUBSCRIBERS,
        0,
        CONNECT,
        WARM_UP,
    );

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

/// VP9 SVC allocates nothing either: ten subscribers of one stream of three spatial layers,
/// some capped at the bottom or middle layer (the packets above left out of their sequence
/// numbers, their marker bits moved), one of them raised before the window and taking its
/// new layers at the window's keyframe.
#[test]
fn forwarding_vp9_svc_to_capped_subscribers_allocates_nothing() {
    let mut sim = Sim::new(SimConfig::seeded(54));
    let publisher = sim.add_client();
    let subs: Vec<ClientId> = (0..SUBSCRIBERS).map(|_| sim.add_client()).collect();
    assert!(sim.connect_all(CONNECT));
    let track = TrackId(1);
    vp9::publish(&mut sim, publisher, track);
    // Subscribers 0-2 capped at layer 0, 3-5 at layer 1, the rest uncapped.
    let cap = |i: usize| match i {
        0..3 => Some(0u8),
        3..6 => Some(1),
        _ => None,
    };
    for (i, who) in subs.iter().enumerate() {
        vp9::subscribe(&mut sim, *who, track, 0x3000_0000 + i as u32);
        if let Some(max_layer) = cap(i) {
            let peer = sim.client(*who).peer;
            sim.command(Command::SetMaxLayer {
                peer,
                track,
                max_layer,
            });
        }
    }
    let mut seq = vp9::send_picture(&mut sim, publisher, 1, 0, true);
    for pic in 1..30 {
        seq = vp9::send_picture(&mut sim, publisher, seq, pic, false);
    }

    let from = sim.client(publisher).addr;
    let per_layer = usize::from(vp9::PER_LAYER);
    let mut pic = 30u16;
    let mut picture = |sim: &mut Sim, keyframe: bool| -> Vec<Vec<u8>> {
        let (datagrams, next) = vp9::picture(sim, publisher, seq, pic, keyframe);
        seq = next;
        pic = pic.wrapping_add(1);
        datagrams
    };
    // Warm up by hand: every slot of the retransmission cache and the buffer pool filled.
    let warm: Vec<Vec<Vec<u8>>> = (0..400).map(|_| picture(&mut sim, false)).collect();
    // Subscriber 0 raised to the top: it asks for a keyframe and waits for it.
    let raised = sim.client(subs[0]).peer;
    sim.command(Command::SetMaxLayer {
        peer: raised,
        track,
        max_layer: 2,
    });
    const PICTURES: usize = 1_600;
    let mut window: Vec<Vec<Vec<u8>>> = (0..PICTURES)
        .map(|p| picture(&mut sim, p == PICTURES / 2))
        .collect();
    let now = sim.now();
    let (engine, _) = sim.parts();
    let forward = |engine: &mut lkr_sfu::Engine, datagram: &mut [u8]| {
        let mut sent = 0;
        engine.handle_receive(now, from, datagram);
        while let Some(t) = engine.poll_transmit() {
            sent += usize::from(t.dest != from);
            engine.recycle(t.data);
        }
        sent
    };
    for mut p in warm {
        for d in &mut p {
            forward(engine, d);
        }
    }
    let mut transmitted = 0;
    let allocations = count_allocations(|| {
        for p in &mut window {
            for d in p.iter_mut() {
                transmitted += forward(engine, d);
            }
        }
    });
    // Per picture: 2 packets to each subscriber capped at layer 0, 4 at layer 1, 6 to the
    // uncapped ones; the raised one gets 2 until the keyframe and 6 from it on.
    let layers = usize::from(vp9::LAYERS);
    let steady: usize = (1..SUBSCRIBERS)
        .map(|i| per_layer * cap(i).map_or(layers, |c| usize::from(c) + 1))
        .sum();
    let raised_gets = per_layer * (PICTURES / 2) + per_layer * layers * (PICTURES / 2);
    assert_eq!(
        transmitted,
        steady * PICTURES + raised_gets,
        "each subscriber got its layers"
    );
    assert_eq!(
        allocations, 0,
        "allocations while forwarding {PICTURES} VP9 SVC pictures to {SUBSCRIBERS}"
    );
}

const BIG: usize = 100;
/// Datagrams handled per wake, as the driver reads them (`recvmmsg` batch).
const WAKE: usize = 64;
const ROUNDS: usize = 60;

/// The driver's real shape: 64 datagrams per wake, one publisher and 100 subscribers, and
/// every RTCP path in the window: subscribers' receiver reports and NACKs (answered from
/// the retransmission cache), PLIs, the publisher's sender reports (one a round, forwarded
/// to every subscriber at most every 250 ms), and the engine's own NACKs (for packets held back from it) and receiver
/// reports on its timers.
#[test]
fn batches_to_a_hundred_subscribers_with_feedback_allocate_nothing() {
    let mut sim = Sim::new(SimConfig::seeded(52));
    let publisher = sim.add_client();
    let track = TrackId(1);
    let (media_ssrc, down) = sim.fan_out(track, MediaSource::video(), BIG, 0, CONNECT, WARM_UP);
    // Where each subscriber's stream stands: the next outgoing sequence number.
    let next_out: Vec<u16> = (1..=BIG)
        .map(|i| {
            let s = sim
                .client(lkr_sim::ClientId(i))
                .stream_of(track)
                .expect("receiving");
            s.packets.last().expect("packets").seq.wrapping_add(1)
        })
        .collect();

    let from = sim.client(publisher).addr;
    let start = sim.now();
    let (engine, clients) = sim.parts();
    let subscriber_addrs: Vec<_> = clients[1..].iter().map(|c| c.addr).collect();

    // Every datagram is made before the window (SRTP indexes must increase, so each is
    // used once). Per round: 64 media packets (one held back, so the engine NACKs it),
    // a sender report, and from every subscriber a receiver report with a NACK of a packet
    // it was sent in the previous round and, every tenth round, a PLI.
    struct Round {
        media: Vec<Vec<u8>>,
        rtcp: Vec<(usize, Vec<u8>)>,
    }
    let mut sent_per_sub = 0u16;
    let mut make_round = |clients: &mut [lkr_sim::Client], r: usize, warm: bool| {
        let mut media = Vec::with_capacity(WAKE);
        for i in 0..WAKE {
            let d = clients[0].next_media_datagram(track).expect("keyed");
            if i != 7 || warm {
                media.push(d);
            }
        }
        let mut rtcp = Vec::with_capacity(BIG + 1);
        let sr = clients[0]
            .rtcp_datagram(&[], |out| {
                lkr_rtp::write_sender_report(
                    out,
                    media_ssrc,
                    0x1234_5678_0000_0000 + r as u64,
                    90_000 * r as u32,
                    0,
                    0,
                    &[],
                )
                .ok()
            })
            .expect("keyed");
        rtcp.push((0, sr));
        for (j, c) in clients[1..].iter_mut().enumerate() {
            let nack_seq = next_out[j].wrapping_add(sent_per_sub.wrapping_sub(5));
            let block = lkr_rtp::ReportBlock {
                ssrc: down[j],
                highest_seq: u32::from(next_out[j].wrapping_add(sent_per_sub)),
                ..Default::default()
            };
            let ssrc = down[j];
            let d = c
                .rtcp_datagram(&[block], |out| {
                    let mut n = lkr_rtp::write_nack(out, 1, ssrc, &[nack_seq]).ok()?;
                    if r.is_multiple_of(10) {
                        n += lkr_rtp::write_pli(&mut out[n..], 1, ssrc).ok()?;
                    }
                    Some(n)
                })
                .expect("keyed");
            rtcp.push((j + 1, d));
        }
        // Outgoing sequence numbers keep the gap of a held-back packet.
        sent_per_sub = sent_per_sub.wrapping_add(WAKE as u16);
        Round { media, rtcp }
    };
    let run_round =
        |engine: &mut lkr_sfu::Engine, round: &mut Round, now| -> (usize, usize, usize) {
            let mut media_out = 0;
            // As the driver does: a send batch goes out whenever one is ready.
            for d in &mut round.media {
                engine.handle_receive(now, from, d);
                while engine.pending_transmits() >= WAKE {
                    for _ in 0..WAKE {
                        let t = engine.poll_transmit().expect("pending");
                        media_out += 1;
                        engine.recycle(t.data);
                    }
                }
            }
            while let Some(t) = engine.poll_transmit() {
                media_out += 1;
                engine.recycle(t.data);
            }
            for (who, d) in &mut round.rtcp {
                let addr = if *who == 0 {
                    from
                } else {
                    subscriber_addrs[*who - 1]
                };
                engine.handle_receive(now, addr, d);
            }
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
            }
            let mut feedback_out = 0;
            while let Some(t) = engine.poll_transmit() {
                feedback_out += 1;
                engine.recycle(t.data);
            }
            let mut reports = 0;
            while let Some(e) = engine.poll_event() {
                // A loss report for the control plane carries its own list (every 5 s).
                reports += usize::from(matches!(e, lkr_sfu::Event::Loss { .. }));
            }
            (media_out, feedback_out, reports)
        };

    // Warm-up rounds (nothing held back) fill caches, pools and scratch buffers.
    let mut t = start;
    for r in 0..ROUNDS {
        let mut round = make_round(clients, r, true);
        t += Duration::from_millis(40);
        run_round(engine, &mut round, t);
    }
    let mut rounds: Vec<Round> = (0..ROUNDS)
        .map(|r| make_round(clients, ROUNDS + r, false))
        .collect();
    // Clients keep consent as real ones do (a check every 2.5-5 s): one check each right
    // before the window, which is shorter than the silence after which the server checks a
    // peer's path itself (`lkr_ice::PROBE_AFTER_SILENCE`).
    assert!(
        Duration::from_millis(40) * ROUNDS as u32 + Duration::from_secs(1)
            < lkr_ice::PROBE_AFTER_SILENCE
    );
    for (i, c) in clients.iter_mut().enumerate() {
        let mut check = c.consent_check();
        let addr = if i == 0 {
            from
        } else {
            subscriber_addrs[i - 1]
        };
        engine.handle_receive(t, addr, &mut check);
    }
    while let Some(tx) = engine.poll_transmit() {
        engine.recycle(tx.data);
    }
    let (mut media_out, mut feedback_out, mut loss_reports) = (0, 0, 0);
    let allocations = count_allocations(|| {
        for round in &mut rounds {
            t += Duration::from_millis(40);
            let (m, f, l) = run_round(engine, round, t);
            media_out += m;
            feedback_out += f;
            loss_reports += l;
        }
    });
    assert_eq!(
        media_out,
        ROUNDS * (WAKE - 1) * BIG,
        "every packet reached every subscriber"
    );
    // Per round: a retransmission per subscriber; every seventh round (280 ms: a layer's
    // sender reports are sent on at most every 250 ms) a sender report per subscriber;
    // NACKs to the publisher for held-back packets (due 10 ms after the gap, so from the
    // next round on) and receiver reports.
    let reports_sent_on = ROUNDS / 7;
    assert!(
        feedback_out >= ROUNDS * BIG + reports_sent_on * BIG + ROUNDS / 2,
        "feedback and retransmissions went out: {feedback_out}"
    );
    // The only allocations: the list inside each periodic loss report handed to the
    // control plane (one every 5 s, so at most one in this 2.4 s window).
    assert!(loss_reports <= 1);
    assert_eq!(
        allocations, loss_reports as u64,
        "allocations over {ROUNDS} wakes of {WAKE} datagrams to {BIG} subscribers with feedback"
    );
}

/// The driver's send round itself (`lkr_driver::Outbound`: gathering a window from the
/// engine, ordering it by destination, segmented `sendmmsg`) allocates nothing either: one
/// publisher, 100 subscribers at loopback addresses, 64 datagrams per wake with a send round
/// whenever a window is waiting and one at the end of the wake, as the media thread does,
/// into a real socket.
#[test]
fn the_driver_send_round_to_a_hundred_subscribers_allocates_nothing() {
    let mut sim = Sim::new(SimConfig {
        // Nothing listens at 127.0.1.x:50000; the kernel takes the datagrams all the same.
        client_net: std::net::Ipv4Addr::new(127, 0, 1, 0),
        ..SimConfig::seeded(53)
    });
    let publisher = sim.add_client();
    let track = TrackId(1);
    sim.fan_out(track, MediaSource::video(), BIG, 0, CONNECT, WARM_UP);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    std_socket.set_nonblocking(true).expect("non-blocking");
    let segment = lkr_driver::batch::segmentation_supported(&std_socket);
    #[cfg(target_os = "linux")]
    assert!(segment, "Linux 4.18 and later segment UDP");
    let socket = tokio::net::UdpSocket::from_std(std_socket).expect("registered");
    // The reactor sees the socket writable once; it stays so unless a send finds it full.
    rt.block_on(socket.writable()).expect("writable");
    let stats = lkr_driver::MediaStats::default();
    let mut send = lkr_driver::Outbound::new(segment);

    let from = sim.client(publisher).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    let mut wake = |engine: &mut lkr_sfu::Engine, batch: &mut [Vec<u8>]| {
        for d in batch.iter_mut() {
            engine.handle_receive(now, from, d);
            if engine.pending_transmits() >= send.window() {
                send.flush(engine, &socket, &stats, send.window());
            }
        }
        send.flush(engine, &socket, &stats, 1);
    };
    // Warm-up wakes fill the retransmission cache and the buffer pool.
    for _ in 0..40 {
        let mut batch: Vec<Vec<u8>> = (0..WAKE)
            .map(|_| clients[0].next_media_datagram(track).expect("keyed"))
            .collect();
        wake(engine, &mut batch);
    }
    let mut wakes: Vec<Vec<Vec<u8>>> = (0..ROUNDS)
        .map(|_| {
            (0..WAKE)
                .map(|_| clients[0].next_media_datagram(track).expect("keyed"))
                .collect()
        })
        .collect();
    let before = engine.traffic.rtp_out;
    let segmented_before = stats
        .segmented_datagrams
        .load(std::sync::atomic::Ordering::Relaxed);
    let allocations = count_allocations(|| {
        for batch in &mut wakes {
            wake(engine, batch);
        }
    });
    let snapshot = stats.snapshot();
    assert_eq!(
        engine.traffic.rtp_out - before,
        (ROUNDS * WAKE * BIG) as u64,
        "every packet was forwarded to every subscriber"
    );
    assert_eq!(engine.pending_transmits(), 0, "and sent");
    assert_eq!(
        (snapshot.send_dropped, snapshot.send_failed),
        (0, 0),
        "the socket took every datagram"
    );
    if segment {
        assert!(
            snapshot.segmented_datagrams > segmented_before,
            "the runs left as segmented sends"
        );
    }
    assert_eq!(
        allocations, 0,
        "allocations over {ROUNDS} wakes of {WAKE} datagrams to {BIG} subscribers, sent"
    );
}
