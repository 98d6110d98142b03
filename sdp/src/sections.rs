//! Section writers that both roles share: the server's answers and subscriber offers (in
//! `lkr-room`) and our own client's offers and answers (in `lkr-client`) build their
//! sections from these, so that one WebRTC section shape is written in one place. They set
//! fields of the model; which sections exist, with which codecs and directions, stays the
//! callers' policy.

use crate::model::{
    Direction, Fingerprint, MediaKind, MediaSection, Msid, Rid, RidDirection, SessionDescription,
    Setup, Simulcast, SimulcastId, SsrcLine,
};

/// The RTP profile of every WebRTC media section (RFC 8829 §5.1.2).
pub const RTP_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";
/// The protocol of the data channel section (RFC 8841 §4.1).
pub const SCTP_PROTOCOL: &str = "UDP/DTLS/SCTP";

/// One side's transport as written into each of its sections (RFC 8839, RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLines<'a> {
    /// `a=ice-ufrag`.
    pub ufrag: &'a str,
    /// `a=ice-pwd`.
    pub pwd: &'a str,
    /// `a=fingerprint`: the hash function (`sha-256`) and the `AB:CD:…` value.
    pub fingerprint: (&'a str, &'a str),
    /// `a=ice-options`, e.g. `trickle`.
    pub ice_options: Option<&'a str>,
    /// `a=candidate` values, written as given after `a=candidate:`.
    pub candidates: &'a [String],
    /// Whether to write `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// `a=setup`: `actpass` in offers, `active` or `passive` in answers.
    pub setup: Setup,
}

impl SessionDescription {
    /// An empty description as WebRTC endpoints write them: the origin's session id and
    /// version, `a=msid-semantic: WMS *`, no sections yet.
    pub fn webrtc(session_id: u64, version: u64) -> Self {
        let mut sd = SessionDescription::default();
        sd.origin.session_id = session_id;
        sd.origin.session_version = version;
        sd.msid_semantic = Some("WMS *".into());
        sd
    }
}

impl MediaSection {
    /// An RTP section (`UDP/TLS/RTP/SAVPF`) with its mid, `a=rtcp-mux` and `a=rtcp-rsize`;
    /// codecs, extensions and direction are the caller's.
    pub fn rtp(kind: MediaKind, mid: &str) -> Self {
        let mut m = MediaSection::new(kind, RTP_PROTOCOL);
        m.mid = Some(mid.to_owned());
        m.rtcp_mux = true;
        m.rtcp_rsize = true;
        m
    }

    /// The data channel section (`m=application 9 UDP/DTLS/SCTP webrtc-datachannel`,
    /// RFC 8841) with its SCTP port and largest message.
    pub fn data_channel(mid: &str, sctp_port: u16, max_message_size: u32) -> Self {
        let mut m = MediaSection::new(MediaKind::Application, SCTP_PROTOCOL);
        m.formats = vec!["webrtc-datachannel".into()];
        m.mid = Some(mid.to_owned());
        m.sctp_port = Some(sctp_port);
        m.max_message_size = Some(max_message_size);
        m
    }

    /// The answer to an offered section we do not take: port 0, the offered formats, and
    /// `a=inactive` (RFC 8829 §5.3.1).
    pub fn rejecting(offered: &MediaSection) -> Self {
        let mut m = MediaSection::new(offered.kind.clone(), offered.protocol.clone());
        m.mid = offered.mid.clone();
        m.port = 0;
        m.formats = offered.formats.clone();
        m.direction = Some(Direction::Inactive);
        m
    }

    /// Writes our transport lines into the section: ICE credentials and options, the
    /// fingerprint, the setup role, candidates, and `c=IN IP4 0.0.0.0`.
    pub fn set_transport(&mut self, t: &TransportLines<'_>) {
        self.ice_ufrag = Some(t.ufrag.to_owned());
        self.ice_pwd = Some(t.pwd.to_owned());
        self.ice_options = t.ice_options.map(str::to_owned);
        self.fingerprint = Some(Fingerprint {
            algorithm: t.fingerprint.0.to_owned(),
            value: t.fingerprint.1.to_owned(),
        });
        self.setup = Some(t.setup);
        self.connection = Some("IN IP4 0.0.0.0".into());
        self.candidates = t.candidates.to_vec();
        self.end_of_candidates = t.end_of_candidates;
    }

    /// Makes the section send one stream: `a=sendonly`, `a=msid:<stream> <track>`, and for
    /// a stream with a known SSRC its `cname` and `msid` lines (RFC 5576, RFC 8830).
    pub fn set_sender(&mut self, stream: &str, track: &str, ssrc: Option<(u32, &str)>) {
        self.direction = Some(Direction::SendOnly);
        self.msid = Some(Msid {
            stream: stream.to_owned(),
            track: track.to_owned(),
        });
        if let Some((ssrc, cname)) = ssrc {
            self.ssrcs = vec![
                SsrcLine {
                    ssrc,
                    attribute: "cname".into(),
                    value: Some(cname.to_owned()),
                },
                SsrcLine {
                    ssrc,
                    attribute: "msid".into(),
                    value: Some(format!("{stream} {track}")),
                },
            ];
        }
    }

    /// Announces simulcast layers by rid, in the given order (RFC 8851 `a=rid`, RFC 8853
    /// `a=simulcast`): `Send` in an offer that sends them, `Recv` in an answer that takes
    /// them.
    pub fn set_simulcast(&mut self, rids: &[String], direction: RidDirection) {
        self.rids = rids
            .iter()
            .map(|r| Rid {
                id: r.clone(),
                direction,
                params: None,
            })
            .collect();
        let streams = rids
            .iter()
            .map(|r| {
                vec![SimulcastId {
                    rid: r.clone(),
                    paused: false,
                }]
            })
            .collect();
        self.simulcast = Some(match direction {
            RidDirection::Send => Simulcast {
                send: streams,
                recv: Vec::new(),
            },
            RidDirection::Recv => Simulcast {
                send: Vec::new(),
                recv: streams,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn transport(candidates: &[String]) -> TransportLines<'_> {
        TransportLines {
            ufrag: "uf",
            pwd: "passwordpasswordpassword",
            fingerprint: ("sha-256", "AB:CD"),
            ice_options: Some("trickle"),
            candidates,
            end_of_candidates: true,
            setup: Setup::ActPass,
        }
    }

    #[test]
    fn sections_write_the_lines_webrtc_expects() {
        let mut sd = SessionDescription::webrtc(7, 3);
        let cands = vec!["1 1 udp 2130706431 192.0.2.1 7882 typ host".to_owned()];
        let mut data = MediaSection::data_channel("0", 5000, 262_144);
        data.set_transport(&transport(&cands));
        let mut audio = MediaSection::rtp(MediaKind::Audio, "1");
        audio.set_sender("PA_a|TR_b", "TR_b", Some((42, "PA_a")));
        audio.set_transport(&TransportLines {
            ice_options: None,
            end_of_candidates: false,
            setup: Setup::Passive,
            ..transport(&[])
        });
        let mut video = MediaSection::rtp(MediaKind::Video, "2");
        video.set_sender("s", "cid", None);
        video.set_simulcast(&["q".into(), "h".into()], RidDirection::Send);
        sd.media = vec![data, audio, video];
        let text = sd.write();
        for line in [
            "o=- 7 3 IN IP4 127.0.0.1",
            "a=msid-semantic: WMS *",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "a=candidate:1 1 udp 2130706431 192.0.2.1 7882 typ host",
            "a=end-of-candidates",
            "a=ice-options:trickle",
            "a=fingerprint:sha-256 AB:CD",
            "a=setup:actpass",
            "a=sctp-port:5000",
            "a=max-message-size:262144",
            "m=audio 9 UDP/TLS/RTP/SAVPF",
            "a=setup:passive",
            "a=sendonly",
            "a=msid:PA_a|TR_b TR_b",
            "a=ssrc:42 cname:PA_a",
            "a=ssrc:42 msid:PA_a|TR_b TR_b",
            "a=rid:q send",
            "a=simulcast:send q;h",
        ] {
            assert!(
                text.contains(&format!("{line}\r\n")),
                "{line} missing:\n{text}"
            );
        }
        assert_eq!(text.matches("a=ice-options").count(), 1, "{text}");
        assert_eq!(text.matches("a=end-of-candidates").count(), 1, "{text}");
        assert_eq!(text.matches("a=rtcp-mux").count(), 2, "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back, sd);
        assert_eq!(back.media[2].primary_ssrcs(), Vec::<u32>::new());
    }

    #[test]
    fn simulcast_in_an_answer_receives_and_rejections_keep_the_offer_formats() {
        let mut m = MediaSection::rtp(MediaKind::Video, "1");
        m.set_simulcast(&["q".into(), "f".into()], RidDirection::Recv);
        assert!(m.rids.iter().all(|r| r.direction == RidDirection::Recv));
        let sc = m.simulcast.as_ref().unwrap();
        assert!(sc.send.is_empty());
        assert_eq!(sc.recv.len(), 2);

        let mut offered = MediaSection::rtp(MediaKind::Video, "4");
        offered.formats = vec!["96".into(), "97".into()];
        let r = MediaSection::rejecting(&offered);
        assert!(r.is_rejected());
        assert_eq!(r.mid.as_deref(), Some("4"));
        assert_eq!(r.formats, offered.formats);
        assert_eq!(r.direction, Some(Direction::Inactive));
        assert!(!r.rtcp_mux);
    }
}
