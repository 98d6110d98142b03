//! A bounded single-producer single-consumer ring of fixed-size slots, the hand-off between
//! two media shards: the producer writes a datagram or a relayed packet straight into a
//! slot and the consumer reads it in place. No lock, no allocation after creation.

use std::cell::UnsafeCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lkr_sfu::TrackId;

/// The largest datagram a slot holds (larger ones are not relayed and are counted).
pub const SLOT_BYTES: usize = 1500;

/// What a slot carries.
#[derive(Debug, Clone, Copy)]
pub enum Handoff {
    /// A datagram that arrived on the producer's socket for a peer of the consumer.
    Datagram { from: SocketAddr },
    /// A media packet of a track the producer owns and the consumer mirrors.
    Media { track: TrackId, layer: u8 },
    /// The sender report of a mirrored track.
    SenderReport {
        track: TrackId,
        layer: u8,
        ntp: u64,
        rtp_ts: u32,
    },
    /// The consumer owns `track` and a mirror wants a keyframe.
    Keyframe { track: TrackId, layer: Option<u8> },
    /// A packet that arrived framed (RFC 4571) on the ICE-TCP connection from `from`.
    TcpIn { from: SocketAddr },
    /// A packet for the ICE-TCP connection from `to`, to be framed and written there.
    TcpOut { to: SocketAddr },
}

/// One slot: a header and the bytes.
pub struct Slot {
    pub what: Handoff,
    pub len: usize,
    pub data: [u8; SLOT_BYTES],
}

struct Ring {
    slots: Box<[UnsafeCell<Slot>]>,
    mask: usize,
    /// Next slot the consumer reads (written by the consumer only).
    head: AtomicUsize,
    /// Next slot the producer writes (written by the producer only).
    tail: AtomicUsize,
}

// SAFETY: a slot is written only by the producer while it lies in [tail, head + cap) and read
// only by the consumer while it lies in [head, tail); the Release/Acquire pairs on `head`
// and `tail` order those accesses, so no slot is ever accessed from two threads at once.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns plain data.
unsafe impl Send for Ring {}

/// The writing end (one thread).
pub struct Producer {
    ring: Arc<Ring>,
}

/// The reading end (one thread).
pub struct Consumer {
    ring: Arc<Ring>,
}

/// A ring of at least `capacity` slots (rounded up to a power of two).
pub fn ring(capacity: usize) -> (Producer, Consumer) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap)
        .map(|_| {
            UnsafeCell::new(Slot {
                what: Handoff::Keyframe {
                    track: TrackId(0),
                    layer: None,
                },
                len: 0,
                data: [0; SLOT_BYTES],
            })
        })
        .collect();
    let ring = Arc::new(Ring {
        slots,
        mask: cap - 1,
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
    });
    (Producer { ring: ring.clone() }, Consumer { ring })
}

impl Producer {
    /// Writes `what` and `bytes` into the next free slot; `false` (nothing written) when the
    /// ring is full or `bytes` does not fit a slot.
    pub fn push(&mut self, what: Handoff, bytes: &[u8]) -> bool {
        let r = &*self.ring;
        let tail = r.tail.load(Ordering::Relaxed);
        let head = r.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > r.mask || bytes.len() > SLOT_BYTES {
            return false;
        }
        // SAFETY: `tail - head <= mask`, so the slot at `tail` is outside [head, tail): the
        // consumer does not touch it until `tail` is published below.
        let slot = unsafe { &mut *r.slots[tail & r.mask].get() };
        slot.what = what;
        slot.len = bytes.len();
        slot.data[..bytes.len()].copy_from_slice(bytes);
        r.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }
}

impl Consumer {
    /// Hands the oldest slot to `f` (which may change its bytes in place) and frees it;
    /// `false` when the ring is empty.
    pub fn pop(&mut self, f: impl FnOnce(Handoff, &mut [u8])) -> bool {
        let r = &*self.ring;
        let head = r.head.load(Ordering::Relaxed);
        let tail = r.tail.load(Ordering::Acquire);
        if head == tail {
            return false;
        }
        // SAFETY: `head != tail`, so the slot at `head` was published by the producer (the
        // Acquire load above pairs with its Release store) and it will not write it again
        // until `head` moves past it below.
        let slot = unsafe { &mut *r.slots[head & r.mask].get() };
        let len = slot.len.min(SLOT_BYTES);
        f(slot.what, &mut slot.data[..len]);
        r.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_and_across_threads() {
        let (mut p, mut c) = ring(4);
        let what = |i: u64| Handoff::Media {
            track: TrackId(i),
            layer: 0,
        };
        for i in 0..4 {
            assert!(p.push(what(i), &[i as u8; 3]));
        }
        assert!(!p.push(what(9), &[0]), "full");
        let mut seen = Vec::new();
        while c.pop(|w, b| {
            if let Handoff::Media { track, .. } = w {
                seen.push((track.0, b.to_vec()));
            }
        }) {}
        assert_eq!(
            seen,
            (0..4).map(|i| (i, vec![i as u8; 3])).collect::<Vec<_>>()
        );
        assert!(!p.push(what(1), &[0; SLOT_BYTES + 1]), "too large");

        let (mut p, mut c) = ring(64);
        const N: u64 = 100_000;
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if p.push(what(i), &i.to_le_bytes()) {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < N {
            if !c.pop(|w, b| {
                let Handoff::Media { track, .. } = w else {
                    panic!("kind")
                };
                assert_eq!(track.0, next);
                assert_eq!(b, next.to_le_bytes());
                next += 1;
            }) {
                std::thread::yield_now();
            }
        }
        t.join().unwrap();
    }
}
