//! The UDP socket of one client peer connection, which counts what the kernel dropped on it.
//!
//! On Linux the socket enables `SO_RXQ_OVFL`: every datagram it reads with `recvmsg` then
//! carries, once the socket has dropped anything, the number of datagrams the kernel
//! dropped for it since it was opened (its receive queue was full: the reader did not keep
//! up). The latest count is kept in a [`SocketDrops`] that the application can read while
//! the socket is in use. Elsewhere the count is not available and reads as `None`.
//!
//! It also enables `SO_TIMESTAMPNS`: each datagram comes with the time the kernel received
//! it, and the time from then until we read it (softirq backlog, the socket's queue, our own
//! lateness) is kept as a histogram in the same [`SocketDrops`]. A reader that is behind
//! shows there well before its queue overflows: a default receive buffer holds seconds of
//! audio. (The kernel turns timestamps on for the whole system from a deferred work item
//! when the first socket asks; datagrams received before it ran are stamped when read.)
//!
//! The receive buffer size (`SO_RCVBUF`) may be set at bind time; the kernel doubles the
//! value given and clamps it to its own bounds (`net.core.rmem_max`).
//!
//! A socket may also ask for `UDP_GRO` ([`PeerSocket::enable_gro`]): a sender's segmented
//! run (`UDP_SEGMENT`) that reaches it whole, as over loopback or a veth, is then read in
//! one call and handed out a datagram at a time, instead of the kernel splitting it and
//! queueing each piece on its own. A high-rate receiver on Linux does this to save its own
//! reads; a load tester does it also so that, on one machine, the sender is not charged for
//! splitting and delivering every piece (work a network card and the receivers' own hosts
//! do in a deployment).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UdpSocket;

/// The kernel's drop counts of a client's sockets, shared between the driver that reads
/// them and the application.
#[derive(Debug, Default)]
pub struct SocketDrops {
    counted: AtomicBool,
    /// The latest count of each socket, by socket index (primary, subscriber).
    per_socket: [AtomicU64; 2],
    /// Datagrams by how long they waited between the kernel's receipt and our read: bucket
    /// `i` counts waits below 2^i µs (the last one, anything longer).
    waits: [AtomicU64; WAIT_BUCKETS],
}

/// Buckets of [`SocketDrops::waits`]: powers of two of microseconds, up to about 1 s.
pub const WAIT_BUCKETS: usize = 21;

/// The bucket of a wait of `us` microseconds.
fn wait_bucket(us: u64) -> usize {
    // 0 µs -> bucket 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...: its bit length.
    (64 - us.leading_zeros() as usize).min(WAIT_BUCKETS - 1)
}

impl SocketDrops {
    /// Datagrams the kernel dropped on these sockets, or `None` where it does not say
    /// (not Linux, or `SO_RXQ_OVFL` was refused).
    pub fn total(&self) -> Option<u64> {
        self.counted.load(Ordering::Relaxed).then(|| {
            self.per_socket
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum()
        })
    }

    /// How long datagrams waited between the kernel's receipt and our read: counts by
    /// bucket, bucket `i` holding waits below 2^i µs (the last one, the rest). All zero
    /// where the kernel does not timestamp datagrams.
    pub fn waits(&self) -> [u64; WAIT_BUCKETS] {
        std::array::from_fn(|i| self.waits[i].load(Ordering::Relaxed))
    }

    fn note_waits(&self, us: u64, count: u64) {
        self.waits[wait_bucket(us)].fetch_add(count, Ordering::Relaxed);
    }
}

/// The wait (in µs, a bucket's upper bound) below which `p` percent of the datagrams of a
/// [`SocketDrops::waits`] histogram waited; `None` for an empty histogram.
pub fn wait_percentile(waits: &[u64; WAIT_BUCKETS], p: f64) -> Option<u64> {
    let total: u64 = waits.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((total as f64) * p / 100.0).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in waits.iter().enumerate() {
        seen += n;
        if seen >= want {
            return Some(1u64 << i);
        }
    }
    Some(1u64 << (WAIT_BUCKETS - 1))
}

/// A peer connection's UDP socket.
#[derive(Debug)]
pub struct PeerSocket {
    socket: UdpSocket,
    drops: Arc<SocketDrops>,
    index: usize,
    /// Room for one `SO_RXQ_OVFL`, one `SO_TIMESTAMPNS` and one `UDP_GRO` control message.
    #[cfg(target_os = "linux")]
    cmsg: Vec<u8>,
    /// With `UDP_GRO`: the last run read, and what of it is still to be handed out.
    #[cfg(target_os = "linux")]
    gro: Option<GroRun>,
}

/// A run of datagrams read at once (`UDP_GRO`), handed out one by one.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct GroRun {
    buf: Box<[u8]>,
    /// Bytes of the run in `buf`.
    len: usize,
    /// Where the next datagram starts.
    next: usize,
    /// The size of each datagram but the last, which may be smaller.
    segment: usize,
    from: SocketAddr,
}

/// The most one read with `UDP_GRO` can return: a whole datagram's worth.
#[cfg(target_os = "linux")]
const GRO_BUF: usize = 65_536;

impl PeerSocket {
    /// Binds to `addr`, with a receive buffer of `recv_buffer` bytes when given, counting
    /// its drops in slot `index` (0 or 1) of `drops`.
    pub async fn bind(
        addr: SocketAddr,
        recv_buffer: Option<usize>,
        drops: Arc<SocketDrops>,
        index: usize,
    ) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        if let Some(size) = recv_buffer {
            set_recv_buffer(&socket, size)?;
        }
        if enable_drop_count(&socket) {
            drops.counted.store(true, Ordering::Relaxed);
        }
        Ok(Self {
            socket,
            drops,
            index: index.min(1),
            #[cfg(target_os = "linux")]
            cmsg: nix::cmsg_space!(u32, nix::sys::time::TimeSpec, i32),
            #[cfg(target_os = "linux")]
            gro: None,
        })
    }

    /// Asks the kernel for `UDP_GRO`: runs of datagrams arriving whole are read at once and
    /// handed out one by one by [`Self::recv_from`]. False where the kernel refuses (the
    /// socket then reads one datagram at a time, as before).
    #[cfg(target_os = "linux")]
    pub fn enable_gro(&mut self) -> bool {
        if self.gro.is_some() {
            return true;
        }
        if nix::sys::socket::setsockopt(
            &self.socket,
            nix::sys::socket::sockopt::UdpGroSegment,
            &true,
        )
        .is_err()
        {
            return false;
        }
        self.gro = Some(GroRun {
            buf: vec![0u8; GRO_BUF].into_boxed_slice(),
            len: 0,
            next: 0,
            segment: 0,
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
        });
        true
    }

    /// `UDP_GRO` is a Linux option.
    #[cfg(not(target_os = "linux"))]
    pub fn enable_gro(&mut self) -> bool {
        false
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The receive buffer size the kernel granted.
    pub fn recv_buffer(&self) -> io::Result<usize> {
        recv_buffer(&self.socket)
    }

    /// Sends one datagram.
    pub async fn send_to(&self, data: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(data, dest).await
    }

    /// Receives one datagram, noting the kernel's drop count when it comes with one.
    /// Cancel-safe: a datagram is either returned or left in the socket (or, with
    /// `UDP_GRO`, in the run being handed out). A datagram longer than `buf` is cut to it.
    #[cfg(target_os = "linux")]
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd as _;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use tokio::io::Interest;

        if let Some(run) = self.gro.as_mut()
            && let Some(got) = run.take(buf)
        {
            return Ok(got);
        }
        let fd = self.socket.as_raw_fd();
        let cmsg = &mut self.cmsg;
        let target: &mut [u8] = match self.gro.as_mut() {
            Some(run) => &mut run.buf,
            None => buf,
        };
        let (n, from, dropped, stamp, segment) =
            self.socket
                .async_io(Interest::READABLE, || {
                    let mut iov = [IoSliceMut::new(target)];
                    let msg = recvmsg::<SockaddrStorage>(
                        fd,
                        &mut iov,
                        Some(cmsg.as_mut_slice()),
                        MsgFlags::empty(),
                    )?;
                    let (mut dropped, mut stamp, mut segment) = (None, None, None);
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            match c {
                                ControlMessageOwned::RxqOvfl(d) => dropped = Some(d),
                                ControlMessageOwned::ScmTimestampns(t) => stamp = Some(t),
                                ControlMessageOwned::UdpGroSegments(s) => {
                                    segment = usize::try_from(s).ok().filter(|&s| s > 0);
                                }
                                _ => {}
                            }
                        }
                    }
                    let from =
                        msg.address.as_ref().and_then(std_addr).ok_or_else(|| {
                            io::Error::other("a datagram without a source address")
                        })?;
                    Ok((msg.bytes, from, dropped, stamp, segment))
                })
                .await?;
        if let Some(d) = dropped {
            self.drops.per_socket[self.index].store(u64::from(d), Ordering::Relaxed);
        }
        if let Some(t) = stamp {
            // Both are the realtime clock; a step of the clock in between reads as 0 or huge.
            let received = std::time::Duration::new(
                u64::try_from(t.tv_sec()).unwrap_or(0),
                u32::try_from(t.tv_nsec()).unwrap_or(0),
            );
            if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                let waited = now.saturating_sub(received);
                // Every datagram of a run waited as long as the run.
                let count = segment.map_or(1, |s| n.div_ceil(s).max(1)) as u64;
                self.drops
                    .note_waits(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX), count);
            }
        }
        match self.gro.as_mut() {
            Some(run) => {
                run.len = n;
                run.next = 0;
                run.segment = segment.unwrap_or(n).max(1);
                run.from = from;
                Ok(run.take(buf).unwrap_or((0, from)))
            }
            None => Ok((n, from)),
        }
    }

    /// Receives one datagram.
    #[cfg(not(target_os = "linux"))]
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}

#[cfg(target_os = "linux")]
impl GroRun {
    /// Copies the next datagram of the run into `buf` (cut to its length).
    fn take(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if self.next >= self.len {
            return None;
        }
        let end = (self.next + self.segment).min(self.len);
        let datagram = &self.buf[self.next..end];
        let n = datagram.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram[..n]);
        self.next = end;
        Some((n, self.from))
    }
}

#[cfg(target_os = "linux")]
fn std_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(target_os = "linux")]
fn enable_drop_count(socket: &UdpSocket) -> bool {
    // The receive timestamps are a bonus: without them the wait histogram stays empty.
    let _ =
        nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true);
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RxqOvfl, &1).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn enable_drop_count(_socket: &UdpSocket) -> bool {
    false
}

#[cfg(unix)]
fn set_recv_buffer(socket: &UdpSocket, size: usize) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RcvBuf, &size)
        .map_err(io::Error::from)
}

#[cfg(unix)]
fn recv_buffer(socket: &UdpSocket) -> io::Result<usize> {
    nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::RcvBuf).map_err(io::Error::from)
}

#[cfg(not(unix))]
fn set_recv_buffer(_socket: &UdpSocket, _size: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "setting the receive buffer size is not supported here",
    ))
}

#[cfg(not(unix))]
fn recv_buffer(_socket: &UdpSocket) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading the receive buffer size is not supported here",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A socket with the smallest receive buffer, flooded while nobody reads it: every
    /// datagram sent either arrives or is counted as dropped by the socket, and some are
    /// dropped.
    #[tokio::test]
    async fn a_flooded_socket_counts_exactly_what_it_dropped() {
        let drops = Arc::new(SocketDrops::default());
        let local = "127.0.0.1:0".parse().unwrap();
        let mut rx = PeerSocket::bind(local, Some(1), drops.clone(), 1)
            .await
            .unwrap();
        assert_eq!(drops.total(), Some(0));
        let granted = rx.recv_buffer().unwrap();
        assert!(granted < 16 * 1024, "receive buffer {granted}");
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Fewer than the loopback backlog (netdev_max_backlog, 1000) holds, so every drop
        // happens at the socket.
        const SENT: u32 = 300;
        for seq in 0..SENT {
            let mut d = seq.to_be_bytes().to_vec();
            d.resize(1000, 0xab);
            tx.send_to(&d, to).unwrap();
        }
        // The count comes with the next datagram queued after a drop: send numbered
        // markers, one per datagram read, until one arrives. The queue is full at first, so
        // the markers before the first one queued are dropped too.
        const MARKER: [u8; 4] = [0xff; 4];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 2048];
        let mut data = 0u64;
        let mut markers_sent = 0u32;
        let first_marker_queued = loop {
            let mut m = MARKER.to_vec();
            m.extend_from_slice(&markers_sent.to_be_bytes());
            tx.send_to(&m, to).unwrap();
            markers_sent += 1;
            let (n, from) = tokio::time::timeout_at(deadline, rx.recv_from(&mut buf))
                .await
                .expect("a marker arrives")
                .unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            if n == 8 && buf[..4] == MARKER {
                break u32::from_be_bytes(buf[4..8].try_into().unwrap());
            }
            assert_eq!(n, 1000);
            data += 1;
        };
        let dropped = u64::from(SENT) - data;
        assert!(
            dropped > 0,
            "a {granted}-byte buffer held all {SENT} datagrams"
        );
        assert_eq!(
            drops.total(),
            Some(dropped + u64::from(first_marker_queued)),
            "{data} of {SENT} arrived; marker {first_marker_queued} was the first queued"
        );
        assert_eq!(drops.per_socket[0].load(Ordering::Relaxed), 0);
    }

    /// A socket on 127.0.0.1 with the default buffer, counting into slot 0 of `drops`.
    async fn loopback(drops: &Arc<SocketDrops>) -> PeerSocket {
        PeerSocket::bind("127.0.0.1:0".parse().unwrap(), None, drops.clone(), 0)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_socket_that_keeps_up_drops_nothing() {
        let drops = Arc::new(SocketDrops::default());
        let mut rx = loopback(&drops).await;
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = vec![0u8; 2048];
        for seq in 0u32..50 {
            tx.send_to(&seq.to_be_bytes(), to).unwrap();
            let (n, _) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &seq.to_be_bytes());
        }
        assert_eq!(drops.total(), Some(0));
        // Every datagram came with the kernel's receive time.
        assert_eq!(drops.waits().iter().sum::<u64>(), 50);
    }

    /// A segmented run (`UDP_SEGMENT`, 5 × 1200 bytes and a last 1000) reaches a socket
    /// that asked for `UDP_GRO` whole: one read takes all of it, and the datagrams come out
    /// one by one, in order, with their sizes, each counted in the wait histogram; a plain
    /// datagram after it comes as it is; one longer than the caller's buffer is cut to it.
    #[tokio::test]
    async fn a_segmented_run_is_read_whole_and_handed_out_datagram_by_datagram() {
        let drops = Arc::new(SocketDrops::default());
        let mut rx = loopback(&drops).await;
        assert!(rx.enable_gro(), "this kernel refuses UDP_GRO");
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&tx, nix::sys::socket::sockopt::UdpGsoSegment, &1200).unwrap();
        let run: Vec<u8> = (0..7000u32).map(|i| (i / 1200) as u8 + 1).collect();
        assert_eq!(tx.send_to(&run, to).unwrap(), 7000);
        let mut buf = vec![0u8; 2048];
        let mut sizes = Vec::new();
        for k in 0..6u8 {
            let (n, from) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            assert!(
                buf[..n].iter().all(|&b| b == k + 1),
                "datagram {k} out of order"
            );
            sizes.push(n);
            if k == 0 {
                // The whole run came in the first read: nothing was split by the kernel.
                assert_eq!(rx.gro.as_ref().unwrap().len, 7000);
            }
        }
        assert_eq!(sizes, [1200, 1200, 1200, 1200, 1200, 1000]);
        assert_eq!(drops.waits().iter().sum::<u64>(), 6);

        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        plain.send_to(&[7u8; 300], to).unwrap();
        let (n, _) = rx.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[7u8; 300]);
        plain.send_to(&[8u8; 3000], to).unwrap();
        let (n, _) = rx.recv_from(&mut buf).await.unwrap();
        assert_eq!(n, 2048);
        assert_eq!(drops.waits().iter().sum::<u64>(), 8);
    }

    /// Datagrams left unread for 50 ms are counted as having waited at least that long.
    ///
    /// The kernel turns receive timestamps on for the whole system once the first socket
    /// asks, from a deferred work item; datagrams that arrive before it runs are stamped with
    /// the time they are read. So on a machine where nothing had asked yet, the first round
    /// may read as no wait: rounds repeat (up to 20) until one is stamped at receipt.
    #[tokio::test]
    async fn datagrams_left_in_the_queue_count_their_wait() {
        let drops = Arc::new(SocketDrops::default());
        let mut rx = loopback(&drops).await;
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = vec![0u8; 64];
        let mut rounds = Vec::new();
        for _ in 0..20 {
            let before = drops.waits();
            for seq in 0u32..5 {
                tx.send_to(&seq.to_be_bytes(), to).unwrap();
            }
            // A lower bound, not a race: they were received before send_to returned.
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..5 {
                rx.recv_from(&mut buf).await.unwrap();
            }
            let after = drops.waits();
            let round: [u64; WAIT_BUCKETS] = std::array::from_fn(|i| after[i] - before[i]);
            // Every datagram came with a timestamp.
            assert_eq!(round.iter().sum::<u64>(), 5, "{round:?}");
            // 50 ms = 50 000 µs lies in the bucket below 2^16 µs.
            if round[..16].iter().sum::<u64>() == 0 {
                assert!(wait_percentile(&round, 1.0).unwrap() >= 1 << 16);
                return;
            }
            rounds.push(round);
        }
        panic!("no round was stamped at receipt: {rounds:?}");
    }
}

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[test]
    fn waits_fall_in_power_of_two_buckets() {
        assert_eq!(wait_bucket(0), 0);
        assert_eq!(wait_bucket(1), 1);
        assert_eq!(wait_bucket(3), 2);
        assert_eq!(wait_bucket(4), 3);
        assert_eq!(wait_bucket(1023), 10);
        assert_eq!(wait_bucket(u64::MAX), WAIT_BUCKETS - 1);
        let mut w = [0u64; WAIT_BUCKETS];
        assert_eq!(wait_percentile(&w, 50.0), None);
        w[3] = 98;
        w[12] = 2;
        assert_eq!(wait_percentile(&w, 50.0), Some(8));
        assert_eq!(wait_percentile(&w, 98.0), Some(8));
        assert_eq!(wait_percentile(&w, 99.0), Some(4096));
        assert_eq!(wait_percentile(&w, 100.0), Some(4096));
    }
}
