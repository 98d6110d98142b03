//! Parsing, iterating, rewriting and writing packets performs no heap allocation.

use lkr_driver::alloc_count::{Counting, allocations};
use lkr_rtp::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hot_path_does_not_allocate() {
    let mut rtp = [0u8; 1500];
    let mut rtcp = [0u8; 1500];
    let exts: [(u8, &[u8]); 3] = [(1, &[0x90]), (3, &[0, 7]), (4, b"0")];
    let start = allocations();
    let mut sink = 0u64;
    for i in 0..10_000u32 {
        let seq = i as u16;
        let n = RtpWriter::write_header(&mut rtp, i % 30 == 0, 96, seq, i * 3000, 7, &exts)
            .expect("buffer is large enough");
        rtp[n..n + 4].copy_from_slice(&[0x90, 0x80, (i & 0x7F) as u8, 0x00]);
        let len = n + 100;
        let v = RtpView::parse(&rtp[..len]).expect("written header parses");
        sink += u64::from(v.sequence()) + v.payload().len() as u64;
        sink += v
            .extension(3)
            .and_then(parse_transport_cc)
            .map_or(0, u64::from);
        sink += v
            .extension(4)
            .and_then(parse_str_ext)
            .map_or(0, |s| s.len() as u64);
        sink += u64::from(vp8::is_keyframe(v.payload()));
        let d = vp8::parse(v.payload()).expect("descriptor present");
        set_sequence(&mut rtp, seq.wrapping_add(5));
        set_ssrc(&mut rtp, 9);
        set_timestamp(&mut rtp, i);
        set_marker(&mut rtp, false);
        rewrite_extension(&mut rtp[..len], 3, 5);
        vp8::write_picture_id(&mut rtp[n..len], &d, seq);

        let mut m = write_nack(
            &mut rtcp,
            1,
            2,
            &[seq, seq.wrapping_add(3), seq.wrapping_add(40)],
        )
        .expect("fits");
        m += write_pli(&mut rtcp[m..], 1, 2).expect("fits");
        m += write_receiver_report(&mut rtcp[m..], 1, &[ReportBlock::default()]).expect("fits");
        m += write_remb(&mut rtcp[m..], 1, 2_000_000, &[2]).expect("fits");
        for p in rtcp_packets(&rtcp[..m]) {
            match p.expect("valid") {
                RtcpPacket::Nack { pairs, .. } => sink += pairs.map(u64::from).sum::<u64>(),
                RtcpPacket::ReceiverReport { reports, .. } => sink += reports.len() as u64,
                RtcpPacket::Remb { bitrate_bps, .. } => sink += bitrate_bps,
                _ => sink += 1,
            }
        }
    }
    assert_eq!(allocations() - start, 0, "allocations on the packet path");
    assert!(sink > 0);
}
