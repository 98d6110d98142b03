//! Writing a session description: CRLF lines in RFC 8866 §5 order, attributes in the order
//! libwebrtc writes them, kept lines in their places.

use std::fmt::{self, Write};

use crate::model::{
    Codec, MediaSection, RawLine, SessionDescription, Simulcast, SimulcastId, media_line_rank,
    session_line_rank,
};

impl SessionDescription {
    /// The description as SDP text with CRLF line ends.
    pub fn write(&self) -> String {
        let mut out = String::with_capacity(1024 + 2048 * self.media.len());
        self.write_to(&mut out)
            .expect("fmt::Write for String never returns an error");
        out
    }

    /// Writes the description into any [`fmt::Write`] sink.
    pub fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        let o = &self.origin;
        let addr_type = if o.address.contains(':') {
            "IP6"
        } else {
            "IP4"
        };
        w.write_str("v=0\r\n")?;
        write!(
            w,
            "o={} {} {} IN {addr_type} {}\r\n",
            o.username, o.session_id, o.session_version, o.address
        )?;
        write!(w, "s={}\r\n", self.session_name)?;
        let rank = |l: &RawLine| session_line_rank(l.letter);
        for r in 1..=6 {
            raw_lines(w, &self.extra_lines, |l| rank(l) == r)?;
        }
        write!(w, "t={} {}\r\n", self.timing.start, self.timing.stop)?;
        for r in 8..=11 {
            raw_lines(w, &self.extra_lines, |l| rank(l) == r)?;
        }

        if !self.bundle_mids.is_empty() {
            w.write_str("a=group:BUNDLE")?;
            for mid in &self.bundle_mids {
                write!(w, " {mid}")?;
            }
            w.write_str("\r\n")?;
        }
        if self.ice_lite {
            w.write_str("a=ice-lite\r\n")?;
        }
        value_line(w, "ice-ufrag", self.ice_ufrag.as_deref())?;
        value_line(w, "ice-pwd", self.ice_pwd.as_deref())?;
        value_line(w, "ice-options", self.ice_options.as_deref())?;
        if let Some(fp) = &self.fingerprint {
            write!(w, "a=fingerprint:{} {}\r\n", fp.algorithm, fp.value)?;
        }
        if let Some(s) = self.setup {
            write!(w, "a=setup:{s}\r\n")?;
        }
        if self.extmap_allow_mixed {
            w.write_str("a=extmap-allow-mixed\r\n")?;
        }
        if let Some(v) = &self.msid_semantic {
            write!(w, "a=msid-semantic: {v}\r\n")?;
        }
        attributes(w, &self.other)?;
        for m in &self.media {
            write_media(w, m)?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl std::str::FromStr for SessionDescription {
    type Err = crate::SdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::parse(s)
    }
}

fn raw_lines<W: Write>(
    w: &mut W,
    lines: &[RawLine],
    pick: impl Fn(&RawLine) -> bool,
) -> fmt::Result {
    for l in lines.iter().filter(|l| pick(l)) {
        write!(w, "{}={}\r\n", l.letter, l.value)?;
    }
    Ok(())
}

fn value_line<W: Write>(w: &mut W, key: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => write!(w, "a={key}:{v}\r\n"),
        None => Ok(()),
    }
}

fn attributes<W: Write>(w: &mut W, attrs: &[crate::Attribute]) -> fmt::Result {
    for a in attrs {
        match &a.value {
            Some(v) => write!(w, "a={}:{v}\r\n", a.key)?,
            None => write!(w, "a={}\r\n", a.key)?,
        }
    }
    Ok(())
}

fn write_media<W: Write>(w: &mut W, m: &MediaSection) -> fmt::Result {
    write!(w, "m={} {} {}", m.kind, m.port, m.protocol)?;
    for f in &m.formats {
        write!(w, " {f}")?;
    }
    w.write_str("\r\n")?;
    let rank = |l: &RawLine| media_line_rank(l.letter);
    raw_lines(w, &m.extra_lines, |l| rank(l) == 1)?;
    value_prefixed(w, "c=", m.connection.as_deref())?;
    for r in 2..=5 {
        raw_lines(w, &m.extra_lines, |l| rank(l) == r)?;
    }

    value_line(w, "rtcp", m.rtcp.as_deref())?;
    for c in &m.candidates {
        write!(w, "a=candidate:{c}\r\n")?;
    }
    if m.end_of_candidates {
        w.write_str("a=end-of-candidates\r\n")?;
    }
    value_line(w, "ice-ufrag", m.ice_ufrag.as_deref())?;
    value_line(w, "ice-pwd", m.ice_pwd.as_deref())?;
    value_line(w, "ice-options", m.ice_options.as_deref())?;
    if let Some(fp) = &m.fingerprint {
        write!(w, "a=fingerprint:{} {}\r\n", fp.algorithm, fp.value)?;
    }
    if let Some(s) = m.setup {
        write!(w, "a=setup:{s}\r\n")?;
    }
    value_line(w, "mid", m.mid.as_deref())?;
    for e in &m.extmaps {
        write!(w, "a=extmap:{}", e.id)?;
        if let Some(d) = e.direction {
            write!(w, "/{d}")?;
        }
        write!(w, " {}", e.uri)?;
        if let Some(p) = &e.params {
            write!(w, " {p}")?;
        }
        w.write_str("\r\n")?;
    }
    if let Some(d) = m.direction {
        write!(w, "a={d}\r\n")?;
    }
    if let Some(msid) = &m.msid {
        if msid.track.is_empty() {
            write!(w, "a=msid:{}\r\n", msid.stream)?;
        } else {
            write!(w, "a=msid:{} {}\r\n", msid.stream, msid.track)?;
        }
    }
    if m.rtcp_mux {
        w.write_str("a=rtcp-mux\r\n")?;
    }
    if m.rtcp_rsize {
        w.write_str("a=rtcp-rsize\r\n")?;
    }
    for c in &m.codecs {
        write_codec(w, c)?;
    }
    for g in &m.ssrc_groups {
        write!(w, "a=ssrc-group:{}", g.semantics)?;
        for s in &g.ssrcs {
            write!(w, " {s}")?;
        }
        w.write_str("\r\n")?;
    }
    for s in &m.ssrcs {
        match &s.value {
            Some(v) => write!(w, "a=ssrc:{} {}:{v}\r\n", s.ssrc, s.attribute)?,
            None => write!(w, "a=ssrc:{} {}\r\n", s.ssrc, s.attribute)?,
        }
    }
    for r in &m.rids {
        write!(w, "a=rid:{} {}", r.id, r.direction.as_str())?;
        if let Some(p) = &r.params {
            write!(w, " {p}")?;
        }
        w.write_str("\r\n")?;
    }
    if let Some(sc) = &m.simulcast {
        write_simulcast(w, sc)?;
    }
    if let Some(p) = m.sctp_port {
        write!(w, "a=sctp-port:{p}\r\n")?;
    }
    if let Some(s) = m.max_message_size {
        write!(w, "a=max-message-size:{s}\r\n")?;
    }
    attributes(w, &m.other)
}

fn value_prefixed<W: Write>(w: &mut W, prefix: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => write!(w, "{prefix}{v}\r\n"),
        None => Ok(()),
    }
}

fn write_codec<W: Write>(w: &mut W, c: &Codec) -> fmt::Result {
    write!(w, "a=rtpmap:{} {}/{}", c.pt, c.name, c.clock_rate)?;
    if let Some(ch) = c.channels {
        write!(w, "/{ch}")?;
    }
    w.write_str("\r\n")?;
    for fb in &c.rtcp_fb {
        write!(w, "a=rtcp-fb:{} {fb}\r\n", c.pt)?;
    }
    if let Some(f) = &c.fmtp {
        write!(w, "a=fmtp:{} {f}\r\n", c.pt)?;
    }
    Ok(())
}

fn write_simulcast<W: Write>(w: &mut W, sc: &Simulcast) -> fmt::Result {
    fn list<W: Write>(w: &mut W, streams: &[Vec<SimulcastId>]) -> fmt::Result {
        for (i, alts) in streams.iter().enumerate() {
            if i > 0 {
                w.write_char(';')?;
            }
            for (j, id) in alts.iter().enumerate() {
                if j > 0 {
                    w.write_char(',')?;
                }
                if id.paused {
                    w.write_char('~')?;
                }
                w.write_str(&id.rid)?;
            }
        }
        Ok(())
    }
    w.write_str("a=simulcast:")?;
    if !sc.send.is_empty() {
        w.write_str("send ")?;
        list(w, &sc.send)?;
    }
    if !sc.recv.is_empty() {
        if !sc.send.is_empty() {
            w.write_char(' ')?;
        }
        w.write_str("recv ")?;
        list(w, &sc.recv)?;
    }
    w.write_str("\r\n")
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::{parse, parse_candidate};

    fn answer() -> SessionDescription {
        let fingerprint = Fingerprint::from_bytes("sha-256", &[0xab; 4]);
        let mut data = MediaSection::new(MediaKind::Application, "UDP/DTLS/SCTP");
        data.formats = vec!["webrtc-datachannel".into()];
        data.connection = Some("IN IP4 0.0.0.0".into());
        data.mid = Some("0".into());
        data.ice_ufrag = Some("srvU".into());
        data.ice_pwd = Some("srvPasswordPasswordPass".into());
        data.fingerprint = Some(fingerprint.clone());
        data.setup = Some(Setup::Passive);
        data.sctp_port = Some(5000);
        data.max_message_size = Some(65536);
        let cand = parse_candidate("candidate:1 1 udp 2130706431 192.0.2.1 7882 typ host").unwrap();
        data.candidates = vec![cand.to_string()["candidate:".len()..].to_owned()];
        data.end_of_candidates = true;

        let mut video = MediaSection::new(MediaKind::Video, "UDP/TLS/RTP/SAVPF");
        video.connection = Some("IN IP4 0.0.0.0".into());
        video.mid = Some("1".into());
        video.ice_ufrag = Some("srvU".into());
        video.ice_pwd = Some("srvPasswordPasswordPass".into());
        video.fingerprint = Some(fingerprint);
        video.setup = Some(Setup::Passive);
        video.direction = Some(Direction::SendOnly);
        video.rtcp_mux = true;
        video.rtcp_rsize = true;
        video.extmaps = vec![ExtMap {
            id: 4,
            direction: None,
            uri: "urn:ietf:params:rtp-hdrext:sdes:mid".into(),
            params: None,
        }];
        video.add_codec(Codec {
            pt: 96,
            name: "VP8".into(),
            clock_rate: 90000,
            channels: None,
            fmtp: None,
            rtcp_fb: vec!["nack".into(), "nack pli".into(), "transport-cc".into()],
        });
        video.add_codec(Codec {
            pt: 97,
            name: "rtx".into(),
            clock_rate: 90000,
            channels: None,
            fmtp: Some("apt=96".into()),
            rtcp_fb: Vec::new(),
        });
        video.msid = Some(Msid {
            stream: "PA_abc".into(),
            track: "TR_xyz".into(),
        });
        video.ssrc_groups = vec![SsrcGroup {
            semantics: "FID".into(),
            ssrcs: vec![1111, 2222],
        }];
        let line = |ssrc, attribute: &str, value: &str| SsrcLine {
            ssrc,
            attribute: attribute.into(),
            value: Some(value.into()),
        };
        video.ssrcs = vec![
            line(1111, "cname", "PA_abc"),
            line(1111, "msid", "PA_abc TR_xyz"),
            line(2222, "cname", "PA_abc"),
            line(2222, "msid", "PA_abc TR_xyz"),
        ];

        SessionDescription {
            origin: Origin {
                username: "-".into(),
                session_id: 4611731400430051336,
                session_version: 2,
                address: "127.0.0.1".into(),
            },
            bundle_mids: vec!["0".into(), "1".into()],
            ice_lite: true,
            msid_semantic: Some("WMS".into()),
            media: vec![data, video],
            ..SessionDescription::default()
        }
    }

    #[test]
    fn hand_built_answer_exact_lines() {
        let text = answer().write();
        let expected = [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1",
            "a=ice-lite",
            "a=msid-semantic: WMS",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            "a=candidate:1 1 udp 2130706431 192.0.2.1 7882 typ host",
            "a=end-of-candidates",
            "a=ice-ufrag:srvU",
            "a=ice-pwd:srvPasswordPasswordPass",
            "a=fingerprint:sha-256 AB:AB:AB:AB",
            "a=setup:passive",
            "a=mid:0",
            "a=sctp-port:5000",
            "a=max-message-size:65536",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "c=IN IP4 0.0.0.0",
            "a=ice-ufrag:srvU",
            "a=ice-pwd:srvPasswordPasswordPass",
            "a=fingerprint:sha-256 AB:AB:AB:AB",
            "a=setup:passive",
            "a=mid:1",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendonly",
            "a=msid:PA_abc TR_xyz",
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack",
            "a=rtcp-fb:96 nack pli",
            "a=rtcp-fb:96 transport-cc",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=ssrc-group:FID 1111 2222",
            "a=ssrc:1111 cname:PA_abc",
            "a=ssrc:1111 msid:PA_abc TR_xyz",
            "a=ssrc:2222 cname:PA_abc",
            "a=ssrc:2222 msid:PA_abc TR_xyz",
            "",
        ]
        .join("\r\n");
        assert_eq!(text, expected);
        let back = parse(&text).unwrap();
        assert_eq!(back, answer());
        let video = back.media_by_mid("1").unwrap();
        assert_eq!(video.primary_ssrcs(), [1111]);
        assert_eq!(video.rtx_for(96), Some(97));
        assert_eq!(video.rtx_ssrc_for(1111), Some(2222));
    }

    #[test]
    fn session_and_media_extras_in_rfc_order() {
        let mut sd = SessionDescription {
            origin: Origin {
                address: "::1".into(),
                ..Origin::default()
            },
            timing: Timing { start: 5, stop: 6 },
            extmap_allow_mixed: true,
            ice_ufrag: Some("u".into()),
            ice_pwd: Some("p".into()),
            ice_options: Some("trickle".into()),
            setup: Some(Setup::ActPass),
            fingerprint: Some(Fingerprint::from_bytes("sha-1", &[1])),
            other: vec![Attribute::flag("x-flag"), Attribute::new("x-kv", "1 2")],
            ..SessionDescription::default()
        };
        let raw = |letter, value: &str| RawLine {
            letter,
            value: value.into(),
        };
        sd.extra_lines = vec![
            raw('k', "clear:x"),
            raw('b', "AS:1"),
            raw('i', "info"),
            raw('r', "1 2 3"),
        ];
        let mut m = MediaSection::new(MediaKind::Other("text".into()), "RTP/AVP");
        m.port = 0;
        m.formats = vec!["0".into()];
        m.connection = Some("IN IP4 0.0.0.0".into());
        m.extra_lines = vec![raw('b', "AS:2"), raw('i', "media info")];
        m.rids = vec![
            Rid {
                id: "q".into(),
                direction: RidDirection::Send,
                params: None,
            },
            Rid {
                id: "h".into(),
                direction: RidDirection::Recv,
                params: Some("max-width=640".into()),
            },
        ];
        let id = |rid: &str, paused| SimulcastId {
            rid: rid.into(),
            paused,
        };
        m.simulcast = Some(Simulcast {
            send: vec![vec![id("q", false), id("q2", true)]],
            recv: vec![vec![id("h", false)], vec![id("h2", true)]],
        });
        m.extmaps = vec![ExtMap {
            id: 2,
            direction: Some(Direction::RecvOnly),
            uri: "urn:x".into(),
            params: Some("a b".into()),
        }];
        m.msid = Some(Msid {
            stream: "-".into(),
            track: String::new(),
        });
        m.rtcp = Some("9 IN IP4 0.0.0.0".into());
        m.codecs = vec![Codec {
            pt: 0,
            name: "PCMU".into(),
            clock_rate: 8000,
            channels: Some(1),
            ..Codec::default()
        }];
        m.ssrcs = vec![SsrcLine {
            ssrc: 5,
            attribute: "flag".into(),
            value: None,
        }];
        m.other = vec![Attribute::new("rtcp-xr", "rcvr-rtt=all")];
        sd.media.push(m);
        let text = sd.write();
        let expected = [
            "v=0",
            "o=- 0 0 IN IP6 ::1",
            "s=-",
            "i=info",
            "b=AS:1",
            "t=5 6",
            "r=1 2 3",
            "k=clear:x",
            "a=ice-ufrag:u",
            "a=ice-pwd:p",
            "a=ice-options:trickle",
            "a=fingerprint:sha-1 01",
            "a=setup:actpass",
            "a=extmap-allow-mixed",
            "a=x-flag",
            "a=x-kv:1 2",
            "m=text 0 RTP/AVP 0",
            "i=media info",
            "c=IN IP4 0.0.0.0",
            "b=AS:2",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=extmap:2/recvonly urn:x a b",
            "a=msid:-",
            "a=rtpmap:0 PCMU/8000/1",
            "a=ssrc:5 flag",
            "a=rid:q send",
            "a=rid:h recv max-width=640",
            "a=simulcast:send q,~q2 recv h;~h2",
            "a=rtcp-xr:rcvr-rtt=all",
            "",
        ]
        .join("\r\n");
        assert_eq!(text, expected);
        let back = parse(&text).unwrap();
        assert_eq!(back.media[0].simulcast, sd.media[0].simulcast);
        assert_eq!(back.media[0].rids, sd.media[0].rids);
        assert_eq!(back.media[0].kind, MediaKind::Other("text".into()));
        assert_eq!(back.origin.address, "::1");
        assert_eq!(back.to_string(), text);
    }
}
