//! A channel bounded twice: in messages, as a tokio `mpsc` channel is, and in the bytes the
//! waiting messages hold, so that a receiver that stops reading holds at most so many bytes
//! however large each message is. The sender names each message's size; the size travels
//! with it and is taken off when the receiver takes the message.
//!
//! A message is always accepted when nothing waits, however large (a join response in a large
//! room, one big webhook event): the byte bound limits what piles up, not what one message may
//! be. Used for each signal connection's queue and each webhook URL's queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::sync::mpsc;
pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// The sending end; clones share the bounds.
#[derive(Debug)]
pub struct Sender<T> {
    tx: mpsc::Sender<(T, usize)>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bytes: self.bytes.clone(),
            max_bytes: self.max_bytes,
        }
    }
}

/// The receiving end.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: mpsc::Receiver<(T, usize)>,
    bytes: Arc<AtomicUsize>,
}

/// A channel of at most `messages` messages and, unless it holds one message only,
/// `max_bytes` bytes.
pub fn channel<T>(messages: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(messages);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        Receiver { rx, bytes },
    )
}

impl<T> Sender<T> {
    /// Queues `item` of `size` bytes without waiting. `Full` when the queue holds as many
    /// messages as it may, or when it holds something and `size` more bytes would pass the
    /// bound; `Closed` once the receiver is gone. The item comes back in either.
    pub fn try_send(&self, item: T, size: usize) -> Result<(), TrySendError<T>> {
        let held = self.bytes.load(Relaxed);
        if held > 0 && held.saturating_add(size) > self.max_bytes {
            return Err(TrySendError::Full(item));
        }
        self.bytes.fetch_add(size, Relaxed);
        self.tx.try_send((item, size)).map_err(|e| {
            self.bytes.fetch_sub(size, Relaxed);
            match e {
                TrySendError::Full((item, _)) => TrySendError::Full(item),
                TrySendError::Closed((item, _)) => TrySendError::Closed(item),
            }
        })
    }

    /// Bytes the waiting messages hold.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and nothing waits.
    pub async fn recv(&mut self) -> Option<T> {
        let (item, size) = self.rx.recv().await?;
        self.bytes.fetch_sub(size, Relaxed);
        Some(item)
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let (item, size) = self.rx.try_recv()?;
        self.bytes.fetch_sub(size, Relaxed);
        Ok(item)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Bytes the waiting messages hold.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_messages_and_in_bytes() {
        let (tx, mut rx) = channel::<u32>(4, 100);
        // One message larger than the bound is taken when nothing waits...
        tx.try_send(1, 150).unwrap();
        assert_eq!(rx.bytes(), 150);
        // ...and nothing more until it is read.
        assert!(matches!(tx.try_send(2, 1), Err(TrySendError::Full(2))));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.bytes(), 0);
        // Bytes: 60 + 40 fit, one more byte does not.
        tx.try_send(3, 60).unwrap();
        tx.try_send(4, 40).unwrap();
        assert!(matches!(tx.try_send(5, 1), Err(TrySendError::Full(5))));
        // Messages: four of no size, whatever the bytes.
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        for i in 0..4 {
            tx.try_send(i, 0).unwrap();
        }
        assert!(matches!(tx.try_send(9, 0), Err(TrySendError::Full(9))));
        assert_eq!(rx.len(), 4);
        for i in 0..4 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert!(rx.is_empty());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // A refused send leaves the count as it was; a gone receiver is Closed.
        tx.try_send(7, 10).unwrap();
        drop(rx);
        assert!(matches!(tx.try_send(8, 10), Err(TrySendError::Closed(8))));
        assert_eq!(tx.bytes(), 10);
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end() {
        let (tx, mut rx) = channel::<u32>(2, 10);
        tx.try_send(1, 5).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}
