//! Sequence number and timestamp arithmetic.

/// RFC 1982 serial-number comparison of 16-bit sequence numbers: true when `a` comes after
/// `b` by less than half the number space. Two numbers exactly half apart are unordered
/// (false both ways).
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Signed distance from `b` to `a` in sequence space (positive when `a` is newer).
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// Extends 16-bit sequence numbers to 64 bits across wraps, tolerating reordering: a number
/// within half the space behind the highest one seen maps into the past, not a new cycle.
///
/// The first number maps to itself (cycle 0), which matches the RFC 3550 Appendix A.1
/// extended highest sequence number used in reception reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqUnwrapper {
    highest: Option<(u16, i64)>,
}

impl SeqUnwrapper {
    /// An unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended number of `seq`. A packet reordered to before the first one seen, across
    /// a wrap, would be negative and is clamped to 0; [`SeqUnwrapper::unwrap_signed`] keeps
    /// the sign.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        self.unwrap_signed(seq).max(0).unsigned_abs()
    }

    /// The extended number of `seq`, negative for packets older than the first one seen
    /// across a wrap.
    pub fn unwrap_signed(&mut self, seq: u16) -> i64 {
        match self.highest {
            None => {
                self.highest = Some((seq, i64::from(seq)));
                i64::from(seq)
            }
            Some((last, ext)) => {
                let d = i64::from(seq_diff(seq, last));
                let e = ext + d;
                if d > 0 {
                    self.highest = Some((seq, e));
                }
                e
            }
        }
    }

    /// The highest extended number seen so far.
    pub fn highest(&self) -> Option<i64> {
        self.highest.map(|(_, e)| e)
    }
}

/// Extends 32-bit RTP timestamps to 64 bits across wraps, like [`SeqUnwrapper`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampUnwrapper {
    highest: Option<(u32, i64)>,
}

impl TimestampUnwrapper {
    /// An unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended timestamp of `ts` (the first one maps to itself); negative for
    /// timestamps older than the first one seen across a wrap.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        match self.highest {
            None => {
                self.highest = Some((ts, i64::from(ts)));
                i64::from(ts)
            }
            Some((last, ext)) => {
                let d = i64::from(ts.wrapping_sub(last) as i32);
                let e = ext + d;
                if d > 0 {
                    self.highest = Some((ts, e));
                }
                e
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_comparison() {
        assert!(seq_newer(1, 0));
        assert!(!seq_newer(0, 1));
        assert!(seq_newer(0, 65535));
        assert!(seq_newer(10, 65530));
        assert!(!seq_newer(65530, 10));
        assert!(!seq_newer(5, 5));
        assert!(seq_newer(0x7FFF, 0));
        assert!(!seq_newer(0x8000, 0));
        assert!(!seq_newer(0, 0x8000));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);
    }

    #[test]
    fn unwraps_across_wrap() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(65534), 65534);
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(1), 65537);
        // Reordered from before the wrap.
        assert_eq!(u.unwrap(65533), 65533);
        assert_eq!(u.unwrap(2), 65538);
        assert_eq!(u.highest(), Some(65538));
    }

    #[test]
    fn unwraps_many_cycles_and_reordering() {
        let mut u = SeqUnwrapper::new();
        let start = 60_000u64;
        let mut expected_highest = 0;
        for i in 0..300_000u64 {
            // Swap every pair from time to time to reorder.
            let n = if i % 7 == 3 {
                i + 1
            } else if i % 7 == 4 {
                i - 1
            } else {
                i
            };
            let ext = start + n;
            assert_eq!(u.unwrap(ext as u16), ext);
            expected_highest = expected_highest.max(ext);
        }
        assert_eq!(u.highest(), Some(expected_highest as i64));
    }

    #[test]
    fn packet_before_first_across_wrap() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(1), 1);
        assert_eq!(u.unwrap_signed(65535), -1);
        assert_eq!(u.unwrap(65535), 0);
        assert_eq!(u.unwrap(3), 3);
    }

    #[test]
    fn large_jump_forward() {
        let mut u = SeqUnwrapper::new();
        u.unwrap(0);
        assert_eq!(u.unwrap(0x7FFF), 0x7FFF);
        assert_eq!(u.unwrap(0xFFFE), 0xFFFE);
        assert_eq!(u.unwrap(0x7FFD), 0x1_7FFD);
        // Exactly half the space behind is taken as old.
        assert_eq!(u.unwrap_signed(0xFFFD), 0x1_7FFD - 0x8000);
    }

    #[test]
    fn timestamps_unwrap() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 100), i64::from(u32::MAX - 100));
        assert_eq!(u.unwrap(500), (1i64 << 32) + 500);
        assert_eq!(u.unwrap(u32::MAX), i64::from(u32::MAX));
        assert_eq!(u.unwrap(1000), (1i64 << 32) + 1000);
        let mut v = TimestampUnwrapper::new();
        assert_eq!(v.unwrap(10), 10);
        assert_eq!(v.unwrap(u32::MAX), -1);
    }
}
