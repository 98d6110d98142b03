//! Local sinks: the hand-off of one track's packets from the media shard that owns the track
//! to a consumer thread on this node (a track egress writing a file).
//!
//! A bounded channel of packet buffers, with a second channel that brings the consumer's
//! used buffers back: once as many buffers as the channel holds have been made, feeding a
//! sink allocates nothing. A full channel drops the packet and counts it; the shard never
//! waits for a consumer. A consumer that went away closes the sink.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lkr_sfu::{CodecKind, SinkId};
use rustc_hash::FxHashMap;

/// Packets one sink's channel holds by default (about 2 s of 1.5 Mbit/s video).
pub const SINK_CAPACITY: usize = 512;

/// One packet for a sink: the codec of its payload type and the RTP packet as the publisher
/// sent it (after SRTP).
#[derive(Debug)]
pub struct SinkPacket {
    pub codec: CodecKind,
    pub data: Vec<u8>,
}

/// The media shard's end of a sink.
#[derive(Debug)]
pub struct SinkSender {
    tx: SyncSender<SinkPacket>,
    free: Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// The consumer's end of a sink.
#[derive(Debug)]
pub struct SinkReceiver {
    rx: Receiver<SinkPacket>,
    free: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// The sink's consumer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkClosed;

/// A sink channel holding `capacity` packets.
pub fn sink_channel(capacity: usize) -> (SinkSender, SinkReceiver) {
    let capacity = capacity.max(1);
    let (tx, rx) = sync_channel(capacity);
    let (free_tx, free_rx) = sync_channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        SinkSender {
            tx,
            free: free_rx,
            dropped: dropped.clone(),
        },
        SinkReceiver {
            rx,
            free: free_tx,
            dropped,
        },
    )
}

impl SinkSender {
    /// Queues a copy of `pkt`, in a buffer the consumer gave back when there is one. A full
    /// channel drops it (counted; `Ok`); a consumer that is gone is `Err`.
    pub fn push(&mut self, codec: CodecKind, pkt: &[u8]) -> Result<(), SinkClosed> {
        let mut data = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(1500));
        data.clear();
        data.extend_from_slice(pkt);
        match self.tx.try_send(SinkPacket { codec, data }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(SinkClosed),
        }
    }
}

impl SinkReceiver {
    /// The next packet, waiting at most `timeout`. `Disconnected` once the shard let go of
    /// the sink (it was removed, or its track went) and every packet was taken.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<SinkPacket, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Gives a packet's buffer back for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.try_send(buf);
    }

    /// Packets dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// Sinks handed to the media core and not yet taken by their shard (which takes one when
/// its `AddSink` command arrives).
#[derive(Debug, Default, Clone)]
pub(crate) struct SinkRegistry(Arc<Mutex<FxHashMap<SinkId, SinkSender>>>);

/// Sinks waiting for their shard at most; more are refused (an `AddSink` per track egress
/// follows each registration at once, so only a stopped media core lets them pile up).
const REGISTRY_LIMIT: usize = 4096;

impl SinkRegistry {
    pub(crate) fn insert(&self, sink: SinkId, tx: SinkSender) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return false;
        };
        if m.len() >= REGISTRY_LIMIT {
            return false;
        }
        m.insert(sink, tx);
        true
    }

    pub(crate) fn take(&self, sink: SinkId) -> Option<SinkSender> {
        self.0.lock().ok()?.remove(&sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_sink_drops_and_counts_and_buffers_come_back() {
        let (mut tx, rx) = sink_channel(4);
        for i in 0..10u8 {
            tx.push(CodecKind::Opus, &[i; 20]).unwrap();
        }
        assert_eq!(rx.dropped(), 6);
        let p = rx.recv_timeout(Duration::from_millis(10)).unwrap();
        assert_eq!(p.data, vec![0; 20]);
        let ptr = p.data.as_ptr();
        rx.recycle(p.data);
        tx.push(CodecKind::Opus, &[42; 20]).unwrap();
        let mut last = None;
        while let Ok(p) = rx.recv_timeout(Duration::from_millis(10)) {
            last = Some(p);
        }
        let last = last.unwrap();
        assert_eq!(last.data, vec![42; 20]);
        assert_eq!(last.data.as_ptr(), ptr, "the recycled buffer was reused");
        drop(rx);
        assert_eq!(tx.push(CodecKind::Opus, &[1]), Err(SinkClosed));
    }

    #[test]
    fn sinks_waiting_for_their_shard_are_capped() {
        let r = SinkRegistry::default();
        for i in 0..REGISTRY_LIMIT as u64 {
            assert!(r.insert(SinkId(i), sink_channel(1).0));
        }
        assert!(!r.insert(SinkId(u64::MAX), sink_channel(1).0));
        assert!(r.take(SinkId(3)).is_some());
        assert!(r.take(SinkId(3)).is_none());
        assert!(r.insert(SinkId(u64::MAX), sink_channel(1).0));
    }

    #[test]
    fn a_removed_sink_ends_its_consumer() {
        let (mut tx, rx) = sink_channel(4);
        tx.push(CodecKind::Vp8, &[1, 2, 3]).unwrap();
        drop(tx);
        assert!(rx.recv_timeout(Duration::from_millis(10)).is_ok());
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)).unwrap_err(),
            RecvTimeoutError::Disconnected
        );
    }
}
