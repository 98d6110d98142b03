//! SDP: the session description parser (client offers and answers), the writer on what it
//! parsed, the ICE candidate parser, and the accessors the server reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = lkr_sdp::parse_candidate(text);
    let _ = lkr_sdp::parse_candidate(text.strip_prefix("a=").unwrap_or(text));
    let Ok(sd) = lkr_sdp::parse(text) else {
        return;
    };
    for m in &sd.media {
        let _ = sd.ice_ufrag_for(m);
        let _ = sd.ice_pwd_for(m);
        if let Some(fp) = sd.fingerprint_for(m) {
            let _ = fp.bytes();
        }
        let _ = sd.setup_for(m);
        let _ = m.is_rejected();
        let _ = m.direction_or_default();
        if let Some(sim) = &m.simulcast {
            let _ = sim.send_rids().count();
            let _ = sim.recv_rids().count();
        }
        for c in &m.codecs {
            let _ = c.fmtp_params().count();
            let _ = c.apt();
            let _ = c.has_rtcp_fb("nack");
        }
        if let Some(mid) = &m.mid {
            let _ = sd.is_bundled(mid);
            let _ = sd.media_by_mid(mid);
        }
    }
    let _ = lkr_room::negotiation::remote_transport(&sd);
    let written = sd.write();
    let _ = lkr_sdp::parse(&written);
});
