//! Batched UDP I/O for the driver: `recvmmsg`/`sendmmsg` on Linux, one datagram per call
//! elsewhere. Buffers and headers are allocated once and reused.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use lkr_sfu::Transmit;

/// A UDP socket the batch calls read and write without blocking.
///
/// A tokio socket clears its readiness when a call would block; the driver's own
/// [`crate::driver::MediaSocket`] may also be a plain socket, out of the reactor, that it
/// reads on its own schedule.
pub trait BatchSocket {
    /// Runs `f`, a non-blocking system call on the socket.
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    /// The descriptor the system calls use.
    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd;
    /// One datagram, without blocking.
    #[cfg(not(target_os = "linux"))]
    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// One datagram out, without blocking.
    #[cfg(not(target_os = "linux"))]
    fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
}

impl BatchSocket for UdpSocket {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        UdpSocket::try_io(self, interest, f)
    }
    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
    #[cfg(not(target_os = "linux"))]
    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::try_recv_from(self, buf)
    }
    #[cfg(not(target_os = "linux"))]
    fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        UdpSocket::try_send_to(self, buf, to)
    }
}

/// Datagrams moved per system call at most.
pub const BATCH: usize = 64;
/// Room for one received datagram.
const DATAGRAM: usize = 2048;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
    count: usize,
    #[cfg(target_os = "linux")]
    sys: linux::RecvHeaders,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; DATAGRAM]).collect(),
            lens: vec![0; BATCH],
            from: vec![None; BATCH],
            count: 0,
            #[cfg(target_os = "linux")]
            sys: linux::RecvHeaders::default(),
        }
    }
}

impl RecvBatch {
    /// Reads what is waiting without blocking (up to [`BATCH`] datagrams); `Ok(0)` when
    /// nothing is.
    pub fn recv(&mut self, socket: &impl BatchSocket) -> io::Result<usize> {
        self.count = 0;
        #[cfg(target_os = "linux")]
        {
            let n = match socket.try_io(Interest::READABLE, || {
                linux::recvmmsg(
                    socket,
                    &mut self.sys,
                    &mut self.bufs,
                    &mut self.lens,
                    &mut self.from,
                )
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            self.count = n;
        }
        #[cfg(not(target_os = "linux"))]
        {
            while self.count < BATCH {
                match socket.try_recv_from(&mut self.bufs[self.count]) {
                    Ok((n, from)) => {
                        self.lens[self.count] = n;
                        self.from[self.count] = Some(from);
                        self.count += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.count)
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their sources.
    pub fn for_each(&mut self, mut f: impl FnMut(SocketAddr, &mut [u8])) {
        for i in 0..self.count {
            if let Some(from) = self.from[i] {
                let len = self.lens[i];
                f(from, &mut self.bufs[i][..len]);
            }
        }
    }
}

/// Whether a send error means the socket (or the queue behind it) is full: `EAGAIN` or
/// `ENOBUFS`. Such datagrams are dropped by the caller, not waited for.
pub fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Headers for one send batch.
#[derive(Default)]
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    sys: linux::SendHeaders,
}

impl SendBatch {
    /// Sends `items` (at most [`BATCH`]) without blocking; returns how many went out, or an
    /// error for which [`is_full`] holds when the first could not. A datagram the kernel
    /// refuses for another reason (e.g. unreachable) is skipped, not retried.
    pub fn send(&mut self, socket: &impl BatchSocket, items: &[Transmit]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            socket.try_io(Interest::WRITABLE, || {
                linux::sendmmsg(socket, &mut self.sys, items)
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut sent = 0;
            for t in items {
                match socket.try_send_to(&t.data, t.dest) {
                    Ok(_) => sent += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent == 0 => return Err(e),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => sent += 1,
                }
            }
            Ok(sent)
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! The system calls. Every pointer handed to the kernel points into buffers owned by the
    //! caller for the duration of the call.

    use super::{BATCH, BatchSocket};
    use lkr_sfu::Transmit;
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    pub struct RecvHeaders {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        addrs: Vec<libc::sockaddr_storage>,
    }

    impl Default for RecvHeaders {
        fn default() -> Self {
            // SAFETY: these are plain C structs for which all-zero bytes are valid values.
            unsafe {
                Self {
                    hdrs: vec![zeroed(); BATCH],
                    iovs: vec![zeroed(); BATCH],
                    addrs: vec![zeroed(); BATCH],
                }
            }
        }
    }

    pub struct SendHeaders {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        addrs: Vec<libc::sockaddr_storage>,
    }

    impl Default for SendHeaders {
        fn default() -> Self {
            // SAFETY: as above, all-zero plain C structs.
            unsafe {
                Self {
                    hdrs: vec![zeroed(); BATCH],
                    iovs: vec![zeroed(); BATCH],
                    addrs: vec![zeroed(); BATCH],
                }
            }
        }
    }

    fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
                let sin = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let sin6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub fn recvmmsg(
        socket: &impl BatchSocket,
        h: &mut RecvHeaders,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        from: &mut [Option<SocketAddr>],
    ) -> io::Result<usize> {
        let n = bufs.len().min(BATCH);
        for (i, buf) in bufs.iter_mut().enumerate().take(n) {
            h.iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: all-zero is a valid msghdr; the fields set below point into `h` and
            // `bufs`, which outlive the call.
            h.hdrs[i].msg_hdr = unsafe { zeroed() };
            h.hdrs[i].msg_hdr.msg_name = (&mut h.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.hdrs[i].msg_hdr.msg_iov = &mut h.iovs[i];
            h.hdrs[i].msg_hdr.msg_iovlen = 1;
            h.hdrs[i].msg_len = 0;
        }
        // SAFETY: the headers describe `n` valid, writable buffers owned by the caller.
        let r = unsafe {
            libc::recvmmsg(
                socket.raw_fd(),
                h.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        for i in 0..got {
            lens[i] = h.hdrs[i].msg_len as usize;
            from[i] = from_sockaddr(&h.addrs[i]);
        }
        Ok(got)
    }

    pub fn sendmmsg(
        socket: &impl BatchSocket,
        h: &mut SendHeaders,
        items: &[Transmit],
    ) -> io::Result<usize> {
        let n = items.len().min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        for (i, t) in items.iter().take(n).enumerate() {
            let namelen = to_sockaddr(t.dest, &mut h.addrs[i]);
            h.iovs[i] = libc::iovec {
                iov_base: t.data.as_ptr() as *mut libc::c_void,
                iov_len: t.data.len(),
            };
            // SAFETY: all-zero is a valid msghdr; the fields set below point into `h` and
            // `items`, which outlive the call.
            h.hdrs[i].msg_hdr = unsafe { zeroed() };
            h.hdrs[i].msg_hdr.msg_name = (&mut h.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.hdrs[i].msg_hdr.msg_namelen = namelen;
            h.hdrs[i].msg_hdr.msg_iov = &mut h.iovs[i];
            h.hdrs[i].msg_hdr.msg_iovlen = 1;
            h.hdrs[i].msg_len = 0;
        }
        // SAFETY: the headers describe `n` valid buffers owned by the caller; the kernel only
        // reads them.
        let r = unsafe {
            libc::sendmmsg(
                socket.raw_fd(),
                h.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if super::is_full(&e) {
                return Err(e);
            }
            // The first datagram was refused (e.g. no route): skip it rather than stall.
            return Ok(1);
        }
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_round_trip_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dest = b.local_addr().unwrap();
        let items: Vec<Transmit> = (0..40u8)
            .map(|i| Transmit {
                dest,
                data: vec![i; 10 + usize::from(i)],
            })
            .collect();
        let mut sb = SendBatch::default();
        let mut sent = 0;
        while sent < items.len() {
            a.writable().await.unwrap();
            let end = (sent + BATCH).min(items.len());
            match sb.send(&a, &items[sent..end]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let mut rb = RecvBatch::default();
        let mut got: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        while got.len() < items.len() {
            b.readable().await.unwrap();
            rb.recv(&b).unwrap();
            rb.for_each(|from, d| got.push((from, d.to_vec())));
        }
        let src = a.local_addr().unwrap();
        for (i, (from, d)) in got.iter().enumerate() {
            assert_eq!(*from, src);
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
    }
}
