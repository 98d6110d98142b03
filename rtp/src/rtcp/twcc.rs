//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01 §3.1): a borrowed view with a decoding iterator, and a builder for the
//! receive side.
//!
//! Layout after the common header: sender SSRC, media SSRC, base sequence number (16),
//! packet status count (16), reference time (24, signed, 64 ms units), feedback packet count
//! (8), packet status chunks (16 bits each), then one receive delta per received packet
//! (1 byte unsigned or 2 bytes signed, 250 µs units).

use super::write::{ensure, put_header};
use super::{FMT_TWCC, PT_RTPFB, be16, be24, be32};
use crate::error::RtcpError;
use crate::seq::SeqUnwrapper;

/// Microseconds per receive delta tick.
const DELTA_TICK_US: i64 = 250;
/// Delta ticks per reference time unit (64 ms / 250 µs).
const TICKS_PER_REFERENCE: i64 = 256;

const SYM_NOT_RECEIVED: u8 = 0;
const SYM_SMALL_DELTA: u8 = 1;
const SYM_LARGE_DELTA: u8 = 2;

/// Delta bytes a status symbol is followed by; `None` for the reserved symbol.
fn delta_size(sym: u8) -> Option<usize> {
    match sym {
        SYM_NOT_RECEIVED => Some(0),
        SYM_SMALL_DELTA => Some(1),
        SYM_LARGE_DELTA => Some(2),
        _ => None,
    }
}

/// Number of symbols a chunk can describe and the symbol at `idx` (< that number).
fn chunk_capacity(chunk: u16) -> usize {
    if chunk & 0x8000 == 0 {
        usize::from(chunk & 0x1FFF)
    } else if chunk & 0x4000 == 0 {
        14
    } else {
        7
    }
}

fn chunk_symbol(chunk: u16, idx: usize) -> u8 {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 0x3) as u8
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - idx)) & 0x1) as u8
    } else {
        ((chunk >> (12 - 2 * idx)) & 0x3) as u8
    }
}

/// A parsed transport-cc feedback packet. Parsing walks the chunks once to check that the
/// status count and every receive delta fit the packet.
#[derive(Debug, Clone, Copy)]
pub struct TwccView<'a> {
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    status_count: u16,
    reference_time: u32,
    fb_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

impl<'a> TwccView<'a> {
    /// Parses the body of an RTPFB FMT=15 packet (everything after the 4-byte header,
    /// padding removed).
    pub fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let truncated = RtcpError::Truncated {
            pt: PT_RTPFB,
            fmt: FMT_TWCC,
        };
        if body.len() < 16 {
            return Err(truncated);
        }
        let status_count = be16(body, 10);
        let mut remaining = usize::from(status_count);
        let mut pos = 16;
        let mut delta_bytes = 0;
        while remaining > 0 {
            if pos + 2 > body.len() {
                return Err(truncated);
            }
            let chunk = be16(body, pos);
            pos += 2;
            let n = chunk_capacity(chunk).min(remaining);
            for i in 0..n {
                delta_bytes +=
                    delta_size(chunk_symbol(chunk, i)).ok_or(RtcpError::ReservedStatusSymbol)?;
            }
            remaining -= n;
        }
        if pos + delta_bytes > body.len() {
            return Err(truncated);
        }
        Ok(Self {
            sender_ssrc: be32(body, 0),
            media_ssrc: be32(body, 4),
            base_seq: be16(body, 8),
            status_count,
            reference_time: be24(body, 12),
            fb_count: body[15],
            chunks: &body[16..pos],
            deltas: &body[pos..pos + delta_bytes],
        })
    }

    /// SSRC of the feedback sender.
    pub fn sender_ssrc(&self) -> u32 {
        self.sender_ssrc
    }

    /// Media source SSRC field.
    pub fn media_ssrc(&self) -> u32 {
        self.media_ssrc
    }

    /// Transport sequence number of the first status.
    pub fn base_seq(&self) -> u16 {
        self.base_seq
    }

    /// Number of packet statuses.
    pub fn status_count(&self) -> u16 {
        self.status_count
    }

    /// Reference time field, sign-extended from 24 bits, in 64 ms units.
    pub fn reference_time(&self) -> i32 {
        ((self.reference_time << 8) as i32) >> 8
    }

    /// Reference time in microseconds.
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time()) * TICKS_PER_REFERENCE * DELTA_TICK_US
    }

    /// Feedback packet count (wraps at 256).
    pub fn fb_count(&self) -> u8 {
        self.fb_count
    }

    /// Every status in order as `(transport seq, receive delta in µs)`; the delta is `None`
    /// for a packet not received and is relative to the previous received packet (the
    /// reference time for the first one).
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            chunks: self.chunks,
            deltas: self.deltas,
            chunk_pos: 0,
            idx: 0,
            delta_pos: 0,
            remaining: self.status_count,
            seq: self.base_seq,
        }
    }
}

/// Iterator returned by [`TwccView::packets`].
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    chunk_pos: usize,
    idx: usize,
    delta_pos: usize,
    remaining: u16,
    seq: u16,
}

impl Iterator for TwccPackets<'_> {
    type Item = (u16, Option<i64>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let sym = loop {
            if self.chunk_pos + 2 > self.chunks.len() {
                return None;
            }
            let chunk = be16(self.chunks, self.chunk_pos);
            if self.idx < chunk_capacity(chunk) {
                let s = chunk_symbol(chunk, self.idx);
                self.idx += 1;
                break s;
            }
            self.chunk_pos += 2;
            self.idx = 0;
        };
        self.remaining -= 1;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let d = self.deltas;
        let at = self.delta_pos;
        let delta = match sym {
            SYM_SMALL_DELTA => {
                let v = *d.get(at)?;
                self.delta_pos += 1;
                Some(i64::from(v))
            }
            SYM_LARGE_DELTA => {
                let v = i16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]);
                self.delta_pos += 2;
                Some(i64::from(v))
            }
            _ => None,
        };
        Some((seq, delta.map(|t| t * DELTA_TICK_US)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining)))
    }
}

/// Most packets the builder holds between writes; beyond this the oldest half is dropped so
/// a peer cannot grow it without bound when feedback is not drained.
const MAX_PENDING: usize = 1 << 14;
/// Fixed part of a feedback packet: common header, two SSRCs, base, count, reference, fb count.
const FIXED_LEN: usize = 20;

/// Collects transport-wide sequence numbers with their arrival times and writes feedback.
///
/// Call [`TwccBuilder::push`] per received packet and [`TwccBuilder::write`] periodically
/// (every 50–100 ms); each `write` emits one feedback packet and should be repeated until it
/// returns `Ok(None)`, because one packet ends early when `out` is full or when a receive
/// delta does not fit 16 bits (8.2 s). Gaps since the previous feedback are reported as not
/// received; a packet arriving after its number was already reported is dropped.
#[derive(Debug, Clone, Default)]
pub struct TwccBuilder {
    unwrapper: SeqUnwrapper,
    /// (extended transport seq, arrival µs), unsorted until `write`.
    pending: Vec<(i64, i64)>,
    /// First extended sequence number not covered by a written feedback.
    next_seq: Option<i64>,
    fb_count: u8,
    symbols: Vec<u8>,
    deltas: Vec<i64>,
    /// (chunk, index of its first symbol)
    chunks: Vec<(u16, usize)>,
}

impl TwccBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the arrival of the packet with transport-wide sequence number `seq`.
    pub fn push(&mut self, seq: u16, arrival_us: i64) {
        let ext = self.unwrapper.unwrap_signed(seq);
        if self.next_seq.is_some_and(|n| ext < n) {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.sort_by_key(|p| p.0);
            self.pending.drain(..MAX_PENDING / 2);
        }
        self.pending.push((ext, arrival_us));
    }

    /// Packets waiting to be reported.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feedback packet count the next feedback will carry.
    pub fn fb_count(&self) -> u8 {
        self.fb_count
    }

    /// Writes one feedback packet for the oldest pending packets and returns its length,
    /// `Ok(None)` when nothing is pending, or `BufferTooSmall` when `out` cannot hold even
    /// one received packet.
    pub fn write(
        &mut self,
        out: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<Option<usize>, RtcpError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        if !self.pending.is_sorted_by_key(|p| p.0) {
            // Stable, so the first arrival of a duplicate is kept by dedup below.
            self.pending.sort_by_key(|p| p.0);
        }
        self.pending.dedup_by_key(|p| p.0);
        let first = self.pending[0].0;
        let base = match self.next_seq {
            Some(n) if n <= first && first - n < 0x8000 => n,
            _ => first,
        };

        // Status symbols from `base`, and delta ticks of received packets, until a delta
        // or the status count overflows.
        self.symbols.clear();
        self.deltas.clear();
        let reference = self.pending[0]
            .1
            .div_euclid(DELTA_TICK_US * TICKS_PER_REFERENCE);
        let mut prev_ticks = reference * TICKS_PER_REFERENCE;
        for &(seq, arrival) in &self.pending {
            if seq - base >= i64::from(u16::MAX) {
                break;
            }
            let ticks = arrival.div_euclid(DELTA_TICK_US);
            let d = ticks - prev_ticks;
            if i16::try_from(d).is_err() {
                break;
            }
            let gap = seq - base - self.symbols.len() as i64;
            self.symbols
                .extend(core::iter::repeat_n(SYM_NOT_RECEIVED, gap as usize));
            self.symbols.push(if (0..=255).contains(&d) {
                SYM_SMALL_DELTA
            } else {
                SYM_LARGE_DELTA
            });
            self.deltas.push(d);
            prev_ticks = ticks;
        }

        // Greedy chunking, stopping before the first chunk that would not fit `out`.
        self.chunks.clear();
        let mut covered = 0;
        let mut delta_bytes = 0;
        while covered < self.symbols.len() {
            let (chunk, n) = encode_chunk(&self.symbols[covered..]);
            let add: usize = self.symbols[covered..covered + n]
                .iter()
                .map(|&s| delta_size(s).unwrap_or(0))
                .sum();
            let fixed = FIXED_LEN + 2 * (self.chunks.len() + 1) + delta_bytes;
            if padded(fixed + add) > out.len() {
                // Cover the longest prefix of this chunk whose deltas still fit, then stop.
                let budget = (out.len() / 4 * 4).saturating_sub(fixed);
                let mut fit = 0;
                let mut fit_bytes = 0;
                for &s in &self.symbols[covered..covered + n] {
                    let b = delta_size(s).unwrap_or(0);
                    if fit_bytes + b > budget {
                        break;
                    }
                    fit += 1;
                    fit_bytes += b;
                }
                if fit > 0 && fixed <= out.len() / 4 * 4 {
                    let (chunk, n) = encode_chunk(&self.symbols[covered..covered + fit]);
                    self.chunks.push((chunk, covered));
                    delta_bytes += self.symbols[covered..covered + n]
                        .iter()
                        .map(|&s| delta_size(s).unwrap_or(0))
                        .sum::<usize>();
                    covered += n;
                }
                break;
            }
            self.chunks.push((chunk, covered));
            covered += n;
            delta_bytes += add;
        }
        // The symbol list always ends with a received packet; a prefix cut by the size limit
        // is trimmed back to its last received packet, and chunks past it are dropped so the
        // chunk list ends where the status count does.
        let Some(last_received) = self.symbols[..covered]
            .iter()
            .rposition(|&s| s != SYM_NOT_RECEIVED)
        else {
            return Err(RtcpError::BufferTooSmall {
                needed: padded(FIXED_LEN + 2 + 1),
                have: out.len(),
            });
        };
        let status_count = last_received + 1;
        self.chunks.retain(|&(_, start)| start < status_count);
        let packets = self.symbols[..status_count]
            .iter()
            .filter(|&&s| s != SYM_NOT_RECEIVED)
            .count();

        let unpadded = FIXED_LEN + 2 * self.chunks.len() + delta_bytes;
        let total = padded(unpadded);
        ensure(out, total)?;
        let pad = total - unpadded;
        put_header(out, pad > 0, FMT_TWCC, PT_RTPFB, total);
        out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        // Wire fields are the low bits of the extended sequence number and of the reference
        // time (24 bits, wrapping like the receiver expects).
        out[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        out[14..16].copy_from_slice(&(status_count as u16).to_be_bytes());
        let r = (reference as u32 & 0xFF_FFFF).to_be_bytes();
        out[16..19].copy_from_slice(&r[1..]);
        out[19] = self.fb_count;
        let mut at = FIXED_LEN;
        for &(chunk, _) in &self.chunks {
            out[at..at + 2].copy_from_slice(&chunk.to_be_bytes());
            at += 2;
        }
        for &d in &self.deltas[..packets] {
            if (0..=255).contains(&d) {
                out[at] = d as u8;
                at += 1;
            } else {
                // Fits i16: checked when the symbol was chosen.
                out[at..at + 2].copy_from_slice(&(d as i16).to_be_bytes());
                at += 2;
            }
        }
        if pad > 0 {
            out[at..total].fill(0);
            // pad is 1..=3.
            out[total - 1] = pad as u8;
        }

        self.pending.drain(..packets);
        self.next_seq = Some(base + status_count as i64);
        self.fb_count = self.fb_count.wrapping_add(1);
        Ok(Some(total))
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Chooses the next status chunk for `s` (non-empty) and returns it with the number of
/// symbols it covers: a run-length chunk for runs of 14 or more, a 1-bit vector when the
/// next 14 symbols need no large delta, a run-length chunk for runs of 7 to 13, and a 2-bit
/// vector otherwise.
fn encode_chunk(s: &[u8]) -> (u16, usize) {
    let first = s[0];
    let run = s.iter().take(0x1FFF).take_while(|&&x| x == first).count();
    let run_chunk = |n: usize| ((u16::from(first) << 13) | n as u16, n);
    if run >= 14 {
        return run_chunk(run);
    }
    let n14 = s.len().min(14);
    if s[..n14].iter().all(|&x| x <= SYM_SMALL_DELTA) {
        let mut c = 0x8000u16;
        for (i, &x) in s[..n14].iter().enumerate() {
            c |= u16::from(x) << (13 - i);
        }
        return (c, n14);
    }
    if run >= 7 {
        return run_chunk(run);
    }
    let n7 = s.len().min(7);
    let mut c = 0xC000u16;
    for (i, &x) in s[..n7].iter().enumerate() {
        c |= u16::from(x) << (12 - 2 * i);
    }
    (c, n7)
}
