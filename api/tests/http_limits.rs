//! The HTTP listener under hostile clients, on 127.0.0.1: bodies are read only after the token
//! holds and only up to the configured size, slow headers and bodies are cut off, the
//! connection cap closes the excess at accept, and a WebSocket keeps its connection slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use lkr_api::config::{Config, Overrides, Settings};
use lkr_api::node::Node;
use lkr_proto::token::{AccessToken, VideoGrant};
use lkr_signal::Control;

/// How long any single expectation may take before the test fails (never slept through).
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(limit_yaml: &str) -> (std::net::SocketAddr, Arc<Node>) {
    let yaml = format!("keys: {{devkey: secret}}\nlimit:\n{limit_yaml}");
    let (config, _) = Config::load(&yaml).unwrap();
    let settings = Settings::resolve(&config, &Overrides::default()).unwrap();
    let machine = lkr_room::Machine::new(
        lkr_room::Config {
            auto_create: true,
            node_ip: "127.0.0.1".parse().unwrap(),
            udp_port: 7882,
            tcp_port: None,
            turn: None,
            region: String::new(),
            node_id: "ND_test".into(),
            fingerprint: ("sha-256".into(), "00".into()),
            max_metadata_size: 0,
            max_attributes_size: 0,
            enable_remote_unmute: false,
            ice_servers: Vec::new(),
            limits: lkr_room::Limits::default(),
        },
        lkr_room::Rooms::new(settings.room.clone()),
        std::time::Instant::now(),
    );
    let (control, _task) = Control::spawn(machine, None, None);
    let node = Arc::new(Node::new(settings, control));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(lkr_api::http::serve(node.clone(), listener));
    (addr, node)
}

fn token() -> String {
    AccessToken::new("devkey", "secret")
        .with_grant(VideoGrant {
            room_list: true,
            room_create: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap()
}

/// Reads until the peer has sent a whole HTTP head (and what follows it so far), or closed.
async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                // Wait for a short body announced by Content-Length, if any.
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
    })
    .await
    .expect("no answer in time");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether the server closes the connection (EOF or reset) within `PATIENCE`.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn post_head(token: Option<&str>, len: usize) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /twirp/livekit.RoomService/CreateRoom HTTP/1.1\r\nHost: x\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn no_token_is_refused_before_any_body_byte() {
    let (addr, _node) = start("  max_api_request_body_size: 10485760\n").await;
    // Without a token, and with a token signed by a key that does not exist: the 9 MiB body
    // is announced but never sent; the answer must come anyway, so nothing waited for it.
    let bad = AccessToken::new("nokey", "secret").to_jwt().unwrap();
    for token in [None, Some("not-a-jwt"), Some(bad.as_str())] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(post_head(token, 9 << 20).as_bytes())
            .await
            .unwrap();
        let answer = read_head(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("unauthenticated"), "{answer}");
        assert!(!answer.contains("nokey"), "{answer}");
    }
}

#[tokio::test]
async fn a_token_without_the_methods_grant_is_refused_before_any_body_byte() {
    let (addr, _node) = start("  max_api_request_body_size: 10485760\n").await;
    // A participant's token (roomJoin only) calling admin methods of each service: the
    // 9 MiB body is announced but never sent, and the refusal names the missing grant.
    let join = AccessToken::new("devkey", "secret")
        .with_grant(VideoGrant {
            room_join: true,
            room: "r".into(),
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    for (path, says) in [
        (
            "livekit.RoomService/CreateRoom",
            "the roomCreate grant is required",
        ),
        (
            "livekit.RoomService/ListRooms",
            "the roomList grant is required",
        ),
        (
            "livekit.RoomService/UpdateParticipant",
            "the roomAdmin grant is required",
        ),
        (
            "livekit.RoomService/SendData",
            "the roomAdmin grant is required",
        ),
        (
            "livekit.AgentDispatchService/CreateDispatch",
            "the roomAdmin grant is required",
        ),
        (
            "livekit.Egress/StartRoomCompositeEgress",
            "permissions denied",
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = post_head(Some(&join), 9 << 20).replace("livekit.RoomService/CreateRoom", path);
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_head(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains(says), "{path}: {answer}");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413_declared_or_chunked() {
    let (addr, _node) = start("  max_api_request_body_size: 1024\n").await;
    let t = token();
    // Declared too large: refused from the head alone.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(post_head(Some(&t), 2048).as_bytes())
        .await
        .unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("request body too large"), "{answer}");
    // Chunked, no length: cut off once the limit is passed, however much more follows.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /twirp/livekit.RoomService/CreateRoom HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {t}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    for _ in 0..3 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Within the limit, the same request works.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = r#"{"name":"r1"}"#;
    s.write_all(format!("{}{body}", post_head(Some(&t), body.len())).as_bytes())
        .await
        .unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn slow_headers_idle_connections_and_slow_bodies_are_cut_off() {
    let (addr, _node) =
        start("  http_read_header_timeout: 0.3\n  http_read_body_timeout: 0.3\n").await;
    // Half a request head, then nothing: the server closes the connection.
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await, "slow header kept open");
    // A connection that never sends anything is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut idle).await,
        "idle connection kept open"
    );
    // A keep-alive connection left idle after an answer is closed as well.
    let mut ka = TcpStream::connect(addr).await.unwrap();
    ka.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut ka).await.starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut ka).await, "idle keep-alive kept open");
    // A body announced and then not sent: 408.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(post_head(Some(&token()), 100).as_bytes())
        .await
        .unwrap();
    s.write_all(b"{\"na").await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() < PATIENCE);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept() {
    let (addr, _node) = start("  max_http_connections: 2\n").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // The third is told so and closed; the two held ones still work.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(PATIENCE, third.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(_))), "third connection kept open");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 503"), "{rest}");
    assert!(rest.ends_with("\r\n\r\ntoo many connections"), "{rest}");
    for s in held.iter_mut() {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(s).await.starts_with("HTTP/1.1 200"));
    }
    // Once one closes, a new connection is served (the server notices the close itself).
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "freed slot never reused");
        tokio::task::yield_now().await;
    }
}

/// Sends a WebSocket upgrade for `/rtc` with `query` and returns the connection after its
/// `101` head.
async fn upgrade(addr: std::net::SocketAddr, query: &str) -> TcpStream {
    let mut ws = TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        format!(
            "GET /rtc?{query} HTTP/1.1\r\nHost: x\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The 101 head alone: read byte by byte so no WebSocket frame is taken with it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, ws.read(&mut byte))
            .await
            .expect("no 101 in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws
}

/// Whether a new connection is refused at accept (the cap is reached).
async fn refused_at_accept(addr: std::net::SocketAddr) -> bool {
    let mut other = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(PATIENCE, other.read_to_end(&mut rest)).await,
        Ok(Ok(_))
    ) && rest.starts_with(b"HTTP/1.1 503")
}

#[tokio::test]
async fn a_websocket_keeps_its_connection_slot_while_its_socket_lives() {
    let (addr, _node) = start("  max_http_connections: 1\n").await;
    let grant = |identity: &str| {
        AccessToken::new("devkey", "secret")
            .with_identity(identity)
            .with_grant(VideoGrant {
                room_join: true,
                room: "r1".into(),
                ..Default::default()
            })
            .to_jwt()
            .unwrap()
    };
    // A joined participant's WebSocket: the HTTP exchange is over, the socket still counts.
    let joined = upgrade(
        addr,
        &format!("access_token={}&protocol=15", grant("alice")),
    )
    .await;
    assert!(
        refused_at_accept(addr).await,
        "a second connection was served"
    );
    drop(joined);
    // (How soon a lost session lets go of its socket is the session's business.)

    // A resume attempt is refused with a leave and the socket closed by the server: its slot
    // comes back as soon as the socket is gone, without anyone else closing anything.
    let (addr, _node) = start("  max_http_connections: 1\n").await;
    let mut resume = upgrade(
        addr,
        &format!(
            "access_token={}&protocol=15&reconnect=1&sid=PA_x",
            grant("bob")
        ),
    )
    .await;
    assert!(
        closed_by_server(&mut resume).await,
        "the refused resume stayed open"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed WebSocket's slot was never freed"
        );
        tokio::task::yield_now().await;
    }
}
