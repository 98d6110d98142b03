//! RTCP: the compound packet iterator and every packet type's accessors, SDES items, and
//! transport-wide congestion control feedback (parsed from a compound packet and directly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkr_rtp::{RtcpPacket, TwccView};

fn walk_twcc(view: &TwccView<'_>) {
    let _ = (
        view.sender_ssrc(),
        view.media_ssrc(),
        view.base_seq(),
        view.status_count(),
        view.reference_time(),
        view.reference_time_us(),
        view.fb_count(),
    );
    // A status count is at most 65535 packets: the walk is bounded.
    let n = view.packets().count();
    assert!(n <= usize::from(view.status_count()));
}

fuzz_target!(|data: &[u8]| {
    let mut packets = 0usize;
    for packet in lkr_rtp::rtcp_packets(data) {
        packets += 1;
        assert!(
            packets <= data.len() / 4 + 1,
            "each packet is at least 4 bytes"
        );
        let Ok(packet) = packet else { continue };
        match packet {
            RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_ts,
                packet_count,
                octet_count,
                reports,
            } => {
                let _ = (ssrc, ntp, rtp_ts, packet_count, octet_count);
                let _ = (reports.len(), reports.is_empty());
                for r in reports.iter() {
                    let _ = r;
                }
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                let _ = ssrc;
                assert_eq!(reports.iter().count(), reports.len());
            }
            RtcpPacket::Sdes(body) => {
                let mut items = 0usize;
                for item in lkr_rtp::sdes_items(body) {
                    items += 1;
                    assert!(items <= body.len() + 1);
                    let _ = item;
                }
            }
            RtcpPacket::Bye { ssrcs } => {
                assert_eq!(ssrcs.iter().count(), ssrcs.len());
                let _ = ssrcs.raw();
            }
            RtcpPacket::Nack {
                sender_ssrc,
                media_ssrc,
                pairs,
            } => {
                let _ = (sender_ssrc, media_ssrc);
                let _ = pairs.pairs().count();
                let lost = pairs.count();
                assert!(
                    lost <= 17 * data.len() / 4,
                    "a PID/BLP pair names at most 17 packets"
                );
            }
            RtcpPacket::Pli {
                sender_ssrc,
                media_ssrc,
            } => {
                let _ = (sender_ssrc, media_ssrc);
            }
            RtcpPacket::Fir {
                sender_ssrc,
                entries,
            } => {
                let _ = sender_ssrc;
                assert_eq!(entries.iter().count(), entries.len());
            }
            RtcpPacket::Remb {
                sender_ssrc,
                bitrate_bps,
                ssrcs,
            } => {
                let _ = (sender_ssrc, bitrate_bps);
                assert_eq!(ssrcs.iter().count(), ssrcs.len());
            }
            RtcpPacket::TransportCc(view) => walk_twcc(&view),
            RtcpPacket::Other { pt, fmt, body } => {
                let _ = (pt, fmt, body);
            }
        }
    }
    // The TWCC body parser on its own, for inputs that skip the framing.
    if let Ok(view) = TwccView::parse(data) {
        walk_twcc(&view);
    }
});
