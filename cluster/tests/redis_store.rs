//! The store against a real `redis-server` (Debian's package; `scripts/test` installs it).
//! Each test starts its own server on a free loopback port and stops it at the end.

use std::time::{Duration, Instant};

use lkr_cluster::{NodeState, RedisSettings, Store};

mod common;
use common::{Redis, free_port, node, redis};

async fn store(r: &Redis) -> Store {
    Store::connect(&RedisSettings {
        address: format!("127.0.0.1:{}", r.port),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Shortens a node record's life to `ms`, as if it had stopped refreshing long ago.
async fn expire(r: &Redis, id: &str, ms: u64) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", r.port)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(format!("{{lkr}}:node:{id}"))
        .arg(ms)
        .query_async(&mut c)
        .await
        .unwrap();
}

async fn ids(s: &Store) -> Vec<String> {
    let mut v: Vec<String> = s.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    v.sort();
    v
}

#[tokio::test]
async fn nodes_register_and_leave_when_they_stop_refreshing() {
    let Some(r) = redis() else { return };
    let s = store(&r).await;
    let mut a = node("ND_a");
    s.register(&a).await.unwrap();
    s.register(&node("ND_b")).await.unwrap();
    assert_eq!(ids(&s).await, ["ND_a", "ND_b"]);
    a.state = NodeState::Draining;
    s.register(&a).await.unwrap();
    let got = s.nodes().await.unwrap();
    assert_eq!(
        got.iter().find(|n| n.id == "ND_a").map(|n| n.state),
        Some(NodeState::Draining)
    );
    // One stops refreshing: gone once its record expires. One stops cleanly: gone at once.
    expire(&r, "ND_b", 50).await;
    s.deregister("ND_a").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ids(&s).await.is_empty() {
        assert!(Instant::now() < deadline, "records outlived their TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn racing_placements_of_one_room_agree() {
    let Some(r) = redis() else { return };
    let s = store(&r).await;
    for i in 0..8 {
        s.register(&node(&format!("ND_{i}"))).await.unwrap();
    }
    for round in 0..20 {
        let room = format!("race-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                let room = room.clone();
                tokio::spawn(async move { s.place(&room, &format!("ND_{i}")).await.unwrap() })
            })
            .collect();
        let mut owners = Vec::new();
        for t in tasks {
            owners.push(t.await.unwrap());
        }
        owners.dedup();
        assert_eq!(owners.len(), 1, "round {round}: {owners:?}");
        assert_eq!(
            s.owner(&room).await.unwrap().as_deref(),
            Some(owners[0].as_str())
        );
    }
}

#[tokio::test]
async fn a_dead_owners_rooms_are_free_and_only_owners_refresh_or_release() {
    let Some(r) = redis() else { return };
    let s = store(&r).await;
    s.register(&node("ND_a")).await.unwrap();
    s.register(&node("ND_b")).await.unwrap();
    assert_eq!(s.place("room1", "ND_a").await.unwrap(), "ND_a");
    assert_eq!(s.place("room1", "ND_b").await.unwrap(), "ND_a");
    assert_eq!(s.owner("nowhere").await.unwrap(), None);

    // B asks to refresh a room that A holds: refused and reported; its own free one is taken.
    let lost = s
        .refresh_rooms("ND_b", &["room1".into(), "room2".into()])
        .await
        .unwrap();
    assert_eq!(lost, ["room1"]);
    assert_eq!(s.owner("room2").await.unwrap().as_deref(), Some("ND_b"));

    // B cannot release A's room; A can.
    s.release_rooms("ND_b", &["room1".into()]).await.unwrap();
    assert_eq!(s.owner("room1").await.unwrap().as_deref(), Some("ND_a"));
    s.release_rooms("ND_a", &["room1".into()]).await.unwrap();
    assert_eq!(s.owner("room1").await.unwrap(), None);

    // A dies: its rooms count as free, and the next placement goes to the candidate.
    assert_eq!(s.place("room3", "ND_a").await.unwrap(), "ND_a");
    expire(&r, "ND_a", 1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.owner("room3").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "a dead node still owns its room");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.place("room3", "ND_b").await.unwrap(), "ND_b");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_within_the_bound() {
    let port = free_port();
    let started = Instant::now();
    let err = Store::connect(&RedisSettings {
        address: format!("127.0.0.1:{port}"),
        ..Default::default()
    })
    .await
    .err()
    .expect("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().starts_with("redis"), "{err}");
}

/// Redis loses its data (a restart without persistence; here a flush) while a room runs on
/// A. A placement of that room by B must not open it on B before A has written its placement
/// again (A refreshes within a second): it waits, and gets A.
#[tokio::test]
async fn after_redis_lost_its_data_placements_wait_for_the_owners_refresh() {
    let Some(r) = redis() else { return };
    let s = store(&r).await;
    s.register(&node("ND_a")).await.unwrap();
    s.register(&node("ND_b")).await.unwrap();
    // A fresh Redis starts settled once the window that its first script opened is over.
    tokio::time::sleep(lkr_cluster::store::SETTLE_WINDOW).await;
    assert_eq!(s.place("running", "ND_a").await.unwrap(), "ND_a");

    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", r.port)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();

    // B's placement (and a lookup) come first after the flush; A refreshes 600 ms later.
    let flushed = Instant::now();
    let b = {
        let s = s.clone();
        tokio::spawn(async move { s.place("running", "ND_b").await.unwrap() })
    };
    let look = {
        let s = s.clone();
        tokio::spawn(async move { s.owner("running").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.register(&node("ND_a")).await.unwrap();
    s.register(&node("ND_b")).await.unwrap();
    assert!(
        s.refresh_rooms("ND_a", &["running".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.await.unwrap(), "ND_a", "the running room was placed anew");
    assert_eq!(look.await.unwrap().as_deref(), Some("ND_a"));
    let waited = flushed.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < lkr_cluster::store::SETTLE_WINDOW * 2,
        "{waited:?}"
    );
    // A room nobody runs is placed once the window is over.
    assert_eq!(s.place("new", "ND_b").await.unwrap(), "ND_b");
}
