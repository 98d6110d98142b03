//! RTP: the header view and its extensions, the extension value readers, the codec payload
//! readers (VP8 descriptor, keyframe detection) and the in-place rewriters the forwarder
//! applies. (The TWCC feedback the sequence numbers feed has its own target, `twcc`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkr_rtp::RtpView;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, buf)) = data.split_first() else {
        return;
    };
    let _ = lkr_rtp::is_rtcp(buf);
    if let Ok(view) = RtpView::parse(buf) {
        let _ = (
            view.marker(),
            view.payload_type(),
            view.sequence(),
            view.timestamp(),
            view.ssrc(),
            view.csrc_count(),
            view.header_len(),
            view.padding_len(),
            view.extension_block(),
            view.extension_form(),
        );
        let _ = view.csrcs().count();
        let payload = view.payload();
        for (id, value) in view.extensions() {
            let _ = view.extension(id);
            let _ = lkr_rtp::parse_audio_level(value);
            let _ = lkr_rtp::parse_abs_send_time(value);
            let _ = lkr_rtp::parse_str_ext(value);
            let _ = lkr_rtp::parse_transport_cc(value);
        }
        let _ = lkr_rtp::rtx_original_sequence(payload);
        let _ = lkr_rtp::vp8::is_keyframe(payload);
        let _ = lkr_rtp::vp9::is_keyframe(payload);
        if let Some(l) = lkr_rtp::vp9::layer(payload) {
            assert!(l.descriptor_len <= payload.len());
        }
        let _ = lkr_rtp::h264::is_keyframe(payload);
        let _ = lkr_rtp::av1::is_keyframe(payload);
        let vp8 = lkr_rtp::vp8::parse(payload);

        // The forwarder's in-place rewrites.
        let mut copy = buf.to_vec();
        let header_len = view.header_len();
        lkr_rtp::set_sequence(&mut copy, view.sequence().wrapping_add(1));
        lkr_rtp::set_timestamp(&mut copy, view.timestamp().wrapping_add(90));
        lkr_rtp::set_ssrc(&mut copy, 0x1234_5678);
        lkr_rtp::set_payload_type(&mut copy, ctl & 0x7f);
        lkr_rtp::set_marker(&mut copy, ctl & 0x80 != 0);
        let _ = lkr_rtp::rewrite_extension(&mut copy, ctl & 0x0f, (ctl >> 4).max(1));
        if let Some(ext) = lkr_rtp::extension_mut(&mut copy, ctl & 0x0f) {
            ext.fill(0);
        }
        if let Ok(d) = vp8 {
            let payload = &mut copy[header_len..header_len + payload.len()];
            lkr_rtp::vp8::write_picture_id(payload, &d, u16::from(ctl) << 7);
            lkr_rtp::vp8::write_tl0picidx(payload, &d, ctl);
            lkr_rtp::vp8::write_keyidx(payload, &d, ctl);
        }
        RtpView::parse(&copy).expect("a rewritten packet still parses");
    }
});
