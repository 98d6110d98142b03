//! SDP for WebRTC: a data model, a parser and a writer.
//!
//! Role: turn the offers and answers that LiveKit clients exchange over signalling into
//! plain values and back (RFC 8866 syntax; JSEP conventions; BUNDLE, RFC 8843; rid,
//! RFC 8851; simulcast, RFC 8853; SCTP data channels, RFC 8841; ICE attributes, RFC 8839).
//! It holds no negotiation policy: callers read an offer, decide, and build the answer as a
//! [`SessionDescription`] value, then [`SessionDescription::write`] it. The section shapes
//! both roles write (RTP and data channel sections, transport lines, a sender's msid and
//! ssrc lines, simulcast rids, rejected sections) come from one set of writers,
//! [`MediaSection::rtp`], [`MediaSection::set_transport`] and their neighbours, used by the
//! server's negotiation and by our own client alike.
//!
//! Data flow: `&str` → [`parse`] → [`SessionDescription`] (session fields, then one
//! [`MediaSection`] per `m=` line, with [`Codec`]s joined from `rtpmap`/`fmtp`/`rtcp-fb`) →
//! [`SessionDescription::write`] → CRLF text.
//!
//! Nothing is dropped but repeats of one rtcp-fb value of a codec (kept once): lines and
//! attributes without a typed field are kept in `other` and `extra_lines`, so `parse(&parse(x)?.write()) == parse(x)`. Input comes from remote peers:
//! malformed input yields an [`SdpError`], never a panic, and every list a description holds
//! has a cap (a [`Limit`]: media sections, SSRCs, rtcp-fb values, candidates, ...), so a
//! parse costs time and memory linear in its input. Candidates are kept as text in the
//! description; [`parse_candidate`] reads one (also the form trickled over signalling).
//!
//! This crate does no I/O and keeps no state; it is not on the media path.

#![warn(missing_docs)]

mod candidate;
mod error;
mod limits;
mod model;
mod parse;
mod sections;
mod write;

pub use candidate::{Candidate, parse_candidate};
pub use error::SdpError;
pub use limits::Limit;
pub use model::{
    Attribute, Codec, Direction, ExtMap, Fingerprint, MediaKind, MediaSection, Msid, Origin,
    RawLine, Rid, RidDirection, SessionDescription, Setup, Simulcast, SimulcastId, SsrcGroup,
    SsrcLine, Timing,
};
pub use parse::parse;
pub use sections::{RTP_PROTOCOL, SCTP_PROTOCOL, TransportLines};

/// Header extension URIs WebRTC peers negotiate with `a=extmap`.
pub mod ext {
    /// RFC 8843 mid header extension.
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// RFC 8852 rid header extension.
    pub const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// RFC 8852 repaired rid header extension.
    pub const REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// RFC 6464 client-to-mixer audio level.
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// Transport-wide sequence numbers for congestion control feedback.
    pub const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// Absolute send time.
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// The minimum and maximum delay a receiver should play video out with.
    pub const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
}
