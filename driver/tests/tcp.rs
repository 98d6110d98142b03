//! The ICE-TCP port on loopback: a framed check is answered on its own connection, and bad
//! input (garbage, oversized frames, silence, too many connections) closes only the
//! connection that sent it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lkr_driver::{DriverConfig, Media, TcpConfig, spawn};
use lkr_sfu::{Command, PeerConfig, PeerId, RemoteFingerprint};

const LOCAL_UFRAG: &str = "srvU";
const LOCAL_PWD: &str = "server-password-0123456789";

fn start(max_connections: usize, handshake: Duration) -> (Media, SocketAddr) {
    start_sharded(max_connections, handshake, 1)
}

fn peer_config(ufrag: &str, group: u64) -> PeerConfig {
    PeerConfig {
        local_ufrag: ufrag.into(),
        local_pwd: LOCAL_PWD.into(),
        remote_ufrag: "cliU".into(),
        remote_pwd: "client-password-0123456789".into(),
        remote_fingerprint: RemoteFingerprint {
            algorithm: "sha-256".into(),
            value: "00".into(),
        },
        open_channels: Vec::new(),
        group,
    }
}

fn start_sharded(
    max_connections: usize,
    handshake: Duration,
    shards: usize,
) -> (Media, SocketAddr) {
    let mut config = DriverConfig::new("127.0.0.1:0".parse().unwrap());
    config.shards = shards;
    let mut tcp = TcpConfig::new("127.0.0.1:0".parse().unwrap());
    tcp.max_connections = max_connections;
    tcp.handshake_timeout = handshake;
    config.tcp = Some(tcp);
    let media = spawn(config).expect("media core started");
    let addr = media.handle.tcp_addr.expect("TCP port open");
    // With two shards, a first room's peer takes shard 0 and ours, in another room, goes to
    // shard 1: its frames cross from shard 0, where the TCP port sends unknown sources.
    if shards > 1 {
        media
            .handle
            .send(Command::AddPeer {
                peer: PeerId(9),
                config: peer_config("othr", 9),
            })
            .unwrap();
    }
    media
        .handle
        .send(Command::AddPeer {
            peer: PeerId(1),
            config: peer_config(LOCAL_UFRAG, 1),
        })
        .unwrap();
    (media, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connected");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut v = (packet.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(packet);
    v
}

fn check(tid: u8) -> Vec<u8> {
    let mut out = Vec::new();
    lkr_ice::write_binding_request(
        &mut out,
        [tid; 12],
        &format!("{LOCAL_UFRAG}:cliU"),
        LOCAL_PWD,
        1_000,
        7,
        true,
    )
    .unwrap();
    out
}

/// Reads one frame within `within`.
fn read_frame(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    read_frames(s, 1, within).and_then(|mut v| v.pop())
}

/// Reads `n` frames within `within`.
fn read_frames(s: &mut TcpStream, n: usize, within: Duration) -> Option<Vec<Vec<u8>>> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 2048];
    while Instant::now() < deadline {
        while buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                break;
            }
            frames.push(buf[2..2 + len].to_vec());
            buf.drain(..2 + len);
        }
        if frames.len() >= n {
            return Some(frames);
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Whether the server closed `s` within `within` (EOF or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 2048];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Sends checks on `s` until one is answered (the first may race the peer's creation) and
/// returns the mapped address of the framed answer.
fn answered(s: &mut TcpStream, tid: u8) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        s.write_all(&framed(&check(tid))).unwrap();
        if let Some(resp) = read_frame(s, Duration::from_millis(100)) {
            let r = lkr_ice::parse_binding_response(&resp, LOCAL_PWD).expect("a valid response");
            assert!(r.success);
            assert_eq!(r.transaction_id, [tid; 12]);
            return r.mapped.expect("XOR-MAPPED-ADDRESS");
        }
        assert!(Instant::now() < deadline, "no answer to a framed check");
    }
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_framed_check_is_answered_on_its_connection() {
    let (media, addr) = start(8, Duration::from_secs(10));
    let mut s = connect(addr);
    assert_eq!(answered(&mut s, 1), s.local_addr().unwrap());
    // Split across writes, two checks in one write: both answered, in order.
    let two = [framed(&check(101)), framed(&check(102))].concat();
    s.write_all(&two[..5]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&two[5..]).unwrap();
    let answers = read_frames(&mut s, 2, Duration::from_secs(5)).expect("two answers");
    for (tid, resp) in [101, 102].into_iter().zip(answers) {
        let r = lkr_ice::parse_binding_response(&resp, LOCAL_PWD).unwrap();
        assert_eq!(r.transaction_id, [tid; 12]);
    }
    assert_eq!(media.handle.stats.snapshot().tcp.accepted, 1);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let (media, addr) = start(8, Duration::from_secs(10));
    let mut good = connect(addr);
    answered(&mut good, 1);

    // Oversized: a length larger than any datagram.
    let mut big = connect(addr);
    big.write_all(&[0xff, 0xff, 0, 1, 2, 3]).unwrap();
    assert!(closed_within(&mut big, Duration::from_secs(5)), "oversized");

    // DTLS before any check was answered.
    let mut early = connect(addr);
    early.write_all(&framed(&[22, 254, 253, 0, 0])).unwrap();
    assert!(
        closed_within(&mut early, Duration::from_secs(5)),
        "not STUN"
    );

    // Bytes that are no packet at all, and an empty frame.
    let mut junk = connect(addr);
    junk.write_all(&framed(b"GET / HTTP/1.1")).unwrap();
    assert!(closed_within(&mut junk, Duration::from_secs(5)), "junk");
    let mut empty = connect(addr);
    empty.write_all(&[0, 0]).unwrap();
    assert!(closed_within(&mut empty, Duration::from_secs(5)), "empty");

    // Garbage after a valid check closes that connection too.
    let mut late = connect(addr);
    answered(&mut late, 9);
    late.write_all(&framed(&[0xee; 40])).unwrap();
    assert!(closed_within(&mut late, Duration::from_secs(5)), "garbage");

    // The good connection is untouched.
    assert_eq!(answered(&mut good, 2), good.local_addr().unwrap());
    wait_for("the counts", Duration::from_secs(5), || {
        media.handle.stats.snapshot().tcp.bad_frames == 5
    });
}

#[test]
fn silent_connections_time_out_and_the_cap_holds() {
    let (media, addr) = start(2, Duration::from_millis(1000));
    let mut a = connect(addr);
    answered(&mut a, 1);
    let mut b = connect(addr);
    wait_for("two accepted", Duration::from_secs(5), || {
        media.handle.stats.snapshot().tcp.accepted == 2
    });
    // A third is over the cap: closed at once while the two stay.
    let mut c = connect(addr);
    assert!(
        closed_within(&mut c, Duration::from_secs(5)),
        "over the cap"
    );
    assert_eq!(media.handle.stats.snapshot().tcp.refused, 1);
    // `a` was answered and keeps checking; `b` never sends (half-open): only `b` goes.
    assert!(closed_within(&mut b, Duration::from_secs(5)), "silent one");
    assert_eq!(answered(&mut a, 2), a.local_addr().unwrap());
    wait_for("the timeout count", Duration::from_secs(5), || {
        media.handle.stats.snapshot().tcp.timed_out == 1
    });
    // Room again for a new connection.
    let mut d = connect(addr);
    assert_eq!(answered(&mut d, 3), d.local_addr().unwrap());
}

#[test]
fn a_peer_on_another_shard_is_answered_over_tcp() {
    let (media, addr) = start_sharded(8, Duration::from_secs(10), 2);
    let mut s = connect(addr);
    assert_eq!(answered(&mut s, 1), s.local_addr().unwrap());
    // The owner answered again without the first shard's help once it is known.
    assert_eq!(answered(&mut s, 2), s.local_addr().unwrap());
    assert_eq!(media.handle.stats.snapshot().tcp.frames_dropped, 0);
}
