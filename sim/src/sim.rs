//! The whole simulation: one [`Engine`] as the server, simulated clients, the network between
//! them, and the virtual clock that drives all of it in time order.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_sfu::{
    Command, Engine, Event, ExtIds, PeerConfig, PeerId, PublishSpec, RemoteFingerprint,
    SubscribeSpec, TrackId,
};

use crate::client::{Client, ClientConfig, IceCredentials};
use crate::clock::Clock;
use crate::media::MediaSource;
use crate::net::{LinkConfig, Network};
use crate::rng::Rng;

/// How a simulation starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Everything random in the simulation (losses, credentials, SSRCs, sequence bases)
    /// follows from this.
    pub seed: u64,
    pub server_addr: SocketAddr,
    /// Clients get the addresses after this one, port 50 000 (10.0.1.1, 10.0.1.2, … by
    /// default; a test that hands the engine's datagrams to a real socket picks loopback).
    pub client_net: Ipv4Addr,
    /// Links not configured otherwise.
    pub default_link: LinkConfig,
    pub client: ClientConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            server_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7882),
            client_net: Ipv4Addr::new(10, 0, 1, 0),
            default_link: LinkConfig::default(),
            client: ClientConfig::default(),
        }
    }
}

impl SimConfig {
    /// The defaults with another seed.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }
}

/// A client of a simulation, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// Certificates are costly to make and any will do, so one per thread serves every run.
fn shared_certificates() -> (Certificate, Certificate) {
    thread_local! {
        static CERTS: (Certificate, Certificate) = (
            Certificate::generate().expect("the crypto backend makes P-256 certificates"),
            Certificate::generate().expect("the crypto backend makes P-256 certificates"),
        );
    }
    CERTS.with(|c| c.clone())
}

/// A server, its clients and the network, in virtual time.
pub struct Sim {
    clock: Clock,
    /// The server under test.
    pub engine: Engine,
    /// Everything in flight.
    pub net: Network,
    server_addr: SocketAddr,
    config: SimConfig,
    clients: Vec<Client>,
    by_addr: BTreeMap<SocketAddr, usize>,
    tracks: BTreeMap<TrackId, MediaSource>,
    events: Vec<(Instant, Event)>,
    client_cert: Certificate,
    server_fp: Fingerprint,
    rng: Rng,
    /// Datagrams addressed to nobody.
    pub undeliverable: u64,
    engine_timeouts: u64,
}

impl Sim {
    /// A simulation with no clients yet.
    pub fn new(config: SimConfig) -> Self {
        let (server_cert, client_cert) = shared_certificates();
        let engine = Engine::new(server_cert);
        let (alg, value) = engine.fingerprint();
        let server_fp =
            Fingerprint::parse(&alg, &value).expect("the engine's own fingerprint parses");
        let mut rng = Rng::new(config.seed);
        let net = Network::new(rng.next_u64(), config.default_link);
        Self {
            clock: Clock::new(),
            engine,
            net,
            server_addr: config.server_addr,
            config,
            clients: Vec::new(),
            by_addr: BTreeMap::new(),
            tracks: BTreeMap::new(),
            events: Vec::new(),
            client_cert,
            server_fp,
            rng,
            undeliverable: 0,
            engine_timeouts: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// The simulation's own generator (for tests that need reproducible randomness).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Adds a client with the simulation's client settings.
    pub fn add_client(&mut self) -> ClientId {
        let config = self.config.client;
        self.add_client_with(config)
    }

    /// Adds a client at the next address after [`SimConfig::client_net`], tells the engine about it
    /// (`Command::AddPeer`, `PeerId` = index + 1) and lets it start connecting.
    pub fn add_client_with(&mut self, config: ClientConfig) -> ClientId {
        let (id, add) = self.add_client_unannounced(config);
        self.command(add);
        id
    }

    /// Adds a client that starts connecting at once, as [`Sim::add_client_with`] does, but
    /// leaves telling the engine to the caller: returns the `Command::AddPeer` to apply
    /// (the command can reach a shard after the client's first checks).
    pub fn add_client_unannounced(&mut self, config: ClientConfig) -> (ClientId, Command) {
        let index = self.clients.len();
        let n = u32::try_from(index).expect("fewer than 2^32 clients");
        let ip = Ipv4Addr::from(u32::from(self.config.client_net) + n + 1);
        let addr = SocketAddr::new(IpAddr::V4(ip), 50_000);
        let peer = PeerId(index as u64 + 1);
        let creds = IceCredentials {
            client_ufrag: format!("c{index}{}", self.token(4)),
            client_pwd: self.token(24),
            server_ufrag: format!("s{index}{}", self.token(4)),
            server_pwd: self.token(24),
        };
        let fp = self.client_cert.fingerprint();
        let now = self.now();
        let add = Command::AddPeer {
            peer,
            config: PeerConfig {
                local_ufrag: creds.server_ufrag.clone(),
                local_pwd: creds.server_pwd.clone(),
                remote_ufrag: creds.client_ufrag.clone(),
                remote_pwd: creds.client_pwd.clone(),
                remote_fingerprint: RemoteFingerprint {
                    algorithm: fp.algorithm.clone(),
                    value: fp.to_sdp_value(),
                },
                open_channels: Vec::new(),
                group: 0,
            },
        };
        let seed = self.rng.next_u64();
        self.clients.push(Client::new(
            peer,
            addr,
            self.server_addr,
            config,
            creds,
            self.client_cert.clone(),
            self.server_fp.clone(),
            seed,
            now,
        ));
        self.by_addr.insert(addr, index);
        self.flush();
        (ClientId(index), add)
    }

    /// ICE characters (RFC 8445 §5.3: ALPHA / DIGIT / "+" / "/").
    fn token(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len)
            .map(|_| char::from(CHARS[self.rng.below(CHARS.len() as u64) as usize]))
            .collect()
    }

    pub fn client(&self, id: ClientId) -> &Client {
        &self.clients[id.0]
    }

    pub fn client_mut(&mut self, id: ClientId) -> &mut Client {
        &mut self.clients[id.0]
    }

    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The engine and the clients at once (benchmarks drive the engine by hand with packets
    /// the clients make).
    pub fn parts(&mut self) -> (&mut Engine, &mut [Client]) {
        (&mut self.engine, &mut self.clients)
    }

    /// Every event the engine reported, with when.
    pub fn events(&self) -> &[(Instant, Event)] {
        &self.events
    }

    /// Applies a command to the engine now.
    pub fn command(&mut self, cmd: Command) {
        let now = self.now();
        self.engine.handle_command(now, cmd);
        self.flush();
    }

    /// Publishes `track` from a client: a publisher starts on the client and the engine
    /// learns the track (`Command::Publish` with the SSRC, no simulcast, no extensions).
    /// Returns the SSRC.
    pub fn publish(&mut self, id: ClientId, track: TrackId, source: MediaSource) -> u32 {
        let ssrc = self.rng.next_u32() | 1;
        let now = self.now();
        self.clients[id.0].add_publisher(track, ssrc, source, now);
        self.tracks.insert(track, source);
        let peer = self.clients[id.0].peer;
        self.command(Command::Publish(PublishSpec {
            peer,
            track,
            kind: source.kind(),
            mid: format!("{}", track.0),
            rids: vec![],
            ssrcs: vec![ssrc],
            payload_types: vec![source.payload_type()],
            ext: ExtIds::default(),
            rtx: vec![],
            rtx_ssrcs: vec![],
        }));
        ssrc
    }

    /// The set-up of the forwarding benches and allocation tests: `subscribers` more clients
    /// (after the publisher, `ClientId(0)`, which the caller added), everyone connected within
    /// `connect`, `track` published from client 0 and subscribed by the others (downstream
    /// transport-cc extension id `transport_cc`, 0: none), media flowing for `warm_up` (every
    /// subscriber must have received some), then the publisher stopped
    /// ([`Sim::stop_publisher`]) so that only the caller sends. Returns the publisher's SSRC
    /// and the subscribers' downstream SSRCs.
    pub fn fan_out(
        &mut self,
        track: TrackId,
        source: MediaSource,
        subscribers: usize,
        transport_cc: u8,
        connect: Duration,
        warm_up: Duration,
    ) -> (u32, Vec<u32>) {
        for _ in 0..subscribers {
            self.add_client();
        }
        assert!(self.connect_all(connect), "peers connect");
        let ssrc = self.publish(ClientId(0), track, source);
        let down = (1..=subscribers)
            .map(|i| self.subscribe_with(ClientId(i), track, transport_cc))
            .collect();
        self.run_for(warm_up);
        self.stop_publisher(ClientId(0), track);
        for i in 1..=subscribers {
            assert!(
                self.clients[i]
                    .stream_of(track)
                    .is_some_and(|s| s.unique_packets() > 0),
                "subscriber {i} receives"
            );
        }
        (ssrc, down)
    }

    /// Stops `id`'s publisher of `track` sending on its own clock and lets 100 ms pass for
    /// what is in flight: from then on, only what the caller makes it send.
    pub fn stop_publisher(&mut self, id: ClientId, track: TrackId) {
        let now = self.now();
        self.clients[id.0]
            .publisher_mut(track)
            .expect("a track this client publishes")
            .set_sending(false, now);
        self.run_for(Duration::from_millis(100));
    }

    /// Subscribes a client to a published track with a fresh downstream SSRC and the
    /// publisher's payload type. Returns that SSRC.
    pub fn subscribe(&mut self, id: ClientId, track: TrackId) -> u32 {
        self.subscribe_with(id, track, 0)
    }

    /// As [`Sim::subscribe`], with the downstream transport-cc extension id (0: none).
    pub fn subscribe_with(&mut self, id: ClientId, track: TrackId, transport_cc: u8) -> u32 {
        self.subscribe_full(id, track, transport_cc, None)
    }

    /// As [`Sim::subscribe_with`], with a playout-delay extension element (id, value) on
    /// every packet; the client records the values it receives under that id.
    pub fn subscribe_full(
        &mut self,
        id: ClientId,
        track: TrackId,
        transport_cc: u8,
        playout_delay: Option<(u8, [u8; 3])>,
    ) -> u32 {
        let source = *self
            .tracks
            .get(&track)
            .expect("subscribe to a track published in this simulation");
        let ssrc = self.rng.next_u32() | 1;
        let pt = source.payload_type();
        self.clients[id.0].expect_stream(ssrc, track, pt.codec);
        self.clients[id.0].twcc_ext = transport_cc;
        if let Some((ext, _)) = playout_delay {
            self.clients[id.0].playout_delay_ext = ext;
        }
        let peer = self.clients[id.0].peer;
        self.command(Command::Subscribe(SubscribeSpec {
            peer,
            track,
            ssrc,
            payload_types: vec![(pt.codec, pt.pt)],
            transport_cc,
            rtx: None,
            priority: 0,
            playout_delay,
        }));
        ssrc
    }

    /// Sets the link from `from` to `to`.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, config: LinkConfig) {
        self.net.set_link(from, to, config);
    }

    /// Sets the client → server direction of a client.
    pub fn set_uplink(&mut self, id: ClientId, config: LinkConfig) {
        let (from, to) = (self.clients[id.0].addr, self.server_addr);
        self.net.set_link(from, to, config);
    }

    /// Sets the server → client direction of a client.
    pub fn set_downlink(&mut self, id: ClientId, config: LinkConfig) {
        let (from, to) = (self.server_addr, self.clients[id.0].addr);
        self.net.set_link(from, to, config);
    }

    /// Sends a datagram into the network now, from any address (known or not).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let now = self.now();
        self.net.send(now, from, to, data);
    }

    /// Hands a datagram straight to the engine now, as if from `from`, and sends what it
    /// answers.
    pub fn deliver_to_engine(&mut self, from: SocketAddr, data: &mut [u8]) {
        let now = self.now();
        self.engine.handle_receive(now, from, data);
        self.flush();
    }

    /// How many times the engine's timer came due (its `poll_timeout` reached).
    pub fn engine_timeouts(&self) -> u64 {
        self.engine_timeouts
    }

    /// When anything happens next.
    fn next_due(&self) -> Option<Instant> {
        [self.net.next_arrival(), self.engine.poll_timeout()]
            .into_iter()
            .chain(self.clients.iter().map(Client::poll_timeout))
            .flatten()
            .min()
    }

    /// Runs everything due up to `limit`, advancing the clock; ends with the clock at
    /// `limit`.
    pub fn run_until(&mut self, limit: Instant) {
        while let Some(t) = self.next_due().filter(|t| *t <= limit) {
            self.clock.advance_to(t);
            self.step();
        }
        self.clock.advance_to(limit);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now() + d;
        self.run_until(limit);
    }

    /// Runs until `done` holds (checked after every step) or `max` has passed; returns
    /// whether it held.
    pub fn run_until_condition(
        &mut self,
        max: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let limit = self.now() + max;
        loop {
            if done(self) {
                return true;
            }
            match self.next_due().filter(|t| *t <= limit) {
                Some(t) => {
                    self.clock.advance_to(t);
                    self.step();
                }
                None => {
                    self.clock.advance_to(limit);
                    return done(self);
                }
            }
        }
    }

    /// Runs until every client has DTLS up and the engine reported each of them connected;
    /// false if that takes longer than `max`.
    pub fn connect_all(&mut self, max: Duration) -> bool {
        self.run_until_condition(max, |sim| {
            sim.clients.iter().all(|c| {
                c.is_connected()
                    && sim
                        .events
                        .iter()
                        .any(|(_, e)| *e == Event::PeerConnected { peer: c.peer })
            })
        })
    }

    /// Everything due at the current time: arrivals, then the engine's timer, then the
    /// clients' timers; then whatever that produced is sent.
    fn step(&mut self) {
        let now = self.now();
        while let Some(mut d) = self.net.pop_arrived(now) {
            if d.to == self.server_addr {
                self.engine.handle_receive(now, d.from, &mut d.data);
            } else if let Some(&i) = self.by_addr.get(&d.to) {
                self.clients[i].handle_receive(now, d.from, &mut d.data);
                if d.from == self.server_addr {
                    // The buffer came from the engine's pool: give it back.
                    self.engine.recycle(d.data);
                }
            } else {
                self.undeliverable += 1;
            }
            self.flush();
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine_timeouts += 1;
            self.engine.handle_timeout(now);
        }
        for c in &mut self.clients {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        self.flush();
    }

    /// Moves what the engine and the clients want to send into the network, and records the
    /// engine's events.
    fn flush(&mut self) {
        let now = self.now();
        while let Some(t) = self.engine.poll_transmit() {
            self.net.send(now, self.server_addr, t.dest, t.data);
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push((now, e));
        }
        for c in &mut self.clients {
            while let Some((dest, data)) = c.poll_transmit() {
                self.net.send(now, c.addr, dest, data);
            }
        }
    }
}
