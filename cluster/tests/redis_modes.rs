//! The ways of reaching Redis that `redis:` names: credentials and a database, sentinels,
//! and a Redis Cluster, each against real `redis-server` processes on loopback.

use std::time::{Duration, Instant};

use lkr_cluster::{RedisSettings, Store};

mod common;
use common::{available, node, spawn, spawn_on, wait_port};

/// Registers two nodes and places one room from four tasks at once through `s`; the
/// placements must agree and the records must read back.
async fn exercise(s: &Store) {
    s.register(&node("ND_one")).await.unwrap();
    s.register(&node("ND_two")).await.unwrap();
    let mut ids: Vec<String> = s.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    ids.sort();
    assert_eq!(ids, ["ND_one", "ND_two"]);
    let tasks: Vec<_> = ["ND_one", "ND_two", "ND_one", "ND_two"]
        .into_iter()
        .map(|id| {
            let s = s.clone();
            tokio::spawn(async move { s.place("shared", id).await.unwrap() })
        })
        .collect();
    let mut owners = Vec::new();
    for t in tasks {
        owners.push(t.await.unwrap());
    }
    owners.dedup();
    assert_eq!(owners.len(), 1, "{owners:?}");
}

fn raw(port: u16, db: i64, user: Option<(&str, &str)>) -> redis::Client {
    let cred = user.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    redis::Client::open(format!("redis://{cred}127.0.0.1:{port}/{db}")).unwrap()
}

#[tokio::test]
async fn credentials_and_database_are_used() {
    if !available() {
        return;
    }
    let r = common::spawn_conf(
        common::free_port(),
        "user default off\nuser svc on >s3cret ~* &* +@all\n",
        &[],
    );
    let good = RedisSettings {
        address: format!("127.0.0.1:{}", r.port),
        username: "svc".into(),
        password: "s3cret".into(),
        db: 3,
        ..Default::default()
    };
    let s = Store::connect(&good).await.unwrap();
    exercise(&s).await;
    // The records went to database 3, not 0.
    let mut c = raw(r.port, 3, Some(("svc", "s3cret")))
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert!(n >= 3, "database 3 holds {n} keys");
    let mut c0 = raw(r.port, 0, Some(("svc", "s3cret")))
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n0: i64 = redis::cmd("DBSIZE").query_async(&mut c0).await.unwrap();
    assert_eq!(n0, 0);
    // A wrong password is a clear error at start.
    let err = Store::connect(&RedisSettings {
        password: "wrong".into(),
        ..good
    })
    .await
    .err()
    .expect("refused");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("authentication failed"), "{err}");
}

#[tokio::test]
async fn the_master_is_found_through_sentinels() {
    if !available() {
        return;
    }
    let master = spawn(&[]);
    let sentinel_port = common::free_port();
    let dir = std::env::temp_dir().join(format!("lkr-sentinel-{sentinel_port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor lkmaster 127.0.0.1 {} 1\n",
            master.port
        ),
    )
    .unwrap();
    let mut sentinel = std::process::Command::new("/usr/bin/redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_port(sentinel_port);
    let s = Store::connect(&RedisSettings {
        sentinel_master_name: "lkmaster".into(),
        sentinel_addresses: vec![format!("127.0.0.1:{sentinel_port}")],
        ..Default::default()
    })
    .await;
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let s = s.unwrap();
    exercise(&s).await;
    let mut c = raw(master.port, 0, None)
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let owner: Option<String> = redis::cmd("GET")
        .arg("{lkr}:room:shared")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        owner.is_some(),
        "the placement is on the master the sentinel named"
    );
    // Without a master name, sentinels are a configuration error.
    let err = Store::connect(&RedisSettings {
        sentinel_addresses: vec!["127.0.0.1:1".into()],
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("sentinel_master_name"), "{err}");
}

#[tokio::test]
async fn a_redis_cluster_holds_the_records_and_placements() {
    if !available() {
        return;
    }
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let nodes: Vec<_> = ports
        .iter()
        .map(|&p| {
            spawn_on(
                p,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes-PORT.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
        })
        .collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Wait until every node says the cluster is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    for &p in &ports {
        loop {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let s = Store::connect(&RedisSettings {
        cluster_addresses: addrs.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    exercise(&s).await;
    drop(nodes);
}
