//! `perf udp-relay`: a plain UDP relay, the baseline that the server's CPU per forwarded
//! packet is compared with (`perf relay-load-test`, `benches/scripts/relay-compare.sh`).
//!
//! One UDP socket. Datagrams are read with `recvmmsg` and written with `sendmmsg`, up to
//! [`BATCH`] per system call, through the same batch code as the server's media thread
//! ([`lkr_driver::batch`]); there is no crypto and no parsing. A datagram whose payload
//! starts with [`JOIN_MARKER`] registers its source as a receiver (answered with
//! [`JOINED_REPLY`], or [`FULL_REPLY`] once `--max-receivers` receivers, default
//! [`DEFAULT_MAX_RECEIVERS`], are registered: the refusal is counted). Every other datagram
//! is sent (unchanged unless `--seal`) to every registered receiver except its own source.
//!
//! Two flags make it do what a media server must do at least for each copy, so that what
//! the kernel charges for the same datagrams can be set beside the server's with the
//! server's own unavoidable work included:
//! - `--segment`: each receiver's copies of what was read together leave as segmented
//!   sends (UDP GSO), gathered, ordered by destination and sent by the server's own code
//!   ([`SendBatch::by_destination`](lkr_driver::batch::SendBatch::by_destination),
//!   [`send_runs`](lkr_driver::batch::SendBatch::send_runs)), up to
//!   [`WINDOW`](lkr_driver::batch::WINDOW) datagrams a round;
//! - `--seal`: each receiver's copy is protected with SRTP AES-128-GCM under a context of
//!   its own (the server's [`SrtpContext`](lkr_dtls_glue::srtp::SrtpContext)): a datagram
//!   is taken as an RTP packet whose last [`SEAL_TAG_LEN`] bytes are room for the tag, so a
//!   copy keeps its size. Every context has the same fixed, public key ([`SEAL_KEY`],
//!   [`SEAL_SALT`]), which `perf relay-load-test --sealed` opens with: the point is the work,
//!   not secrecy. A datagram that is not RTP-shaped is not relayed and is counted.
//!
//! Buffers are allocated once: the receive batch, the send batch (one buffer per slot, each
//! receiver's copy of a datagram is written into a slot, as the server writes each
//! subscriber's own SRTP packet), and the receiver list up to its cap (with `--seal`, each
//! receiver's context when it registers). Sending never waits:
//! when the socket is full (`EAGAIN`, `ENOBUFS`) what is left of the batch is dropped and
//! counted. The counters are printed when the relay stops (SIGTERM, SIGINT).
//!
//! Linux only: elsewhere there is no `recvmmsg`/`sendmmsg`, and the command says so.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

use clap::Args;
use serde_json::{Value, json};

use super::MediaError;
use crate::admin::Report;

/// Datagrams moved per system call at most.
pub use lkr_driver::batch::BATCH;

/// The payload prefix that registers a datagram's source as a receiver.
pub const JOIN_MARKER: &[u8] = b"LKR-RELAY-JOIN";
/// The relay's answer to a registration it accepted (or already had).
pub const JOINED_REPLY: &[u8] = b"LKR-RELAY-JOINED";
/// The relay's answer to a registration beyond its cap.
pub const FULL_REPLY: &[u8] = b"LKR-RELAY-FULL";
/// Receivers registered at most, unless `--max-receivers` says otherwise.
pub const DEFAULT_MAX_RECEIVERS: usize = 10_000;
/// Room for one datagram in a send slot (the receive buffers are as large).
const SLOT: usize = 2048;
/// The SRTP master key of every `--seal` context (public: the relay measures work).
pub const SEAL_KEY: [u8; 16] = *b"lkr-relay-seal-k";
/// The SRTP master salt of every `--seal` context.
pub const SEAL_SALT: [u8; 12] = *b"lkr-relay-sa";
/// The bytes at the end of a datagram that `--seal` writes the AES-GCM tag over.
pub const SEAL_TAG_LEN: usize = 16;

/// A context for one receiver of `--seal`.
pub(crate) fn seal_context() -> lkr_dtls_glue::srtp::SrtpContext {
    use lkr_dtls_glue::srtp::{SrtpContext, SrtpProfile};
    SrtpContext::new(SrtpProfile::AeadAes128Gcm, &SEAL_KEY, &SEAL_SALT)
        .expect("the fixed key and salt have AES-128-GCM's lengths")
}

/// `perf udp-relay` flags.
#[derive(Debug, Clone, Args)]
pub struct UdpRelayArgs {
    /// Address to listen on, e.g. 127.0.0.1:7900
    #[arg(long)]
    pub bind: SocketAddr,
    /// Receivers registered at most; registrations beyond are refused and counted
    #[arg(long, default_value_t = DEFAULT_MAX_RECEIVERS)]
    pub max_receivers: usize,
    /// Send each receiver's copies of what was read together as segmented sends (UDP GSO),
    /// as the server does; without, one datagram per system-call header
    #[arg(long)]
    pub segment: bool,
    /// Protect each receiver's copy with SRTP AES-128-GCM under a context of its own (the
    /// datagram's last 16 bytes are the tag's room), as the server does
    #[arg(long)]
    pub seal: bool,
}

/// What the relay does to each copy beyond sending it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// `--segment`.
    pub segment: bool,
    /// `--seal`.
    pub seal: bool,
}

/// What the relay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayCounters {
    /// Datagrams read (registrations included).
    pub received: u64,
    /// Registrations accepted (a repeated one from a registered address included).
    pub registrations: u64,
    /// Registrations refused: the receiver list was full.
    pub refused: u64,
    /// Datagrams the kernel accepted for sending: one per datagram and receiver.
    pub forwarded: u64,
    /// Datagrams dropped because the socket was full (`EAGAIN`, `ENOBUFS`).
    pub dropped_full: u64,
    /// Datagrams the kernel refused for another reason.
    pub send_failed: u64,
    /// With `--seal`: datagrams not relayed because they are not RTP-shaped.
    pub unsealable: u64,
    /// Segmented sends made, and the datagrams they carried.
    pub segmented: (u64, u64),
}

impl RelayCounters {
    /// The one-line summary printed when the relay stops.
    pub fn line(&self, receivers: usize) -> String {
        format!(
            "udp-relay: received {} datagrams ({} registrations, {} refused); forwarded {} to {receivers} receivers ({} segmented sends carrying {}); dropped {} (socket full), {} send errors, {} not RTP-shaped\n",
            self.received,
            self.registrations,
            self.refused,
            self.forwarded,
            self.segmented.0,
            self.segmented.1,
            self.dropped_full,
            self.send_failed,
            self.unsealable
        )
    }

    fn json(&self, receivers: usize) -> Value {
        json!({
            "received": self.received,
            "registrations": self.registrations,
            "refused": self.refused,
            "forwarded": self.forwarded,
            "dropped_full": self.dropped_full,
            "send_failed": self.send_failed,
            "unsealable": self.unsealable,
            "segmented_sends": self.segmented.0,
            "segmented_datagrams": self.segmented.1,
            "receivers": receivers,
        })
    }
}

/// How a registration went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new receiver.
    Added,
    /// The address was registered already.
    Again,
    /// The list is full.
    Refused,
}

/// The registered receivers, at most `cap`, in registration order. Room for all of them is
/// taken up front, so registering never allocates.
#[derive(Debug)]
pub struct Receivers {
    list: Vec<SocketAddr>,
    known: HashSet<SocketAddr>,
    cap: usize,
}

impl Receivers {
    /// An empty list that takes at most `cap` receivers.
    pub fn new(cap: usize) -> Self {
        Self {
            list: Vec::with_capacity(cap),
            known: HashSet::with_capacity(cap),
            cap,
        }
    }

    /// Registers `addr`.
    pub fn register(&mut self, addr: SocketAddr) -> Registration {
        if self.known.contains(&addr) {
            Registration::Again
        } else if self.list.len() >= self.cap {
            Registration::Refused
        } else {
            self.known.insert(addr);
            self.list.push(addr);
            Registration::Added
        }
    }

    /// The receivers, in registration order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.list
    }

    /// How many are registered.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Runs `perf udp-relay` until SIGTERM or SIGINT, then reports its counters.
pub async fn run(args: &UdpRelayArgs) -> Result<Report, MediaError> {
    #[cfg(target_os = "linux")]
    {
        let work = Work {
            segment: args.segment,
            seal: args.seal,
        };
        let relay = linux::Relay::bind(args.bind, args.max_receivers, work).await?;
        let addr = relay.local_addr()?;
        let stop = stop_signal()?;
        // The first line tells a script that the socket is bound and the signals are caught.
        println!(
            "udp-relay: listening on {addr} (at most {} receivers{}{})",
            args.max_receivers,
            if relay.segments() {
                ", segmented sends"
            } else if args.segment {
                ", segmentation refused by the kernel"
            } else {
                ""
            },
            if args.seal { ", each copy sealed" } else { "" },
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let (counters, receivers) = relay.run(stop).await;
        Ok(report(&counters, receivers))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        Err(MediaError::BadArgument(
            "perf udp-relay runs on Linux only (it is the recvmmsg/sendmmsg baseline)".into(),
        ))
    }
}

/// Resolves on SIGTERM or SIGINT.
#[cfg(target_os = "linux")]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, MediaError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn report(c: &RelayCounters, receivers: usize) -> Report {
    let mut human = String::new();
    let _ = write!(human, "{}", c.line(receivers));
    Report {
        human,
        json: c.json(receivers),
    }
}

#[cfg(target_os = "linux")]
pub use linux::Relay;

#[cfg(target_os = "linux")]
mod linux {
    //! The relay's socket loop.

    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;

    use lkr_driver::batch::{RecvBatch, SendBatch, is_full, segmentation_supported};
    use lkr_dtls_glue::srtp::SrtpContext;
    use lkr_sfu::Transmit;
    use tokio::net::UdpSocket;

    use super::{
        FULL_REPLY, JOIN_MARKER, JOINED_REPLY, Receivers, Registration, RelayCounters,
        SEAL_TAG_LEN, SLOT, Work, seal_context,
    };

    /// The relay: its socket, receivers, counters and the buffers it reuses. It holds raw
    /// pointers for the kernel, so it is not `Send`: run it on the thread that made it.
    pub struct Relay {
        socket: UdpSocket,
        receivers: Receivers,
        /// With `--seal`, each receiver's context, in registration order.
        seals: Option<Vec<SrtpContext>>,
        counters: RelayCounters,
        rx: RecvBatch,
        tx: SendBatch,
        /// The copies waiting to go out, at most a send window of them.
        out: Vec<Transmit>,
        /// Buffers for `out`'s slots, taken back after each round.
        pool: Vec<Vec<u8>>,
    }

    impl Relay {
        /// Binds the socket; takes at most `max_receivers` receivers and does `work` to each
        /// copy.
        pub async fn bind(addr: SocketAddr, max_receivers: usize, work: Work) -> io::Result<Self> {
            let socket = std::net::UdpSocket::bind(addr)?;
            let segment = work.segment && segmentation_supported(&socket);
            socket.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(socket)?;
            let tx = SendBatch::grouping(segment);
            let window = tx.window();
            Ok(Self {
                socket,
                receivers: Receivers::new(max_receivers),
                seals: work.seal.then(|| Vec::with_capacity(max_receivers)),
                counters: RelayCounters::default(),
                rx: RecvBatch::default(),
                tx,
                out: Vec::with_capacity(window),
                pool: (0..window).map(|_| Vec::with_capacity(SLOT)).collect(),
            })
        }

        /// The address it is bound to.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.socket.local_addr()
        }

        /// Whether copies leave as segmented sends (asked for, and the kernel takes them).
        pub fn segments(&self) -> bool {
            self.tx.segments()
        }

        /// Relays until `stop` resolves (or the socket fails); returns the counters and how
        /// many receivers were registered.
        pub async fn run(mut self, stop: impl Future<Output = ()>) -> (RelayCounters, usize) {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    ready = self.socket.readable() => {
                        if let Err(e) = ready {
                            eprintln!("udp-relay: {e}");
                            break;
                        }
                        if let Err(e) = self.drain() {
                            eprintln!("udp-relay: {e}");
                            break;
                        }
                    }
                }
            }
            (self.counters, self.receivers.len())
        }

        /// Reads and relays batches until nothing is waiting.
        fn drain(&mut self) -> io::Result<()> {
            loop {
                let n = self.rx.recv(&self.socket)?;
                if n == 0 {
                    return Ok(());
                }
                self.counters.received += n as u64;
                let Self {
                    socket,
                    receivers,
                    seals,
                    counters,
                    rx,
                    tx,
                    out,
                    pool,
                } = self;
                let window = tx.window();
                rx.for_each(|from, data| {
                    if data.starts_with(JOIN_MARKER) {
                        let reply = match receivers.register(from) {
                            r @ (Registration::Added | Registration::Again) => {
                                counters.registrations += 1;
                                if let (Registration::Added, Some(seals)) = (r, seals.as_mut()) {
                                    seals.push(seal_context());
                                }
                                JOINED_REPLY
                            }
                            Registration::Refused => {
                                counters.refused += 1;
                                FULL_REPLY
                            }
                        };
                        // Lost answers are asked again for: the receiver retries.
                        let _ = socket.try_send_to(reply, from);
                        return;
                    }
                    if seals.is_some() && data.len() <= SEAL_TAG_LEN {
                        counters.unsealable += 1;
                        return;
                    }
                    for (i, &dest) in receivers.addrs().iter().enumerate() {
                        if dest == from {
                            continue;
                        }
                        // The window is flushed before the pool runs dry: no allocation here.
                        let mut buf = pool.pop().unwrap_or_default();
                        buf.clear();
                        buf.extend_from_slice(data);
                        if let Some(seals) = seals.as_mut() {
                            let plain = buf.len() - SEAL_TAG_LEN;
                            if seals[i].protect_rtp(&mut buf, plain).is_err() {
                                counters.unsealable += 1;
                                pool.push(buf);
                                return;
                            }
                        }
                        out.push(Transmit { dest, data: buf });
                        if out.len() == window {
                            flush(socket, tx, out, pool, counters);
                        }
                    }
                });
                flush(socket, tx, out, pool, counters);
            }
        }
    }

    /// Any port of 127.0.0.1.
    #[cfg(test)]
    fn loopback() -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
    }

    #[cfg(test)]
    impl Relay {
        /// A relay on 127.0.0.1 that relays only when [`Relay::relay_queued`] is called.
        pub(crate) async fn bind_for_test(cap: usize, work: Work) -> Self {
            Self::bind(loopback(), cap, work)
                .await
                .expect("bind 127.0.0.1")
        }

        /// Waits until its socket is readable, then relays what is queued on it; returns the
        /// counters so far.
        pub(crate) async fn relay_queued(&mut self) -> io::Result<RelayCounters> {
            self.socket.readable().await?;
            self.drain()?;
            Ok(self.counters)
        }

        /// A relay on 127.0.0.1 with at most `cap` receivers, on a thread of its own (its
        /// buffers hold raw pointers for the kernel: it stays on one thread), until `stop` fires
        /// or is dropped; the thread returns the counters and the receivers registered.
        pub(crate) fn spawn_for_test(
            cap: usize,
            work: Work,
        ) -> (
            SocketAddr,
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<(RelayCounters, usize)>,
        ) {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async {
                    let relay = Relay::bind(loopback(), cap, work)
                        .await
                        .expect("bind 127.0.0.1");
                    addr_tx
                        .send(relay.local_addr().expect("local address"))
                        .expect("the test waits for the address");
                    relay
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await
                })
            });
            let addr = addr_rx.recv().expect("the relay is bound");
            (addr, stop, thread)
        }
    }

    /// Sends `out` (ordered by destination when segmenting), never waiting: on a full
    /// socket the rest is dropped. Its buffers go back to `pool`; the segmented sends made
    /// are counted.
    fn flush(
        socket: &UdpSocket,
        tx: &mut SendBatch,
        out: &mut Vec<Transmit>,
        pool: &mut Vec<Vec<u8>>,
        c: &mut RelayCounters,
    ) {
        tx.by_destination(out);
        let mut sent = 0;
        while sent < out.len() {
            match tx.send_runs(socket, &out[sent..]) {
                Ok(n) if n > 0 => {
                    c.forwarded += n as u64;
                    sent += n;
                }
                Ok(_) => {
                    c.send_failed += (out.len() - sent) as u64;
                    break;
                }
                Err(e) if is_full(&e) => {
                    c.dropped_full += (out.len() - sent) as u64;
                    break;
                }
                Err(_) => {
                    c.send_failed += (out.len() - sent) as u64;
                    break;
                }
            }
        }
        let (runs, datagrams) = tx.take_segmented();
        c.segmented.0 += runs;
        c.segmented.1 += datagrams;
        pool.extend(out.drain(..).map(|t| t.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn registrations_stop_at_the_cap() {
        let mut r = Receivers::new(2);
        assert_eq!(r.register(addr(1)), Registration::Added);
        assert_eq!(r.register(addr(2)), Registration::Added);
        assert_eq!(r.register(addr(1)), Registration::Again);
        assert_eq!(r.register(addr(3)), Registration::Refused);
        assert_eq!(r.addrs(), &[addr(1), addr(2)]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_counters_line_says_what_happened() {
        let c = RelayCounters {
            received: 12,
            registrations: 2,
            refused: 1,
            forwarded: 18,
            dropped_full: 0,
            send_failed: 0,
            unsealable: 1,
            segmented: (3, 12),
        };
        assert_eq!(
            c.line(2),
            "udp-relay: received 12 datagrams (2 registrations, 1 refused); forwarded 18 to 2 \
             receivers (3 segmented sends carrying 12); dropped 0 (socket full), 0 send errors, \
             1 not RTP-shaped\n"
        );
        let j = report(&c, 2).json;
        assert_eq!(j["forwarded"], 18);
        assert_eq!(
            (&j["segmented_sends"], &j["unsealable"]),
            (&json!(3), &json!(1))
        );
    }

    #[cfg(target_os = "linux")]
    mod on_loopback {
        use std::time::Duration;

        use tokio::net::UdpSocket;

        use super::super::Relay;
        use super::super::*;

        /// Registers a new socket; returns it and the relay's answer.
        async fn register(relay: SocketAddr) -> (UdpSocket, Vec<u8>) {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(JOIN_MARKER, relay).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .expect("the relay answers a registration")
                .unwrap();
            assert_eq!(from, relay);
            (s, buf[..n].to_vec())
        }

        #[tokio::test]
        async fn every_datagram_reaches_every_receiver() {
            let (relay, stop, task) = Relay::spawn_for_test(10, Work::default());
            let (a, ra) = register(relay).await;
            let (b, rb) = register(relay).await;
            assert_eq!((ra.as_slice(), rb.as_slice()), (JOINED_REPLY, JOINED_REPLY));
            let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for i in 0..100u8 {
                sender.send_to(&[i; 108], relay).await.unwrap();
            }
            for r in [&a, &b] {
                let mut buf = [0u8; 256];
                for i in 0..100u8 {
                    let n = tokio::time::timeout(Duration::from_secs(5), r.recv(&mut buf))
                        .await
                        .expect("every datagram arrives")
                        .unwrap();
                    assert_eq!(&buf[..n], &[i; 108]);
                }
            }
            stop.send(()).unwrap();
            let (c, receivers) = task.join().unwrap();
            assert_eq!(receivers, 2);
            assert_eq!(c.registrations, 2);
            assert_eq!(c.received, 102);
            assert_eq!(c.forwarded, 200);
            assert_eq!((c.refused, c.dropped_full, c.send_failed), (0, 0, 0));
        }

        #[tokio::test]
        async fn a_registration_beyond_the_cap_is_refused_and_counted() {
            let (relay, stop, task) = Relay::spawn_for_test(2, Work::default());
            let (_a, ra) = register(relay).await;
            let (b, rb) = register(relay).await;
            let (c, rc) = register(relay).await;
            assert_eq!(ra, JOINED_REPLY);
            assert_eq!(rb, JOINED_REPLY);
            assert_eq!(rc, FULL_REPLY);
            // The refused socket gets nothing of what is relayed; a registered one does.
            let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sender.send_to(b"media", relay).await.unwrap();
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), b.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], b"media");
            assert!(
                tokio::time::timeout(Duration::from_millis(200), c.recv(&mut buf))
                    .await
                    .is_err()
            );
            stop.send(()).unwrap();
            let (counters, receivers) = task.join().unwrap();
            assert_eq!(receivers, 2);
            assert_eq!((counters.registrations, counters.refused), (2, 1));
            assert_eq!(counters.forwarded, 2);
        }

        /// An RTP-shaped datagram of `len` bytes with sequence number `seq`, its last 16
        /// bytes the tag's room.
        fn rtp(seq: u16, len: usize) -> Vec<u8> {
            let mut d = vec![0u8; len];
            d[0] = 0x80;
            d[1] = 96;
            d[2..4].copy_from_slice(&seq.to_be_bytes());
            d[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            for (i, b) in d[12..len - SEAL_TAG_LEN].iter_mut().enumerate() {
                *b = (i as u16 ^ seq) as u8;
            }
            d
        }

        #[tokio::test]
        async fn segmented_and_sealed_copies_open_to_what_was_sent() {
            let mut relay = Relay::bind_for_test(
                10,
                Work {
                    segment: true,
                    seal: true,
                },
            )
            .await;
            assert!(relay.segments(), "loopback takes UDP_SEGMENT");
            let addr = relay.local_addr().unwrap();
            let receivers = [
                UdpSocket::bind("127.0.0.1:0").await.unwrap(),
                UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            ];
            for r in &receivers {
                r.send_to(JOIN_MARKER, addr).await.unwrap();
            }
            // A loopback send is queued on the relay's socket when it returns, so each
            // `relay_queued` reads everything sent before it in one go.
            relay.relay_queued().await.unwrap();
            // One video frame's packets, sent back to back: the last one shorter.
            let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let frame: Vec<Vec<u8>> = (0..6u16)
                .map(|i| rtp(100 + i, if i == 5 { 700 } else { 1128 }))
                .collect();
            for d in &frame {
                sender.send_to(d, addr).await.unwrap();
            }
            let c = relay.relay_queued().await.unwrap();
            assert_eq!((c.received, c.registrations), (8, 2));
            assert_eq!(c.forwarded, 12);
            // Each receiver's six left as one segmented send.
            assert_eq!(c.segmented, (2, 12));
            assert_eq!((c.unsealable, c.dropped_full, c.send_failed), (0, 0, 0));
            for r in &receivers {
                let mut opener = seal_context();
                let mut buf = [0u8; 2048];
                // The registration's answer first.
                let n = r.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], JOINED_REPLY);
                for d in &frame {
                    let n = tokio::time::timeout(Duration::from_secs(5), r.recv(&mut buf))
                        .await
                        .expect("every copy arrives")
                        .unwrap();
                    assert_eq!(n, d.len(), "a copy keeps its size");
                    let plain = d.len() - SEAL_TAG_LEN;
                    assert_ne!(&buf[12..plain], &d[12..plain], "the payload is encrypted");
                    assert_eq!(opener.unprotect_rtp(&mut buf[..n]).unwrap(), plain);
                    assert_eq!(&buf[..plain], &d[..plain]);
                }
            }
            // What is not RTP-shaped is not relayed, and counted.
            sender.send_to(b"short", addr).await.unwrap();
            let c = relay.relay_queued().await.unwrap();
            assert_eq!((c.unsealable, c.forwarded), (1, 12));
        }
    }
}
