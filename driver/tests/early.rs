//! A client's first checks may reach the media port before the command that adds its peer
//! reaches the shard (the client has the server's credentials from the SDP while the command
//! still waits for the router thread). With two shards on one port, the kernel puts each
//! source on either shard's socket: every early check is kept where it landed and answered
//! once the peer arrives, by its shard or handed to it, with no check sent again.

mod common;

use std::time::{Duration, Instant};

use common::{Checker, add_peer};
use lkr_driver::{DriverConfig, spawn};

#[test]
fn checks_sent_before_their_peer_exists_are_answered_when_it_arrives() {
    let mut config = DriverConfig::new("127.0.0.1:0".parse().unwrap());
    config.shards = 2;
    let media = spawn(config).unwrap();
    let server = media.handle.local_addr;
    // Two peers' clients, eight sources each (as many as a peer may have valid), one check
    // each; all sixteen on one shard's socket once in 32 768 runs.
    let mut checkers: Vec<Checker> = (0..16)
        .map(|i| Checker::to(server, if i % 2 == 0 { "erly" } else { "erl2" }))
        .collect();
    for c in &mut checkers {
        c.send();
    }
    // Every one was read and found no peer (the shards publish their counts each second).
    let end = Instant::now() + Duration::from_secs(2);
    while media.handle.stats.snapshot().engine.unknown_source < 16 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(media.handle.stats.snapshot().engine.unknown_source, 16);
    for c in &mut checkers {
        c.read();
        assert_eq!(c.answered, 0, "no peer yet");
    }
    add_peer(&media, 1, "erly");
    add_peer(&media, 2, "erl2");
    for (i, c) in checkers.iter_mut().enumerate() {
        assert!(
            c.all_answered(Duration::from_secs(1)),
            "source {i}'s first check answered"
        );
        assert_eq!(c.sent, 1);
    }
}
