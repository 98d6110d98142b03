//! Reading a session description (RFC 8866 §5 grammar, WebRTC attributes).
//!
//! Lines end in CRLF or LF; empty lines and trailing blanks are skipped. Attributes this
//! crate models must be well formed, or the whole description is refused; any other
//! attribute or line is kept verbatim.

use crate::SdpError;
use crate::model::{
    Attribute, Codec, Direction, ExtMap, Fingerprint, MediaKind, MediaSection, Msid, Origin,
    RawLine, Rid, RidDirection, SessionDescription, Setup, Simulcast, SimulcastId, SsrcGroup,
    SsrcLine, Timing,
};

/// Parses a session description.
pub fn parse(sdp: &str) -> Result<SessionDescription, SdpError> {
    let mut lines = sdp
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches([' ', '\t', '\r'])))
        .filter(|(_, l)| !l.is_empty());

    let (n, first) = lines.next().ok_or(SdpError::Empty)?;
    if first != "v=0" {
        return Err(SdpError::BadVersion { line: n });
    }

    let mut sd = SessionDescription::default();
    let mut seen_origin = false;
    let mut seen_name = false;
    let mut seen_timing = false;
    let mut current: Option<MediaBuilder> = None;

    for (n, line) in lines {
        let (letter, value) = split_line(n, line)?;
        if letter == 'm' {
            if let Some(done) = current.take() {
                sd.media.push(done.finish());
            }
            current = Some(MediaBuilder::new(parse_media_line(n, value)?));
            continue;
        }
        if let Some(m) = current.as_mut() {
            match letter {
                'a' => m.attribute(n, value)?,
                'c' if m.section.connection.is_none() => {
                    m.section.connection = Some(value.to_owned());
                }
                'v' | 'o' | 's' | 't' | 'r' | 'z' | 'u' | 'e' | 'p' => {
                    return Err(SdpError::MisplacedLine { line: n, letter });
                }
                _ => m.section.extra_lines.push(raw(letter, value)),
            }
            continue;
        }
        match letter {
            'v' => return Err(SdpError::MisplacedLine { line: n, letter }),
            'o' if seen_origin => return Err(SdpError::MisplacedLine { line: n, letter }),
            'o' => {
                sd.origin = parse_origin(n, value)?;
                seen_origin = true;
            }
            's' if seen_name => return Err(SdpError::MisplacedLine { line: n, letter }),
            's' => {
                sd.session_name = value.to_owned();
                seen_name = true;
            }
            't' if !seen_timing => {
                sd.timing = parse_timing(n, value)?;
                seen_timing = true;
            }
            'a' => session_attribute(&mut sd, n, value)?,
            _ => sd.extra_lines.push(raw(letter, value)),
        }
    }
    if let Some(done) = current.take() {
        sd.media.push(done.finish());
    }
    // Kept lines are held in the order they will be written (RFC 8866 §5), so that a
    // description read from misordered text equals the one read back from its rewrite.
    sd.extra_lines
        .sort_by_key(|l| crate::model::session_line_rank(l.letter));
    if !seen_origin {
        return Err(SdpError::MissingLine('o'));
    }
    if !seen_name {
        return Err(SdpError::MissingLine('s'));
    }
    Ok(sd)
}

fn raw(letter: char, value: &str) -> RawLine {
    RawLine {
        letter,
        value: value.to_owned(),
    }
}

/// Splits `<letter>=<value>`.
fn split_line(n: usize, line: &str) -> Result<(char, &str), SdpError> {
    match line.as_bytes() {
        [letter, b'=', ..] if letter.is_ascii_alphabetic() => {
            // Both leading bytes are ASCII, so index 2 is a char boundary.
            Ok((char::from(*letter), &line[2..]))
        }
        _ => Err(SdpError::MalformedLine { line: n }),
    }
}

/// Splits `key[:value]`.
fn split_attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((k, v)) => (k, Some(v)),
        None => (value, None),
    }
}

/// Splits at the first run of blanks; the second part is empty when there is none.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once([' ', '\t']) {
        Some((a, b)) => (a, b.trim_start()),
        None => (s, ""),
    }
}

fn invalid(line: usize, field: &'static str) -> SdpError {
    SdpError::InvalidField { line, field }
}

fn parse_origin(n: usize, value: &str) -> Result<Origin, SdpError> {
    let t: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, _net, _addr_type, address] = t[..] else {
        return Err(invalid(n, "o="));
    };
    Ok(Origin {
        username: username.to_owned(),
        session_id: id.parse().map_err(|_| invalid(n, "o= session id"))?,
        session_version: version
            .parse()
            .map_err(|_| invalid(n, "o= session version"))?,
        address: address.to_owned(),
    })
}

fn parse_timing(n: usize, value: &str) -> Result<Timing, SdpError> {
    let mut it = value.split_ascii_whitespace();
    let (Some(start), Some(stop), None) = (it.next(), it.next(), it.next()) else {
        return Err(invalid(n, "t="));
    };
    Ok(Timing {
        start: start.parse().map_err(|_| invalid(n, "t="))?,
        stop: stop.parse().map_err(|_| invalid(n, "t="))?,
    })
}

fn parse_media_line(n: usize, value: &str) -> Result<MediaSection, SdpError> {
    let mut it = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(protocol)) = (it.next(), it.next(), it.next()) else {
        return Err(invalid(n, "m="));
    };
    let port = port.parse().map_err(|_| invalid(n, "m= port"))?;
    let mut m = MediaSection::new(MediaKind::from_value(kind), protocol);
    m.port = port;
    m.formats = it.map(str::to_owned).collect();
    Ok(m)
}

fn parse_fingerprint(n: usize, value: &str) -> Result<Fingerprint, SdpError> {
    let mut it = value.split_ascii_whitespace();
    let (Some(algorithm), Some(v), None) = (it.next(), it.next(), it.next()) else {
        return Err(invalid(n, "fingerprint"));
    };
    Ok(Fingerprint {
        algorithm: algorithm.to_owned(),
        value: v.to_owned(),
    })
}

fn parse_setup(n: usize, value: &str) -> Result<Setup, SdpError> {
    Setup::from_value(value.trim()).ok_or(invalid(n, "setup"))
}

/// Stores `value` in `slot` if it is empty; otherwise keeps the line as another attribute so
/// that a repeated attribute survives a round trip.
fn claim<T>(slot: &mut Option<T>, value: T, other: &mut Vec<Attribute>, key: &str, raw: &str) {
    if slot.is_none() {
        *slot = Some(value);
    } else {
        other.push(Attribute::new(key, raw));
    }
}

fn session_attribute(sd: &mut SessionDescription, n: usize, line: &str) -> Result<(), SdpError> {
    let (key, value) = split_attribute(line);
    match (key, value) {
        ("group", Some(v)) => {
            let mut it = v.split_ascii_whitespace();
            if it.next() == Some("BUNDLE") && sd.bundle_mids.is_empty() {
                sd.bundle_mids = it.map(str::to_owned).collect();
                if !sd.bundle_mids.is_empty() {
                    return Ok(());
                }
            }
            sd.other.push(Attribute::new(key, v));
        }
        ("ice-lite", None) => sd.ice_lite = true,
        ("extmap-allow-mixed", None) => sd.extmap_allow_mixed = true,
        ("ice-ufrag", Some(v)) => claim(
            &mut sd.ice_ufrag,
            v.trim().to_owned(),
            &mut sd.other,
            key,
            v,
        ),
        ("ice-pwd", Some(v)) => claim(&mut sd.ice_pwd, v.trim().to_owned(), &mut sd.other, key, v),
        ("ice-options", Some(v)) => {
            claim(
                &mut sd.ice_options,
                v.trim().to_owned(),
                &mut sd.other,
                key,
                v,
            );
        }
        ("msid-semantic", Some(v)) => {
            claim(
                &mut sd.msid_semantic,
                v.trim().to_owned(),
                &mut sd.other,
                key,
                v,
            );
        }
        ("fingerprint", Some(v)) => {
            let fp = parse_fingerprint(n, v)?;
            claim(&mut sd.fingerprint, fp, &mut sd.other, key, v);
        }
        ("setup", Some(v)) => {
            let s = parse_setup(n, v)?;
            claim(&mut sd.setup, s, &mut sd.other, key, v);
        }
        (
            "ice-ufrag" | "ice-pwd" | "ice-options" | "msid-semantic" | "fingerprint" | "setup",
            None,
        ) => {
            return Err(invalid(n, "attribute value"));
        }
        _ => sd.other.push(Attribute {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }),
    }
    Ok(())
}

/// A payload type field of rtpmap/fmtp/rtcp-fb.
enum PtRef {
    One(u8),
    All,
}

/// A media section being read; codec lines are gathered and joined at the end.
struct MediaBuilder {
    section: MediaSection,
    rtpmaps: Vec<Codec>,
    /// (payload type, parameters)
    fmtps: Vec<(u8, String)>,
    rtcp_fbs: Vec<(PtRef, String)>,
}

impl MediaBuilder {
    fn new(section: MediaSection) -> Self {
        Self {
            section,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            rtcp_fbs: Vec::new(),
        }
    }

    fn attribute(&mut self, n: usize, line: &str) -> Result<(), SdpError> {
        let (key, value) = split_attribute(line);
        let m = &mut self.section;
        let other = &mut m.other;
        match (key, value) {
            ("mid", Some(v)) => claim(&mut m.mid, v.trim().to_owned(), other, key, v),
            ("sendrecv" | "sendonly" | "recvonly" | "inactive", None) => {
                let d = Direction::from_value(key).ok_or(invalid(n, "direction"))?;
                if m.direction.is_none() {
                    m.direction = Some(d);
                } else {
                    other.push(Attribute::flag(key));
                }
            }
            ("ice-ufrag", Some(v)) => claim(&mut m.ice_ufrag, v.trim().to_owned(), other, key, v),
            ("ice-pwd", Some(v)) => claim(&mut m.ice_pwd, v.trim().to_owned(), other, key, v),
            ("ice-options", Some(v)) => {
                claim(&mut m.ice_options, v.trim().to_owned(), other, key, v);
            }
            ("fingerprint", Some(v)) => {
                let fp = parse_fingerprint(n, v)?;
                claim(&mut m.fingerprint, fp, other, key, v);
            }
            ("setup", Some(v)) => {
                let s = parse_setup(n, v)?;
                claim(&mut m.setup, s, other, key, v);
            }
            ("rtcp-mux", None) => m.rtcp_mux = true,
            ("rtcp-rsize", None) => m.rtcp_rsize = true,
            ("end-of-candidates", None) => m.end_of_candidates = true,
            ("rtcp", Some(v)) => claim(&mut m.rtcp, v.trim().to_owned(), other, key, v),
            ("candidate", Some(v)) => m.candidates.push(v.to_owned()),
            ("rtpmap", Some(v)) => {
                let (pt, rest) = split_word(v);
                let Ok(pt) = pt.parse::<u8>() else {
                    other.push(Attribute::new(key, v));
                    return Ok(());
                };
                if self.rtpmaps.iter().any(|c| c.pt == pt) {
                    other.push(Attribute::new(key, v));
                } else {
                    self.rtpmaps.push(parse_rtpmap(n, pt, rest)?);
                }
            }
            ("fmtp", Some(v)) => {
                let (pt, rest) = split_word(v);
                match pt.parse::<u8>() {
                    Ok(pt) => self.fmtps.push((pt, rest.to_owned())),
                    Err(_) => other.push(Attribute::new(key, v)),
                }
            }
            ("rtcp-fb", Some(v)) => {
                let (pt, rest) = split_word(v);
                let pt = match pt {
                    "*" => PtRef::All,
                    pt => match pt.parse::<u8>() {
                        Ok(pt) => PtRef::One(pt),
                        Err(_) => {
                            other.push(Attribute::new(key, v));
                            return Ok(());
                        }
                    },
                };
                if rest.is_empty() {
                    return Err(invalid(n, "rtcp-fb"));
                }
                self.rtcp_fbs.push((pt, rest.to_owned()));
            }
            ("extmap", Some(v)) => match parse_extmap(n, v)? {
                Some(e) => m.extmaps.push(e),
                None => other.push(Attribute::new(key, v)),
            },
            ("msid", Some(v)) => {
                let msid = parse_msid(n, v)?;
                claim(&mut m.msid, msid, other, key, v);
            }
            ("ssrc", Some(v)) => m.ssrcs.push(parse_ssrc(n, v)?),
            ("ssrc-group", Some(v)) => m.ssrc_groups.push(parse_ssrc_group(n, v)?),
            ("rid", Some(v)) => m.rids.push(parse_rid(n, v)?),
            ("simulcast", Some(v)) => {
                let sc = parse_simulcast(n, v)?;
                claim(&mut m.simulcast, sc, other, key, v);
            }
            ("sctp-port", Some(v)) => {
                let port = v.trim().parse().map_err(|_| invalid(n, "sctp-port"))?;
                claim(&mut m.sctp_port, port, other, key, v);
            }
            ("max-message-size", Some(v)) => {
                let size = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(n, "max-message-size"))?;
                claim(&mut m.max_message_size, size, other, key, v);
            }
            (
                "mid" | "ice-ufrag" | "ice-pwd" | "ice-options" | "fingerprint" | "setup" | "rtcp"
                | "candidate" | "rtpmap" | "fmtp" | "rtcp-fb" | "extmap" | "msid" | "ssrc"
                | "ssrc-group" | "rid" | "simulcast" | "sctp-port" | "max-message-size",
                None,
            ) => return Err(invalid(n, "attribute value")),
            _ => other.push(Attribute {
                key: key.to_owned(),
                value: value.map(str::to_owned),
            }),
        }
        Ok(())
    }

    /// Joins rtpmap, fmtp and rtcp-fb lines into codecs in `m=` format order. Lines that
    /// name no codec are kept as other attributes.
    fn finish(self) -> MediaSection {
        let Self {
            mut section,
            mut rtpmaps,
            fmtps,
            rtcp_fbs,
        } = self;
        let is_rtp = section.protocol.contains("RTP/");
        let mut codecs: Vec<Codec> = Vec::with_capacity(rtpmaps.len());
        for pt in section.formats.iter().filter_map(|f| f.parse::<u8>().ok()) {
            if codecs.iter().any(|c| c.pt == pt) {
                continue;
            }
            if let Some(i) = rtpmaps.iter().position(|c| c.pt == pt) {
                codecs.push(rtpmaps.remove(i));
            } else if let Some(c) = is_rtp.then(|| static_codec(pt)).flatten() {
                codecs.push(c);
            }
        }
        codecs.append(&mut rtpmaps);

        for (pt, params) in fmtps {
            match codecs.iter_mut().find(|c| c.pt == pt && c.fmtp.is_none()) {
                Some(c) => c.fmtp = Some(params),
                None => section
                    .other
                    .push(Attribute::new("fmtp", format!("{pt} {params}"))),
            }
        }
        for (pt, value) in rtcp_fbs {
            match pt {
                PtRef::All if !codecs.is_empty() => {
                    for c in &mut codecs {
                        c.rtcp_fb.push(value.clone());
                    }
                }
                PtRef::All => section
                    .other
                    .push(Attribute::new("rtcp-fb", format!("* {value}"))),
                PtRef::One(pt) => match codecs.iter_mut().find(|c| c.pt == pt) {
                    Some(c) => c.rtcp_fb.push(value),
                    None => section
                        .other
                        .push(Attribute::new("rtcp-fb", format!("{pt} {value}"))),
                },
            }
        }
        section.codecs = codecs;
        section
            .extra_lines
            .sort_by_key(|l| crate::model::media_line_rank(l.letter));
        section
    }
}

/// `<encoding name>/<clock rate>[/<encoding parameters>]` (RFC 8866 §6.6).
fn parse_rtpmap(n: usize, pt: u8, rest: &str) -> Result<Codec, SdpError> {
    let mut it = rest.trim().split('/');
    let (Some(name), Some(clock), channels, None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(invalid(n, "rtpmap"));
    };
    if name.is_empty() || name.contains([' ', '\t']) {
        return Err(invalid(n, "rtpmap"));
    }
    Ok(Codec {
        pt,
        name: name.to_owned(),
        clock_rate: clock.parse().map_err(|_| invalid(n, "rtpmap clock rate"))?,
        channels: channels
            .map(|c| c.parse().map_err(|_| invalid(n, "rtpmap channels")))
            .transpose()?,
        fmtp: None,
        rtcp_fb: Vec::new(),
    })
}

/// Static payload types of RFC 3551 §6 that WebRTC peers list without an rtpmap.
fn static_codec(pt: u8) -> Option<Codec> {
    let (name, clock_rate, channels) = match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    };
    Some(Codec {
        pt,
        name: name.to_owned(),
        clock_rate,
        channels,
        fmtp: None,
        rtcp_fb: Vec::new(),
    })
}

/// `<id>[/<direction>] <uri> [<attributes>]`. An id beyond one byte (RFC 8285 allows
/// 4096-4351 in offers) yields `None`: the line is kept as another attribute.
fn parse_extmap(n: usize, v: &str) -> Result<Option<ExtMap>, SdpError> {
    let (id_dir, rest) = split_word(v);
    let (id, direction) = match id_dir.split_once('/') {
        Some((id, d)) => (
            id,
            Some(Direction::from_value(d).ok_or(invalid(n, "extmap direction"))?),
        ),
        None => (id_dir, None),
    };
    let id: u16 = id.parse().map_err(|_| invalid(n, "extmap id"))?;
    let Ok(id) = u8::try_from(id) else {
        return Ok(None);
    };
    let (uri, params) = split_word(rest);
    if uri.is_empty() {
        return Err(invalid(n, "extmap uri"));
    }
    Ok(Some(ExtMap {
        id,
        direction,
        uri: uri.to_owned(),
        params: (!params.is_empty()).then(|| params.to_owned()),
    }))
}

fn parse_msid(n: usize, v: &str) -> Result<Msid, SdpError> {
    let mut it = v.split_ascii_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(stream), track, None) => Ok(Msid {
            stream: stream.to_owned(),
            track: track.unwrap_or("").to_owned(),
        }),
        _ => Err(invalid(n, "msid")),
    }
}

fn parse_ssrc(n: usize, v: &str) -> Result<SsrcLine, SdpError> {
    let (ssrc, rest) = split_word(v);
    let ssrc = ssrc.parse().map_err(|_| invalid(n, "ssrc"))?;
    if rest.is_empty() {
        return Err(invalid(n, "ssrc attribute"));
    }
    let (attribute, value) = split_attribute(rest);
    Ok(SsrcLine {
        ssrc,
        attribute: attribute.to_owned(),
        value: value.map(str::to_owned),
    })
}

fn parse_ssrc_group(n: usize, v: &str) -> Result<SsrcGroup, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let semantics = it.next().ok_or(invalid(n, "ssrc-group"))?;
    let ssrcs = it
        .map(|s| s.parse().map_err(|_| invalid(n, "ssrc-group ssrc")))
        .collect::<Result<_, _>>()?;
    Ok(SsrcGroup {
        semantics: semantics.to_owned(),
        ssrcs,
    })
}

/// `rid-id = 1*(alpha-numeric / "-" / "_")` (RFC 8851 §10).
fn is_rid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_rid(n: usize, v: &str) -> Result<Rid, SdpError> {
    let (id, rest) = split_word(v);
    let (dir, params) = split_word(rest);
    if !is_rid_id(id) {
        return Err(invalid(n, "rid id"));
    }
    let direction = match dir {
        "send" => RidDirection::Send,
        "recv" => RidDirection::Recv,
        _ => return Err(invalid(n, "rid direction")),
    };
    Ok(Rid {
        id: id.to_owned(),
        direction,
        params: (!params.is_empty()).then(|| params.to_owned()),
    })
}

/// `a=simulcast:<send|recv> <list> [<recv|send> <list>]` (RFC 8853 §5.1).
fn parse_simulcast(n: usize, v: &str) -> Result<Simulcast, SdpError> {
    let tokens: Vec<&str> = v.split_ascii_whitespace().collect();
    if !matches!(tokens.len(), 2 | 4) {
        return Err(invalid(n, "simulcast"));
    }
    let mut sc = Simulcast::default();
    let mut seen = [false; 2];
    for pair in tokens.chunks_exact(2) {
        let (slot, list) = match pair[0] {
            "send" => (0, &mut sc.send),
            "recv" => (1, &mut sc.recv),
            _ => return Err(invalid(n, "simulcast direction")),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(invalid(n, "simulcast direction"));
        }
        for stream in pair[1].split(';') {
            let alts = stream
                .split(',')
                .map(|id| {
                    let (paused, rid) = match id.strip_prefix('~') {
                        Some(rid) => (true, rid),
                        None => (false, id),
                    };
                    if is_rid_id(rid) {
                        Ok(SimulcastId {
                            rid: rid.to_owned(),
                            paused,
                        })
                    } else {
                        Err(invalid(n, "simulcast rid"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            list.push(alts);
        }
    }
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn with_media(media: &str) -> MediaSection {
        let sdp = format!("{MINIMAL}{media}");
        let mut sd = parse(&sdp).unwrap();
        assert_eq!(sd.media.len(), 1);
        sd.media.remove(0)
    }

    fn err_line(sdp: &str) -> SdpError {
        parse(sdp).unwrap_err()
    }

    #[test]
    fn minimal_session() {
        let sd = parse("v=0\no=alice 18446744073709551615 0 IN IP6 ::1\ns=x y\nt=1 2\n").unwrap();
        assert_eq!(sd.origin.username, "alice");
        assert_eq!(sd.origin.session_id, u64::MAX);
        assert_eq!(sd.origin.address, "::1");
        assert_eq!(sd.session_name, "x y");
        assert_eq!(sd.timing, Timing { start: 1, stop: 2 });
        assert!(sd.media.is_empty());
    }

    #[test]
    fn session_errors() {
        assert_eq!(parse(""), Err(SdpError::Empty));
        assert_eq!(parse("\r\n\r\n"), Err(SdpError::Empty));
        assert_eq!(parse("v=1\n"), Err(SdpError::BadVersion { line: 1 }));
        assert_eq!(parse("\nx\n"), Err(SdpError::BadVersion { line: 2 }));
        assert_eq!(parse("v=0\ns=-\n"), Err(SdpError::MissingLine('o')));
        assert_eq!(
            parse("v=0\no=- 1 1 IN IP4 a\n"),
            Err(SdpError::MissingLine('s'))
        );
        assert_eq!(
            err_line("v=0\no=- 1 1 IN IP4 a\ns=-\nv=0\n"),
            SdpError::MisplacedLine {
                line: 4,
                letter: 'v'
            }
        );
        assert_eq!(
            err_line("v=0\no=- 1 1 IN IP4 a\no=- 1 1 IN IP4 a\n"),
            SdpError::MisplacedLine {
                line: 3,
                letter: 'o'
            }
        );
        assert_eq!(
            err_line("v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio 9 RTP/AVP 0\nt=0 0\n"),
            SdpError::MisplacedLine {
                line: 5,
                letter: 't'
            }
        );
        assert_eq!(
            err_line("v=0\no=- x 1 IN IP4 a\ns=-\n"),
            SdpError::InvalidField {
                line: 2,
                field: "o= session id"
            }
        );
        assert_eq!(
            err_line("v=0\no=- 1 1 IN IP4\ns=-\n"),
            SdpError::InvalidField {
                line: 2,
                field: "o="
            }
        );
        assert_eq!(
            err_line("v=0\no=- 1 1 IN IP4 a\ns=-\nt=0\n"),
            SdpError::InvalidField {
                line: 4,
                field: "t="
            }
        );
        for bad in ["=x", "ab=c", "a:b", "1=2", "é=1", "a"] {
            let sdp = format!("v=0\no=- 1 1 IN IP4 a\ns=-\n{bad}\n");
            assert_eq!(
                parse(&sdp),
                Err(SdpError::MalformedLine { line: 4 }),
                "{bad}"
            );
        }
    }

    #[test]
    fn session_attributes() {
        let sd = parse(&format!(
            "{MINIMAL}a=group:LS 0 1\r\na=group:BUNDLE\r\na=group:BUNDLE 0 1\r\n\
             a=group:BUNDLE 2\r\na=ice-lite\r\na=ice-ufrag: u \r\na=ice-ufrag:v\r\n\
             a=ice-pwd:p\r\na=ice-options:trickle\r\na=setup:passive\r\n\
             a=fingerprint:sha-256 AA:BB\r\na=msid-semantic:  WMS *\r\n\
             a=extmap-allow-mixed\r\na=tool:x:y\r\na=recvonly\r\nb=AS:30\r\n"
        ))
        .unwrap();
        assert_eq!(sd.bundle_mids, ["0", "1"]);
        assert!(sd.ice_lite && sd.extmap_allow_mixed);
        assert_eq!(sd.ice_ufrag.as_deref(), Some("u"));
        assert_eq!(sd.ice_pwd.as_deref(), Some("p"));
        assert_eq!(sd.ice_options.as_deref(), Some("trickle"));
        assert_eq!(sd.setup, Some(Setup::Passive));
        assert_eq!(sd.fingerprint.as_ref().unwrap().value, "AA:BB");
        assert_eq!(sd.msid_semantic.as_deref(), Some("WMS *"));
        assert_eq!(
            sd.other,
            vec![
                Attribute::new("group", "LS 0 1"),
                Attribute::new("group", "BUNDLE"),
                Attribute::new("group", "BUNDLE 2"),
                Attribute::new("ice-ufrag", "v"),
                Attribute::new("tool", "x:y"),
                Attribute::flag("recvonly"),
            ]
        );
        assert_eq!(sd.extra_lines, vec![raw('b', "AS:30")]);
    }

    #[test]
    fn codecs_follow_m_line_order() {
        let m = with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 97 96 0 100\r\n\
             a=rtpmap:96 VP8/90000\r\n\
             a=rtcp-fb:* nack\r\n\
             a=rtpmap:97 rtx/90000\r\n\
             a=fmtp:97 apt=96\r\n\
             a=fmtp:97 dup=1\r\n\
             a=rtcp-fb:96 nack pli\r\n\
             a=rtcp-fb:50 nack\r\n\
             a=rtpmap:120 extra/1000/3\r\n\
             a=rtpmap:96 VP8/48000\r\n\
             a=fmtp:webrtc-datachannel x\r\n",
        );
        let pts: Vec<u8> = m.codecs.iter().map(|c| c.pt).collect();
        assert_eq!(pts, [97, 96, 0, 120]);
        assert_eq!(m.codecs[0].fmtp.as_deref(), Some("apt=96"));
        assert_eq!(m.codecs[1].name, "VP8");
        assert_eq!(m.codecs[1].clock_rate, 90000);
        assert_eq!(m.codecs[1].rtcp_fb, ["nack", "nack pli"]);
        assert_eq!(m.codecs[0].rtcp_fb, ["nack"]);
        assert_eq!(m.codecs[2].name, "PCMU");
        assert_eq!(m.codecs[2].rtcp_fb, ["nack"]);
        assert_eq!(m.codecs[3].channels, Some(3));
        assert_eq!(m.rtx_for(96), Some(97));
        assert_eq!(
            m.other,
            vec![
                Attribute::new("rtpmap", "96 VP8/48000"),
                Attribute::new("fmtp", "webrtc-datachannel x"),
                Attribute::new("fmtp", "97 dup=1"),
                Attribute::new("rtcp-fb", "50 nack"),
            ]
        );
    }

    #[test]
    fn media_attributes() {
        let m = with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:500\r\nc=IN IP4 1.1.1.1\r\n\
             a=mid:v0\r\na=mid:v1\r\na=sendonly\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
             a=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=extmap:3/recvonly urn:x  p q\r\na=extmap:4096 urn:big\r\n\
             a=msid:s t\r\na=msid:s2\r\na=ssrc:1 cname:c\r\na=ssrc:1 msid:s t\r\na=ssrc:2 foo\r\n\
             a=ssrc-group:FID 1 2\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n\
             a=end-of-candidates\r\na=rtcp-mux:odd\r\na=x-unknown\r\n",
        );
        assert_eq!(m.connection.as_deref(), Some("IN IP4 0.0.0.0"));
        assert_eq!(
            m.extra_lines,
            vec![raw('c', "IN IP4 1.1.1.1"), raw('b', "AS:500")]
        );
        assert_eq!(m.mid.as_deref(), Some("v0"));
        assert_eq!(m.direction, Some(Direction::SendOnly));
        assert!(m.rtcp_mux && m.rtcp_rsize && m.end_of_candidates);
        assert_eq!(m.rtcp.as_deref(), Some("9 IN IP4 0.0.0.0"));
        assert_eq!(
            m.extmaps,
            vec![ExtMap {
                id: 3,
                direction: Some(Direction::RecvOnly),
                uri: "urn:x".into(),
                params: Some("p q".into()),
            }]
        );
        assert_eq!(
            m.msid,
            Some(Msid {
                stream: "s".into(),
                track: "t".into()
            })
        );
        assert_eq!(m.ssrcs.len(), 3);
        assert_eq!(m.ssrcs[1].attribute, "msid");
        assert_eq!(m.ssrcs[1].value.as_deref(), Some("s t"));
        assert_eq!(m.ssrcs[2].value, None);
        assert_eq!(m.ssrc_groups[0].ssrcs, [1, 2]);
        assert_eq!(m.primary_ssrcs(), [1]);
        assert_eq!(m.candidates, ["1 1 udp 1 1.2.3.4 5 typ host"]);
        assert_eq!(
            m.other,
            vec![
                Attribute::new("mid", "v1"),
                Attribute::flag("recvonly"),
                Attribute::new("extmap", "4096 urn:big"),
                Attribute::new("msid", "s2"),
                Attribute::new("rtcp-mux", "odd"),
                Attribute::flag("x-unknown"),
            ]
        );
    }

    #[test]
    fn rid_and_simulcast() {
        let m = with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rid:q send\r\na=rid:h send pt=96;max-width=640\r\n\
             a=rid:r-1_x recv\r\na=simulcast:recv r-1_x send q;~h,f\r\n",
        );
        assert_eq!(m.rids.len(), 3);
        assert_eq!(m.rids[0].direction, RidDirection::Send);
        assert_eq!(m.rids[1].params.as_deref(), Some("pt=96;max-width=640"));
        assert_eq!(m.rids[2].direction, RidDirection::Recv);
        let sc = m.simulcast.unwrap();
        let id = |rid: &str, paused| SimulcastId {
            rid: rid.into(),
            paused,
        };
        assert_eq!(
            sc.send,
            vec![vec![id("q", false)], vec![id("h", true), id("f", false)]]
        );
        assert_eq!(sc.recv, vec![vec![id("r-1_x", false)]]);
        let bad = [
            "a=simulcast:send",
            "a=simulcast:send q recv",
            "a=simulcast:send q send h",
            "a=simulcast:both q",
            "a=simulcast:send q;;h",
            "a=simulcast:send q,",
            "a=simulcast:send ~",
            "a=simulcast:send q recv r send s",
            "a=rid:q both",
            "a=rid:q",
            "a=rid:q.1 send",
        ];
        for line in bad {
            let sdp = format!("{MINIMAL}m=video 9 RTP/AVP 96\r\n{line}\r\n");
            assert!(
                matches!(parse(&sdp), Err(SdpError::InvalidField { line: 6, .. })),
                "{line}"
            );
        }
    }

    #[test]
    fn malformed_known_attributes() {
        let bad = [
            "a=mid",
            "a=setup:sideways",
            "a=fingerprint:sha-256",
            "a=fingerprint:sha-256 AA BB",
            "a=rtpmap:96",
            "a=rtpmap:96 VP8",
            "a=rtpmap:96 VP8/x",
            "a=rtpmap:96 VP8/90000/2/1",
            "a=rtpmap:96 /90000",
            "a=rtpmap:96 VP8/90000/70000",
            "a=rtcp-fb:96",
            "a=extmap:x urn:a",
            "a=extmap:1/sideways urn:a",
            "a=extmap:1",
            "a=extmap:70000 urn:a",
            "a=msid:",
            "a=msid:a b c",
            "a=ssrc:1",
            "a=ssrc:x cname:y",
            "a=ssrc:4294967296 cname:y",
            "a=ssrc-group:",
            "a=ssrc-group:FID 1 x",
            "a=sctp-port:70000",
            "a=max-message-size:-1",
            "a=candidate",
        ];
        for line in bad {
            let sdp = format!("{MINIMAL}m=video 9 RTP/AVP 96\r\n{line}\r\n");
            assert!(
                matches!(parse(&sdp), Err(SdpError::InvalidField { line: 6, .. })),
                "{line}: {:?}",
                parse(&sdp)
            );
        }
        for line in [
            "m=video",
            "m=video 9",
            "m=video x RTP/AVP 0",
            "m=video 9/2 RTP/AVP 0",
        ] {
            let sdp = format!("{MINIMAL}{line}\r\n");
            assert!(
                matches!(parse(&sdp), Err(SdpError::InvalidField { line: 5, .. })),
                "{line}"
            );
        }
    }

    #[test]
    fn static_payload_types_only_for_rtp() {
        let m = with_media("m=audio 9 RTP/AVP 0 8 9 77\r\n");
        let names: Vec<&str> = m.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PCMU", "PCMA", "G722"]);
        let m = with_media("m=application 9 UDP/DTLS/SCTP 0\r\n");
        assert!(m.codecs.is_empty());
    }
}
