//! Batched UDP I/O for the driver: `recvmmsg`/`sendmmsg` on Linux, one datagram per call
//! elsewhere. Buffers and headers are allocated once and reused.
//!
//! Where the kernel segments UDP (`UDP_SEGMENT`, Linux 4.18 and later), [`SendBatch::send_runs`]
//! also sends the datagrams of a batch that go to one destination, one size but the last,
//! as one segmented send: one pass through the kernel's UDP and IP layers for the run
//! instead of one per datagram. A video frame's packets fanned out to a subscriber are such
//! a run.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use lkr_sfu::Transmit;

/// A UDP socket the batch calls read and write without blocking.
///
/// A tokio socket clears its readiness when a call would block; the driver's own
/// `MediaSocket` may also be a plain socket, out of the reactor, that it
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
/// Datagrams the driver gathers and orders by destination before it sends them: a video
/// frame's fan-out (six packets of 720p) to three hundred subscribers, so that each
/// subscriber's share can leave as one segmented send.
pub const WINDOW: usize = 32 * BATCH;
/// Segments in one segmented send at most (the kernel's limit before Linux 6.8 is 64).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes in one segmented send at most (it travels as one UDP datagram of at most 64 KiB).
pub const MAX_SEGMENTED_BYTES: usize = 60_000;
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
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    sys: linux::SendHeaders,
    /// Runs to one destination leave as one segmented send.
    segment: bool,
    /// Scratch for [`SendBatch::by_destination`], allocated once: the items' indices in
    /// sending order, packed with their IPv4 destinations to be sorted as one integer each
    /// (the usual case); `order` sorts any destinations otherwise.
    keys: Vec<u64>,
    order: Vec<(SocketAddr, u16)>,
    scratch: Vec<Transmit>,
}

impl Default for SendBatch {
    /// Plain batches: one datagram per header.
    fn default() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            sys: linux::SendHeaders::default(),
            segment: false,
            keys: Vec::new(),
            order: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// Whether the kernel segments UDP sends on `socket` (`UDP_SEGMENT`; Linux only).
pub fn segmentation_supported(socket: &std::net::UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::segmentation_supported(std::os::fd::AsRawFd::as_raw_fd(socket))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// How many datagrams at the head of `items` one segmented send can carry: those to the
/// first one's destination, each the first one's size but the last, which may be smaller,
/// at most [`MAX_SEGMENTS`] and [`MAX_SEGMENTED_BYTES`]. At least 1 for a non-empty slice.
pub fn run_len(items: &[Transmit]) -> usize {
    let Some(first) = items.first() else {
        return 0;
    };
    let size = first.data.len();
    if size == 0 {
        return 1;
    }
    let mut n = 1;
    let mut bytes = size;
    while let Some(t) = items.get(n) {
        let len = t.data.len();
        if n >= MAX_SEGMENTS
            || t.dest != first.dest
            || items[n - 1].data.len() != size
            || len > size
            || len == 0
            || bytes + len > MAX_SEGMENTED_BYTES
        {
            break;
        }
        bytes += len;
        n += 1;
    }
    n
}

impl SendBatch {
    /// Headers for [`SendBatch::send_runs`]: segmented sends when `segment` (see
    /// [`segmentation_supported`]), plain batches otherwise.
    pub fn grouping(segment: bool) -> Self {
        Self {
            segment,
            keys: Vec::with_capacity(WINDOW),
            order: Vec::with_capacity(WINDOW),
            scratch: Vec::with_capacity(WINDOW),
            ..Self::default()
        }
    }

    /// Whether runs to one destination leave as one segmented send.
    pub fn segments(&self) -> bool {
        self.segment
    }

    /// How many datagrams to gather for one send round: a [`WINDOW`] to order by
    /// destination when segmenting, a [`BATCH`] otherwise.
    pub fn window(&self) -> usize {
        if self.segment { WINDOW } else { BATCH }
    }

    /// Sends `items` (at most [`BATCH`]) without blocking; returns how many went out, or an
    /// error for which [`is_full`] holds when the first could not. A datagram the kernel
    /// refuses for another reason (e.g. unreachable) is skipped, not retried.
    pub fn send(&mut self, socket: &impl BatchSocket, items: &[Transmit]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            socket.try_io(Interest::WRITABLE, || {
                linux::sendmmsg(socket, &mut self.sys, items, false)
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

    /// Sends runs of `items` ([`run_len`]; `items` ordered by [`SendBatch::by_destination`])
    /// without blocking, each as one segmented send, at most [`BATCH`] of them in one system
    /// call; returns how many datagrams went out (the first `n` of `items`), or an error for
    /// which [`is_full`] holds when the first could not. Without segmentation, as
    /// [`SendBatch::send`]. A kernel that refuses a segmented send (a device without
    /// checksum offload, say) turns segmentation off for good and the batch goes out plainly.
    pub fn send_runs(
        &mut self,
        socket: &impl BatchSocket,
        items: &[Transmit],
    ) -> io::Result<usize> {
        if !self.segment {
            return self.send(socket, items);
        }
        #[cfg(target_os = "linux")]
        {
            let r = socket.try_io(Interest::WRITABLE, || {
                linux::sendmmsg(socket, &mut self.sys, items, true)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    tracing::warn!("UDP segmentation refused ({e}); sending datagrams one by one");
                    self.segment = false;
                    self.send(socket, items)
                }
                r => r,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.send(socket, items)
        }
    }

    /// Segmented sends made since the last call, and the datagrams they carried.
    pub fn take_segmented(&mut self) -> (u64, u64) {
        #[cfg(target_os = "linux")]
        {
            std::mem::take(&mut self.sys.runs)
        }
        #[cfg(not(target_os = "linux"))]
        {
            (0, 0)
        }
    }

    /// With segmentation, orders `items` by destination, each destination's datagrams in
    /// their order, without allocating (up to [`WINDOW`] items), so that each destination's
    /// runs are adjacent for [`SendBatch::send_runs`]. Without, leaves them as they are.
    pub fn by_destination(&mut self, items: &mut Vec<Transmit>) {
        if !self.segment || items.len() < 2 {
            return;
        }
        // `keys` ends in the order to send, each item's index in its low 16 bits.
        if self.v4_keys(items) {
            // Address, port and index in one integer: one comparison each instead of a
            // comparison of addresses field by field.
            self.keys.sort_unstable();
        } else {
            self.order.clear();
            self.order
                .extend(items.iter().enumerate().map(|(i, t)| (t.dest, i as u16)));
            self.order.sort_unstable();
            self.keys.clear();
            self.keys
                .extend(self.order.iter().map(|&(_, i)| u64::from(i)));
        }
        self.scratch.clear();
        for &k in &self.keys {
            let t = &mut items[(k & 0xffff) as usize];
            self.scratch.push(Transmit {
                dest: t.dest,
                data: std::mem::take(&mut t.data),
            });
        }
        std::mem::swap(items, &mut self.scratch);
        self.scratch.clear();
    }

    /// Fills `keys` with each item's IPv4 address, port and index (which orders them as
    /// `(address, port, index)`); `false` when a destination is IPv6 or there are more items
    /// than an index holds.
    fn v4_keys(&mut self, items: &[Transmit]) -> bool {
        self.keys.clear();
        if items.len() > usize::from(u16::MAX) {
            return false;
        }
        for (i, t) in items.iter().enumerate() {
            let SocketAddr::V4(a) = t.dest else {
                return false;
            };
            let ip = u64::from(u32::from(*a.ip()));
            self.keys
                .push(ip << 32 | u64::from(a.port()) << 16 | i as u64);
        }
        true
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! The system calls. Every pointer handed to the kernel points into buffers owned by the
    //! caller for the duration of the call.

    use super::{BATCH, BatchSocket, WINDOW};
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
        /// One per datagram: [`WINDOW`] for grouped sends.
        iovs: Vec<libc::iovec>,
        addrs: Vec<libc::sockaddr_storage>,
        /// One `UDP_SEGMENT` control message per header.
        cmsgs: Vec<Cmsg>,
        /// Datagrams per header of the last grouped send.
        counts: Vec<usize>,
        /// Headers sent that carried a run of two or more, and their datagrams, since
        /// [`super::SendBatch::take_segmented`] last took them.
        pub runs: (u64, u64),
    }

    /// Room for one control message carrying a `u16`, aligned for `cmsghdr`.
    #[derive(Clone, Copy)]
    #[repr(C, align(8))]
    struct Cmsg([u8; 32]);

    impl Default for SendHeaders {
        fn default() -> Self {
            // SAFETY: as above, all-zero plain C structs.
            unsafe {
                Self {
                    hdrs: vec![zeroed(); BATCH],
                    iovs: vec![zeroed(); WINDOW],
                    addrs: vec![zeroed(); BATCH],
                    cmsgs: vec![Cmsg([0; 32]); BATCH],
                    counts: vec![0; BATCH],
                    runs: (0, 0),
                }
            }
        }
    }

    /// Whether the kernel knows `UDP_SEGMENT` on this socket.
    pub fn segmentation_supported(fd: std::os::fd::RawFd) -> bool {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        r == 0
    }

    /// One `sendmmsg` of `items`, a header per datagram or, with `segment`, per run
    /// ([`super::run_len`]); returns the datagrams of the headers sent. A segmented first
    /// header the kernel refuses as such (`EIO`, `EINVAL`, `EOPNOTSUPP`) is reported as
    /// `Unsupported`; another refused first header is skipped rather than stall.
    pub fn sendmmsg(
        socket: &impl BatchSocket,
        h: &mut SendHeaders,
        items: &[Transmit],
        segment: bool,
    ) -> io::Result<usize> {
        let (mut hi, mut ii, mut i) = (0, 0, 0);
        while i < items.len() && hi < BATCH {
            let run = if segment {
                super::run_len(&items[i..])
            } else {
                1
            };
            let n = run.min(h.iovs.len() - ii);
            if n == 0 {
                break;
            }
            for (k, t) in items[i..i + n].iter().enumerate() {
                h.iovs[ii + k] = libc::iovec {
                    iov_base: t.data.as_ptr() as *mut libc::c_void,
                    iov_len: t.data.len(),
                };
            }
            let namelen = to_sockaddr(items[i].dest, &mut h.addrs[hi]);
            let m = &mut h.hdrs[hi];
            // SAFETY: all-zero is a valid msghdr; the fields set below point into `h` and
            // `items`, which outlive the call.
            m.msg_hdr = unsafe { zeroed() };
            m.msg_hdr.msg_name = (&mut h.addrs[hi] as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = namelen;
            m.msg_hdr.msg_iov = &mut h.iovs[ii];
            m.msg_hdr.msg_iovlen = n;
            m.msg_len = 0;
            if n > 1 {
                let buf = &mut h.cmsgs[hi];
                m.msg_hdr.msg_control = buf.0.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte buffer, which is
                // aligned for cmsghdr; CMSG_FIRSTHDR of a header with that control length
                // is the buffer's start.
                unsafe {
                    m.msg_hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(c).cast::<u16>(),
                        items[i].data.len() as u16,
                    );
                }
            }
            h.counts[hi] = n;
            hi += 1;
            ii += n;
            i += n;
        }
        if hi == 0 {
            return Ok(0);
        }
        // SAFETY: the headers describe `hi` valid buffers owned by the caller; the kernel
        // only reads them.
        let r = unsafe {
            libc::sendmmsg(
                socket.raw_fd(),
                h.hdrs.as_mut_ptr(),
                hi as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if super::is_full(&e) {
                return Err(e);
            }
            let refused = matches!(
                e.raw_os_error(),
                Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
            );
            if h.counts[0] > 1 && refused {
                return Err(io::Error::new(io::ErrorKind::Unsupported, e));
            }
            // The first run was refused (e.g. no route): skip it rather than stall.
            return Ok(h.counts[0]);
        }
        let mut sent = 0;
        for &n in &h.counts[..r as usize] {
            sent += n;
            if n > 1 {
                h.runs.0 += 1;
                h.runs.1 += n as u64;
            }
        }
        Ok(sent)
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

    fn t(dest: SocketAddr, len: usize, tag: u8) -> Transmit {
        Transmit {
            dest,
            data: vec![tag; len],
        }
    }

    #[test]
    fn a_run_is_one_destination_one_size_and_a_smaller_last() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        assert_eq!(run_len(&[]), 0);
        assert_eq!(
            run_len(&[t(a, 100, 0), t(a, 100, 1), t(a, 60, 2), t(a, 60, 3)]),
            3
        );
        assert_eq!(
            run_len(&[t(a, 100, 0), t(a, 101, 1)]),
            1,
            "a larger one ends it"
        );
        assert_eq!(
            run_len(&[t(a, 100, 0), t(b, 100, 1)]),
            1,
            "another destination"
        );
        let many: Vec<Transmit> = (0..100).map(|i| t(a, 100, i)).collect();
        assert_eq!(run_len(&many), MAX_SEGMENTS);
        let big: Vec<Transmit> = (0..60).map(|i| t(a, 1200, i)).collect();
        assert_eq!(run_len(&big), MAX_SEGMENTED_BYTES / 1200);
    }

    /// Sends a window of datagrams to three receivers, interleaved as a fan-out makes them
    /// (each packet to everyone in turn), with a smaller last packet and a size change, and
    /// checks that each receiver gets exactly its datagrams, whole and in order. With
    /// `no_checksum` the sending socket has `SO_NO_CHECK`, with which the kernel refuses
    /// segmented sends (`EINVAL`). Returns the batch and how many system calls it took.
    async fn fan_out_window(no_checksum: bool) -> (SendBatch, usize) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let std_a = a.into_std().unwrap();
        let segment = segmentation_supported(&std_a);
        #[cfg(target_os = "linux")]
        assert!(segment, "Linux 4.18 and later segment UDP");
        #[cfg(target_os = "linux")]
        if no_checksum {
            let one: libc::c_int = 1;
            // SAFETY: a valid descriptor and an int option value of the stated size.
            let r = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&std_a),
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "{}", io::Error::last_os_error());
        }
        let a = UdpSocket::from_std(std_a).unwrap();
        let mut rx: Vec<UdpSocket> = Vec::new();
        for _ in 0..3 {
            rx.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let dests: Vec<SocketAddr> = rx.iter().map(|r| r.local_addr().unwrap()).collect();
        // Packets 0..6 of 1000 bytes, packet 6 of 400, packets 7..9 of 700.
        let size = |p: u8| match p {
            0..=5 => 1000,
            6 => 400,
            _ => 700,
        };
        let mut items: Vec<Transmit> = Vec::with_capacity(WINDOW);
        for p in 0..10u8 {
            for (r, d) in dests.iter().enumerate() {
                items.push(t(*d, size(p), p * 10 + r as u8));
            }
        }
        let total = items.len();
        let mut sb = SendBatch::grouping(segment);
        assert_eq!(sb.segments(), segment);
        let mut sent = 0;
        let mut calls = 0;
        sb.by_destination(&mut items);
        if segment {
            // Per receiver: runs 0..=6 (six of 1000 and a smaller last) and 7..=9.
            let mut runs = 0;
            let mut i = 0;
            while i < items.len() {
                i += run_len(&items[i..]);
                runs += 1;
            }
            assert_eq!(runs, 2 * dests.len());
        }
        while !items.is_empty() {
            a.writable().await.unwrap();
            match sb.send_runs(&a, &items) {
                Ok(n) => {
                    sent += n;
                    calls += 1;
                    items.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(sent, total);
        let mut buf = vec![0u8; 4096];
        for (r, sock) in rx.iter().enumerate() {
            for p in 0..10u8 {
                let n = sock.recv(&mut buf).await.unwrap();
                assert_eq!(n, size(p), "receiver {r}, packet {p}");
                assert!(buf[..n].iter().all(|b| *b == p * 10 + r as u8));
            }
        }
        (sb, calls)
    }

    #[tokio::test]
    async fn grouped_sends_keep_every_datagram_whole_and_in_order() {
        let (mut sb, calls) = fan_out_window(false).await;
        if sb.segments() {
            assert_eq!(calls, 1, "one system call for the whole window");
            assert_eq!(sb.take_segmented(), (6, 30), "two runs per receiver");
            assert_eq!(sb.take_segmented(), (0, 0), "taken once");
        }
    }

    /// The kernel refuses segmented sends on this socket: the window still arrives whole and
    /// in order, one datagram per header, and the batch stops segmenting.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_refused_segmented_send_falls_back_to_plain_datagrams() {
        let (mut sb, calls) = fan_out_window(true).await;
        assert!(!sb.segments(), "segmentation turned off after the refusal");
        assert_eq!(sb.take_segmented(), (0, 0));
        assert!(calls >= 1);
    }

    #[test]
    fn ordering_by_destination_keeps_each_destinations_order_in_the_same_buffers() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:999".parse().unwrap();
        let mut items: Vec<Transmit> = Vec::with_capacity(WINDOW);
        for i in 0..8u8 {
            items.push(t(if i % 2 == 0 { a } else { b }, 10, i));
        }
        let mut sb = SendBatch::grouping(true);
        sb.by_destination(&mut items);
        let got: Vec<(SocketAddr, u8)> = items.iter().map(|t| (t.dest, t.data[0])).collect();
        assert_eq!(
            got,
            [
                (b, 1),
                (b, 3),
                (b, 5),
                (b, 7),
                (a, 0),
                (a, 2),
                (a, 4),
                (a, 6)
            ]
        );
        assert!(items.capacity() >= WINDOW && sb.scratch.capacity() >= WINDOW);
    }

    /// With an IPv6 destination among them (ordered the general way), each destination's
    /// datagrams still end up adjacent and in their order.
    #[test]
    fn ordering_with_ipv6_destinations_groups_them_too() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let c: SocketAddr = "[::1]:1000".parse().unwrap();
        let mut items: Vec<Transmit> = Vec::with_capacity(WINDOW);
        for i in 0..6u8 {
            items.push(t(if i % 2 == 0 { c } else { a }, 10, i));
        }
        let mut sb = SendBatch::grouping(true);
        sb.by_destination(&mut items);
        let got: Vec<(SocketAddr, u8)> = items.iter().map(|t| (t.dest, t.data[0])).collect();
        assert_eq!(got, [(a, 1), (a, 3), (a, 5), (c, 0), (c, 2), (c, 4)]);
    }
}
