//! Reading a session description (RFC 8866 §5 grammar, WebRTC attributes).
//!
//! Lines end in CRLF or LF; empty lines and trailing blanks are skipped. Attributes this
//! crate models must be well formed, or the whole description is refused; any other
//! attribute or line is kept verbatim. Every list stays within its [`Limit`], checked as
//! the line that would pass it is read; lookups by payload type are by index, so a parse is
//! linear in its input.

use std::collections::BTreeMap;

use crate::model::{
    Attribute, Codec, Direction, ExtMap, Fingerprint, MediaKind, MediaSection, Msid, Origin,
    RawLine, Rid, RidDirection, SessionDescription, Setup, Simulcast, SimulcastId, SsrcGroup,
    SsrcLine, Timing,
};
use crate::{Limit, SdpError};

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
    let mut sections = 0;

    for (n, line) in lines {
        let (letter, value) = split_line(n, line)?;
        if letter == 'm' {
            if sections == Limit::MediaSections.max() {
                return Err(over(n, Limit::MediaSections));
            }
            sections += 1;
            if let Some(done) = current.take() {
                sd.media.push(done.finish()?);
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
                _ => push(
                    &mut m.section.extra_lines,
                    raw(letter, value),
                    Limit::Lines,
                    n,
                )?,
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
            _ => push(
                &mut sd.extra_lines,
                raw(letter, value),
                Limit::SessionLines,
                n,
            )?,
        }
    }
    if let Some(done) = current.take() {
        sd.media.push(done.finish()?);
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

fn over(line: usize, limit: Limit) -> SdpError {
    SdpError::OverLimit { line, limit }
}

/// Appends `item` unless `v` already holds `limit` items.
fn push<T>(v: &mut Vec<T>, item: T, limit: Limit, line: usize) -> Result<(), SdpError> {
    if v.len() >= limit.max() {
        return Err(over(line, limit));
    }
    v.push(item);
    Ok(())
}

/// Collects the items of `it`, refusing more than `limit` of them before reading further.
fn collect_capped<T>(
    it: impl Iterator<Item = Result<T, SdpError>>,
    limit: Limit,
    line: usize,
) -> Result<Vec<T>, SdpError> {
    let mut out = Vec::new();
    for item in it {
        push(&mut out, item?, limit, line)?;
    }
    Ok(out)
}

fn parse_origin(n: usize, value: &str) -> Result<Origin, SdpError> {
    let t: Vec<&str> = value.split_ascii_whitespace().take(7).collect();
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
    m.formats = collect_capped(it.map(|f| Ok(f.to_owned())), Limit::Formats, n)?;
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

/// Where attributes without a typed field go: a list and its cap.
struct Others<'a> {
    list: &'a mut Vec<Attribute>,
    limit: Limit,
    line: usize,
}

impl Others<'_> {
    fn push(&mut self, a: Attribute) -> Result<(), SdpError> {
        push(self.list, a, self.limit, self.line)
    }

    /// Stores `value` in `slot` if it is empty; otherwise keeps the line as another
    /// attribute so that a repeated attribute survives a round trip.
    fn claim<T>(
        &mut self,
        slot: &mut Option<T>,
        value: T,
        key: &str,
        raw: &str,
    ) -> Result<(), SdpError> {
        if slot.is_none() {
            *slot = Some(value);
            Ok(())
        } else {
            self.push(Attribute::new(key, raw))
        }
    }
}

fn session_attribute(sd: &mut SessionDescription, n: usize, line: &str) -> Result<(), SdpError> {
    let (key, value) = split_attribute(line);
    let mut other = Others {
        list: &mut sd.other,
        limit: Limit::SessionAttributes,
        line: n,
    };
    match (key, value) {
        ("group", Some(v)) => {
            let mut it = v.split_ascii_whitespace();
            if it.next() == Some("BUNDLE") && sd.bundle_mids.is_empty() {
                sd.bundle_mids =
                    collect_capped(it.map(|m| Ok(m.to_owned())), Limit::BundleMids, n)?;
                if !sd.bundle_mids.is_empty() {
                    return Ok(());
                }
            }
            other.push(Attribute::new(key, v))
        }
        ("ice-lite", None) => {
            sd.ice_lite = true;
            Ok(())
        }
        ("extmap-allow-mixed", None) => {
            sd.extmap_allow_mixed = true;
            Ok(())
        }
        ("ice-ufrag", Some(v)) => other.claim(&mut sd.ice_ufrag, v.trim().to_owned(), key, v),
        ("ice-pwd", Some(v)) => other.claim(&mut sd.ice_pwd, v.trim().to_owned(), key, v),
        ("ice-options", Some(v)) => other.claim(&mut sd.ice_options, v.trim().to_owned(), key, v),
        ("msid-semantic", Some(v)) => {
            other.claim(&mut sd.msid_semantic, v.trim().to_owned(), key, v)
        }
        ("fingerprint", Some(v)) => {
            let fp = parse_fingerprint(n, v)?;
            other.claim(&mut sd.fingerprint, fp, key, v)
        }
        ("setup", Some(v)) => {
            let s = parse_setup(n, v)?;
            other.claim(&mut sd.setup, s, key, v)
        }
        (
            "ice-ufrag" | "ice-pwd" | "ice-options" | "msid-semantic" | "fingerprint" | "setup",
            None,
        ) => Err(invalid(n, "attribute value")),
        _ => other.push(Attribute {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }),
    }
}

/// The values of `a=rtcp-fb` lines of one payload type (`None`: `*`), each once, with the
/// line it was first read on.
type RtcpFbs = BTreeMap<Option<u8>, Vec<(usize, String)>>;

/// A media section being read; codec lines are gathered and joined at the end.
struct MediaBuilder {
    section: MediaSection,
    /// One per payload type, in line order.
    rtpmaps: Vec<Codec>,
    has_rtpmap: [bool; 256],
    /// (payload type, parameters)
    fmtps: Vec<(u8, String)>,
    rtcp_fbs: RtcpFbs,
    /// Distinct SSRCs named so far by `a=ssrc` and `a=ssrc-group`.
    ssrcs: Vec<u32>,
}

impl MediaBuilder {
    fn new(section: MediaSection) -> Self {
        Self {
            section,
            rtpmaps: Vec::new(),
            has_rtpmap: [false; 256],
            fmtps: Vec::new(),
            rtcp_fbs: BTreeMap::new(),
            ssrcs: Vec::new(),
        }
    }

    /// Counts `ssrc` among the section's distinct SSRCs.
    fn name_ssrc(&mut self, n: usize, ssrc: u32) -> Result<(), SdpError> {
        if !self.ssrcs.contains(&ssrc) {
            push(&mut self.ssrcs, ssrc, Limit::Ssrcs, n)?;
        }
        Ok(())
    }

    fn attribute(&mut self, n: usize, line: &str) -> Result<(), SdpError> {
        let (key, value) = split_attribute(line);
        let m = &mut self.section;
        let mut other = Others {
            list: &mut m.other,
            limit: Limit::Attributes,
            line: n,
        };
        match (key, value) {
            ("mid", Some(v)) => other.claim(&mut m.mid, v.trim().to_owned(), key, v)?,
            ("sendrecv" | "sendonly" | "recvonly" | "inactive", None) => {
                let d = Direction::from_value(key).ok_or(invalid(n, "direction"))?;
                if m.direction.is_none() {
                    m.direction = Some(d);
                } else {
                    other.push(Attribute::flag(key))?;
                }
            }
            ("ice-ufrag", Some(v)) => {
                other.claim(&mut m.ice_ufrag, v.trim().to_owned(), key, v)?;
            }
            ("ice-pwd", Some(v)) => other.claim(&mut m.ice_pwd, v.trim().to_owned(), key, v)?,
            ("ice-options", Some(v)) => {
                other.claim(&mut m.ice_options, v.trim().to_owned(), key, v)?;
            }
            ("fingerprint", Some(v)) => {
                let fp = parse_fingerprint(n, v)?;
                other.claim(&mut m.fingerprint, fp, key, v)?;
            }
            ("setup", Some(v)) => {
                let s = parse_setup(n, v)?;
                other.claim(&mut m.setup, s, key, v)?;
            }
            ("rtcp-mux", None) => m.rtcp_mux = true,
            ("rtcp-rsize", None) => m.rtcp_rsize = true,
            ("end-of-candidates", None) => m.end_of_candidates = true,
            ("rtcp", Some(v)) => other.claim(&mut m.rtcp, v.trim().to_owned(), key, v)?,
            ("candidate", Some(v)) => push(&mut m.candidates, v.to_owned(), Limit::Candidates, n)?,
            ("rtpmap", Some(v)) => {
                let (pt, rest) = split_word(v);
                match pt.parse::<u8>() {
                    Ok(pt) if !self.has_rtpmap[usize::from(pt)] => {
                        self.rtpmaps.push(parse_rtpmap(n, pt, rest)?);
                        self.has_rtpmap[usize::from(pt)] = true;
                    }
                    _ => other.push(Attribute::new(key, v))?,
                }
            }
            ("fmtp", Some(v)) => {
                let (pt, rest) = split_word(v);
                match pt.parse::<u8>() {
                    Ok(pt) => push(&mut self.fmtps, (pt, rest.to_owned()), Limit::Fmtps, n)?,
                    Err(_) => other.push(Attribute::new(key, v))?,
                }
            }
            ("rtcp-fb", Some(v)) => {
                let (pt, rest) = split_word(v);
                let pt = match pt {
                    "*" => None,
                    pt => match pt.parse::<u8>() {
                        Ok(pt) => Some(pt),
                        Err(_) => return other.push(Attribute::new(key, v)),
                    },
                };
                if rest.is_empty() {
                    return Err(invalid(n, "rtcp-fb"));
                }
                if rest.len() > Limit::RtcpFbValueLength.max() {
                    return Err(over(n, Limit::RtcpFbValueLength));
                }
                let values = self.rtcp_fbs.entry(pt).or_default();
                if !values.iter().any(|(_, x)| x == rest) {
                    push(values, (n, rest.to_owned()), Limit::RtcpFbPerCodec, n)?;
                }
            }
            ("extmap", Some(v)) => match parse_extmap(n, v)? {
                Some(e) => push(&mut m.extmaps, e, Limit::ExtMaps, n)?,
                None => other.push(Attribute::new(key, v))?,
            },
            ("msid", Some(v)) => {
                let msid = parse_msid(n, v)?;
                other.claim(&mut m.msid, msid, key, v)?;
            }
            ("ssrc", Some(v)) => {
                let line = parse_ssrc(n, v)?;
                let ssrc = line.ssrc;
                push(&mut m.ssrcs, line, Limit::SsrcLines, n)?;
                self.name_ssrc(n, ssrc)?;
            }
            ("ssrc-group", Some(v)) => {
                let group = parse_ssrc_group(n, v)?;
                let members = group.ssrcs.clone();
                push(&mut m.ssrc_groups, group, Limit::SsrcGroups, n)?;
                for ssrc in members {
                    self.name_ssrc(n, ssrc)?;
                }
            }
            ("rid", Some(v)) => push(&mut m.rids, parse_rid(n, v)?, Limit::Rids, n)?,
            ("simulcast", Some(v)) => {
                let sc = parse_simulcast(n, v)?;
                other.claim(&mut m.simulcast, sc, key, v)?;
            }
            ("sctp-port", Some(v)) => {
                let port = v.trim().parse().map_err(|_| invalid(n, "sctp-port"))?;
                other.claim(&mut m.sctp_port, port, key, v)?;
            }
            ("max-message-size", Some(v)) => {
                let size = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(n, "max-message-size"))?;
                other.claim(&mut m.max_message_size, size, key, v)?;
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
            })?,
        }
        Ok(())
    }

    /// Joins rtpmap, fmtp and rtcp-fb lines into codecs in `m=` format order. Lines that
    /// name no codec are kept as other attributes.
    fn finish(self) -> Result<MediaSection, SdpError> {
        let Self {
            mut section,
            rtpmaps,
            fmtps,
            rtcp_fbs,
            ..
        } = self;
        let is_rtp = section.protocol.contains("RTP/");
        let mut rtpmap_of = [None::<usize>; 256];
        for (i, c) in rtpmaps.iter().enumerate() {
            rtpmap_of[usize::from(c.pt)] = Some(i);
        }
        let mut rtpmaps: Vec<Option<Codec>> = rtpmaps.into_iter().map(Some).collect();
        let mut codecs: Vec<Codec> = Vec::with_capacity(rtpmaps.len());
        let mut listed = [false; 256];
        for pt in section.formats.iter().filter_map(|f| f.parse::<u8>().ok()) {
            if std::mem::replace(&mut listed[usize::from(pt)], true) {
                continue;
            }
            match rtpmap_of[usize::from(pt)].and_then(|i| rtpmaps[i].take()) {
                Some(c) => codecs.push(c),
                None => codecs.extend(is_rtp.then(|| static_codec(pt)).flatten()),
            }
        }
        codecs.extend(rtpmaps.into_iter().flatten());
        // Payload types are distinct among the codecs.
        let mut codec_of = [None::<usize>; 256];
        for (i, c) in codecs.iter().enumerate() {
            codec_of[usize::from(c.pt)] = Some(i);
        }

        for (pt, params) in fmtps {
            match codec_of[usize::from(pt)]
                .map(|i| &mut codecs[i])
                .filter(|c| c.fmtp.is_none())
            {
                Some(c) => c.fmtp = Some(params),
                None => section
                    .other
                    .push(Attribute::new("fmtp", format!("{pt} {params}"))),
            }
        }

        // Each codec takes the `*` values and its own, in line order, each once.
        let all: &[(usize, String)] = rtcp_fbs.get(&None).map_or(&[], Vec::as_slice);
        let mut total = 0;
        for c in &mut codecs {
            let own = rtcp_fbs.get(&Some(c.pt)).map_or(&[][..], Vec::as_slice);
            let mut values: Vec<&(usize, String)> = all.iter().chain(own).collect();
            values.sort_by_key(|(n, _)| *n);
            for (n, value) in values {
                if c.has_rtcp_fb(value) {
                    continue;
                }
                if c.rtcp_fb.len() == Limit::RtcpFbPerCodec.max() {
                    return Err(over(*n, Limit::RtcpFbPerCodec));
                }
                if total == Limit::RtcpFbPerSection.max() {
                    return Err(over(*n, Limit::RtcpFbPerSection));
                }
                total += 1;
                c.rtcp_fb.push(value.clone());
            }
        }
        let mut unclaimed: Vec<(usize, Attribute)> = Vec::new();
        for (pt, values) in rtcp_fbs {
            let value = |v: &str| match pt {
                Some(pt) => format!("{pt} {v}"),
                None => format!("* {v}"),
            };
            let claimed = match pt {
                Some(pt) => codec_of[usize::from(pt)].is_some(),
                None => !codecs.is_empty(),
            };
            if !claimed {
                unclaimed.extend(
                    values
                        .into_iter()
                        .map(|(n, v)| (n, Attribute::new("rtcp-fb", value(&v)))),
                );
            }
        }
        unclaimed.sort_by_key(|(n, _)| *n);
        section.other.extend(unclaimed.into_iter().map(|(_, a)| a));
        section.codecs = codecs;
        section
            .extra_lines
            .sort_by_key(|l| crate::model::media_line_rank(l.letter));
        Ok(section)
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
    let ssrcs = collect_capped(
        it.map(|s| s.parse().map_err(|_| invalid(n, "ssrc-group ssrc"))),
        Limit::SsrcGroupMembers,
        n,
    )?;
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
    let tokens: Vec<&str> = v.split_ascii_whitespace().take(5).collect();
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
        let mut rids = 0;
        for stream in pair[1].split(';') {
            let alts = stream
                .split(',')
                .map(|id| {
                    rids += 1;
                    if rids > Limit::SimulcastRids.max() {
                        return Err(over(n, Limit::SimulcastRids));
                    }
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

    /// A description with `k` items of one list; the item that passes the cap is always on
    /// the last line.
    fn with_items(limit: Limit, k: usize) -> String {
        let lines = |f: &dyn Fn(usize) -> String| (0..k).map(f).collect::<Vec<_>>().join("\r\n");
        let list = |prefix: &str, sep: &str| {
            (0..k)
                .map(|i| format!("{prefix}{i}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let m = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        let body = match limit {
            Limit::MediaSections => lines(&|_| "m=audio 9 RTP/AVP 0".into()),
            Limit::BundleMids => format!("a=group:BUNDLE {}", list("", " ")),
            Limit::SessionAttributes => lines(&|i| format!("a=x-{i}")),
            Limit::SessionLines => lines(&|i| format!("b=AS:{i}")),
            Limit::Formats => format!("m=video 9 UDP/TLS/RTP/SAVPF {}", list("", " ")),
            Limit::Candidates => format!(
                "{m}{}",
                lines(&|i| format!("a=candidate:{i} 1 udp 1 10.0.0.1 {i} typ host"))
            ),
            Limit::ExtMaps => format!(
                "{m}{}",
                lines(&|i| format!("a=extmap:{} urn:x:{i}", i % 255 + 1))
            ),
            Limit::Fmtps => format!("{m}{}", lines(&|i| format!("a=fmtp:{} x={i}", i % 256))),
            Limit::RtcpFbPerCodec => format!("{m}{}", lines(&|i| format!("a=rtcp-fb:* x-{i}"))),
            Limit::RtcpFbValueLength => format!("{m}a=rtcp-fb:96 {}", "x".repeat(k)),
            Limit::Ssrcs => format!("{m}{}", lines(&|i| format!("a=ssrc:{i} cname:c"))),
            Limit::SsrcLines => format!("{m}{}", lines(&|i| format!("a=ssrc:1 x-{i}"))),
            Limit::SsrcGroups => format!("{m}{}", lines(&|_| "a=ssrc-group:FID 1 2".into())),
            Limit::SsrcGroupMembers => format!("{m}a=ssrc-group:SIM {}", list("", " ")),
            Limit::Rids => format!("{m}{}", lines(&|i| format!("a=rid:r{i} send"))),
            Limit::SimulcastRids => format!("{m}a=simulcast:send {}", list("r", ";")),
            Limit::Attributes => format!("{m}{}", lines(&|i| format!("a=x-{i}"))),
            Limit::Lines => format!("{m}{}", lines(&|i| format!("b=AS:{i}"))),
            other => panic!("no generator for {other:?}"),
        };
        format!("{MINIMAL}{body}\r\n")
    }

    #[test]
    fn every_list_stops_at_its_cap() {
        let limits = [
            Limit::MediaSections,
            Limit::BundleMids,
            Limit::SessionAttributes,
            Limit::SessionLines,
            Limit::Formats,
            Limit::Candidates,
            Limit::ExtMaps,
            Limit::Fmtps,
            Limit::RtcpFbPerCodec,
            Limit::RtcpFbValueLength,
            Limit::Ssrcs,
            Limit::SsrcLines,
            Limit::SsrcGroups,
            Limit::SsrcGroupMembers,
            Limit::Rids,
            Limit::SimulcastRids,
            Limit::Attributes,
            Limit::Lines,
        ];
        for limit in limits {
            let at = with_items(limit, limit.max());
            assert!(parse(&at).is_ok(), "{limit:?} at its cap: {:?}", parse(&at));
            let past = with_items(limit, limit.max() + 1);
            let line = past.lines().count();
            assert_eq!(parse(&past), Err(SdpError::OverLimit { line, limit }));
        }
    }

    #[test]
    fn over_limit_errors_name_the_cap() {
        let e = parse(&with_items(Limit::Ssrcs, 65)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 71: a media section has more than 64 SSRCs"
        );
        let e = parse(&with_items(Limit::MediaSections, 4097)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 4101: the description has more than 4096 media sections"
        );
        let e = parse(&with_items(Limit::SsrcGroupMembers, 300_000)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 7: an ssrc-group has more than 16 SSRCs"
        );
        let e = parse(&with_items(Limit::RtcpFbPerCodec, 33)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 39: a payload type has more than 32 distinct rtcp-fb values"
        );
    }

    /// 256 codecs and a flood of identical `a=rtcp-fb:*` lines: every codec holds the value
    /// once, rather than once per line.
    #[test]
    fn repeated_rtcp_fb_values_are_kept_once() {
        let mut sdp = format!("{MINIMAL}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
        for pt in 0..=255 {
            sdp += &format!("a=rtpmap:{pt} c{pt}/90000\r\n");
        }
        sdp += &"a=rtcp-fb:* nack\r\n".repeat(20_000);
        sdp += "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 nack\r\n";
        let m = with_media(&sdp[MINIMAL.len()..]);
        assert_eq!(m.codecs.len(), 256);
        let held: usize = m.codecs.iter().map(|c| c.rtcp_fb.len()).sum();
        assert_eq!(held, 257);
        assert_eq!(m.codec(96).unwrap().rtcp_fb, ["nack", "nack pli"]);
        assert_eq!(m.codec(0).unwrap().rtcp_fb, ["nack"]);
    }

    #[test]
    fn rtcp_fb_caps_hold_once_star_lines_are_applied() {
        // 32 `*` values and one of its own: the codec would hold 33.
        let star: String = (0..32).map(|i| format!("a=rtcp-fb:* s{i}\r\n")).collect();
        let sdp = format!(
            "{MINIMAL}m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtpmap:97 VP9/90000\r\n{star}a=rtcp-fb:97 own\r\n"
        );
        assert_eq!(
            parse(&sdp),
            Err(SdpError::OverLimit {
                line: sdp.lines().count(),
                limit: Limit::RtcpFbPerCodec
            })
        );
        // An own value equal to a `*` one is the same value.
        let sdp = sdp.replace("a=rtcp-fb:97 own", "a=rtcp-fb:97 s3");
        let m = with_media(&sdp[MINIMAL.len()..]);
        assert_eq!(m.codec(97).unwrap().rtcp_fb.len(), 32);
        // 64 codecs with 16 values each pass the section's 1024.
        let mut sdp = format!("{MINIMAL}m=video 9 UDP/TLS/RTP/SAVPF 0\r\n");
        for pt in 0..64 {
            sdp += &format!("a=rtpmap:{pt} c{pt}/90000\r\n");
        }
        for i in 0..16 {
            sdp += &format!("a=rtcp-fb:* v{i}\r\n");
        }
        let m = with_media(&sdp[MINIMAL.len()..]);
        assert_eq!(
            m.codecs.iter().map(|c| c.rtcp_fb.len()).sum::<usize>(),
            1024
        );
        sdp += "a=rtcp-fb:63 one-more\r\n";
        assert_eq!(
            parse(&sdp),
            Err(SdpError::OverLimit {
                line: sdp.lines().count(),
                limit: Limit::RtcpFbPerSection
            })
        );
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
