//! `perf udp-relay` forwards without allocating: once the relay's buffers exist, relaying
//! a datagram to its receivers allocates nothing on the relay's thread (counted with
//! `lkr_driver::alloc_count`), plainly and when it segments and seals each copy.

#![cfg(target_os = "linux")]

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lkr_cli::media::relay::{JOIN_MARKER, JOINED_REPLY, Relay, Work};
use lkr_driver::alloc_count::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The relay's stop signal, which also notes the relay thread's allocation count each time
/// the relay's loop polls it (at least once each time it has read all that was waiting).
struct StopAndCount {
    stop: Arc<AtomicBool>,
    allocations: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
}

impl Future for StopAndCount {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.allocations.store(allocations(), Ordering::SeqCst);
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.stop.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        // The relay's loop polls this again whenever its socket wakes it.
        let _ = cx;
        Poll::Pending
    }
}

fn receiver(relay: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(JOIN_MARKER, relay).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = s.recv_from(&mut buf).expect("the relay answers");
    assert_eq!(&buf[..n], JOINED_REPLY);
    s
}

/// Sends `count` datagrams, each read back by both receivers before the next goes out.
fn relay_round(sender: &UdpSocket, relay: SocketAddr, receivers: &[UdpSocket], count: usize) {
    let mut buf = [0u8; 256];
    for i in 0..count {
        // RTP-shaped, so that a sealing relay takes it: version 2, payload type 111, one
        // SSRC.
        let mut d = [i as u8; 108];
        d[..4].copy_from_slice(&[0x80, 111, (i >> 8) as u8, i as u8]);
        d[8..12].copy_from_slice(&[0x5a; 4]);
        sender.send_to(&d, relay).unwrap();
        for r in receivers {
            let n = r.recv(&mut buf).expect("every datagram arrives");
            assert_eq!(n, 108);
        }
    }
}

#[test]
fn relaying_allocates_nothing_once_running() {
    relaying_allocates_nothing(Work::default());
}

#[test]
fn segmenting_and_sealing_allocate_nothing_once_running() {
    relaying_allocates_nothing(Work {
        segment: true,
        seal: true,
    });
}

fn relaying_allocates_nothing(work: Work) {
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let future = StopAndCount {
        stop: stop.clone(),
        allocations: counted.clone(),
        polls: polls.clone(),
    };
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let relay = Relay::bind("127.0.0.1:0".parse().unwrap(), 16, work)
                .await
                .unwrap();
            addr_tx.send(relay.local_addr().unwrap()).unwrap();
            relay.run(future).await
        })
    });
    let relay: SocketAddr = addr_rx.recv().unwrap();
    let receivers = [receiver(relay), receiver(relay)];
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Warm-up: whatever the runtime sets up on first use happens here.
    relay_round(&sender, relay, &receivers, 50);
    // Once the relay has read everything, its loop polls the stop signal before it sleeps:
    // the count noted then is the one after the last datagram was relayed.
    let settled = || {
        std::thread::sleep(Duration::from_millis(50));
        (counted.load(Ordering::SeqCst), polls.load(Ordering::SeqCst))
    };
    let (before, polls_before) = settled();
    relay_round(&sender, relay, &receivers, 500);
    let (after, polls_after) = settled();
    stop.store(true, Ordering::SeqCst);
    // Wake the loop so that it sees the flag.
    sender.send_to(b"stop", relay).unwrap();
    let (counters, n) = thread.join().unwrap();
    assert!(
        polls_after > polls_before,
        "the loop woke for the datagrams"
    );
    assert_eq!(
        after - before,
        0,
        "the relay's thread allocated while relaying 500 datagrams to 2 receivers"
    );
    assert_eq!(n, 2);
    // 550 datagrams to two receivers, and the wake-up datagram if it was read before the flag
    // (a sealing relay takes it for no RTP packet and does not relay it).
    assert!(counters.forwarded == 1100 || counters.forwarded == 1102);
    if work.seal {
        assert_eq!(counters.forwarded, 1100);
    }
}
