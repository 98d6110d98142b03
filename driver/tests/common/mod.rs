//! What the driver's socket tests share: a client that sends STUN checks to a running media
//! core and counts the answers, and the peers it checks.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lkr_driver::Media;
use lkr_sfu::{Command, PeerConfig, PeerId, RemoteFingerprint};

pub const CLIENT_PWD: &str = "client-password-0123456789";
pub const SERVER_PWD: &str = "server-password-0123456789";

pub fn peer_config(ufrag: &str) -> PeerConfig {
    PeerConfig {
        local_ufrag: ufrag.into(),
        local_pwd: SERVER_PWD.into(),
        remote_ufrag: "cliU".into(),
        remote_pwd: CLIENT_PWD.into(),
        remote_fingerprint: RemoteFingerprint {
            algorithm: "sha-256".into(),
            value: "00".into(),
        },
        open_channels: Vec::new(),
        group: 1,
    }
}

/// A client that checks the server at a fixed rate, as a thousand idle peers would.
pub struct Checker {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    /// `server-ufrag:client-ufrag`.
    pub username: String,
    pub sent: u64,
    pub answered: u64,
    /// Numbers the transaction ids, never reused.
    pub seq: u64,
    /// Checks not answered yet: number and when sent.
    pub outstanding: std::collections::BTreeMap<u64, Instant>,
}

impl Checker {
    pub fn new(server: SocketAddr) -> Self {
        Self::to(server, "srvU")
    }

    /// A client of the peer whose server ufrag is `ufrag`.
    pub fn to(server: SocketAddr, ufrag: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        Checker {
            socket,
            server,
            username: format!("{ufrag}:cliU"),
            sent: 0,
            answered: 0,
            seq: 0,
            outstanding: Default::default(),
        }
    }

    /// Checks until the server knows the peer (the command adding it may come after the
    /// first check), then counts from there.
    pub fn connect(mut self) -> Self {
        let end = Instant::now() + Duration::from_secs(2);
        while self.answered == 0 && Instant::now() < end {
            self.send();
            std::thread::sleep(Duration::from_millis(20));
            self.read();
        }
        assert!(self.answered > 0, "the server answers a check");
        self.sent = self.answered;
        self
    }

    /// Sends one check every 5 ms for `period`, reading answers as they come.
    pub fn run(&mut self, period: Duration) {
        let end = Instant::now() + period;
        let mut next = Instant::now();
        while Instant::now() < end {
            if Instant::now() >= next {
                self.send();
                next += Duration::from_millis(5);
            }
            self.read();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn send(&mut self) {
        self.sent += 1;
        self.seq += 1;
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&self.seq.to_be_bytes());
        self.outstanding.insert(self.seq, Instant::now());
        // Distinct per source: the same transaction id from two addresses is a replay.
        let port = self.socket.local_addr().unwrap().port();
        tid[8..10].copy_from_slice(&port.to_be_bytes());
        let mut out = Vec::new();
        lkr_ice::write_binding_request(&mut out, tid, &self.username, SERVER_PWD, 1_000, 7, true)
            .unwrap();
        self.socket.send_to(&out, self.server).unwrap();
    }

    pub fn read(&mut self) {
        let mut buf = [0u8; 1500];
        while let Ok((n, _)) = self.socket.recv_from(&mut buf) {
            let r = lkr_ice::parse_binding_response(&buf[..n], SERVER_PWD);
            if r.as_ref().is_ok_and(|r| r.success) {
                self.answered += 1;
                let t = r.unwrap().transaction_id;
                self.outstanding
                    .remove(&u64::from_be_bytes(t[..8].try_into().unwrap()));
            }
        }
    }

    /// Reads answers until every check has one, for at most `within`.
    pub fn all_answered(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while self.answered < self.sent && Instant::now() < end {
            self.read();
            std::thread::sleep(Duration::from_millis(2));
        }
        self.answered >= self.sent
    }
}

pub fn add_peer(media: &Media, id: u64, ufrag: &str) {
    media
        .handle
        .send(Command::AddPeer {
            peer: PeerId(id),
            config: peer_config(ufrag),
        })
        .unwrap();
}
