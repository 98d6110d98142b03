//! Offer/answer policy: what this server accepts from a client's offer, and the
//! descriptions it writes (answers to publisher or single-PC offers, subscriber offers).
//!
//! The server is ICE-lite and always the DTLS server (`a=setup:passive` in answers,
//! `actpass` in its own offers, which libwebrtc answers `active`). Downstream media carries
//! the transport-wide sequence number (for the subscriber's congestion feedback, which
//! drives the server's bandwidth estimate), video the playout delay where the room sets one
//! (`room.playout_delay`; the extension is negotiated on every video section), and video gets an
//! RTX stream (RFC 4588) for retransmissions and probe padding where the subscriber takes
//! one. The forwarder writes a fresh RTP header for every packet.

use std::collections::HashMap;

use lkr_sdp::{
    Attribute, Codec, Direction, MediaKind as SdpKind, MediaSection, RidDirection,
    SessionDescription, Setup, TransportLines,
};
use lkr_sfu::{CodecKind, ExtIds, MediaKind};

use lkr_sdp::ext::{
    AUDIO_LEVEL as EXT_AUDIO_LEVEL, MID as EXT_MID, PLAYOUT_DELAY as EXT_PLAYOUT_DELAY,
    REPAIRED_RID as EXT_RRID, RID as EXT_RID, TRANSPORT_CC as EXT_TWCC,
};

/// Most simulcast layers accepted on one published section (LiveKit's q, h, f).
pub const MAX_SIMULCAST_LAYERS: usize = 3;
/// Longest rid accepted: what the RTP stream id header extension carries in its one-byte
/// form (RFC 8285 §4.2); LiveKit's rids are `q`, `h` and `f`.
pub const MAX_RID_LEN: usize = 16;
/// Longest mid accepted in an offer. RFC 8843 mids are short tokens (libwebrtc writes `0`,
/// `1`, …, Firefox `sdparta_0`, …); a mid is kept for each section and in each published
/// track's record.
pub const MAX_MID_LEN: usize = 32;

/// Extensions accepted on a client's sections: from publishers, and the playout delay the
/// server may write on downstream video (`room.playout_delay`).
const ACCEPTED_EXTS: &[&str] = &[
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    EXT_AUDIO_LEVEL,
    EXT_TWCC,
    EXT_PLAYOUT_DELAY,
];

/// A codec as a publisher negotiated it, offered again to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackCodec {
    pub pt: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
}

/// This side of one transport, as written into every m-section.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    pub ufrag: String,
    pub pwd: String,
    /// (`sha-256`, `AB:CD:…`)
    pub fingerprint: (String, String),
    /// Candidate attribute values without `a=` (`candidate:1 1 udp …`).
    pub candidates: Vec<String>,
}

/// The remote side of a transport, read from its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTransport {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: (String, String),
}

/// Reads the remote ICE credentials and fingerprint (session level or first section).
pub fn remote_transport(sd: &SessionDescription) -> Option<RemoteTransport> {
    let m = sd
        .media
        .iter()
        .find(|m| !m.is_rejected())
        .or(sd.media.first())?;
    let fp = sd.fingerprint_for(m)?;
    Some(RemoteTransport {
        ufrag: sd.ice_ufrag_for(m)?.to_string(),
        pwd: sd.ice_pwd_for(m)?.to_string(),
        fingerprint: (fp.algorithm.clone(), fp.value.clone()),
    })
}

fn supported(kind: &SdpKind, c: &Codec) -> bool {
    let n = c.name.to_ascii_lowercase();
    match kind {
        SdpKind::Audio => n == "opus" || n == "red",
        SdpKind::Video => match n.as_str() {
            "vp8" | "vp9" | "av1" => true,
            "h264" => c.fmtp_param("packetization-mode") == Some("1"),
            _ => false,
        },
        _ => false,
    }
}

fn answer_codec(kind: &SdpKind, c: &Codec) -> Codec {
    let wanted: &[&str] = match kind {
        SdpKind::Video => &["nack", "nack pli", "ccm fir", "transport-cc"],
        _ => &["transport-cc"],
    };
    let rtcp_fb = wanted
        .iter()
        .filter(|f| c.has_rtcp_fb(f))
        .map(|f| (*f).to_string())
        .collect();
    Codec {
        rtcp_fb,
        ..c.clone()
    }
}

/// A published m-section of a client offer.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishSection {
    pub mid: String,
    pub kind: MediaKind,
    /// The `a=msid` track id: the client's track id (AddTrackRequest.cid).
    pub msid_track: Option<String>,
    pub rids: Vec<String>,
    pub ssrcs: Vec<u32>,
    pub codecs: Vec<TrackCodec>,
    pub ext: ExtIds,
    /// Accepted retransmission payload types: (rtx pt, the pt it repairs).
    pub rtx: Vec<(u8, u8)>,
    /// (media ssrc, rtx ssrc) from `a=ssrc-group:FID`.
    pub rtx_ssrcs: Vec<(u32, u32)>,
}

/// A receive slot of a client offer (single PC): a recvonly section the server may fill.
#[derive(Debug, Clone, PartialEq)]
pub struct RecvSlot {
    pub mid: String,
    pub kind: MediaKind,
}

/// A downstream track placed in a section.
#[derive(Debug, Clone, PartialEq)]
pub struct DownTrack {
    pub kind: MediaKind,
    /// `PA_…|TR_…`
    pub stream_id: String,
    pub track_sid: String,
    pub ssrc: u32,
    pub cname: String,
    pub codecs: Vec<TrackCodec>,
}

/// What answering an offer produced.
#[derive(Debug, Clone)]
pub struct Answer {
    pub sdp: SessionDescription,
    pub publish: Vec<PublishSection>,
    pub recv_slots: Vec<RecvSlot>,
    /// For each filled slot: the payload types the client will decode, by codec family.
    pub down_payload_types: HashMap<String, Vec<(CodecKind, u8)>>,
    /// For each filled slot: the transport-cc extension and RTX the subscriber takes.
    pub down_extras: HashMap<String, DownExtras>,
}

/// What a subscriber takes on a downstream section beyond the codecs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownExtras {
    /// The transport-wide sequence number extension id (0: not negotiated).
    pub transport_cc: u8,
    /// RTX payload types and the media payload type each repairs.
    pub rtx: Vec<(u8, u8)>,
    /// The playout-delay extension id (0: not negotiated).
    pub playout_delay: u8,
}

/// The extension id this server offers transport-cc under on subscriber sections.
pub const DOWN_TWCC_EXT: u8 = 3;
/// The extension id this server offers the playout delay under on subscriber video sections.
pub const DOWN_PLAYOUT_DELAY_EXT: u8 = 5;

/// The RTX SSRC paired with a downstream media SSRC.
pub fn rtx_ssrc(ssrc: u32) -> u32 {
    ssrc ^ 0x8000_0000
}

/// RTX codecs (RFC 4588) for the video codecs of a section, on payload types it does not
/// use; `(rtx pt, apt)` pairs.
fn rtx_for(codecs: &[Codec]) -> Vec<Codec> {
    let mut used: Vec<u8> = codecs.iter().map(|c| c.pt).collect();
    let mut out = Vec::new();
    for c in codecs {
        if c.name.eq_ignore_ascii_case("rtx") || c.name.eq_ignore_ascii_case("red") {
            continue;
        }
        let Some(pt) = (96..=127u8).find(|p| !used.contains(p)) else {
            break;
        };
        used.push(pt);
        out.push(Codec {
            pt,
            name: "rtx".into(),
            clock_rate: c.clock_rate,
            channels: None,
            fmtp: Some(format!("apt={}", c.pt)),
            rtcp_fb: Vec::new(),
        });
    }
    out
}

/// The transport-cc id and RTX pairs a section negotiated.
fn down_extras(m: &MediaSection) -> DownExtras {
    DownExtras {
        transport_cc: m.extmap_id(EXT_TWCC).unwrap_or(0),
        rtx: m
            .codecs
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case("rtx"))
            .filter_map(|c| c.apt().map(|apt| (c.pt, apt)))
            .collect(),
        playout_delay: m.extmap_id(EXT_PLAYOUT_DELAY).unwrap_or(0),
    }
}

/// Adds the RTX stream of a downstream video track to a section that has RTX codecs.
fn add_down_rtx(m: &mut MediaSection, d: &DownTrack) {
    if d.kind != MediaKind::Video || !m.codecs.iter().any(|c| c.name.eq_ignore_ascii_case("rtx")) {
        return;
    }
    let rtx = rtx_ssrc(d.ssrc);
    let lines: Vec<_> = m
        .ssrcs
        .iter()
        .filter(|l| l.ssrc == d.ssrc)
        .map(|l| lkr_sdp::SsrcLine {
            ssrc: rtx,
            ..l.clone()
        })
        .collect();
    m.ssrcs.extend(lines);
    m.ssrc_groups.push(lkr_sdp::SsrcGroup {
        semantics: "FID".into(),
        ssrcs: vec![d.ssrc, rtx],
    });
}

fn ext_ids(m: &MediaSection) -> ExtIds {
    let id = |u: &str| m.extmap_id(u).unwrap_or(0);
    ExtIds {
        mid: id(EXT_MID),
        rid: id(EXT_RID),
        repaired_rid: id(EXT_RRID),
        audio_level: id(EXT_AUDIO_LEVEL),
        transport_cc: id(EXT_TWCC),
        abs_send_time: 0,
    }
}

fn media_kind(k: &SdpKind) -> Option<MediaKind> {
    match k {
        SdpKind::Audio => Some(MediaKind::Audio),
        SdpKind::Video => Some(MediaKind::Video),
        _ => None,
    }
}

fn to_track_codec(c: &Codec) -> TrackCodec {
    TrackCodec {
        pt: c.pt,
        name: c.name.clone(),
        clock_rate: c.clock_rate,
        channels: c.channels,
        fmtp: c.fmtp.clone(),
    }
}

fn transport_lines(m: &mut MediaSection, local: &LocalTransport, setup: Setup) {
    // The SDP model holds the attribute's value after `candidate:`; ours carry the prefix (as
    // trickled candidates do).
    let bare: Vec<String> = local
        .candidates
        .iter()
        .map(|c| c.strip_prefix("candidate:").unwrap_or(c).to_string())
        .collect();
    m.set_transport(&TransportLines {
        ufrag: &local.ufrag,
        pwd: &local.pwd,
        fingerprint: (&local.fingerprint.0, &local.fingerprint.1),
        ice_options: None,
        candidates: &bare,
        end_of_candidates: true,
        setup,
    });
}

/// The data channel section: SCTP port 5000, 256 KiB messages (libwebrtc's values).
fn data_section(mid: &str) -> MediaSection {
    MediaSection::data_channel(mid, 5000, 262_144)
}

fn add_down(m: &mut MediaSection, d: &DownTrack) {
    m.set_sender(&d.stream_id, &d.track_sid, Some((d.ssrc, &d.cname)));
}

fn session(version: u64, session_id: u64) -> SessionDescription {
    let mut sd = SessionDescription::webrtc(session_id, version);
    sd.ice_lite = true;
    sd
}

/// Answers a client offer (publisher PC, or the single PC). `downs` assigns downstream
/// tracks to the offer's receive slots by mid.
/// `max_layers`: simulcast layers answered per published section (lowest quality first,
/// at most [`MAX_SIMULCAST_LAYERS`]).
pub fn answer_offer(
    offer: &SessionDescription,
    local: &LocalTransport,
    version: u64,
    session_id: u64,
    downs: &HashMap<String, DownTrack>,
    max_layers: usize,
    preferred: &dyn Fn(&MediaSection) -> Option<String>,
) -> Answer {
    let mut sd = session(version, session_id);
    let mut publish = Vec::new();
    let mut recv_slots = Vec::new();
    let mut down_payload_types = HashMap::new();
    let mut down_mids = Vec::new();
    for om in &offer.media {
        let mid = om.mid.clone().unwrap_or_default();
        let mut m = MediaSection::new(om.kind.clone(), om.protocol.clone());
        m.mid = om.mid.clone();
        let rejected = om.is_rejected() || mid.is_empty();
        match (&om.kind, media_kind(&om.kind)) {
            (SdpKind::Application, _) if !rejected => {
                m = data_section(&mid);
                m.protocol = om.protocol.clone();
            }
            (_, Some(kind)) if !rejected => {
                let mut codecs: Vec<&Codec> = om
                    .codecs
                    .iter()
                    .filter(|c| supported(&om.kind, c))
                    .collect();
                let dir = om.direction_or_default();
                // A client sends with the first codec of the answer: the codec its track was
                // announced with goes first (as LiveKit orders its answer), else a browser
                // asked for VP9 or AV1 would send its offer's first codec (VP8).
                if dir.sends()
                    && let Some(name) = preferred(om)
                {
                    codecs.sort_by_key(|c| !c.name.eq_ignore_ascii_case(&name));
                }
                if codecs.is_empty() {
                    m.port = 0;
                    m.formats = om.formats.iter().take(1).cloned().collect();
                    m.direction = Some(Direction::Inactive);
                } else if dir.sends() {
                    for c in &codecs {
                        m.add_codec(answer_codec(&om.kind, c));
                    }
                    // Retransmissions on their own stream (RFC 4588): libwebrtc then sends its
                    // bandwidth probes there too, not as padding on the media stream.
                    let rtx: Vec<(u8, u8)> = om
                        .codecs
                        .iter()
                        .filter(|c| c.name.eq_ignore_ascii_case("rtx"))
                        .filter_map(|c| c.apt().map(|apt| (c.pt, apt)))
                        .filter(|(_, apt)| codecs.iter().any(|c| c.pt == *apt))
                        .collect();
                    for (pt, _) in &rtx {
                        if let Some(c) = om.codec(*pt) {
                            m.add_codec(c.clone());
                        }
                    }
                    m.extmaps = om
                        .extmaps
                        .iter()
                        .filter(|e| ACCEPTED_EXTS.contains(&e.uri.as_str()))
                        .cloned()
                        .collect();
                    m.direction = Some(if dir == Direction::SendRecv {
                        // Nothing is sent back on a publishing section.
                        Direction::RecvOnly
                    } else {
                        dir.reversed()
                    });
                    let mut rids: Vec<String> = om
                        .rids
                        .iter()
                        .filter(|r| r.direction == RidDirection::Send)
                        .map(|r| r.id.clone())
                        .collect();
                    // Lowest quality first: LiveKit's q/h/f, or the numeric 0/1/2 space.
                    let rank = |r: &String| match r.as_str() {
                        "q" | "0" => 0,
                        "h" | "1" => 1,
                        "f" | "2" => 2,
                        _ => 3,
                    };
                    // At most three layers of well-formed, distinct rids (RFC 8851 rid-ids are
                    // short tokens): a layer costs the core real memory.
                    rids.retain(|r| {
                        !r.is_empty()
                            && r.len() <= MAX_RID_LEN
                            && r.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                    rids.sort_by_key(rank);
                    rids.dedup();
                    rids.truncate(max_layers.clamp(1, MAX_SIMULCAST_LAYERS));
                    if !rids.is_empty() {
                        m.set_simulcast(&rids, RidDirection::Recv);
                    }
                    publish.push(PublishSection {
                        mid: mid.clone(),
                        kind,
                        msid_track: om.msid.as_ref().map(|x| x.track.clone()),
                        rids,
                        ssrcs: om.primary_ssrcs(),
                        codecs: codecs.iter().map(|c| to_track_codec(c)).collect(),
                        ext: ext_ids(&m),
                        rtx_ssrcs: om
                            .ssrc_groups
                            .iter()
                            .filter(|g| g.semantics == "FID" && g.ssrcs.len() == 2)
                            .map(|g| (g.ssrcs[0], g.ssrcs[1]))
                            .collect(),
                        rtx,
                    });
                } else if dir.receives() {
                    recv_slots.push(RecvSlot {
                        mid: mid.clone(),
                        kind,
                    });
                    match downs.get(&mid).filter(|d| d.kind == kind) {
                        Some(d) => {
                            let mut pts = Vec::new();
                            for tc in &d.codecs {
                                if let Some(c) = codecs
                                    .iter()
                                    .find(|c| c.name.eq_ignore_ascii_case(&tc.name))
                                {
                                    if !m.codecs.iter().any(|x| x.pt == c.pt) {
                                        m.add_codec(answer_codec(&om.kind, c));
                                    }
                                    pts.push((CodecKind::from_name(&c.name), c.pt));
                                }
                            }
                            if m.codecs.is_empty() {
                                m.add_codec(answer_codec(&om.kind, codecs[0]));
                                m.direction = Some(Direction::Inactive);
                            } else {
                                if kind == MediaKind::Video {
                                    let rtx: Vec<Codec> = om
                                        .codecs
                                        .iter()
                                        .filter(|c| c.name.eq_ignore_ascii_case("rtx"))
                                        .filter(|c| {
                                            c.apt()
                                                .is_some_and(|a| m.codecs.iter().any(|x| x.pt == a))
                                        })
                                        .cloned()
                                        .collect();
                                    for c in rtx {
                                        m.add_codec(c);
                                    }
                                }
                                add_down(&mut m, d);
                                add_down_rtx(&mut m, d);
                                down_payload_types.insert(mid.clone(), pts);
                                down_mids.push(mid.clone());
                            }
                        }
                        None => {
                            for c in &codecs {
                                m.add_codec(answer_codec(&om.kind, c));
                            }
                            m.direction = Some(Direction::Inactive);
                        }
                    }
                } else {
                    for c in &codecs {
                        m.add_codec(answer_codec(&om.kind, c));
                    }
                    m.direction = Some(Direction::Inactive);
                }
            }
            _ => m = MediaSection::rejecting(om),
        }
        if m.port != 0 {
            m.rtcp_mux = true;
            if m.kind != SdpKind::Application {
                m.rtcp_rsize = true;
                // Echo the accepted extensions on every section: libwebrtc keeps later offers
                // of a BUNDLE group within what the answers negotiated.
                m.extmaps = om
                    .extmaps
                    .iter()
                    .filter(|e| ACCEPTED_EXTS.contains(&e.uri.as_str()))
                    .cloned()
                    .collect();
            }
            transport_lines(&mut m, local, Setup::Passive);
            sd.bundle_mids.push(mid);
        }
        sd.media.push(m);
    }
    let down_extras = down_mids
        .into_iter()
        .filter_map(|mid| {
            let m = sd
                .media
                .iter()
                .find(|m| m.mid.as_deref() == Some(mid.as_str()))?;
            Some((mid, down_extras(m)))
        })
        .collect();
    Answer {
        sdp: sd,
        publish,
        recv_slots,
        down_payload_types,
        down_extras,
    }
}

/// One section of a server offer on the subscriber PC.
#[derive(Debug, Clone, PartialEq)]
pub enum OfferSection {
    Data {
        mid: String,
    },
    /// A media section; `None` once its track is gone (written inactive).
    Media {
        mid: String,
        kind: MediaKind,
        track: Option<DownTrack>,
    },
}

/// Writes a subscriber-PC offer.
pub fn subscriber_offer(
    local: &LocalTransport,
    version: u64,
    session_id: u64,
    sections: &[OfferSection],
) -> SessionDescription {
    let mut sd = session(version, session_id);
    for s in sections {
        let (mid, mut m) = match s {
            OfferSection::Data { mid } => (mid.clone(), data_section(mid)),
            OfferSection::Media { mid, kind, track } => {
                let sk = match kind {
                    MediaKind::Audio => SdpKind::Audio,
                    MediaKind::Video => SdpKind::Video,
                };
                let mut m = MediaSection::rtp(sk, mid);
                match track {
                    Some(d) => {
                        for c in &d.codecs {
                            let rtcp_fb = match kind {
                                MediaKind::Video => vec![
                                    "nack".into(),
                                    "nack pli".into(),
                                    "ccm fir".into(),
                                    "transport-cc".into(),
                                ],
                                MediaKind::Audio => vec!["transport-cc".into()],
                            };
                            m.add_codec(Codec {
                                pt: c.pt,
                                name: c.name.clone(),
                                clock_rate: c.clock_rate,
                                channels: c.channels,
                                fmtp: c.fmtp.clone(),
                                rtcp_fb,
                            });
                        }
                        if *kind == MediaKind::Video {
                            for c in rtx_for(&m.codecs) {
                                m.add_codec(c);
                            }
                        }
                        m.extmaps.push(lkr_sdp::ExtMap {
                            id: DOWN_TWCC_EXT,
                            direction: None,
                            uri: EXT_TWCC.into(),
                            params: None,
                        });
                        if *kind == MediaKind::Video {
                            m.extmaps.push(lkr_sdp::ExtMap {
                                id: DOWN_PLAYOUT_DELAY_EXT,
                                direction: None,
                                uri: EXT_PLAYOUT_DELAY.into(),
                                params: None,
                            });
                        }
                        add_down(&mut m, d);
                        add_down_rtx(&mut m, d);
                    }
                    None => {
                        let c = match kind {
                            MediaKind::Audio => Codec {
                                pt: 111,
                                name: "opus".into(),
                                clock_rate: 48000,
                                channels: Some(2),
                                ..Default::default()
                            },
                            MediaKind::Video => Codec {
                                pt: 96,
                                name: "VP8".into(),
                                clock_rate: 90000,
                                ..Default::default()
                            },
                        };
                        m.add_codec(c);
                        m.direction = Some(Direction::Inactive);
                    }
                }
                (mid.clone(), m)
            }
        };
        transport_lines(&mut m, local, Setup::ActPass);
        m.rtcp_mux = true;
        sd.bundle_mids.push(mid);
        sd.media.push(m);
    }
    sd
}

/// From a subscriber answer: for each mid, the payload types the client accepted.
pub fn accepted_payload_types(
    answer: &SessionDescription,
) -> HashMap<String, Vec<(CodecKind, u8)>> {
    answer
        .media
        .iter()
        .filter(|m| !m.is_rejected())
        .filter_map(|m| {
            let mid = m.mid.clone()?;
            let pts = m
                .codecs
                .iter()
                .map(|c| (CodecKind::from_name(&c.name), c.pt))
                .filter(|(k, _)| *k != CodecKind::Other)
                .collect();
            Some((mid, pts))
        })
        .collect()
}

/// From a subscriber answer: for each mid, the transport-cc extension and RTX it took.
pub fn accepted_down_extras(answer: &SessionDescription) -> HashMap<String, DownExtras> {
    answer
        .media
        .iter()
        .filter(|m| !m.is_rejected())
        .filter_map(|m| Some((m.mid.clone()?, down_extras(m))))
        .collect()
}

/// An `a=` attribute list entry, for callers adding their own lines.
pub fn attribute(key: &str, value: &str) -> Attribute {
    Attribute::new(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=setup:actpass\r\na=mid:0\r\na=recvonly\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
a=fingerprint:sha-256 E8:66:77:C1:E0:05:E7:03:7A:38:87:FE:E3:28:0E:9A:91:3B:FF:A9:DB:50:98:43:FB:29:1E:D8:CD:DF:57:55\r\n\
a=rtcp-mux\r\na=rtcp-rsize\r\n";

    fn local() -> LocalTransport {
        LocalTransport {
            ufrag: "srv1".into(),
            pwd: "serverpasswordserverpw".into(),
            fingerprint: ("sha-256".into(), "AA:BB".into()),
            candidates: vec![],
        }
    }

    fn down() -> DownTrack {
        DownTrack {
            kind: MediaKind::Video,
            stream_id: "PA_x|TR_y".into(),
            track_sid: "TR_y".into(),
            ssrc: 0x1234_5678,
            cname: "PA_x".into(),
            codecs: vec![TrackCodec {
                pt: 96,
                name: "VP8".into(),
                clock_rate: 90000,
                channels: None,
                fmtp: None,
            }],
        }
    }

    #[test]
    fn single_pc_answer_sends_rtx_and_transport_cc_on_downstream_video() {
        let offer = lkr_sdp::parse(OFFER).unwrap();
        let downs = HashMap::from([("0".to_string(), down())]);
        let a = answer_offer(
            &offer,
            &local(),
            1,
            1,
            &downs,
            MAX_SIMULCAST_LAYERS,
            &|_| None,
        );
        let text = a.sdp.write();
        let rtx = rtx_ssrc(0x1234_5678);
        for line in [
            "a=rtpmap:97 rtx/90000".to_string(),
            "a=fmtp:97 apt=96".to_string(),
            "a=rtcp-fb:96 transport-cc".to_string(),
            format!("a=ssrc-group:FID {} {rtx}", 0x1234_5678u32),
            format!("a=ssrc:{rtx} cname:PA_x"),
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
                .to_string(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert_eq!(
            a.down_extras.get("0"),
            Some(&DownExtras {
                transport_cc: 3,
                rtx: vec![(97, 96)],
                playout_delay: 0,
            })
        );
    }

    /// A browser's publishing section: VP8 first, as Chromium offers it.
    const SEND_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 45\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\n\
a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\na=rtpmap:45 AV1/90000\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=msid:s1 cam1\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
a=fingerprint:sha-256 E8:66:77:C1:E0:05:E7:03:7A:38:87:FE:E3:28:0E:9A:91:3B:FF:A9:DB:50:98:43:FB:29:1E:D8:CD:DF:57:55\r\n\
a=rtcp-mux\r\na=rtcp-rsize\r\n";

    #[test]
    fn the_announced_codec_is_answered_first_and_published() {
        let offer = lkr_sdp::parse(SEND_OFFER).unwrap();
        let first = |a: &Answer| a.sdp.media[0].formats.first().cloned();
        let plain = answer_offer(&offer, &local(), 1, 1, &HashMap::new(), 3, &|_| None);
        assert_eq!(first(&plain).as_deref(), Some("96"));
        assert_eq!(plain.publish[0].codecs[0].name, "VP8");
        for (want, pt) in [("vp9", "98"), ("AV1", "45")] {
            let asked = |m: &MediaSection| {
                (m.msid.as_ref().map(|x| x.track.as_str()) == Some("cam1"))
                    .then(|| want.to_string())
            };
            let a = answer_offer(&offer, &local(), 1, 1, &HashMap::new(), 3, &asked);
            assert_eq!(first(&a).as_deref(), Some(pt), "{}", a.sdp.write());
            assert!(a.publish[0].codecs[0].name.eq_ignore_ascii_case(want));
            // The other codecs stay, in the offer's order.
            assert_eq!(a.publish[0].codecs.len(), 3);
        }
    }

    #[test]
    fn subscriber_offer_offers_rtx_and_transport_cc_and_reads_what_the_answer_took() {
        let sections = [OfferSection::Media {
            mid: "1".into(),
            kind: MediaKind::Video,
            track: Some(down()),
        }];
        let sd = subscriber_offer(&local(), 1, 1, &sections);
        let text = sd.write();
        let rtx = rtx_ssrc(0x1234_5678);
        assert!(text.contains("a=rtpmap:97 rtx/90000"), "{text}");
        assert!(text.contains("a=fmtp:97 apt=96"), "{text}");
        assert!(
            text.contains(&format!("a=ssrc-group:FID {} {rtx}", 0x1234_5678u32)),
            "{text}"
        );
        assert!(text.contains("a=rtcp-fb:96 transport-cc"), "{text}");
        assert!(
            text.contains(&format!("a=extmap:{DOWN_TWCC_EXT} {EXT_TWCC}")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "a=extmap:{DOWN_PLAYOUT_DELAY_EXT} {EXT_PLAYOUT_DELAY}"
            )),
            "{text}"
        );
        // An answer that keeps RTX and the extensions.
        let extras = accepted_down_extras(&sd);
        assert_eq!(
            extras.get("1"),
            Some(&DownExtras {
                transport_cc: DOWN_TWCC_EXT,
                rtx: vec![(97, 96)],
                playout_delay: DOWN_PLAYOUT_DELAY_EXT,
            })
        );
    }
}
