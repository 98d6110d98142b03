//! The descriptions this client writes (offers on the publisher or single PC, answers on the
//! dual-PC subscriber PC) and what it reads from the server's (transport parameters,
//! candidates, and the downstream tracks each section carries).
//!
//! Offers follow what the server expects (see `room/src/negotiation.rs`): one BUNDLE group,
//! `rtcp-mux`, the mid and rid header extensions, Opus and VP8/VP9/AV1, `a=msid` whose track
//! id is the AddTrackRequest `cid`, `a=setup:actpass`. A published track's section is
//! `sendonly` with one codec; simulcast layers are announced with `a=rid` and
//! `a=simulcast:send` (RFC 8851, RFC 8853), a single layer with `a=ssrc`. The sections are
//! built with the section writers of `lkr-sdp`, the same ones the server's answers use.

use std::collections::HashMap;
use std::net::SocketAddr;

use lkr_sdp::{
    Codec as SdpCodec, Direction, ExtMap, MediaKind as SdpKind, MediaSection, RidDirection,
    SessionDescription, Setup, TransportLines,
};

use crate::ClientError;
use crate::codec::{Codec, MediaKind};
use crate::peer::RemoteParams;
use crate::rtp_out::{EXT_ID_MID, EXT_ID_RID};

pub use lkr_sdp::ext::{MID as EXT_MID, RID as EXT_RID};

/// Our side of a transport, written into every section.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
    /// `sha-256` and the `AB:CD:…` value.
    pub fingerprint: (String, String),
    /// Our host candidate line (`candidate:…`), if we know our address.
    pub candidate: Option<String>,
}

/// One section of an offer we write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferSection {
    /// The data channel section.
    Data {
        /// Its mid.
        mid: String,
    },
    /// A published track.
    Send {
        /// Its mid.
        mid: String,
        /// The codec it is sent with.
        codec: Codec,
        /// `a=msid` stream id.
        stream: String,
        /// `a=msid` track id: the AddTrackRequest cid.
        cid: String,
        /// One SSRC per simulcast layer, lowest first.
        ssrcs: Vec<u32>,
        /// The simulcast rids, lowest first; empty for a single layer.
        rids: Vec<String>,
    },
    /// A receive slot the server may fill with a downstream track.
    Receive {
        /// Its mid.
        mid: String,
        /// Audio or video.
        kind: MediaKind,
    },
}

/// Our transport lines: trickle ICE, and our host candidate (then the end of candidates)
/// once we know our address.
fn transport_lines(m: &mut MediaSection, local: &LocalTransport, setup: Setup) {
    let candidates: Vec<String> = local
        .candidate
        .iter()
        .map(|c| c.strip_prefix("candidate:").unwrap_or(c).to_owned())
        .collect();
    m.set_transport(&TransportLines {
        ufrag: &local.ufrag,
        pwd: &local.pwd,
        fingerprint: (&local.fingerprint.0, &local.fingerprint.1),
        ice_options: Some("trickle"),
        end_of_candidates: !candidates.is_empty(),
        candidates: &candidates,
        setup,
    });
}

fn data_section(mid: &str) -> MediaSection {
    MediaSection::data_channel(
        mid,
        lkr_datachannel::SCTP_PORT,
        lkr_datachannel::MAX_MESSAGE_SIZE,
    )
}

fn sdp_kind(kind: MediaKind) -> SdpKind {
    match kind {
        MediaKind::Audio => SdpKind::Audio,
        MediaKind::Video => SdpKind::Video,
    }
}

fn extmaps(video: bool) -> Vec<ExtMap> {
    let mut v = vec![ExtMap {
        id: EXT_ID_MID,
        direction: None,
        uri: EXT_MID.into(),
        params: None,
    }];
    if video {
        v.push(ExtMap {
            id: EXT_ID_RID,
            direction: None,
            uri: EXT_RID.into(),
            params: None,
        });
    }
    v
}

fn rtp_section(kind: MediaKind, mid: &str) -> MediaSection {
    let mut m = MediaSection::rtp(sdp_kind(kind), mid);
    m.extmaps = extmaps(kind == MediaKind::Video);
    m
}

/// Writes an offer for the publisher PC (dual) or the single PC.
pub fn offer(
    local: &LocalTransport,
    session_id: u64,
    version: u64,
    sections: &[OfferSection],
) -> SessionDescription {
    let mut sd = SessionDescription::webrtc(session_id, version);
    for s in sections {
        let mut m = match s {
            OfferSection::Data { mid } => data_section(mid),
            OfferSection::Receive { mid, kind } => {
                let mut m = rtp_section(*kind, mid);
                let codecs: &[Codec] = match kind {
                    MediaKind::Audio => &[Codec::Opus],
                    MediaKind::Video => &Codec::VIDEO_RECEIVE,
                };
                for c in codecs {
                    m.add_codec(c.sdp_codec(c.payload_type()));
                }
                m.direction = Some(Direction::RecvOnly);
                m
            }
            OfferSection::Send {
                mid,
                codec,
                stream,
                cid,
                ssrcs,
                rids,
            } => {
                let kind = if codec.is_audio() {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let mut m = rtp_section(kind, mid);
                m.add_codec(codec.sdp_codec(codec.payload_type()));
                // A single layer names its SSRC; simulcast layers go by rid.
                let single =
                    (rids.len() <= 1).then(|| ssrcs.first().map(|&s| (s, stream.as_str())));
                m.set_sender(stream, cid, single.flatten());
                if rids.len() > 1 {
                    m.set_simulcast(rids, RidDirection::Send);
                }
                m
            }
        };
        transport_lines(&mut m, local, Setup::ActPass);
        if let Some(mid) = &m.mid {
            sd.bundle_mids.push(mid.clone());
        }
        sd.media.push(m);
    }
    sd
}

/// Answers a server offer on the dual-PC subscriber PC: every media section is received with
/// the codecs we know (keeping the server's payload types), the data section is accepted, and
/// we take the DTLS client role (`a=setup:active`).
pub fn answer(
    offer: &SessionDescription,
    local: &LocalTransport,
    session_id: u64,
    version: u64,
) -> SessionDescription {
    let mut sd = SessionDescription::webrtc(session_id, version);
    for om in &offer.media {
        let mid = om.mid.clone().unwrap_or_default();
        let mut m = MediaSection::new(om.kind.clone(), om.protocol.clone());
        m.mid = om.mid.clone();
        let known: Vec<&SdpCodec> = om
            .codecs
            .iter()
            .filter(|c| Codec::from_name(&c.name).is_some())
            .collect();
        let accept = !om.is_rejected() && !mid.is_empty();
        match om.kind {
            SdpKind::Application if accept => {
                m = data_section(&mid);
                m.protocol = om.protocol.clone();
            }
            SdpKind::Audio | SdpKind::Video if accept && !known.is_empty() => {
                for c in &known {
                    if let Some(codec) = Codec::from_name(&c.name) {
                        let mut answered = codec.sdp_codec(c.pt);
                        answered.fmtp = c.fmtp.clone();
                        answered.channels = c.channels;
                        m.add_codec(answered);
                    }
                }
                let dir = om.direction_or_default();
                m.direction = Some(if dir.sends() {
                    Direction::RecvOnly
                } else {
                    Direction::Inactive
                });
                m.rtcp_mux = true;
                m.rtcp_rsize = true;
            }
            _ => {
                sd.media.push(MediaSection::rejecting(om));
                continue;
            }
        }
        transport_lines(&mut m, local, Setup::Active);
        sd.bundle_mids.push(mid);
        sd.media.push(m);
    }
    sd
}

/// The server's ICE credentials and DTLS fingerprint.
pub fn remote_params(sd: &SessionDescription) -> Result<RemoteParams, ClientError> {
    let m = sd
        .media
        .iter()
        .find(|m| !m.is_rejected())
        .or(sd.media.first())
        .ok_or_else(|| ClientError::Sdp("no media sections".into()))?;
    let ufrag = sd
        .ice_ufrag_for(m)
        .ok_or_else(|| ClientError::Sdp("no a=ice-ufrag".into()))?;
    let pwd = sd
        .ice_pwd_for(m)
        .ok_or_else(|| ClientError::Sdp("no a=ice-pwd".into()))?;
    let fp = sd
        .fingerprint_for(m)
        .ok_or_else(|| ClientError::Sdp("no a=fingerprint".into()))?;
    let fingerprint = lkr_dtls_glue::cert::Fingerprint::parse(&fp.algorithm, &fp.value)
        .map_err(|e| ClientError::Sdp(e.to_string()))?;
    Ok(RemoteParams {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
        fingerprint,
    })
}

/// The UDP addresses of the candidates in the description.
pub fn remote_candidates(sd: &SessionDescription) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for m in &sd.media {
        for c in m.parsed_candidates().flatten() {
            if let Some(addr) = candidate_address(&c)
                && !out.contains(&addr)
            {
                out.push(addr);
            }
        }
    }
    out
}

/// The address of a UDP candidate with a literal IP.
pub fn candidate_address(c: &lkr_sdp::Candidate) -> Option<SocketAddr> {
    if !c.is_udp() {
        return None;
    }
    let ip: std::net::IpAddr = c.address.parse().ok()?;
    Some(SocketAddr::new(ip, c.port))
}

/// A section of a server description that sends us a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSection {
    /// Its mid.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRCs the server sends on it.
    pub ssrcs: Vec<u32>,
    /// The track sid (`TR_…`): the msid track id, else `mid_to_track_id`.
    pub track_sid: Option<String>,
    /// The msid stream id (`PA_…|TR_…`).
    pub stream: Option<String>,
    /// Payload types and their codecs.
    pub payload_types: Vec<(u8, Codec)>,
}

/// The sections of a server description (its single-PC answer or its subscriber offer) on
/// which the server sends media.
pub fn incoming_sections(
    sd: &SessionDescription,
    mid_to_track_id: &HashMap<String, String>,
) -> Vec<IncomingSection> {
    sd.media
        .iter()
        .filter(|m| !m.is_rejected() && m.direction_or_default().sends())
        .filter_map(|m| {
            let kind = match m.kind {
                SdpKind::Audio => MediaKind::Audio,
                SdpKind::Video => MediaKind::Video,
                _ => return None,
            };
            let mid = m.mid.clone()?;
            let track_sid = m
                .msid
                .as_ref()
                .map(|x| x.track.clone())
                .filter(|t| t.starts_with("TR"))
                .or_else(|| mid_to_track_id.get(&mid).cloned());
            Some(IncomingSection {
                kind,
                ssrcs: m.primary_ssrcs(),
                track_sid,
                stream: m.msid.as_ref().map(|x| x.stream.clone()),
                payload_types: m
                    .codecs
                    .iter()
                    .filter_map(|c| Some((c.pt, Codec::from_name(&c.name)?)))
                    .collect(),
                mid,
            })
        })
        .collect()
}

/// The payload type the answer kept for `codec` on section `mid`.
pub fn answered_payload_type(answer: &SessionDescription, mid: &str, codec: Codec) -> Option<u8> {
    answer
        .media_by_mid(mid)
        .filter(|m| !m.is_rejected())?
        .codec_by_name(codec.sdp_name())
        .map(|c| c.pt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalTransport {
        LocalTransport {
            ufrag: "abcd".into(),
            pwd: "passwordpasswordpassword".into(),
            fingerprint: ("sha-256".into(), "AB:CD".into()),
            candidate: Some("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into()),
        }
    }

    #[test]
    fn offer_has_what_the_server_expects() {
        let sd = offer(
            &local(),
            1,
            2,
            &[
                OfferSection::Data { mid: "0".into() },
                OfferSection::Send {
                    mid: "1".into(),
                    codec: Codec::Opus,
                    stream: "s".into(),
                    cid: "cid-a".into(),
                    ssrcs: vec![42],
                    rids: vec![],
                },
                OfferSection::Send {
                    mid: "2".into(),
                    codec: Codec::Vp8,
                    stream: "s".into(),
                    cid: "cid-v".into(),
                    ssrcs: vec![1, 2, 3],
                    rids: vec!["q".into(), "h".into(), "f".into()],
                },
                OfferSection::Receive {
                    mid: "3".into(),
                    kind: MediaKind::Video,
                },
            ],
        );
        let text = sd.write();
        let back = lkr_sdp::parse(&text).unwrap();
        assert_eq!(back.bundle_mids, ["0", "1", "2", "3"]);
        let a = back.media_by_mid("1").unwrap();
        assert_eq!(a.direction, Some(Direction::SendOnly));
        assert_eq!(a.msid.as_ref().unwrap().track, "cid-a");
        assert_eq!(a.primary_ssrcs(), vec![42]);
        assert!(a.rtcp_mux);
        assert_eq!(a.extmap_id(EXT_MID), Some(EXT_ID_MID));
        let v = back.media_by_mid("2").unwrap();
        assert_eq!(v.rids.len(), 3);
        assert_eq!(
            v.simulcast.as_ref().unwrap().send_rids().count(),
            3,
            "{text}"
        );
        assert_eq!(v.extmap_id(EXT_RID), Some(EXT_ID_RID));
        let r = back.media_by_mid("3").unwrap();
        assert_eq!(r.direction, Some(Direction::RecvOnly));
        assert!(r.codec_by_name("VP9").is_some() && r.codec_by_name("AV1").is_some());
        assert_eq!(back.media[0].setup, Some(Setup::ActPass));
        assert_eq!(
            remote_candidates(&back),
            vec!["127.0.0.1:5000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn answers_a_subscriber_offer_and_reads_its_tracks() {
        let server = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=ice-lite\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:srv\r\n\
a=ice-pwd:serverpasswordserverpass\r\na=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\na=sctp-port:5000\r\na=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host generation 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
a=msid:PA_x|TR_y TR_y\r\na=ssrc:77 cname:PA_x\r\n";
        let offer = lkr_sdp::parse(server).unwrap();
        let ans = answer(&offer, &local(), 5, 1);
        let back = lkr_sdp::parse(&ans.write()).unwrap();
        assert_eq!(back.media.len(), 2);
        assert_eq!(back.media[1].direction, Some(Direction::RecvOnly));
        assert_eq!(back.media[1].setup, Some(Setup::Active));
        assert_eq!(back.media[1].codec_by_name("VP8").map(|c| c.pt), Some(96));
        let p = remote_params(&offer).unwrap();
        assert_eq!(p.ufrag, "srv");
        assert_eq!(
            remote_candidates(&offer),
            vec!["127.0.0.1:7882".parse::<SocketAddr>().unwrap()]
        );
        let inc = incoming_sections(&offer, &HashMap::new());
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].track_sid.as_deref(), Some("TR_y"));
        assert_eq!(inc[0].ssrcs, vec![77]);
        assert_eq!(inc[0].payload_types, vec![(96, Codec::Vp8)]);
    }
}
