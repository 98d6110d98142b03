//! SDP for WebRTC: a data model, a parser and a writer.
//!
//! Role: turn the offers and answers that LiveKit clients exchange over signalling into
//! plain values and back (RFC 8866 syntax; JSEP conventions; BUNDLE, RFC 8843; rid,
//! RFC 8851; simulcast, RFC 8853; SCTP data channels, RFC 8841; ICE attributes, RFC 8839).
//! It holds no negotiation policy: callers read an offer, decide, and build the answer as a
//! [`SessionDescription`] value, then [`SessionDescription::write`] it.
//!
//! Data flow: `&str` → [`parse`] → [`SessionDescription`] (session fields, then one
//! [`MediaSection`] per `m=` line, with [`Codec`]s joined from `rtpmap`/`fmtp`/`rtcp-fb`) →
//! [`SessionDescription::write`] → CRLF text.
//!
//! Nothing is dropped: lines and attributes without a typed field are kept in `other` and
//! `extra_lines`, so `parse(&parse(x)?.write()) == parse(x)`. Input comes from remote peers:
//! malformed input yields an [`SdpError`], never a panic. Candidates are kept as text in the
//! description; [`parse_candidate`] reads one (also the form trickled over signalling).
//!
//! This crate does no I/O and keeps no state; it is not on the media path.

#![warn(missing_docs)]

mod candidate;
mod error;
mod model;
mod parse;
mod write;

pub use candidate::{Candidate, parse_candidate};
pub use error::SdpError;
pub use model::{
    Attribute, Codec, Direction, ExtMap, Fingerprint, MediaKind, MediaSection, Msid, Origin,
    RawLine, Rid, RidDirection, SessionDescription, Setup, Simulcast, SimulcastId, SsrcGroup,
    SsrcLine, Timing,
};
pub use parse::parse;
