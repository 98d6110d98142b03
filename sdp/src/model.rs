//! The data model: a session description as plain, owned, comparable values.

use std::collections::HashSet;
use std::fmt;

use crate::SdpError;

/// A whole session description: the session part and its media sections.
///
/// Every line of a parsed description lands somewhere: in a typed field, in an `other`
/// attribute list, or in an `extra_lines` list, so that writing it back loses nothing that
/// matters to a reader (`parse(write(parse(x))) == parse(x)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line; WebRTC uses `-`.
    pub session_name: String,
    /// The `t=` line; WebRTC uses `0 0`.
    pub timing: Timing,
    /// The mids of the first non-empty `a=group:BUNDLE` (RFC 8843). Further groups stay in
    /// [`SessionDescription::other`].
    pub bundle_mids: Vec<String>,
    /// `a=ice-lite` (RFC 8839 §5.3).
    pub ice_lite: bool,
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=ice-options`, e.g. `trickle`.
    pub ice_options: Option<String>,
    /// Session-level `a=fingerprint` (RFC 8122).
    pub fingerprint: Option<Fingerprint>,
    /// Session-level `a=setup` (RFC 4145).
    pub setup: Option<Setup>,
    /// What follows `a=msid-semantic:`, trimmed, e.g. `WMS`.
    pub msid_semantic: Option<String>,
    /// `a=extmap-allow-mixed` at session level (RFC 8285 §6).
    pub extmap_allow_mixed: bool,
    /// Every other session-level `a=` line, in order.
    pub other: Vec<Attribute>,
    /// Session-level lines other than `v o s t a` (`i u e p c b r z k`, further `t`,
    /// unknown letters), in order. Written back in their RFC 8866 §5 places.
    pub extra_lines: Vec<RawLine>,
    /// The media sections, in `m=` order.
    pub media: Vec<MediaSection>,
}

impl Default for SessionDescription {
    fn default() -> Self {
        Self {
            origin: Origin::default(),
            session_name: "-".to_owned(),
            timing: Timing::default(),
            bundle_mids: Vec::new(),
            ice_lite: false,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: None,
            fingerprint: None,
            setup: None,
            msid_semantic: None,
            extmap_allow_mixed: false,
            other: Vec::new(),
            extra_lines: Vec::new(),
            media: Vec::new(),
        }
    }
}

impl SessionDescription {
    /// The media section whose `a=mid` is `mid`.
    pub fn media_by_mid(&self, mid: &str) -> Option<&MediaSection> {
        self.media.iter().find(|m| m.mid.as_deref() == Some(mid))
    }

    /// The media section whose `a=mid` is `mid`, mutably.
    pub fn media_by_mid_mut(&mut self, mid: &str) -> Option<&mut MediaSection> {
        self.media
            .iter_mut()
            .find(|m| m.mid.as_deref() == Some(mid))
    }

    /// Whether `mid` is in the BUNDLE group.
    pub fn is_bundled(&self, mid: &str) -> bool {
        self.bundle_mids.iter().any(|m| m == mid)
    }

    /// The ICE username fragment that applies to `media`: its own, else the session's.
    pub fn ice_ufrag_for<'a>(&'a self, media: &'a MediaSection) -> Option<&'a str> {
        media.ice_ufrag.as_deref().or(self.ice_ufrag.as_deref())
    }

    /// The ICE password that applies to `media`: its own, else the session's.
    pub fn ice_pwd_for<'a>(&'a self, media: &'a MediaSection) -> Option<&'a str> {
        media.ice_pwd.as_deref().or(self.ice_pwd.as_deref())
    }

    /// The DTLS fingerprint that applies to `media`: its own, else the session's.
    pub fn fingerprint_for<'a>(&'a self, media: &'a MediaSection) -> Option<&'a Fingerprint> {
        media.fingerprint.as_ref().or(self.fingerprint.as_ref())
    }

    /// The DTLS role attribute that applies to `media`: its own, else the session's.
    pub fn setup_for(&self, media: &MediaSection) -> Option<Setup> {
        media.setup.or(self.setup)
    }
}

/// The `o=` line (RFC 8866 §5.2). The network type is always `IN`; the address type is
/// written as `IP6` when `address` contains a colon and `IP4` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `-` in WebRTC.
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Bumped by the writer on every new description of the same session.
    pub session_version: u64,
    /// Unicast address of the origin; WebRTC uses `127.0.0.1` or `0.0.0.0`.
    pub address: String,
}

impl Default for Origin {
    fn default() -> Self {
        Self {
            username: "-".to_owned(),
            session_id: 0,
            session_version: 0,
            address: "127.0.0.1".to_owned(),
        }
    }
}

/// The `t=` line (RFC 8866 §5.9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Start time; 0 for unbounded.
    pub start: u64,
    /// Stop time; 0 for unbounded.
    pub stop: u64,
}

/// Where a kept session-level line goes (RFC 8866 §5 order): `i u e p c b` (1-6) before
/// `t=`, then further `t` and `r` (8), `z` (9), `k` (10), unknown letters (11).
pub(crate) fn session_line_rank(letter: char) -> u8 {
    match letter {
        'i' => 1,
        'u' => 2,
        'e' => 3,
        'p' => 4,
        'c' => 5,
        'b' => 6,
        't' | 'r' => 8,
        'z' => 9,
        'k' => 10,
        _ => 11,
    }
}

/// Where a kept media-level line goes: `i` (1) before `c=`, then further `c` (2), `b` (3),
/// `k` (4), unknown letters (5).
pub(crate) fn media_line_rank(letter: char) -> u8 {
    match letter {
        'i' => 1,
        'c' => 2,
        'b' => 3,
        'k' => 4,
        _ => 5,
    }
}

/// A line kept as it was: its type letter and everything after `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The type letter, e.g. `b`.
    pub letter: char,
    /// The text after `=`.
    pub value: String,
}

/// An `a=` line not modelled by a typed field: `a=key` or `a=key:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Text before the first colon.
    pub key: String,
    /// Text after the first colon; `None` for a property attribute without a colon.
    pub value: Option<String>,
}

impl Attribute {
    /// `a=key:value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// `a=key`.
    pub fn flag(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: None,
        }
    }
}

/// `a=fingerprint:<algorithm> <value>` (RFC 8122 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name as written, e.g. `sha-256`.
    pub algorithm: String,
    /// Upper-case hex pairs separated by colons, e.g. `AB:CD:...`.
    pub value: String,
}

impl Fingerprint {
    /// A fingerprint from a digest, written as upper-case colon-separated hex.
    pub fn from_bytes(algorithm: impl Into<String>, digest: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut value = String::with_capacity(digest.len() * 3);
        for (i, b) in digest.iter().enumerate() {
            if i > 0 {
                value.push(':');
            }
            value.push(char::from(HEX[usize::from(b >> 4)]));
            value.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self {
            algorithm: algorithm.into(),
            value,
        }
    }

    /// The digest bytes. Accepts either hex case; each colon-separated group must be exactly
    /// two hex digits.
    pub fn bytes(&self) -> Result<Vec<u8>, SdpError> {
        fn nibble(c: u8) -> Result<u8, SdpError> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(SdpError::InvalidFingerprint),
            }
        }
        if self.value.is_empty() {
            return Err(SdpError::InvalidFingerprint);
        }
        self.value
            .split(':')
            .map(|pair| match pair.as_bytes() {
                [hi, lo] => Ok((nibble(*hi)? << 4) | nibble(*lo)?),
                _ => Err(SdpError::InvalidFingerprint),
            })
            .collect()
    }
}

/// `a=setup` (RFC 4145 §4, RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `active`: this side starts the DTLS handshake.
    Active,
    /// `passive`: this side waits for the handshake.
    Passive,
    /// `actpass`: either; offers must use this (RFC 8842 §5.2).
    ActPass,
    /// `holdconn`.
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::ActPass => "actpass",
            Self::HoldConn => "holdconn",
        }
    }

    /// Reads an attribute value.
    pub fn from_value(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "passive" => Some(Self::Passive),
            "actpass" => Some(Self::ActPass),
            "holdconn" => Some(Self::HoldConn),
            _ => None,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Media direction attribute (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `sendrecv`.
    SendRecv,
    /// `sendonly`.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Reads an attribute name.
    pub fn from_value(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The direction as seen from the other side: `sendonly` and `recvonly` swap.
    pub fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            d => d,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `<media>` field of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum MediaKind {
    /// `audio`.
    #[default]
    Audio,
    /// `video`.
    Video,
    /// `application` (data channels).
    Application,
    /// Anything else, as written.
    Other(String),
}

impl MediaKind {
    /// The `m=` field text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Application => "application",
            Self::Other(s) => s,
        }
    }

    /// Reads the `m=` field text.
    pub fn from_value(s: &str) -> Self {
        match s {
            "audio" => Self::Audio,
            "video" => Self::Video,
            "application" => Self::Application,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One RTP payload format: its `rtpmap`, `fmtp` and `rtcp-fb` lines together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codec {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written, e.g. `opus`, `VP8`, `rtx`.
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters of `rtpmap` (channel count for audio).
    pub channels: Option<u16>,
    /// The parameters of `a=fmtp:<pt> <params>`, as written.
    pub fmtp: Option<String>,
    /// Values of `a=rtcp-fb:<pt> <value>` (and of `a=rtcp-fb:* <value>`), e.g. `nack pli`,
    /// each once, in line order.
    pub rtcp_fb: Vec<String>,
}

impl Codec {
    /// The `key=value` pairs of the fmtp line, split at `;` and trimmed. A part without `=`
    /// yields an empty value.
    pub fn fmtp_params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fmtp
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (p, ""),
            })
    }

    /// The value of one fmtp parameter, keys compared without regard to ASCII case.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp_params()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// For an `rtx` (RFC 4588) or similar repair format: the payload type it repairs.
    pub fn apt(&self) -> Option<u8> {
        self.fmtp_param("apt").and_then(|v| v.parse().ok())
    }

    /// Whether the codec has exactly this rtcp-fb value.
    pub fn has_rtcp_fb(&self, value: &str) -> bool {
        self.rtcp_fb.iter().any(|v| v == value)
    }
}

/// `a=extmap:<id>[/<direction>] <uri> [<params>]` (RFC 8285 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    /// Local identifier.
    pub id: u8,
    /// Optional direction.
    pub direction: Option<Direction>,
    /// Extension URI.
    pub uri: String,
    /// Extension attributes, as written.
    pub params: Option<String>,
}

/// `a=msid:<stream> [<track>]` (RFC 8830).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msid {
    /// Stream id; `-` for none.
    pub stream: String,
    /// Track id (application data); empty when absent.
    pub track: String,
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]` (RFC 5576 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcLine {
    /// Synchronization source.
    pub ssrc: u32,
    /// Attribute name, e.g. `cname`, `msid`.
    pub attribute: String,
    /// Attribute value.
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...` (RFC 5576 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    /// `FID`, `SIM`, `FEC-FR`, ...
    pub semantics: String,
    /// Members in order.
    pub ssrcs: Vec<u32>,
}

/// Direction of an `a=rid` line (RFC 8851 §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RidDirection {
    /// `send`.
    Send,
    /// `recv`.
    Recv,
}

impl RidDirection {
    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Recv => "recv",
        }
    }
}

/// `a=rid:<id> <send|recv> [<params>]` (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    /// The RTP stream id.
    pub id: String,
    /// Whether the writer sends or receives this stream.
    pub direction: RidDirection,
    /// Restrictions such as `pt=96;max-width=1280`, as written.
    pub params: Option<String>,
}

/// One RTP stream id in `a=simulcast`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastId {
    /// The rid.
    pub rid: String,
    /// Written with a `~` prefix: the stream starts paused.
    pub paused: bool,
}

/// `a=simulcast` (RFC 8853 §5.1). The outer lists hold simulcast streams (separated by
/// `;`), the inner lists alternative formats of one stream (separated by `,`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulcast {
    /// Streams the writer sends.
    pub send: Vec<Vec<SimulcastId>>,
    /// Streams the writer receives.
    pub recv: Vec<Vec<SimulcastId>>,
}

impl Simulcast {
    /// The first alternative of every send stream, in order (e.g. `q`, `h`, `f`).
    pub fn send_rids(&self) -> impl Iterator<Item = &SimulcastId> {
        self.send.iter().filter_map(|alts| alts.first())
    }

    /// The first alternative of every receive stream, in order.
    pub fn recv_rids(&self) -> impl Iterator<Item = &SimulcastId> {
        self.recv.iter().filter_map(|alts| alts.first())
    }
}

/// One `m=` section with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `<media>` of the `m=` line.
    pub kind: MediaKind,
    /// `<port>`; 9 in WebRTC, 0 for a rejected section.
    pub port: u16,
    /// `<proto>`, e.g. `UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`.
    pub protocol: String,
    /// `<fmt>` list: payload types, or `webrtc-datachannel`.
    pub formats: Vec<String>,
    /// First `c=` line value, e.g. `IN IP4 0.0.0.0`.
    pub connection: Option<String>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction attribute; `None` when absent, which means `sendrecv`.
    pub direction: Option<Direction>,
    /// `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// `a=ice-options`.
    pub ice_options: Option<String>,
    /// `a=fingerprint`.
    pub fingerprint: Option<Fingerprint>,
    /// `a=setup`.
    pub setup: Option<Setup>,
    /// `a=rtcp-mux` (RFC 8858).
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize` (RFC 5506).
    pub rtcp_rsize: bool,
    /// `a=rtcp` value, e.g. `9 IN IP4 0.0.0.0`.
    pub rtcp: Option<String>,
    /// Payload formats with an rtpmap (or a static payload type), in `m=` order; formats
    /// that have an rtpmap but are missing from the `m=` line follow.
    pub codecs: Vec<Codec>,
    /// `a=extmap` lines whose id fits a `u8`, in order.
    pub extmaps: Vec<ExtMap>,
    /// The first `a=msid`.
    pub msid: Option<Msid>,
    /// `a=ssrc` lines, in order.
    pub ssrcs: Vec<SsrcLine>,
    /// `a=ssrc-group` lines, in order.
    pub ssrc_groups: Vec<SsrcGroup>,
    /// `a=rid` lines, in order.
    pub rids: Vec<Rid>,
    /// `a=simulcast`.
    pub simulcast: Option<Simulcast>,
    /// `a=sctp-port` (RFC 8841 §5.2).
    pub sctp_port: Option<u16>,
    /// `a=max-message-size` (RFC 8841 §6).
    pub max_message_size: Option<u32>,
    /// Values after `a=candidate:`, unparsed; see [`crate::parse_candidate`].
    pub candidates: Vec<String>,
    /// `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// Every other `a=` line, in order.
    pub other: Vec<Attribute>,
    /// Lines other than `m c a` (`i b k`, further `c`, unknown letters), in order.
    pub extra_lines: Vec<RawLine>,
}

impl Default for MediaSection {
    fn default() -> Self {
        Self::new(MediaKind::Audio, "UDP/TLS/RTP/SAVPF")
    }
}

impl MediaSection {
    /// An empty section with port 9 and no formats.
    pub fn new(kind: MediaKind, protocol: impl Into<String>) -> Self {
        Self {
            kind,
            port: 9,
            protocol: protocol.into(),
            formats: Vec::new(),
            connection: None,
            mid: None,
            direction: None,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: None,
            fingerprint: None,
            setup: None,
            rtcp_mux: false,
            rtcp_rsize: false,
            rtcp: None,
            codecs: Vec::new(),
            extmaps: Vec::new(),
            msid: None,
            ssrcs: Vec::new(),
            ssrc_groups: Vec::new(),
            rids: Vec::new(),
            simulcast: None,
            sctp_port: None,
            max_message_size: None,
            candidates: Vec::new(),
            end_of_candidates: false,
            other: Vec::new(),
            extra_lines: Vec::new(),
        }
    }

    /// Appends a codec and its payload type to the `m=` format list.
    pub fn add_codec(&mut self, codec: Codec) {
        self.formats.push(codec.pt.to_string());
        self.codecs.push(codec);
    }

    /// The codec with payload type `pt`.
    pub fn codec(&self, pt: u8) -> Option<&Codec> {
        self.codecs.iter().find(|c| c.pt == pt)
    }

    /// The first codec whose name matches `name` without regard to ASCII case.
    pub fn codec_by_name(&self, name: &str) -> Option<&Codec> {
        self.codecs
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The payload type of the `rtx` format whose fmtp says `apt=<pt>`.
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case("rtx") && c.apt() == Some(pt))
            .map(|c| c.pt)
    }

    /// The id negotiated for a header extension URI.
    pub fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps.iter().find(|e| e.uri == uri).map(|e| e.id)
    }

    /// The direction, with absence read as `sendrecv` (RFC 8866 §6.7).
    pub fn direction_or_default(&self) -> Direction {
        self.direction.unwrap_or(Direction::SendRecv)
    }

    /// Whether the section is rejected or disabled (port 0, RFC 8866 §5.14).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Every SSRC named by `a=ssrc` or `a=ssrc-group`, first appearance first, except those
    /// that are the repair member (second) of an `FID` (RTX) or `FEC-FR` group.
    ///
    /// Linear in the number of SSRCs named (sets, not scans), whatever the section holds.
    pub fn primary_ssrcs(&self) -> Vec<u32> {
        let repair: HashSet<u32> = self
            .ssrc_groups
            .iter()
            .filter(|g| g.semantics == "FID" || g.semantics == "FEC-FR")
            .filter_map(|g| g.ssrcs.get(1).copied())
            .collect();
        let mut seen = HashSet::new();
        self.ssrcs
            .iter()
            .map(|l| l.ssrc)
            .chain(
                self.ssrc_groups
                    .iter()
                    .flat_map(|g| g.ssrcs.iter().copied()),
            )
            .filter(|ssrc| !repair.contains(ssrc) && seen.insert(*ssrc))
            .collect()
    }

    /// The repair SSRC paired with `ssrc` by an `FID` group.
    pub fn rtx_ssrc_for(&self, ssrc: u32) -> Option<u32> {
        self.ssrc_groups
            .iter()
            .filter(|g| g.semantics == "FID")
            .find(|g| g.ssrcs.first() == Some(&ssrc))
            .and_then(|g| g.ssrcs.get(1).copied())
    }

    /// The value of `a=ssrc:<ssrc> <attribute>:<value>`, e.g. the `cname`.
    pub fn ssrc_attribute(&self, ssrc: u32, attribute: &str) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|l| l.ssrc == ssrc && l.attribute == attribute)
            .and_then(|l| l.value.as_deref())
    }

    /// The candidates, each parsed; malformed ones yield their error.
    pub fn parsed_candidates(
        &self,
    ) -> impl Iterator<Item = Result<crate::Candidate, SdpError>> + '_ {
        self.candidates.iter().map(|c| crate::parse_candidate(c))
    }

    /// The first other attribute called `key`.
    pub fn attribute(&self, key: &str) -> Option<&Attribute> {
        self.other.iter().find(|a| a.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(pt: u8, name: &str, fmtp: Option<&str>) -> Codec {
        Codec {
            pt,
            name: name.to_owned(),
            clock_rate: 90000,
            fmtp: fmtp.map(str::to_owned),
            ..Codec::default()
        }
    }

    #[test]
    fn fingerprint_bytes_and_back() {
        let fp = Fingerprint {
            algorithm: "sha-256".into(),
            value: "0a:FF:10".into(),
        };
        assert_eq!(fp.bytes().unwrap(), vec![0x0a, 0xff, 0x10]);
        let again = Fingerprint::from_bytes("sha-256", &[0x0a, 0xff, 0x10]);
        assert_eq!(again.value, "0A:FF:10");
        for bad in [
            "",
            "0",
            "0a:",
            ":0a",
            "0a:f",
            "0g",
            "0a:ff:100",
            "0a::ff",
            "é0",
        ] {
            let fp = Fingerprint {
                algorithm: "sha-256".into(),
                value: bad.into(),
            };
            assert_eq!(fp.bytes(), Err(SdpError::InvalidFingerprint), "{bad:?}");
        }
    }

    #[test]
    fn codec_fmtp_params() {
        let c = codec(
            102,
            "H264",
            Some("level-asymmetry-allowed=1; packetization-mode=1;profile-level-id=42e01f;x"),
        );
        assert_eq!(c.fmtp_param("packetization-mode"), Some("1"));
        assert_eq!(c.fmtp_param("PROFILE-LEVEL-ID"), Some("42e01f"));
        assert_eq!(c.fmtp_param("x"), Some(""));
        assert_eq!(c.fmtp_param("apt"), None);
        assert_eq!(codec(97, "rtx", Some("apt=96")).apt(), Some(96));
        assert_eq!(codec(97, "rtx", Some("apt=300")).apt(), None);
        assert_eq!(codec(97, "rtx", None).apt(), None);
    }

    #[test]
    fn rtx_lookup_and_ssrcs() {
        let mut m = MediaSection::new(MediaKind::Video, "UDP/TLS/RTP/SAVPF");
        m.add_codec(codec(96, "VP8", None));
        m.add_codec(codec(97, "rtx", Some("apt=96")));
        m.add_codec(codec(98, "VP9", None));
        m.add_codec(codec(99, "RTX", Some("apt=98")));
        assert_eq!(m.formats, ["96", "97", "98", "99"]);
        assert_eq!(m.rtx_for(96), Some(97));
        assert_eq!(m.rtx_for(98), Some(99));
        assert_eq!(m.rtx_for(97), None);
        assert_eq!(m.codec(98).map(|c| c.name.as_str()), Some("VP9"));
        assert_eq!(m.codec_by_name("vp8").map(|c| c.pt), Some(96));
        assert!(m.codec(100).is_none());

        let line = |ssrc, attribute: &str, value: &str| SsrcLine {
            ssrc,
            attribute: attribute.into(),
            value: Some(value.into()),
        };
        m.ssrcs = vec![
            line(10, "cname", "a"),
            line(11, "cname", "a"),
            line(20, "cname", "a"),
            line(21, "cname", "a"),
            line(30, "cname", "b"),
        ];
        m.ssrc_groups = vec![
            SsrcGroup {
                semantics: "SIM".into(),
                ssrcs: vec![10, 20],
            },
            SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![10, 11],
            },
            SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![20, 21],
            },
        ];
        assert_eq!(m.primary_ssrcs(), vec![10, 20, 30]);
        assert_eq!(m.rtx_ssrc_for(20), Some(21));
        assert_eq!(m.rtx_ssrc_for(30), None);
        assert_eq!(m.ssrc_attribute(30, "cname"), Some("b"));
        assert_eq!(m.ssrc_attribute(30, "msid"), None);
    }

    /// A section built in code is not held to the parser's caps: 300,000 SSRCs in groups
    /// (the size of a hostile offer before the caps) come out in order, each once, without
    /// their repair members.
    #[test]
    fn primary_ssrcs_of_a_huge_section() {
        let mut m = MediaSection::new(MediaKind::Audio, "UDP/TLS/RTP/SAVPF");
        let n = 300_000;
        m.ssrc_groups = vec![
            SsrcGroup {
                semantics: "SIM".into(),
                ssrcs: (0..n).collect(),
            },
            SsrcGroup {
                semantics: "SIM".into(),
                ssrcs: (0..n).rev().collect(),
            },
            SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![n, 7],
            },
        ];
        let primary = m.primary_ssrcs();
        assert_eq!(primary.len(), n as usize);
        assert_eq!(primary[..8], [0, 1, 2, 3, 4, 5, 6, 8]);
        assert_eq!(primary[n as usize - 2..], [n - 1, n]);
    }

    #[test]
    fn direction_helpers() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
        assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
        assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
        let m = MediaSection::default();
        assert_eq!(m.direction_or_default(), Direction::SendRecv);
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(Direction::from_value(d.as_str()), Some(d));
        }
        for s in [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ] {
            assert_eq!(Setup::from_value(&s.to_string()), Some(s));
        }
        assert_eq!(Setup::from_value("ACTIVE"), None);
    }

    #[test]
    fn session_fallbacks() {
        let mut sd = SessionDescription {
            ice_ufrag: Some("s".into()),
            setup: Some(Setup::ActPass),
            ..SessionDescription::default()
        };
        let mut m = MediaSection::new(MediaKind::Application, "UDP/DTLS/SCTP");
        m.mid = Some("0".into());
        sd.media.push(m);
        sd.bundle_mids.push("0".into());
        let m = sd.media_by_mid("0").unwrap();
        assert_eq!(sd.ice_ufrag_for(m), Some("s"));
        assert_eq!(sd.setup_for(m), Some(Setup::ActPass));
        assert_eq!(sd.fingerprint_for(m), None);
        assert!(sd.is_bundled("0") && !sd.is_bundled("1"));
        sd.media_by_mid_mut("0").unwrap().ice_ufrag = Some("m".into());
        let m = &sd.media[0];
        assert_eq!(sd.ice_ufrag_for(m), Some("m"));
        assert!(sd.media_by_mid("1").is_none());
    }
}
