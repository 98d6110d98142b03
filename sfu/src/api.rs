//! What the control plane says to the media core, and what it hears back.
//!
//! Identifiers are plain numbers chosen by the control plane; the core never sees protobuf,
//! SDP text or HTTP. Every command is applied in order on the media thread.

use bytes::Bytes;
use std::time::Duration;

/// One ICE/DTLS transport (one RTCPeerConnection of a participant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// One published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

/// A local sink: a consumer on this node (a track egress writing a file) that receives one
/// track's RTP packets from the media core instead of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SinkId(pub u64);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// The codec families the core knows how to inspect (keyframes, descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    Opus,
    /// RFC 2198 redundant audio wrapping Opus.
    Red,
    Vp8,
    Vp9,
    H264,
    Av1,
    Other,
}

impl CodecKind {
    /// The family of an SDP encoding name.
    pub fn from_name(name: &str) -> CodecKind {
        match name.to_ascii_lowercase().as_str() {
            "opus" => CodecKind::Opus,
            "red" => CodecKind::Red,
            "vp8" => CodecKind::Vp8,
            "vp9" => CodecKind::Vp9,
            "h264" => CodecKind::H264,
            "av1" | "av1x" => CodecKind::Av1,
            _ => CodecKind::Other,
        }
    }
}

/// A remote DTLS certificate fingerprint from SDP (`a=fingerprint:sha-256 AB:CD:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFingerprint {
    pub algorithm: String,
    pub value: String,
}

/// What the core needs to run one transport.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    pub remote_fingerprint: RemoteFingerprint,
    /// Data channels the server opens itself once SCTP is up (dual-PC subscriber side).
    pub open_channels: Vec<ChannelSpec>,
    /// The group (room) the transport belongs to, [`group_key`] of its name: a sharded
    /// driver keeps a group's peers together on one shard while that shard has room.
    pub group: u64,
}

/// The group key of a room name (FNV-1a, stable across runs).
pub fn group_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A data channel the server opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub label: String,
    pub ordered: bool,
    pub max_retransmits: Option<u16>,
}

/// Header extension ids negotiated on a transport (0: not negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    pub mid: u8,
    pub rid: u8,
    pub repaired_rid: u8,
    pub audio_level: u8,
    pub transport_cc: u8,
    pub abs_send_time: u8,
}

/// A payload type of a published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadType {
    pub pt: u8,
    pub codec: CodecKind,
    pub clock_rate: u32,
}

/// An incoming track: where its RTP comes from and how to recognise it.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub peer: PeerId,
    pub track: TrackId,
    pub kind: MediaKind,
    /// The m-section's mid (matched against the mid header extension).
    pub mid: String,
    /// Simulcast rids, lowest quality first (`q`, `h`, `f`); empty for a single stream.
    pub rids: Vec<String>,
    /// SSRCs announced in SDP (non-simulcast), primary first.
    pub ssrcs: Vec<u32>,
    pub payload_types: Vec<PayloadType>,
    pub ext: ExtIds,
    /// RFC 4588 retransmission payload types: (rtx pt, the pt it repairs).
    pub rtx: Vec<(u8, u8)>,
    /// Retransmission SSRCs announced in SDP (`a=ssrc-group:FID`): (media ssrc, rtx ssrc).
    pub rtx_ssrcs: Vec<(u32, u32)>,
}

/// Caps on the work and state one peer can cause in the media core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Distinct lost packets one RTCP datagram may ask to be resent; the rest are counted
    /// and ignored.
    pub max_nacks_per_packet: usize,
    /// Retransmissions sent to one peer per second; past it NACKs are counted and ignored.
    pub max_retransmissions_per_sec: u32,
    /// The peer's data channels: how many, label length, send-buffer bytes.
    pub data_channel: lkr_datachannel::SctpLimits,
    /// Estimate each subscriber's bandwidth from its transport-cc feedback and fit its
    /// layers into it (`rtc.congestion_control.enabled`); otherwise layers follow the loss
    /// in receiver reports.
    pub bandwidth_estimation: bool,
    /// Congestion control may pause a subscriber's video when not even the lowest layer
    /// fits (`rtc.congestion_control.allow_pause`); otherwise it keeps the lowest layer.
    pub allow_pause: bool,
    /// How audio levels become active speakers (`audio:`).
    pub speakers: SpeakerDetection,
    /// Least time between two keyframe requests to a publisher for one layer.
    pub pli_throttle: PliThrottle,
    /// Packets each layer of a published track keeps for answering NACKs: video, audio
    /// (LiveKit's `rtc.packet_buffer_size_video` / `_audio`), rounded up to a power of two
    /// within [`crate::forward::CACHE_SLOTS_RANGE`].
    pub packet_buffer: (usize, usize),
}

/// Least time between two keyframe requests (PLI) for one layer of a published video
/// track, by the layer's quality (LiveKit's `rtc.pli_throttle`): however many subscribers
/// ask, the publisher is asked at most once per interval. A track without simulcast is its
/// lowest layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PliThrottle {
    pub low: std::time::Duration,
    pub mid: std::time::Duration,
    pub high: std::time::Duration,
}

impl Default for PliThrottle {
    /// 300 ms for every layer: a subscriber that joins or switches layers waits at most that
    /// long for its keyframe request to reach the publisher.
    fn default() -> Self {
        let d = std::time::Duration::from_millis(300);
        Self {
            low: d,
            mid: d,
            high: d,
        }
    }
}

impl PliThrottle {
    /// The interval of simulcast layer `index` (0 lowest; 2 and above high).
    pub fn for_layer(&self, index: usize) -> std::time::Duration {
        match index {
            0 => self.low,
            1 => self.mid,
            _ => self.high,
        }
    }
}

/// How the levels publishers write into their audio packets (the audio-level header
/// extension) become active speakers: LiveKit's `audio:` keys and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerDetection {
    /// Level (`-dBov`, 0 loudest, 127 silence) at or under which a packet counts as speech
    /// (`audio.active_level`, 35: -35 dBov or louder).
    pub active_level: u8,
    /// Share of an interval's packets, in percent, that must be speech for the interval to
    /// be (`audio.min_percentile`, 40).
    pub min_percentile: u8,
    /// Time between level reports (`audio.update_interval`, 400 ms); zero turns detection
    /// off: no levels, no active speakers.
    pub update_interval: Duration,
    /// The reported level is an exponential moving average with the centre of mass of this
    /// many intervals, as LiveKit's (`audio.smooth_intervals`, 2; 0 or 1: none). A silent
    /// interval reports 0 at once.
    pub smooth_intervals: u32,
}

impl Default for SpeakerDetection {
    fn default() -> Self {
        Self {
            active_level: 35,
            min_percentile: 40,
            update_interval: Duration::from_millis(400),
            smooth_intervals: 2,
        }
    }
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_nacks_per_packet: 256,
            max_retransmissions_per_sec: 2000,
            data_channel: lkr_datachannel::SctpLimits::default(),
            bandwidth_estimation: true,
            allow_pause: true,
            speakers: SpeakerDetection::default(),
            pli_throttle: PliThrottle::default(),
            packet_buffer: (crate::forward::CACHE_SLOTS, crate::forward::CACHE_SLOTS),
        }
    }
}

/// How one subscriber receives one track.
#[derive(Debug, Clone)]
pub struct SubscribeSpec {
    pub peer: PeerId,
    pub track: TrackId,
    pub ssrc: u32,
    /// The subscriber's payload type for each codec family of the track.
    pub payload_types: Vec<(CodecKind, u8)>,
    /// The transport-cc header extension id the subscriber's transport negotiated (0:
    /// none); with it, the core estimates the subscriber's bandwidth from its feedback.
    pub transport_cc: u8,
    /// The RTX stream for this track, if the subscriber takes one: its SSRC and the
    /// `(rtx pt, media pt)` pairs.
    pub rtx: Option<(u32, Vec<(u8, u8)>)>,
    /// Allocation priority when the link does not carry everything: 2 for screen share,
    /// 1 for what should go first otherwise, 0 for the rest.
    pub priority: u8,
    /// The playout-delay header extension written on every packet, when the room asks
    /// receivers to hold its video: the subscriber's extension id and the element's value
    /// ([`playout_delay`]).
    pub playout_delay: Option<(u8, [u8; 3])>,
}

/// The value of a playout-delay header extension element
/// (`http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`): the minimum and maximum
/// delay in 10 ms units, 12 bits each. Milliseconds past 40 950 are cut to it.
pub fn playout_delay(min_ms: u32, max_ms: u32) -> [u8; 3] {
    let unit = |ms: u32| (ms / 10).min(0x0FFF);
    let (min, max) = (unit(min_ms), unit(max_ms));
    [
        (min >> 4) as u8,
        ((min & 0x0F) << 4) as u8 | (max >> 8) as u8,
        max as u8,
    ]
}

/// One layer of a published track as the node page shows it: cumulative counters and the
/// rates since the previous [`crate::Engine::track_stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    /// Simulcast rid (empty for a single stream).
    pub rid: String,
    /// Packets and bytes received (retransmissions included; padding-only packets count as
    /// packets, and padding as no bytes).
    pub packets: u64,
    pub bytes: u64,
    /// Bits per second received since the previous look.
    pub bitrate_bps: u64,
    /// Share of the packets expected since the previous look that did not arrive (0..1).
    pub loss: f32,
    /// Whether packets arrived lately.
    pub live: bool,
}

/// A track published on this shard, for the node page.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackStats {
    pub track: TrackId,
    pub kind: MediaKind,
    pub layers: Vec<LayerStats>,
    /// Local sinks (track egress) it feeds.
    pub sinks: usize,
}

/// Control plane → core.
#[derive(Debug, Clone)]
pub enum Command {
    /// Sets the caps on what one peer may cause (sent once, before any peer).
    SetLimits(MediaLimits),
    AddPeer {
        peer: PeerId,
        config: PeerConfig,
    },
    RemovePeer {
        peer: PeerId,
    },
    /// An ICE restart of a transport: both sides' new credentials (DTLS and SRTP go on).
    RestartIce {
        peer: PeerId,
        local_ufrag: String,
        local_pwd: String,
        remote_ufrag: String,
        remote_pwd: String,
    },
    Publish(PublishSpec),
    Unpublish {
        track: TrackId,
    },
    Subscribe(SubscribeSpec),
    Unsubscribe {
        peer: PeerId,
        track: TrackId,
    },
    /// Caps what congestion control may send one subscriber, bit/s, below its estimate
    /// (0: no cap). A client's simulated bandwidth (`SimulateScenario`), as LiveKit's
    /// channel capacity.
    SetChannelCapacity {
        peer: PeerId,
        bps: u64,
    },
    /// Pause or resume forwarding of one subscription.
    SetPaused {
        peer: PeerId,
        track: TrackId,
        paused: bool,
    },
    /// Caps the simulcast layer one subscriber receives (0 = lowest).
    SetMaxLayer {
        peer: PeerId,
        track: TrackId,
        max_layer: u8,
    },
    /// Send one message on the peer's `_reliable` or `_lossy` channel.
    SendData {
        peer: PeerId,
        reliable: bool,
        data: Bytes,
    },
    /// Send one data-track packet on the peer's `_data_track` channel (unordered, never
    /// retransmitted); dropped when that channel is not open.
    SendDataTrack {
        peer: PeerId,
        data: Bytes,
    },
    /// Ask the publisher of `track` for a keyframe.
    RequestKeyframe {
        track: TrackId,
    },
    /// Hand every packet of `track` (plain RTP as the publisher sent it, one simulcast layer)
    /// to local sink `sink`, starting with a keyframe request. See [`crate::Engine::drain_sinks`].
    AddSink {
        sink: SinkId,
        track: TrackId,
    },
    /// Stop handing packets to `sink`.
    RemoveSink {
        sink: SinkId,
    },
}

/// Core → control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// ICE and DTLS are up: media can flow.
    PeerConnected { peer: PeerId },
    /// The transport failed or went silent past consent freshness.
    PeerDisconnected { peer: PeerId, reason: String },
    /// The remote opened (or acknowledged) a data channel.
    ChannelOpen { peer: PeerId, label: String },
    /// A data channel message.
    Data {
        peer: PeerId,
        label: String,
        binary: bool,
        data: Vec<u8>,
    },
    /// The first RTP packet of a track arrived.
    TrackStarted { track: TrackId },
    /// Audio levels of the last interval (RFC 6464 audio-level extension), for every audio
    /// track that sent levels: linear level 0..1 and whether it counted as speaking.
    AudioLevels { levels: Vec<(TrackId, f32, bool)> },
    /// Upstream packet loss of every peer that published media in the last interval
    /// (fraction 0..1), for connection quality.
    Loss { peers: Vec<(PeerId, f32)> },
    /// Congestion control paused (or resumed) one subscription.
    StreamState {
        peer: PeerId,
        track: TrackId,
        paused: bool,
    },
}

impl Event {
    /// Whether the control plane can live without this event when it falls behind: data
    /// messages and periodic measurements can be dropped (and are counted); connection,
    /// channel and track state cannot.
    pub fn is_droppable(&self) -> bool {
        matches!(
            self,
            Event::Data { .. } | Event::AudioLevels { .. } | Event::Loss { .. }
        )
    }
}
