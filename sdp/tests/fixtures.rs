//! Offers captured from real LiveKit clients (and one hand-written Chromium simulcast
//! offer), parsed and checked field by field.

use lkr_sdp::{
    Attribute, Direction, Limit, MediaKind, RidDirection, SessionDescription, Setup, SimulcastId,
    parse, parse_candidate,
};

const PY_DATA: &str = include_str!("data/python_datachannel_offer.sdp");
const BROWSER_DATA: &str = include_str!("data/browser_datachannel_offer.sdp");
const PY_SPC: &str = include_str!("data/python_single_pc_offer.sdp");
const NODE_SPC: &str = include_str!("data/node_single_pc_offer.sdp");
const BROWSER_SPC: &str = include_str!("data/browser_single_pc_offer.sdp");
const CHROME_SIMULCAST: &str = include_str!("data/chrome_simulcast_offer.sdp");

const ALL: [(&str, &str); 6] = [
    ("python data", PY_DATA),
    ("browser data", BROWSER_DATA),
    ("python single pc", PY_SPC),
    ("node single pc", NODE_SPC),
    ("browser single pc", BROWSER_SPC),
    ("chrome simulcast", CHROME_SIMULCAST),
];

const TWCC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const MID_EXT: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_EXT: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const RRID_EXT: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

fn mids(sd: &SessionDescription) -> Vec<&str> {
    sd.media.iter().filter_map(|m| m.mid.as_deref()).collect()
}

fn pts(m: &lkr_sdp::MediaSection) -> Vec<u8> {
    m.codecs.iter().map(|c| c.pt).collect()
}

#[test]
fn python_data_channel_offer() {
    let sd = parse(PY_DATA).unwrap();
    assert_eq!(sd.origin.session_id, 338240522994876377);
    assert_eq!(sd.origin.session_version, 2);
    assert_eq!(sd.origin.address, "127.0.0.1");
    assert_eq!(sd.session_name, "-");
    assert_eq!(sd.bundle_mids, ["0"]);
    assert!(sd.extmap_allow_mixed);
    assert!(!sd.ice_lite);
    assert_eq!(sd.msid_semantic.as_deref(), Some("WMS"));
    assert!(sd.other.is_empty());
    assert_eq!(sd.media.len(), 1);

    let m = &sd.media[0];
    assert_eq!(m.kind, MediaKind::Application);
    assert_eq!(m.port, 9);
    assert_eq!(m.protocol, "UDP/DTLS/SCTP");
    assert_eq!(m.formats, ["webrtc-datachannel"]);
    assert_eq!(m.connection.as_deref(), Some("IN IP4 0.0.0.0"));
    assert_eq!(m.mid.as_deref(), Some("0"));
    assert_eq!(m.direction, None);
    assert_eq!(m.ice_ufrag.as_deref(), Some("rT8r"));
    assert_eq!(m.ice_pwd.as_deref(), Some("qUybEFFV06vFloHrjjVa25LV"));
    assert_eq!(m.ice_options.as_deref(), Some("trickle goog-sped-v1"));
    let fp = m.fingerprint.as_ref().unwrap();
    assert_eq!(fp.algorithm, "sha-256");
    let bytes = fp.bytes().unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(&bytes[..3], &[0x11, 0x17, 0x5e]);
    assert_eq!(bytes[31], 0x44);
    assert_eq!(m.setup, Some(Setup::ActPass));
    assert_eq!(m.sctp_port, Some(5000));
    assert_eq!(m.max_message_size, Some(262144));
    assert!(m.codecs.is_empty() && m.extmaps.is_empty() && m.candidates.is_empty());
    assert_eq!(
        m.other,
        vec![Attribute::new(
            "sctp-init",
            "AQAAHssM6gcAUAAA/////yQgIYbAAAAEgAgABoLA"
        )]
    );
    assert_eq!(sd.ice_ufrag_for(m), Some("rT8r"));
    assert_eq!(sd.setup_for(m), Some(Setup::ActPass));
}

#[test]
fn browser_data_channel_offer() {
    let sd = parse(BROWSER_DATA).unwrap();
    assert_eq!(sd.origin.session_id, 5923590207499644389);
    assert_eq!(sd.bundle_mids, ["0"]);
    // written with two spaces by the browser
    assert_eq!(sd.msid_semantic.as_deref(), Some("WMS"));
    let m = &sd.media[0];
    assert_eq!(m.kind, MediaKind::Application);
    assert_eq!(m.mid.as_deref(), Some("0"));
    assert_eq!(m.ice_ufrag.as_deref(), Some("z/E2"));
    assert_eq!(m.ice_options.as_deref(), Some("trickle"));
    assert_eq!(m.setup, Some(Setup::ActPass));
    assert_eq!(
        m.fingerprint.as_ref().unwrap().value,
        "20:7F:38:B4:75:ED:72:E9:CE:54:16:21:81:B8:FA:EE:4C:36:B1:96:FD:9B:AD:58:FC:99:F8:6B:0E:18:CC:E3"
    );
    assert_eq!(m.sctp_port, Some(5000));
    assert_eq!(m.max_message_size, Some(262144));
    assert!(m.other.is_empty());
}

/// The libwebrtc-based SDKs (Python, Node) send the same single-PC offer shape: three
/// recvonly audio, three recvonly video, one data section.
fn check_libwebrtc_single_pc(sd: &SessionDescription, ufrag: &str) {
    assert_eq!(sd.bundle_mids, ["0", "1", "2", "3", "4", "5", "6"]);
    assert_eq!(mids(sd), ["0", "1", "2", "3", "4", "5", "6"]);
    let kinds: Vec<&MediaKind> = sd.media.iter().map(|m| &m.kind).collect();
    use MediaKind::{Application as D, Audio as A, Video as V};
    assert_eq!(kinds, [&A, &A, &A, &V, &V, &V, &D]);
    for m in &sd.media[..6] {
        assert_eq!(m.direction, Some(Direction::RecvOnly));
        assert_eq!(m.protocol, "UDP/TLS/RTP/SAVPF");
        assert!(m.rtcp_mux && m.rtcp_rsize);
        assert_eq!(m.rtcp.as_deref(), Some("9 IN IP4 0.0.0.0"));
        assert_eq!(m.ice_ufrag.as_deref(), Some(ufrag));
        assert_eq!(m.setup, Some(Setup::ActPass));
        assert_eq!(m.fingerprint.as_ref().unwrap().bytes().unwrap().len(), 32);
        assert_eq!(m.extmap_id(TWCC), Some(3));
        assert_eq!(m.extmap_id(MID_EXT), Some(4));
        assert!(m.ssrcs.is_empty() && m.msid.is_none() && m.simulcast.is_none());
        assert!(m.other.is_empty(), "{:?}", m.other);
    }

    for a in &sd.media[..3] {
        assert_eq!(pts(a), [111, 63, 9, 0, 8, 13, 110, 126]);
        let opus = a.codec(111).unwrap();
        assert_eq!(opus.name, "opus");
        assert_eq!(opus.clock_rate, 48000);
        assert_eq!(opus.channels, Some(2));
        assert_eq!(opus.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
        assert_eq!(opus.fmtp_param("useinbandfec"), Some("1"));
        assert_eq!(opus.rtcp_fb, ["transport-cc"]);
        assert_eq!(a.codec(63).unwrap().fmtp.as_deref(), Some("111/111"));
        assert_eq!(a.codec(0).unwrap().name, "PCMU");
        assert_eq!(a.codec(126).unwrap().name, "telephone-event");
        assert_eq!(a.codec(126).unwrap().clock_rate, 8000);
        assert_eq!(a.extmap_id(AUDIO_LEVEL), Some(1));
        assert_eq!(a.extmaps.len(), 4);
    }

    for v in &sd.media[3..6] {
        assert_eq!(
            pts(v),
            [
                96, 97, 103, 104, 107, 108, 109, 114, 115, 116, 117, 118, 39, 40, 45, 46, 98, 99,
                100, 101, 119, 120, 121
            ]
        );
        let vp8 = v.codec(96).unwrap();
        assert_eq!(
            (vp8.name.as_str(), vp8.clock_rate, vp8.channels),
            ("VP8", 90000, None)
        );
        assert_eq!(
            vp8.rtcp_fb,
            ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
        );
        assert_eq!(vp8.fmtp, None);
        assert_eq!(v.rtx_for(96), Some(97));
        assert_eq!(v.rtx_for(103), Some(104));
        assert_eq!(v.rtx_for(45), Some(46));
        assert_eq!(v.rtx_for(119), Some(120));
        assert_eq!(v.rtx_for(121), None);
        let h264 = v.codec(109).unwrap();
        assert_eq!(h264.name, "H264");
        assert_eq!(h264.fmtp_param("profile-level-id"), Some("42e01f"));
        assert_eq!(h264.fmtp_param("packetization-mode"), Some("1"));
        assert_eq!(v.codec(45).unwrap().name, "AV1");
        assert_eq!(v.codec(100).unwrap().fmtp.as_deref(), Some("profile-id=2"));
        assert!(v.codec(97).unwrap().rtcp_fb.is_empty());
        assert_eq!(v.extmap_id(RID_EXT), Some(10));
        assert_eq!(v.extmap_id(RRID_EXT), Some(11));
        assert_eq!(v.extmap_id("urn:3gpp:video-orientation"), Some(13));
        assert_eq!(v.extmaps.len(), 11);
    }

    let d = &sd.media[6];
    assert_eq!(d.direction, None);
    assert_eq!(d.sctp_port, Some(5000));
    assert_eq!(d.max_message_size, Some(262144));
    assert!(!d.rtcp_mux);
}

#[test]
fn python_single_pc_offer() {
    let sd = parse(PY_SPC).unwrap();
    check_libwebrtc_single_pc(&sd, "ycV6");
    assert_eq!(
        sd.media[0].ice_options.as_deref(),
        Some("trickle goog-sped-v1")
    );
    assert_eq!(sd.media[6].other[0].key, "sctp-init");
}

#[test]
fn node_single_pc_offer() {
    let sd = parse(NODE_SPC).unwrap();
    check_libwebrtc_single_pc(&sd, "+UId");
    assert_eq!(sd.media[0].ice_options.as_deref(), Some("trickle"));
}

#[test]
fn libwebrtc_offers_are_written_back_byte_for_byte() {
    // The writer follows libwebrtc's attribute order, so its own offers come back unchanged.
    for text in [PY_DATA, PY_SPC, NODE_SPC, CHROME_SIMULCAST] {
        let sd = parse(text).unwrap();
        assert_eq!(sd.write(), text);
    }
}

#[test]
fn browser_single_pc_offer() {
    let sd = parse(BROWSER_SPC).unwrap();
    assert_eq!(mids(&sd), ["0", "1", "2", "3", "4", "5", "6"]);
    assert_eq!(sd.bundle_mids, mids(&sd));
    assert_eq!(sd.msid_semantic.as_deref(), Some("WMS"));
    for (i, m) in sd.media.iter().enumerate() {
        let expected = match i {
            0..=2 => MediaKind::Audio,
            3..=5 => MediaKind::Video,
            _ => MediaKind::Application,
        };
        assert_eq!(m.kind, expected);
        assert_eq!(m.ice_ufrag.as_deref(), Some("fIs1"));
        assert_eq!(m.ice_pwd.as_deref(), Some("57/ZX+gaJ1VFvCqP7yKVHNKu"));
        assert_eq!(m.setup, Some(Setup::ActPass));
        if i < 6 {
            assert_eq!(m.direction, Some(Direction::RecvOnly));
            assert_eq!(m.other, vec![Attribute::new("rtcp-xr", "rcvr-rtt=all")]);
        }
    }
    let audio = &sd.media[0];
    assert_eq!(pts(audio), [111, 63, 9, 0, 8, 13, 110, 126]);
    assert_eq!(audio.codec(111).unwrap().rtcp_fb, ["transport-cc"]);

    let video = &sd.media[3];
    assert_eq!(video.codecs.len(), 34);
    assert_eq!(video.codecs[0].name, "VP8");
    assert_eq!(video.rtx_for(96), Some(97));
    assert_eq!(video.rtx_for(35), Some(36));
    assert_eq!(video.rtx_for(102), Some(103));
    assert_eq!(video.rtx_for(47), Some(48));
    assert_eq!(
        video.codec(35).unwrap().fmtp.as_deref(),
        Some("profile-id=1")
    );
    let flexfec = video.codec(49).unwrap();
    assert_eq!(flexfec.name, "flexfec-03");
    assert_eq!(flexfec.fmtp.as_deref(), Some("repair-window=10000000"));
    assert_eq!(flexfec.rtcp_fb, ["goog-remb", "transport-cc"]);
    assert_eq!(
        video.extmap_id(
            "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
        ),
        Some(12)
    );
    assert_eq!(video.extmap_id(TWCC), Some(3));
    let data = &sd.media[6];
    assert_eq!(data.sctp_port, Some(5000));
    assert!(data.other.is_empty());
}

#[test]
fn chrome_simulcast_offer() {
    let sd = parse(CHROME_SIMULCAST).unwrap();
    assert_eq!(sd.bundle_mids, ["0", "1"]);
    assert_eq!(
        sd.msid_semantic.as_deref(),
        Some("WMS 9a3e7c52-1f4b-4c8e-a1d2-5b6f7e8d9c0a")
    );

    let audio = &sd.media[0];
    assert_eq!(audio.direction, Some(Direction::SendOnly));
    let msid = audio.msid.as_ref().unwrap();
    assert_eq!(msid.stream, "9a3e7c52-1f4b-4c8e-a1d2-5b6f7e8d9c0a");
    assert_eq!(msid.track, "6c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e");
    assert_eq!(audio.primary_ssrcs(), [3735928559]);
    assert_eq!(
        audio.ssrc_attribute(3735928559, "cname"),
        Some("QbZ4n1sVxR8kPm2L")
    );
    assert_eq!(audio.codec(111).unwrap().fmtp_param("usedtx"), Some("1"));
    assert_eq!(audio.candidates.len(), 2);
    assert!(audio.end_of_candidates);
    let cands: Vec<_> = audio.parsed_candidates().map(Result::unwrap).collect();
    assert_eq!(cands[0].typ, "host");
    assert_eq!(cands[0].address, "192.168.1.10");
    assert_eq!(cands[0].port, 56143);
    assert_eq!(cands[1].transport, "tcp");
    assert_eq!(cands[1].related, Some(("192.168.1.10".to_owned(), 9)));
    assert_eq!(cands[1].extension("tcptype"), Some("active"));
    assert_eq!(
        parse_candidate(&audio.candidates[1]).unwrap().to_string(),
        format!("candidate:{}", audio.candidates[1])
    );

    let video = &sd.media[1];
    assert_eq!(video.direction, Some(Direction::SendOnly));
    assert_eq!(pts(video), [96, 97, 45, 46]);
    assert_eq!(video.rtx_for(45), Some(46));
    assert!(video.ssrcs.is_empty());
    let rids: Vec<(&str, RidDirection)> = video
        .rids
        .iter()
        .map(|r| (r.id.as_str(), r.direction))
        .collect();
    assert_eq!(
        rids,
        [
            ("q", RidDirection::Send),
            ("h", RidDirection::Send),
            ("f", RidDirection::Send)
        ]
    );
    assert!(video.rids.iter().all(|r| r.params.is_none()));
    let sc = video.simulcast.as_ref().unwrap();
    let id = |rid: &str| {
        vec![SimulcastId {
            rid: rid.to_owned(),
            paused: false,
        }]
    };
    assert_eq!(sc.send, vec![id("q"), id("h"), id("f")]);
    assert!(sc.recv.is_empty());
    let send: Vec<&str> = sc.send_rids().map(|s| s.rid.as_str()).collect();
    assert_eq!(send, ["q", "h", "f"]);
    assert_eq!(video.extmap_id(RID_EXT), Some(10));
}

#[test]
fn every_fixture_round_trips() {
    for (name, text) in ALL {
        let first = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = first.write();
        assert!(written.ends_with("\r\n"), "{name}");
        assert!(
            written.split("\r\n").all(|l| !l.contains('\n')),
            "{name}: bare LF in output"
        );
        let second = parse(&written).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(first, second, "{name}");
        assert_eq!(second.write(), written, "{name}: writer not stable");
        // LF-only input reads the same
        let lf = text.replace("\r\n", "\n");
        assert_eq!(parse(&lf).unwrap(), first, "{name}");
        // Display and FromStr agree with write/parse
        assert_eq!(first.to_string(), written);
        assert_eq!(written.parse::<SessionDescription>().unwrap(), first);
    }
}

/// Every captured offer parses, and fills no capped list past a quarter of its cap: the caps
/// leave real clients (a browser's 34-codec video section with 77 rtcp-fb values included)
/// room to grow.
#[test]
fn every_fixture_stays_far_below_the_caps() {
    let quarter = |limit: Limit| limit.max() / 4;
    for (name, text) in ALL {
        let sd = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut counts = vec![
            (Limit::MediaSections, sd.media.len()),
            (Limit::BundleMids, sd.bundle_mids.len()),
            (Limit::SessionAttributes, sd.other.len()),
            (Limit::SessionLines, sd.extra_lines.len()),
        ];
        for m in &sd.media {
            let mut ssrcs: Vec<u32> = m.ssrcs.iter().map(|l| l.ssrc).collect();
            ssrcs.extend(m.ssrc_groups.iter().flat_map(|g| g.ssrcs.iter().copied()));
            ssrcs.sort_unstable();
            ssrcs.dedup();
            counts.extend([
                (Limit::Formats, m.formats.len()),
                (Limit::Candidates, m.candidates.len()),
                (Limit::ExtMaps, m.extmaps.len()),
                (
                    Limit::Fmtps,
                    m.codecs.iter().filter(|c| c.fmtp.is_some()).count(),
                ),
                (
                    Limit::RtcpFbPerSection,
                    m.codecs.iter().map(|c| c.rtcp_fb.len()).sum(),
                ),
                (Limit::Ssrcs, ssrcs.len()),
                (Limit::SsrcLines, m.ssrcs.len()),
                (Limit::SsrcGroups, m.ssrc_groups.len()),
                (Limit::Rids, m.rids.len()),
                (Limit::Attributes, m.other.len()),
                (Limit::Lines, m.extra_lines.len()),
            ]);
            counts.extend(
                m.codecs
                    .iter()
                    .map(|c| (Limit::RtcpFbPerCodec, c.rtcp_fb.len())),
            );
            counts.extend(
                m.codecs
                    .iter()
                    .flat_map(|c| &c.rtcp_fb)
                    .map(|v| (Limit::RtcpFbValueLength, v.len())),
            );
            counts.extend(
                m.ssrc_groups
                    .iter()
                    .map(|g| (Limit::SsrcGroupMembers, g.ssrcs.len())),
            );
            if let Some(sc) = &m.simulcast {
                for list in [&sc.send, &sc.recv] {
                    let rids = list.iter().map(Vec::len).sum();
                    counts.push((Limit::SimulcastRids, rids));
                }
            }
        }
        for (limit, n) in counts {
            assert!(n <= quarter(limit), "{name}: {n} against {limit}");
        }
    }
}
