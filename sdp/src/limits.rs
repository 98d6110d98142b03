//! Caps on what one description may hold.
//!
//! Descriptions come from remote peers before any permission check, and every list in the
//! model would otherwise grow with the number of lines (or of tokens on one line). Each list
//! has a cap well above what real clients send (libwebrtc, aiortc, libdatachannel; a
//! LiveKit single peer connection in a big room has 100+ sections); past it the whole
//! description is refused with [`crate::SdpError::OverLimit`] naming the [`Limit`]. The
//! parse then costs time and memory linear in the input, with a small constant.

use std::fmt;

/// One cap of the parser. [`Limit::max`] is its value; the `Display` text is what a peer
/// reads in the error (e.g. `media section has more than 64 SSRCs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `m=` sections in one description.
    MediaSections,
    /// Mids in the `a=group:BUNDLE` line.
    BundleMids,
    /// Session-level `a=` lines without a typed field.
    SessionAttributes,
    /// Session-level lines other than `v o s t a`.
    SessionLines,
    /// Formats on one `m=` line.
    Formats,
    /// `a=candidate` lines in one section.
    Candidates,
    /// `a=extmap` lines in one section.
    ExtMaps,
    /// `a=fmtp` lines in one section.
    Fmtps,
    /// Distinct `a=rtcp-fb` values of one payload type (or of `*`), and of one codec once
    /// `*` lines are applied to it. Repeated values are kept once.
    RtcpFbPerCodec,
    /// `a=rtcp-fb` values of all codecs of one section, a `*` line counting once per codec.
    RtcpFbPerSection,
    /// Bytes of one `a=rtcp-fb` value (it is copied to every codec by `*`).
    RtcpFbValueLength,
    /// Distinct SSRCs named by `a=ssrc` and `a=ssrc-group` lines of one section.
    Ssrcs,
    /// `a=ssrc` lines in one section.
    SsrcLines,
    /// `a=ssrc-group` lines in one section.
    SsrcGroups,
    /// SSRCs in one `a=ssrc-group` line.
    SsrcGroupMembers,
    /// `a=rid` lines in one section.
    Rids,
    /// Rids of one direction of an `a=simulcast` line, alternatives included.
    SimulcastRids,
    /// Section-level `a=` lines without a typed field.
    Attributes,
    /// Section-level lines other than `m c a`.
    Lines,
}

impl Limit {
    /// The cap: the largest count (or length) that is accepted.
    pub const fn max(self) -> usize {
        match self {
            // A subscriber's single peer connection gets a section per track it receives: a
            // room of 2000 publishers of audio and video, and room to spare.
            Self::MediaSections | Self::BundleMids => 4096,
            Self::SessionAttributes | Self::SessionLines => 256,
            // Payload types are one byte.
            Self::Formats | Self::Fmtps => 256,
            Self::Candidates => 256,
            // libwebrtc offers about 15 header extensions.
            Self::ExtMaps => 128,
            // libwebrtc gives a codec at most 5 values (77 in its largest video section).
            Self::RtcpFbPerCodec => 32,
            Self::RtcpFbPerSection => 1024,
            Self::RtcpFbValueLength => 128,
            // A simulcast sender names 3 layers and their 3 RTX streams.
            Self::Ssrcs => 64,
            Self::SsrcLines => 256,
            Self::SsrcGroups => 32,
            Self::SsrcGroupMembers => 16,
            Self::Rids | Self::SimulcastRids => 16,
            Self::Attributes | Self::Lines => 256,
        }
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            Self::MediaSections => ("the description has", "media sections"),
            Self::BundleMids => ("a=group:BUNDLE names", "mids"),
            Self::SessionAttributes => ("the session part has", "other attributes"),
            Self::SessionLines => ("the session part has", "other lines"),
            Self::Formats => ("an m= line lists", "formats"),
            Self::Candidates => ("a media section has", "candidates"),
            Self::ExtMaps => ("a media section has", "extmap lines"),
            Self::Fmtps => ("a media section has", "fmtp lines"),
            Self::RtcpFbPerCodec => ("a payload type has", "distinct rtcp-fb values"),
            Self::RtcpFbPerSection => ("a media section has", "rtcp-fb values over its codecs"),
            Self::RtcpFbValueLength => ("an rtcp-fb value has", "bytes"),
            Self::Ssrcs => ("a media section has", "SSRCs"),
            Self::SsrcLines => ("a media section has", "ssrc lines"),
            Self::SsrcGroups => ("a media section has", "ssrc-group lines"),
            Self::SsrcGroupMembers => ("an ssrc-group has", "SSRCs"),
            Self::Rids => ("a media section has", "rid lines"),
            Self::SimulcastRids => ("a=simulcast lists", "rids in one direction"),
            Self::Attributes => ("a media section has", "other attributes"),
            Self::Lines => ("a media section has", "other lines"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whose, what) = self.text();
        write!(f, "{whose} more than {} {what}", self.max())
    }
}
