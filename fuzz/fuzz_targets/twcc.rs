//! Transport-wide congestion control feedback as the server builds it from the sequence
//! numbers peers put in their packets: any order, gaps, wraps, duplicates and arrival times.
//! Every feedback written must parse, and every packet it reports received must have been
//! pushed.
//!
//! Input: 4-byte steps of two big-endian u16: the transport sequence number, then the arrival
//! advance in 250 µs ticks (a step whose advance has the top bit set writes feedback first).
//! The first step's sequence number is taken as it is; every later one is a signed step
//! (i16) from the previous number: up to ±[`SMALL_STEP`] as it is, larger ones reduced to
//! that, except that a field `0x80kk` jumps by `kk` (i8) × [`JUMP_UNIT`], past what one
//! run-length chunk holds, [`MAX_JUMPS`] times per input at most. So inputs wrap, reorder,
//! repeat, leave every kind of gap and pass half the sequence space between two feedbacks,
//! while a feedback spans only as many numbers as the input walked. Taken as they came,
//! 16-bit numbers spanned up to 65,535 in nearly every feedback, each rebuilt, parsed and
//! checked status by status (400 inputs a second). The work per input is also bounded by
//! at most [`MAX_STEPS`] packets and [`MAX_FLUSHES`] feedback points (each writes feedback
//! until nothing is pending).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use lkr_rtp::{RtcpPacket, TwccBuilder};

/// Packets pushed per input (the builder's own cap of 16,384 pending packets is out of reach
/// here; `lkr-rtp`'s unit tests hit it).
const MAX_STEPS: usize = 256;
/// Points per input where feedback is written, besides the final one.
const MAX_FLUSHES: usize = 8;
/// A step between consecutive sequence numbers that is taken as it is.
const SMALL_STEP: i16 = 127;
/// A sequence field `0x80kk` jumps by `kk` (signed) times this: up to ±16,256, more than a
/// run-length chunk holds (8,191).
const JUMP_UNIT: i16 = 128;
/// Jumps per input: two of them pass half the sequence space (0x8000), and three with small
/// steps a span longer than one feedback can report (65,535).
const MAX_JUMPS: usize = 3;

/// The step from one sequence number to the next that a sequence field asks for.
fn step(field: u16, jumps: &mut usize) -> i16 {
    let d = field as i16;
    if d.unsigned_abs() <= SMALL_STEP.unsigned_abs() {
        d
    } else if field >> 8 == 0x80 && *jumps < MAX_JUMPS {
        *jumps += 1;
        i16::from(field as u8 as i8) * JUMP_UNIT
    } else {
        d % (SMALL_STEP + 1)
    }
}

fn flush(twcc: &mut TwccBuilder, pushed: &HashSet<u16>) {
    let mut out = [0u8; 1200];
    // Each feedback reports at least one pending packet, so this ends.
    for _ in 0..=u16::MAX {
        let Ok(Some(n)) = twcc.write(&mut out, 1, 2) else {
            return;
        };
        for packet in lkr_rtp::rtcp_packets(&out[..n]) {
            let Ok(RtcpPacket::TransportCc(view)) = packet else {
                panic!("our own TWCC feedback parses: {packet:?}");
            };
            for (seq, delta) in view.packets() {
                if delta.is_some() {
                    assert!(pushed.contains(&seq), "reported {seq} never arrived");
                }
            }
        }
    }
    panic!("feedback never drained");
}

fuzz_target!(|data: &[u8]| {
    let mut twcc = TwccBuilder::new();
    let mut pushed = HashSet::new();
    let mut arrival = 1_000_000i64;
    let mut flushes = 0;
    let mut seq: Option<u16> = None;
    let mut jumps = 0;
    for chunk in data.chunks_exact(4).take(MAX_STEPS) {
        let field = u16::from_be_bytes([chunk[0], chunk[1]]);
        let seq = *seq.insert(match seq {
            None => field,
            Some(prev) => prev.wrapping_add_signed(step(field, &mut jumps)),
        });
        let advance = u16::from_be_bytes([chunk[2], chunk[3]]);
        if advance & 0x8000 != 0 && flushes < MAX_FLUSHES {
            flushes += 1;
            flush(&mut twcc, &pushed);
        }
        arrival += i64::from(advance & 0x7fff) * 250;
        twcc.push(seq, arrival);
        pushed.insert(seq);
        let _ = (twcc.pending(), twcc.fb_count());
    }
    flush(&mut twcc, &pushed);
});
