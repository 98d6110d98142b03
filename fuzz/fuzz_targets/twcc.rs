//! Transport-wide congestion control feedback as the server builds it from the sequence
//! numbers peers put in their packets: any order, gaps, wraps, duplicates and arrival times.
//! Every feedback written must parse, and every packet it reports received must have been
//! pushed.
//!
//! Input: 4-byte steps (transport sequence number, arrival advance in 250 µs ticks, both
//! big-endian u16); a step whose advance has the top bit set writes feedback first.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use lkr_rtp::{RtcpPacket, TwccBuilder};

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
    for step in data.chunks_exact(4).take(4096) {
        let seq = u16::from_be_bytes([step[0], step[1]]);
        let advance = u16::from_be_bytes([step[2], step[3]]);
        if advance & 0x8000 != 0 {
            flush(&mut twcc, &pushed);
        }
        arrival += i64::from(advance & 0x7fff) * 250;
        twcc.push(seq, arrival);
        pushed.insert(seq);
        let _ = (twcc.pending(), twcc.fb_count());
    }
    flush(&mut twcc, &pushed);
});
