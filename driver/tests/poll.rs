//! A shard that hears nothing but idle peers' consent checks reads its socket on a schedule
//! instead of waking for each datagram, answers every check all the same, and wakes on
//! each datagram again as soon as media or a command comes.

mod common;

use std::time::{Duration, Instant};

use common::{Checker, add_peer, peer_config};
use lkr_driver::{DriverConfig, Media, spawn};
use lkr_sfu::{Command, PeerId};

/// Waits up to 500 ms for the shard to stop polling.
fn stops_polling(media: &Media) -> bool {
    let end = Instant::now() + Duration::from_millis(500);
    while polling(media) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    !polling(media)
}

fn polling(media: &Media) -> bool {
    media.handle.stats.snapshot().polling_shards > 0
}

/// Keeps checking until the shard polls (or `within` passes).
fn check_until(c: &mut Checker, media: &Media, within: Duration, want: bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if polling(media) == want {
            return true;
        }
        c.run(Duration::from_millis(50));
    }
    polling(media) == want
}

#[test]
fn idle_checks_are_read_on_a_schedule_and_media_ends_it() {
    let media = spawn(DriverConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let server = media.handle.local_addr;
    add_peer(&media, 1, "srvU");
    let mut c = Checker::new(server).connect();

    // 200 checks a second and nothing else: the shard starts polling.
    assert!(
        check_until(&mut c, &media, Duration::from_secs(4), true),
        "the shard polls its socket"
    );
    let before = media.handle.stats.snapshot().wakeups;
    c.run(Duration::from_secs(1));
    let wakeups = media.handle.stats.snapshot().wakeups - before;
    eprintln!(
        "{wakeups} wake-ups for {} checks in a second while polling",
        c.sent
    );
    assert!(
        c.all_answered(Duration::from_millis(500)),
        "every check answered"
    );
    // 200 checks; a read every 50 ms is 20 wake-ups, plus the once-a-second work.
    assert!(
        wakeups <= 40,
        "{wakeups} wake-ups for 200 checks in a second while polling"
    );

    // A media packet (RTP's first byte, from the peer's address) wants an answer at once.
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    rtp.extend_from_slice(&[0; 40]);
    c.socket.send_to(&rtp, server).unwrap();
    assert!(stops_polling(&media), "media ends the polling");

    // Back to checks only, then a command: a joining peer is not kept waiting.
    assert!(
        check_until(&mut c, &media, Duration::from_secs(4), true),
        "the shard polls again"
    );
    add_peer(&media, 2, "srv2");
    assert!(stops_polling(&media), "a command ends the polling");
    assert!(
        c.all_answered(Duration::from_millis(500)),
        "every check answered"
    );
}

#[test]
fn a_few_peers_keep_waking_the_shard_for_each_datagram() {
    let media = spawn(DriverConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    add_peer(&media, 1, "srvU");
    let mut c = Checker::new(media.handle.local_addr).connect();
    // One check every 5 ms for 100 ms, then one every 100 ms: 10 a second, under the
    // threshold.
    c.run(Duration::from_millis(100));
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        c.send();
        std::thread::sleep(Duration::from_millis(100));
        c.read();
        assert!(!polling(&media), "a quiet shard does not poll");
    }
    let answered = c.all_answered(Duration::from_millis(500));
    assert!(answered, "{} of {} checks answered", c.answered, c.sent);
}

#[test]
fn media_handed_to_another_shard_ends_the_polling_of_the_shard_it_landed_on() {
    let mut config = DriverConfig::new("127.0.0.1:0".parse().unwrap());
    config.shards = 2;
    let media = spawn(config).unwrap();
    // A first room's peer takes shard 0, ours (another room) shard 1: the checks and media
    // of sources the kernel puts on shard 0's socket are handed to shard 1.
    let mut other = peer_config("othr");
    other.group = 9;
    media
        .handle
        .send(Command::AddPeer {
            peer: PeerId(9),
            config: other,
        })
        .unwrap();
    add_peer(&media, 1, "srvU");
    add_peer(&media, 2, "srv2");
    // Sixteen sources (eight for each of two peers, as many as a peer may have valid), a
    // check every 10 ms or so each, spread by the kernel over both shards' sockets. One
    // source alone wakes a shard more often than the 50 times a second that start polling;
    // a shard gets none of them once in 32 768 runs.
    let server = media.handle.local_addr;
    let mut checkers: Vec<Checker> = (0..16)
        .map(|i| Checker::to(server, if i % 2 == 0 { "srvU" } else { "srv2" }).connect())
        .collect();
    let both_poll = |media: &Media| media.handle.stats.snapshot().polling_shards == 2;
    let end = Instant::now() + Duration::from_secs(5);
    while !both_poll(&media) && Instant::now() < end {
        for c in &mut checkers {
            c.send();
            c.read();
            std::thread::sleep(Duration::from_micros(600));
        }
    }
    assert!(both_poll(&media), "both shards poll");
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    rtp.extend_from_slice(&[0; 40]);
    for c in &checkers {
        c.socket.send_to(&rtp, server).unwrap();
    }
    assert!(
        stops_polling_all(&media),
        "media ends the polling of both shards"
    );
    for c in &mut checkers {
        let all = c.all_answered(Duration::from_millis(500));
        let now = Instant::now();
        let late: Vec<_> = c.outstanding.iter().map(|(k, t)| (*k, now - *t)).collect();
        assert!(
            all,
            "{} of {} checks answered; unanswered: {late:?}",
            c.answered, c.sent
        );
    }
}

/// Waits up to 500 ms for every shard to stop polling.
fn stops_polling_all(media: &Media) -> bool {
    let end = Instant::now() + Duration::from_millis(500);
    while media.handle.stats.snapshot().polling_shards > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    media.handle.stats.snapshot().polling_shards == 0
}
