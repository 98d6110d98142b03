//! The server's answer path: a parsed client offer through
//! `lkr_room::negotiation::answer_offer` (publish sections, receive slots for subscribed
//! tracks), the answer written and read back; and a parsed client answer through
//! `accepted_payload_types`, as the subscriber side reads it.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lkr_room::negotiation::{
    DownTrack, LocalTransport, MAX_SIMULCAST_LAYERS, TrackCodec, accepted_payload_types,
    answer_offer, remote_transport,
};
use lkr_sfu::MediaKind;

fn local() -> &'static LocalTransport {
    static LOCAL: OnceLock<LocalTransport> = OnceLock::new();
    LOCAL.get_or_init(|| LocalTransport {
        ufrag: "lufr".into(),
        pwd: "local-password-0123456789".into(),
        fingerprint: ("sha-256".into(), ["AB"; 32].join(":")),
        candidates: vec!["candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host".into()],
    })
}

/// Subscribed tracks waiting for a receive slot, by the mid they would take.
fn downs() -> &'static HashMap<String, DownTrack> {
    static DOWNS: OnceLock<HashMap<String, DownTrack>> = OnceLock::new();
    DOWNS.get_or_init(|| {
        let audio = TrackCodec {
            pt: 111,
            name: "opus".into(),
            clock_rate: 48_000,
            channels: Some(2),
            fmtp: Some("minptime=10;useinbandfec=1".into()),
        };
        let video = TrackCodec {
            pt: 96,
            name: "VP8".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None,
        };
        (0..4)
            .map(|i| {
                let (kind, codec) = if i % 2 == 0 {
                    (MediaKind::Audio, audio.clone())
                } else {
                    (MediaKind::Video, video.clone())
                };
                (
                    i.to_string(),
                    DownTrack {
                        kind,
                        stream_id: format!("PA_x|TR_{i}"),
                        track_sid: format!("TR_{i}"),
                        ssrc: 1000 + i,
                        cname: "cname".into(),
                        codecs: vec![codec],
                    },
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = lkr_sdp::parse(text) else {
        return;
    };
    let _ = remote_transport(&offer);
    // A section with a track id prefers VP9, as a track announced with it would.
    let prefer = |m: &lkr_sdp::MediaSection| m.msid.as_ref().map(|_| "VP9".to_string());
    let answer = answer_offer(
        &offer,
        local(),
        2,
        42,
        downs(),
        MAX_SIMULCAST_LAYERS,
        &prefer,
    );
    let _ = (answer.publish.len(), answer.recv_slots.len());
    let written = answer.sdp.write();
    if let Ok(back) = lkr_sdp::parse(&written) {
        let _ = accepted_payload_types(&back);
    }
    // The same text as the client's answer to a subscriber offer.
    let _ = accepted_payload_types(&offer);
});
