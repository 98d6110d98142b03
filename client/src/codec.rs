//! The RTP payload formats this client offers and answers, with the payload types, fmtp and
//! RTCP feedback it writes into SDP (RFC 7587 Opus, RFC 7741 VP8, RFC 9628 VP9, the AV1 RTP
//! specification, RFC 6184 H.264).

use std::fmt;

/// A codec we can send or receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus, 48 kHz, two channels in SDP.
    Opus,
    /// VP8.
    Vp8,
    /// VP9 profile 0.
    Vp9,
    /// AV1.
    Av1,
    /// H.264 constrained baseline, packetization mode 1 (received only).
    H264,
}

impl Codec {
    /// Every codec, audio first.
    pub const ALL: [Codec; 5] = [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::H264];

    /// The video codecs offered on a receive-only video section.
    pub const VIDEO_RECEIVE: [Codec; 4] = [Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::H264];

    /// Whether this is an audio codec.
    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Opus)
    }

    /// The `rtpmap` encoding name.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::Av1 => "AV1",
            Codec::H264 => "H264",
        }
    }

    /// The MIME type LiveKit uses in TrackInfo, e.g. `video/VP8`.
    pub fn mime_type(self) -> String {
        let kind = if self.is_audio() { "audio" } else { "video" };
        format!("{kind}/{}", self.sdp_name())
    }

    /// The codec named by an `rtpmap` encoding name or a MIME type, any case.
    pub fn from_name(name: &str) -> Option<Codec> {
        let name = name.rsplit('/').next().unwrap_or(name);
        Codec::ALL
            .into_iter()
            .find(|c| c.sdp_name().eq_ignore_ascii_case(name))
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        if self.is_audio() { 48_000 } else { 90_000 }
    }

    /// The payload type we put in our offers.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Vp8 => 96,
            Codec::Vp9 => 98,
            Codec::Av1 => 45,
            Codec::H264 => 102,
        }
    }

    /// The fmtp parameters we offer.
    pub fn fmtp(self) -> Option<&'static str> {
        match self {
            Codec::Opus => Some("minptime=10;useinbandfec=1"),
            Codec::Vp9 => Some("profile-id=0"),
            Codec::H264 => {
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
            }
            Codec::Vp8 | Codec::Av1 => None,
        }
    }

    /// The RTCP feedback we ask for: NACK and PLI for video, none for audio.
    pub fn rtcp_fb(self) -> Vec<String> {
        if self.is_audio() {
            Vec::new()
        } else {
            vec!["nack".into(), "nack pli".into(), "ccm fir".into()]
        }
    }

    /// The SDP codec entry for this codec with payload type `pt`.
    pub fn sdp_codec(self, pt: u8) -> lkr_sdp::Codec {
        lkr_sdp::Codec {
            pt,
            name: self.sdp_name().to_owned(),
            clock_rate: self.clock_rate(),
            channels: self.is_audio().then_some(2),
            fmtp: self.fmtp().map(str::to_owned),
            rtcp_fb: self.rtcp_fb(),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdp_name())
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl MediaKind {
    /// `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    /// The LiveKit TrackType value.
    pub fn track_type(self) -> lkr_proto::pb::TrackType {
        match self {
            MediaKind::Audio => lkr_proto::pb::TrackType::Audio,
            MediaKind::Video => lkr_proto::pb::TrackType::Video,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_name(c.sdp_name()), Some(c));
            assert_eq!(Codec::from_name(&c.mime_type()), Some(c));
        }
        assert_eq!(Codec::from_name("vp8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_name("video/H265"), None);
    }
}
