//! Packet index estimation (RFC 3711 §3.3.1, Appendix A) and the replay window
//! (RFC 3711 §3.3.2).

use super::SrtpError;

/// Packets behind the highest index that the window still remembers. libwebrtc uses 1024:
/// at high packet rates retransmissions arrive well over 64 packets late (RFC 3711 §3.3.2
/// lets the receiver choose the size).
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Half the sequence number space: the RFC 3711 Appendix A decision point.
const HALF_SEQ: u64 = 0x8000;

/// Mask of the 48-bit SRTP packet index, `ROC * 65536 + SEQ`.
const INDEX_MASK: u64 = (1 << 48) - 1;

/// The 48-bit packet index of sequence number `seq`, given the highest index `highest` seen
/// on the stream: the one of `ROC - 1`, `ROC`, `ROC + 1` (RFC 3711 Appendix A) that puts
/// `seq` nearest to the last one. At ROC zero there is no earlier cycle, so a sequence
/// number far ahead is taken as a jump forward in the same cycle.
pub(super) fn estimate_index(highest: u64, seq: u16) -> u64 {
    let roc = highest >> 16;
    let s_l = highest & 0xffff;
    let seq = u64::from(seq);
    let v = if s_l < HALF_SEQ {
        if seq > s_l + HALF_SEQ && roc > 0 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - HALF_SEQ > seq {
        roc + 1
    } else {
        roc
    };
    ((v << 16) | seq) & INDEX_MASK
}

/// Highest index received on a stream and which of the `WINDOW` indexes below it were: a
/// ring of bits where index `i` lives at bit `i % WINDOW`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReplayWindow {
    highest: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    fn bit(&self, index: u64) -> bool {
        let b = index % WINDOW;
        self.bits[(b / 64) as usize] >> (b % 64) & 1 == 1
    }

    fn set(&mut self, index: u64, on: bool) {
        let b = index % WINDOW;
        let word = &mut self.bits[(b / 64) as usize];
        if on {
            *word |= 1 << (b % 64);
        } else {
            *word &= !(1 << (b % 64));
        }
    }

    /// The highest index accepted so far.
    pub(super) fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Fails if `index` was accepted before or is too old to tell.
    pub(super) fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        if highest - index >= WINDOW || self.bit(index) {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    /// Records `index` as received (after [`check`](Self::check) passed and the packet
    /// authenticated).
    pub(super) fn accept(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.set(index, true);
            }
            Some(h) if index > h => {
                let ahead = index - h;
                if ahead >= WINDOW {
                    self.bits = [0; WORDS];
                } else {
                    // The slots of the skipped indexes held indexes a window older.
                    for i in (h + 1)..index {
                        self.set(i, false);
                    }
                }
                self.set(index, true);
                self.highest = Some(index);
            }
            Some(h) => {
                if h - index < WINDOW {
                    self.set(index, true);
                }
            }
        }
    }
}

/// Highest SRTP index a sender used on a stream.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TxIndex {
    highest: Option<u64>,
}

impl TxIndex {
    /// The index for sending `seq`: the estimate against the highest sent (so a resent older
    /// packet keeps its index and a wrap from 65535 to 0 bumps the ROC), recorded if higher.
    pub(super) fn next(&mut self, seq: u16) -> u64 {
        let index = match self.highest {
            Some(highest) => estimate_index(highest, seq),
            None => u64::from(seq),
        };
        if self.highest.is_none_or(|h| index > h) {
            self.highest = Some(index);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(roc: u64, seq: u64) -> u64 {
        roc << 16 | seq
    }

    #[test]
    fn estimation_follows_rfc3711_appendix_a() {
        // Same cycle, forward and backward.
        assert_eq!(estimate_index(idx(3, 100), 101), idx(3, 101));
        assert_eq!(estimate_index(idx(3, 100), 50), idx(3, 50));
        // Wrap forward: last near the top, new near zero.
        assert_eq!(estimate_index(idx(3, 65535), 0), idx(4, 0));
        assert_eq!(estimate_index(idx(3, 65000), 10), idx(4, 10));
        // Late packet from the previous cycle after a wrap.
        assert_eq!(estimate_index(idx(4, 2), 65534), idx(3, 65534));
        // Exactly at the decision points.
        assert_eq!(estimate_index(idx(3, 0x8000), 0), idx(3, 0));
        assert_eq!(estimate_index(idx(3, 0x8001), 0), idx(4, 0));
        assert_eq!(estimate_index(idx(3, 0), 0x8000), idx(3, 0x8000));
        assert_eq!(estimate_index(idx(3, 0), 0x8001), idx(2, 0x8001));
        // No cycle before ROC zero.
        assert_eq!(estimate_index(idx(0, 10), 60000), idx(0, 60000));
    }

    #[test]
    fn estimation_never_overflows() {
        let top = INDEX_MASK;
        assert_eq!(estimate_index(top, 1), 1);
        for seq in [0u16, 1, 0x7fff, 0x8000, 0xffff] {
            assert!(estimate_index(top, seq) <= INDEX_MASK);
            assert!(estimate_index(0, seq) <= INDEX_MASK);
        }
    }

    #[test]
    fn window_rejects_repeats_and_old_indexes() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.highest(), None);
        assert!(w.check(1000).is_ok());
        w.accept(1000);
        assert_eq!(w.check(1000), Err(SrtpError::Replay));
        // Out of order inside the window is fine once.
        assert!(w.check(990).is_ok());
        w.accept(990);
        assert_eq!(w.check(990), Err(SrtpError::Replay));
        // Forward jump inside the window keeps the memory of older ones.
        w.accept(1010);
        assert_eq!(w.check(990), Err(SrtpError::Replay));
        assert_eq!(w.check(1000), Err(SrtpError::Replay));
        assert!(w.check(1005).is_ok());
        // The window edge: WINDOW-1 behind is still tracked, WINDOW behind is too old.
        assert!(w.check(1010 + WINDOW - 1 - (WINDOW - 1)).is_err());
        w.accept(1010 + WINDOW - 1);
        assert!(
            w.check(1011).is_ok(),
            "{} behind is still tracked",
            WINDOW - 1 - 1
        );
        assert_eq!(
            w.check(1010),
            Err(SrtpError::Replay),
            "WINDOW-1 behind and seen"
        );
        assert_eq!(
            w.check(1009),
            Err(SrtpError::Replay),
            "WINDOW behind is too old"
        );
        // Slots reused by newer indexes are not mistaken for the old ones.
        w.accept(1010 + WINDOW + 5);
        assert!(w.check(1010 + WINDOW + 4).is_ok());
        assert!(w.check(1010 + WINDOW + 1).is_ok());
        // A big jump forgets everything below.
        w.accept(50_000);
        assert_eq!(w.check(1010 + WINDOW + 4), Err(SrtpError::Replay));
        assert!(w.check(49_999).is_ok());
        assert_eq!(w.highest(), Some(50_000));
    }

    #[test]
    fn sender_index_rolls_over_and_keeps_old_indexes() {
        let mut tx = TxIndex::default();
        assert_eq!(tx.next(65534), idx(0, 65534));
        assert_eq!(tx.next(65535), idx(0, 65535));
        assert_eq!(tx.next(0), idx(1, 0));
        // A retransmission of a packet from before the wrap keeps ROC 0.
        assert_eq!(tx.next(65535), idx(0, 65535));
        assert_eq!(tx.next(1), idx(1, 1));
    }
}
