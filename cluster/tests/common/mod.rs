//! A `redis-server` process per test, on a free loopback port.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A serving node's record with id `id` (no region, no stats).
pub fn node(id: &str) -> lkr_cluster::NodeInfo {
    lkr_cluster::NodeInfo {
        id: id.into(),
        region: String::new(),
        http_url: format!("http://127.0.0.1/{id}"),
        rtc_addr: String::new(),
        state: lkr_cluster::NodeState::Serving,
        started_at: 0,
        stats: Default::default(),
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const BIN: &str = "/usr/bin/redis-server";

/// Whether redis-server is here; without it (and without `LKR_REQUIRE_REDIS`) a test is
/// skipped with a line saying so.
pub fn available() -> bool {
    if std::path::Path::new(BIN).exists() {
        return true;
    }
    assert!(
        std::env::var_os("LKR_REQUIRE_REDIS").is_none(),
        "redis-server is not installed"
    );
    eprintln!("redis-server not installed: skipped");
    false
}

/// A fresh redis-server, or `None` where it is not installed.
pub fn redis() -> Option<Redis> {
    available().then(|| spawn(&[]))
}

/// Starts redis-server on a free port with `extra` arguments (config lines as `--key value`),
/// and waits until its port accepts connections. `PORT` in `extra` is replaced by the port.
pub fn spawn(extra: &[&str]) -> Redis {
    let port = free_port();
    spawn_on(port, extra)
}

pub fn spawn_on(port: u16, extra: &[&str]) -> Redis {
    spawn_conf(port, "", extra)
}

/// As [`spawn_on`], with `conf` as the server's configuration file.
pub fn spawn_conf(port: u16, conf: &str, extra: &[&str]) -> Redis {
    let dir = std::env::temp_dir().join(format!("lkr-redis-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = extra.contains(&"--tls-port");
    let mut cmd = std::process::Command::new(BIN);
    if !conf.is_empty() {
        let file = dir.join("redis.conf");
        std::fs::write(&file, conf).unwrap();
        cmd.arg(file);
    }
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
    ])
    .arg(&dir);
    if !listen {
        cmd.args(["--port", &port.to_string()]);
    }
    for a in extra {
        cmd.arg(a.replace("PORT", &port.to_string()));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = Redis { child, port, dir };
    wait_port(port);
    r
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
