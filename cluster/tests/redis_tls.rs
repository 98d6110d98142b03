//! `redis.use_tls`: the store reaches a Redis that only speaks TLS, and trusts it through
//! the system's trust store (here a test CA named by `SSL_CERT_FILE`: the test runs itself
//! again as a child process with that variable set).

mod common;

use lkr_cluster::{RedisSettings, Store};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHILD: &str = "LKR_REDIS_TLS_CHILD";

#[tokio::test]
async fn a_tls_only_redis_is_reached_with_use_tls() {
    if !common::available() {
        return;
    }
    if let Some(dir) = std::env::var_os(CHILD) {
        return in_child(std::path::Path::new(&dir)).await;
    }
    let dir = std::env::temp_dir().join(format!("lkr-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lkr test ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_tls_only_redis_is_reached_with_use_tls",
            "--nocapture",
        ])
        .env(CHILD, &dir)
        .env("SSL_CERT_FILE", dir.join("ca.crt"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

/// The test proper, with `SSL_CERT_FILE` naming the CA made in `dir`.
async fn in_child(dir: &std::path::Path) {
    let path = |f: &str| dir.join(f).display().to_string();
    let port = common::free_port();
    let r = common::spawn_on(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            "PORT",
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let tls = RedisSettings {
        address: format!("localhost:{}", r.port),
        use_tls: true,
        ..Default::default()
    };
    let s = Store::connect(&tls).await.unwrap();
    assert_eq!(s.place("room", "ND_x").await.unwrap(), "ND_x");
    // The same Redis without TLS does not answer.
    let plain = Store::connect(&RedisSettings {
        use_tls: false,
        ..tls
    })
    .await;
    assert!(plain.is_err(), "a plain connection to a TLS port must fail");
}
