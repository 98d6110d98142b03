//! Per-SSRC state of one context: a vector sorted by SSRC, searched by bisection.
//!
//! A lookup is a binary search over a contiguous array and never allocates. Only an SSRC
//! not seen before inserts an entry, which may grow the vector; the count is capped at
//! [`MAX_SSRCS`](super::MAX_SSRCS) so that even an authenticated peer cannot make a context
//! grow without bound.

use super::SrtpError;
use super::replay::{ReplayWindow, TxIndex};

/// Entries reserved up front: audio, video simulcast layers and their RTX streams.
const INITIAL_CAPACITY: usize = 8;

/// The largest SRTCP index (31 bits, RFC 3711 §3.4).
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

/// Everything kept for one SSRC.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// Highest received SRTP index and replay window.
    pub(super) rtp_rx: ReplayWindow,
    /// Highest sent SRTP index.
    pub(super) rtp_tx: TxIndex,
    /// Highest received SRTCP index and replay window.
    pub(super) rtcp_rx: ReplayWindow,
    /// Last SRTCP index sent; zero before the first.
    rtcp_tx: u32,
}

impl Stream {
    /// The SRTCP index for the next packet sent: 1, 2, ... and back to 0 past 2^31 - 1.
    pub(super) fn next_rtcp_index(&mut self) -> u32 {
        self.rtcp_tx = if self.rtcp_tx >= MAX_SRTCP_INDEX {
            0
        } else {
            self.rtcp_tx + 1
        };
        self.rtcp_tx
    }
}

/// The SSRC-sorted table.
#[derive(Debug)]
pub(super) struct Streams {
    entries: Vec<(u32, Stream)>,
}

impl Streams {
    pub(super) fn new() -> Self {
        Self {
            entries: Vec::with_capacity(INITIAL_CAPACITY),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// `Ok(position)` of `ssrc`, or `Err(position)` where it would be inserted.
    pub(super) fn find(&self, ssrc: u32) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&ssrc, |(s, _)| *s)
    }

    /// The position of `ssrc` given the result of [`find`](Self::find) (with no change to
    /// the table in between), inserting a fresh entry when it was missing.
    pub(super) fn slot(
        &mut self,
        found: Result<usize, usize>,
        ssrc: u32,
    ) -> Result<usize, SrtpError> {
        match found {
            Ok(i) => Ok(i),
            Err(i) => {
                if self.entries.len() >= super::MAX_SSRCS {
                    return Err(SrtpError::TooManySsrcs);
                }
                self.entries.insert(i, (ssrc, Stream::default()));
                Ok(i)
            }
        }
    }

    /// The entry at a position returned by [`find`](Self::find) or [`slot`](Self::slot).
    pub(super) fn get(&self, i: usize) -> &Stream {
        &self.entries[i].1
    }

    /// The entry at a position returned by [`find`](Self::find) or [`slot`](Self::slot).
    pub(super) fn get_mut(&mut self, i: usize) -> &mut Stream {
        &mut self.entries[i].1
    }

    pub(super) fn remove(&mut self, ssrc: u32) {
        if let Ok(i) = self.find(ssrc) {
            self.entries.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_sorted_and_distinct() {
        let mut streams = Streams::new();
        for ssrc in [7u32, 3, 9, 1, 3, 7, u32::MAX, 0] {
            let found = streams.find(ssrc);
            let i = streams.slot(found, ssrc).unwrap();
            assert_eq!(streams.entries[i].0, ssrc);
        }
        let keys: Vec<u32> = streams.entries.iter().map(|(s, _)| *s).collect();
        assert_eq!(keys, vec![0, 1, 3, 7, 9, u32::MAX]);
        streams.remove(7);
        streams.remove(8);
        assert_eq!(streams.len(), 5);
        assert!(streams.find(7).is_err());
    }

    #[test]
    fn the_table_is_capped() {
        let mut streams = Streams::new();
        for ssrc in 0..super::super::MAX_SSRCS as u32 {
            let found = streams.find(ssrc);
            streams.slot(found, ssrc).unwrap();
        }
        let found = streams.find(u32::MAX);
        assert_eq!(streams.slot(found, u32::MAX), Err(SrtpError::TooManySsrcs));
        // Known SSRCs are still served.
        let found = streams.find(5);
        assert_eq!(streams.slot(found, 5), Ok(5));
    }

    #[test]
    fn srtcp_index_counts_from_one_and_wraps_at_31_bits() {
        let mut stream = Stream::default();
        assert_eq!(stream.next_rtcp_index(), 1);
        assert_eq!(stream.next_rtcp_index(), 2);
        stream.rtcp_tx = MAX_SRTCP_INDEX - 1;
        assert_eq!(stream.next_rtcp_index(), MAX_SRTCP_INDEX);
        assert_eq!(stream.next_rtcp_index(), 0);
        assert_eq!(stream.next_rtcp_index(), 1);
    }
}
