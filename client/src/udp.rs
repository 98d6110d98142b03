//! The UDP socket of one client peer connection, which counts what the kernel dropped on it.
//!
//! On Linux the socket enables `SO_RXQ_OVFL`: every datagram it reads with `recvmsg` then
//! carries, once the socket has dropped anything, the number of datagrams the kernel
//! dropped for it since it was opened (its receive queue was full: the reader did not keep
//! up). The latest count is kept in a [`SocketDrops`] that the application can read while
//! the socket is in use. Elsewhere the count is not available and reads as `None`.
//!
//! The receive buffer size (`SO_RCVBUF`) may be set at bind time; the kernel doubles the
//! value given and clamps it to its own bounds (`net.core.rmem_max`).

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
}

/// A peer connection's UDP socket.
#[derive(Debug)]
pub struct PeerSocket {
    socket: UdpSocket,
    drops: Arc<SocketDrops>,
    index: usize,
    /// Room for one `SO_RXQ_OVFL` control message.
    #[cfg(target_os = "linux")]
    cmsg: Vec<u8>,
}

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
            cmsg: nix::cmsg_space!(u32),
        })
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
    /// Cancel-safe: a datagram is either returned or left in the socket.
    #[cfg(target_os = "linux")]
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd as _;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use tokio::io::Interest;

        let fd = self.socket.as_raw_fd();
        let cmsg = &mut self.cmsg;
        let (n, from, dropped) =
            self.socket
                .async_io(Interest::READABLE, || {
                    let mut iov = [IoSliceMut::new(buf)];
                    let msg = recvmsg::<SockaddrStorage>(
                        fd,
                        &mut iov,
                        Some(cmsg.as_mut_slice()),
                        MsgFlags::empty(),
                    )?;
                    let mut dropped = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::RxqOvfl(d) = c {
                                dropped = Some(d);
                            }
                        }
                    }
                    let from =
                        msg.address.as_ref().and_then(std_addr).ok_or_else(|| {
                            io::Error::other("a datagram without a source address")
                        })?;
                    Ok((msg.bytes, from, dropped))
                })
                .await?;
        if let Some(d) = dropped {
            self.drops.per_socket[self.index].store(u64::from(d), Ordering::Relaxed);
        }
        Ok((n, from))
    }

    /// Receives one datagram.
    #[cfg(not(target_os = "linux"))]
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
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

    #[tokio::test]
    async fn a_socket_that_keeps_up_drops_nothing() {
        let drops = Arc::new(SocketDrops::default());
        let mut rx = PeerSocket::bind("127.0.0.1:0".parse().unwrap(), None, drops.clone(), 0)
            .await
            .unwrap();
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = vec![0u8; 2048];
        for seq in 0u32..50 {
            tx.send_to(&seq.to_be_bytes(), to).unwrap();
            let (n, _) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &seq.to_be_bytes());
        }
        assert_eq!(drops.total(), Some(0));
    }
}
