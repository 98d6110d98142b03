//! Media as the simulated clients make and check it: a publisher that writes RTP the way a
//! browser would (VP8 with a valid payload descriptor, keyframes periodically and on request;
//! Opus-like audio) and keeps a history for retransmissions, and a receive stream that
//! records what arrived, finds gaps and checks numbering.
//!
//! Every payload ends with a [`PayloadTag`] naming the packet as the publisher sent it
//! (SSRC, sequence number, timestamp, frame) and a checksum of the bytes before it, so that a
//! subscriber can tell which original packet each rewritten one carries and that its payload
//! arrived intact.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use lkr_rtp::{RtpView, RtpWriter, SeqUnwrapper};
use lkr_sfu::{CodecKind, MediaKind, PayloadType, TrackId};

/// The payload type our publishers use for VP8.
pub const VP8_PT: u8 = 96;
/// The payload type our publishers use for Opus.
pub const OPUS_PT: u8 = 111;
/// Room for the SRTP authentication tag behind a packet.
pub const SRTP_ROOM: usize = 32;

/// A video source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    pub fps: u32,
    pub packets_per_frame: u16,
    /// RTP payload bytes per packet (descriptor and tag included).
    pub payload_len: usize,
    /// A keyframe every this many frames, besides the first frame and those asked for by PLI.
    pub keyframe_interval: Option<u32>,
    pub pt: u8,
}

impl Default for VideoConfig {
    /// 30 fps, 3 packets of 1000 payload bytes per frame, a keyframe every 5 s.
    fn default() -> Self {
        Self {
            fps: 30,
            packets_per_frame: 3,
            payload_len: 1000,
            keyframe_interval: Some(150),
            pt: VP8_PT,
        }
    }
}

/// An audio source: one Opus-like packet per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    pub ptime: Duration,
    pub payload_len: usize,
    pub pt: u8,
}

impl Default for AudioConfig {
    /// 20 ms frames of 80 bytes.
    fn default() -> Self {
        Self {
            ptime: Duration::from_millis(20),
            payload_len: 80,
            pt: OPUS_PT,
        }
    }
}

/// What a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource {
    Video(VideoConfig),
    Audio(AudioConfig),
}

impl MediaSource {
    /// Default VP8 video.
    pub fn video() -> Self {
        MediaSource::Video(VideoConfig::default())
    }

    /// Default Opus audio.
    pub fn audio() -> Self {
        MediaSource::Audio(AudioConfig::default())
    }

    pub fn kind(&self) -> MediaKind {
        match self {
            MediaSource::Video(_) => MediaKind::Video,
            MediaSource::Audio(_) => MediaKind::Audio,
        }
    }

    pub fn codec(&self) -> CodecKind {
        match self {
            MediaSource::Video(_) => CodecKind::Vp8,
            MediaSource::Audio(_) => CodecKind::Opus,
        }
    }

    /// The payload type as announced to the engine.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            MediaSource::Video(v) => PayloadType {
                pt: v.pt,
                codec: CodecKind::Vp8,
                clock_rate: 90_000,
            },
            MediaSource::Audio(a) => PayloadType {
                pt: a.pt,
                codec: CodecKind::Opus,
                clock_rate: 48_000,
            },
        }
    }

    /// Time between frames.
    pub fn frame_interval(&self) -> Duration {
        match self {
            MediaSource::Video(v) => Duration::from_secs(1) / v.fps.max(1),
            MediaSource::Audio(a) => a.ptime,
        }
    }

    /// RTP timestamp ticks per frame.
    pub fn ticks_per_frame(&self) -> u32 {
        let rate = self.payload_type().clock_rate;
        match self {
            MediaSource::Video(v) => rate / v.fps.max(1),
            MediaSource::Audio(a) => {
                let ticks = (a.ptime.as_nanos() * u128::from(rate) + 500_000_000) / 1_000_000_000;
                u32::try_from(ticks).unwrap_or(u32::MAX)
            }
        }
    }

    pub fn packets_per_frame(&self) -> u16 {
        match self {
            MediaSource::Video(v) => v.packets_per_frame.max(1),
            MediaSource::Audio(_) => 1,
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            MediaSource::Video(v) => v.payload_len,
            MediaSource::Audio(a) => a.payload_len,
        }
    }
}

/// The trailer of every simulated payload: the packet as first sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTag {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub frame: u32,
    /// Packet index within the frame.
    pub index: u16,
    pub keyframe: bool,
}

const TAG_MAGIC: [u8; 4] = *b"SIM1";
/// Bytes of the trailer: magic, fields, checksum.
pub const TAG_LEN: usize = 4 + 4 + 2 + 4 + 4 + 2 + 1 + 4;

/// FNV-1a, enough to notice a corrupted or mixed-up payload.
fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl PayloadTag {
    /// Appends the trailer, whose checksum covers `payload` as it stands from `covered_from`
    /// on (a codec descriptor before that is the server's to rewrite).
    fn append(&self, payload: &mut Vec<u8>, covered_from: usize) {
        let sum = checksum(&payload[covered_from..]);
        payload.extend_from_slice(&TAG_MAGIC);
        payload.extend_from_slice(&self.ssrc.to_be_bytes());
        payload.extend_from_slice(&self.seq.to_be_bytes());
        payload.extend_from_slice(&self.ts.to_be_bytes());
        payload.extend_from_slice(&self.frame.to_be_bytes());
        payload.extend_from_slice(&self.index.to_be_bytes());
        payload.push(u8::from(self.keyframe));
        payload.extend_from_slice(&sum.to_be_bytes());
    }

    /// Reads the trailer of a payload: the tag, and whether the bytes from `covered_from` up
    /// to it match its checksum. `None` when there is no trailer.
    pub fn read(payload: &[u8], covered_from: usize) -> Option<(PayloadTag, bool)> {
        let start = payload.len().checked_sub(TAG_LEN)?;
        if covered_from > start {
            return None;
        }
        let t = &payload[start..];
        if t[..4] != TAG_MAGIC {
            return None;
        }
        let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
        let tag = PayloadTag {
            ssrc: be32(4),
            seq: be16(8),
            ts: be32(10),
            frame: be32(14),
            index: be16(18),
            keyframe: t[20] != 0,
        };
        Some((tag, checksum(&payload[covered_from..start]) == be32(21)))
    }
}

/// Counters of one publisher.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublisherStats {
    pub packets_sent: u64,
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub plis_received: u64,
    /// NACK packets naming this SSRC.
    pub nack_packets_received: u64,
    /// Sequence numbers asked for by those NACKs.
    pub nacks_received: u64,
    pub retransmitted: u64,
    /// NACKed sequence numbers no longer (or never) in the history.
    pub nack_misses: u64,
}

/// Packets kept for answering NACKs.
const HISTORY_SLOTS: usize = 2048;

/// One outgoing track of a client.
#[derive(Debug)]
pub struct Publisher {
    pub track: TrackId,
    pub ssrc: u32,
    pub source: MediaSource,
    first_seq: u16,
    next_seq: u16,
    ts_base: u32,
    /// The frame being written (or next to be).
    frame: u32,
    /// Packets of `frame` written so far.
    index: u16,
    frame_is_key: bool,
    keyframe_requested: bool,
    sending: bool,
    next_frame_at: Instant,
    history: Vec<Option<(u16, Vec<u8>)>>,
    pub stats: PublisherStats,
}

impl Publisher {
    /// A publisher whose first packet has sequence number `first_seq` and timestamp `ts_base`,
    /// sending its first frame at `now`.
    pub fn new(
        track: TrackId,
        ssrc: u32,
        source: MediaSource,
        first_seq: u16,
        ts_base: u32,
        now: Instant,
    ) -> Self {
        Self {
            track,
            ssrc,
            source,
            first_seq,
            next_seq: first_seq,
            ts_base,
            frame: 0,
            index: 0,
            frame_is_key: false,
            keyframe_requested: false,
            sending: true,
            next_frame_at: now,
            history: (0..HISTORY_SLOTS).map(|_| None).collect(),
            stats: PublisherStats::default(),
        }
    }

    /// The first packet's sequence number.
    pub fn first_seq(&self) -> u16 {
        self.first_seq
    }

    /// The next packet's sequence number.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Whether frames are being sent on the clock.
    pub fn is_sending(&self) -> bool {
        self.sending
    }

    /// Starts or stops sending frames on the clock (retransmissions go on either way).
    pub fn set_sending(&mut self, sending: bool, now: Instant) {
        if sending && !self.sending {
            self.next_frame_at = now;
        }
        self.sending = sending;
    }

    /// Makes the next frame a keyframe (what a PLI does).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// When the next frame is due, if sending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sending.then_some(self.next_frame_at)
    }

    /// Writes every frame due by `now` into `out` as plain RTP packets.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        while self.sending && self.next_frame_at <= now {
            for _ in 0..self.source.packets_per_frame() {
                out.push(self.next_packet());
            }
            self.next_frame_at += self.source.frame_interval();
        }
    }

    /// The next plain RTP packet, starting a new frame when the previous one is complete.
    /// Kept in the history for NACKs.
    pub fn next_packet(&mut self) -> Vec<u8> {
        let ppf = self.source.packets_per_frame();
        let video = matches!(self.source, MediaSource::Video(_));
        if self.index == 0 {
            let periodic = match self.source {
                MediaSource::Video(v) => v
                    .keyframe_interval
                    .is_some_and(|n| n > 0 && self.frame.is_multiple_of(n)),
                MediaSource::Audio(_) => false,
            };
            self.frame_is_key = video && (self.frame == 0 || periodic || self.keyframe_requested);
            if self.frame_is_key {
                self.keyframe_requested = false;
                self.stats.keyframes_sent += 1;
            }
        }
        let seq = self.next_seq;
        let ts = self
            .ts_base
            .wrapping_add(self.frame.wrapping_mul(self.source.ticks_per_frame()));
        let marker = video && self.index + 1 == ppf;
        let tag = PayloadTag {
            ssrc: self.ssrc,
            seq,
            ts,
            frame: self.frame,
            index: self.index,
            keyframe: self.frame_is_key,
        };

        let mut packet = Vec::with_capacity(12 + self.source.payload_len() + SRTP_ROOM);
        packet.resize(12, 0);
        let pt = self.source.payload_type().pt;
        let n = RtpWriter::write_header(&mut packet, marker, pt, seq, ts, self.ssrc, &[])
            .expect("12 bytes hold a header without extensions");
        packet.truncate(n);
        let mut payload = Vec::with_capacity(self.source.payload_len());
        let descriptor_len = match self.source {
            MediaSource::Video(_) => self.write_vp8_headers(&mut payload),
            // TOC byte (RFC 6716 §3.1): config 31 (CELT FB 20 ms), mono, one frame.
            MediaSource::Audio(_) => {
                payload.push(31 << 3);
                0
            }
        };
        let fill_to = self.source.payload_len().saturating_sub(TAG_LEN);
        let mut i = 0u8;
        while payload.len() < fill_to {
            payload.push((seq as u8).wrapping_add(i));
            i = i.wrapping_add(1);
        }
        tag.append(&mut payload, descriptor_len);
        packet.extend_from_slice(&payload);

        self.remember(seq, &packet);
        self.stats.packets_sent += 1;
        self.next_seq = seq.wrapping_add(1);
        self.index += 1;
        if self.index == ppf {
            self.index = 0;
            self.frame = self.frame.wrapping_add(1);
            self.stats.frames_sent += 1;
        }
        packet
    }

    /// A packet of nothing but `padding` bytes of RTP padding (RFC 3550 §5.1), on the next
    /// sequence number and the timestamp of the last frame: what libwebrtc sends on a media
    /// SSRC to probe bandwidth when no RTX stream was negotiated. Only between frames.
    pub fn padding_packet(&mut self, padding: u8) -> Vec<u8> {
        let seq = self.next_seq;
        let ts = self.ts_base.wrapping_add(
            self.frame
                .wrapping_sub(1)
                .wrapping_mul(self.source.ticks_per_frame()),
        );
        let mut packet = Vec::with_capacity(12 + usize::from(padding) + SRTP_ROOM);
        packet.resize(12, 0);
        let pt = self.source.payload_type().pt;
        let n = RtpWriter::write_header(&mut packet, false, pt, seq, ts, self.ssrc, &[])
            .expect("12 bytes hold a header without extensions");
        packet.truncate(n);
        if padding > 0 {
            packet[0] |= 0x20;
            packet.resize(n + usize::from(padding), 0);
            packet[n + usize::from(padding) - 1] = padding;
        }
        self.next_seq = seq.wrapping_add(1);
        packet
    }

    /// VP8 payload descriptor (RFC 7741 §4.2) with a 15-bit PictureID, then on a frame's
    /// first packet the VP8 payload header (RFC 6386 §9.1), with the keyframe start code and
    /// a 640x360 size on keyframes. Returns the length of the payload descriptor.
    fn write_vp8_headers(&self, payload: &mut Vec<u8>) -> usize {
        let start = self.index == 0;
        // X=1, S on the first packet, PID 0.
        payload.push(0x80 | if start { 0x10 } else { 0 });
        // I=1: PictureID present.
        payload.push(0x80);
        let pid = (self.frame & 0x7FFF) as u16;
        payload.push(0x80 | (pid >> 8) as u8);
        payload.push(pid as u8);
        let descriptor_len = payload.len();
        if start {
            // Frame tag: P (inverse keyframe flag), version 0, show_frame, first partition size.
            let first_part = 100u32;
            let tag = u32::from(!self.frame_is_key) | (1 << 4) | (first_part << 5);
            payload.extend_from_slice(&tag.to_le_bytes()[..3]);
            if self.frame_is_key {
                payload.extend_from_slice(&[0x9D, 0x01, 0x2A]);
                payload.extend_from_slice(&640u16.to_le_bytes());
                payload.extend_from_slice(&360u16.to_le_bytes());
            }
        }
        descriptor_len
    }

    fn remember(&mut self, seq: u16, packet: &[u8]) {
        let slot = &mut self.history[usize::from(seq) % HISTORY_SLOTS];
        match slot {
            Some((s, data)) => {
                *s = seq;
                data.clear();
                data.extend_from_slice(packet);
            }
            None => *slot = Some((seq, packet.to_vec())),
        }
    }

    /// The plain packet sent with `seq`, if still in the history.
    pub fn history(&self, seq: u16) -> Option<&[u8]> {
        match &self.history[usize::from(seq) % HISTORY_SLOTS] {
            Some((s, data)) if *s == seq => Some(data),
            _ => None,
        }
    }
}

/// One packet as a subscriber received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvPacket {
    pub seq: u16,
    /// `seq` extended across wraps.
    pub ext: u64,
    pub ts: u32,
    pub marker: bool,
    pub pt: u8,
    pub at: Instant,
    /// Starts a keyframe by the codec's own rules.
    pub keyframe: bool,
    /// The VP8 PictureID as received (the server may rewrite it).
    pub picture_id: Option<u16>,
    /// The packet as the publisher sent it, and whether its payload arrived intact.
    pub tag: Option<(PayloadTag, bool)>,
    /// It filled a gap that had been detected.
    pub repaired: bool,
}

#[derive(Debug, Clone, Copy)]
struct NackState {
    last_sent: Option<Instant>,
    tries: u8,
}

/// How a subscriber asks for lost packets, as libwebrtc's NACK module does: at once when a
/// gap shows, again every `retry` until `max_tries`, and a PLI when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackPolicy {
    pub enabled: bool,
    pub retry: Duration,
    pub max_tries: u8,
    /// A gap larger than this is not NACKed (a keyframe is asked for instead).
    pub max_gap: u64,
    pub pli_on_give_up: bool,
}

impl Default for NackPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            retry: Duration::from_millis(100),
            max_tries: 10,
            max_gap: 1000,
            pli_on_give_up: true,
        }
    }
}

/// Counters of one receive stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    pub received: u64,
    pub duplicates: u64,
    /// Gaps filled later.
    pub repaired: u64,
    pub nack_packets_sent: u64,
    pub nacks_sent: u64,
    pub given_up: u64,
    pub plis_sent: u64,
    /// Payloads whose checksum did not match.
    pub corrupt: u64,
}

/// One incoming stream (SSRC) of a subscriber.
#[derive(Debug)]
pub struct ReceivedStream {
    pub ssrc: u32,
    pub track: Option<TrackId>,
    pub codec: CodecKind,
    /// Every packet, in arrival order.
    pub packets: Vec<RecvPacket>,
    unwrapper: SeqUnwrapper,
    received: BTreeSet<u64>,
    highest: Option<u64>,
    missing: BTreeMap<u64, NackState>,
    pli_due: bool,
    pub stats: StreamStats,
}

impl ReceivedStream {
    pub fn new(ssrc: u32, track: Option<TrackId>, codec: CodecKind) -> Self {
        Self {
            ssrc,
            track,
            codec,
            packets: Vec::new(),
            unwrapper: SeqUnwrapper::new(),
            received: BTreeSet::new(),
            highest: None,
            missing: BTreeMap::new(),
            pli_due: false,
            stats: StreamStats::default(),
        }
    }

    /// Records a decrypted packet. Returns true when it revealed a gap (NACK due now).
    pub fn on_packet(&mut self, now: Instant, view: &RtpView<'_>, policy: &NackPolicy) -> bool {
        let ext = self.unwrapper.unwrap(view.sequence());
        if !self.received.insert(ext) {
            self.stats.duplicates += 1;
            return false;
        }
        self.stats.received += 1;
        let repaired = self.missing.remove(&ext).is_some();
        if repaired {
            self.stats.repaired += 1;
        }
        let mut gap = false;
        match self.highest {
            None => self.highest = Some(ext),
            Some(h) if ext > h => {
                let missing = ext - h - 1;
                if missing > 0 && policy.enabled {
                    if missing > policy.max_gap {
                        self.pli_due = policy.pli_on_give_up;
                    } else {
                        for e in h + 1..ext {
                            self.missing.insert(
                                e,
                                NackState {
                                    last_sent: None,
                                    tries: 0,
                                },
                            );
                        }
                        gap = true;
                    }
                }
                self.highest = Some(ext);
            }
            Some(_) => {}
        }
        let payload = view.payload();
        let vp8 = (self.codec == CodecKind::Vp8)
            .then(|| lkr_rtp::vp8::parse(payload).ok())
            .flatten();
        self.packets.push(RecvPacket {
            seq: view.sequence(),
            ext,
            ts: view.timestamp(),
            marker: view.marker(),
            pt: view.payload_type(),
            at: now,
            keyframe: match self.codec {
                CodecKind::Vp8 => lkr_rtp::vp8::is_keyframe(payload),
                CodecKind::Vp9 => lkr_rtp::vp9::is_keyframe(payload),
                CodecKind::H264 => lkr_rtp::h264::is_keyframe(payload),
                CodecKind::Av1 => lkr_rtp::av1::is_keyframe(payload),
                // Audio, redundancy wrappers and unknown codecs have no keyframes.
                _ => false,
            },
            picture_id: vp8.and_then(|d| d.picture_id),
            tag: PayloadTag::read(payload, vp8.map_or(0, |d| d.header_len)),
            repaired,
        });
        if self
            .packets
            .last()
            .and_then(|p| p.tag)
            .is_some_and(|(_, ok)| !ok)
        {
            self.stats.corrupt += 1;
        }
        gap
    }

    /// Sequence numbers to NACK now (marking them sent); gives up on those past their tries.
    pub fn due_nacks(&mut self, now: Instant, policy: &NackPolicy, out: &mut Vec<u16>) {
        out.clear();
        let mut given_up = 0;
        self.missing.retain(|_, m| {
            if m.tries >= policy.max_tries {
                given_up += 1;
                false
            } else {
                true
            }
        });
        if given_up > 0 {
            self.stats.given_up += given_up;
            self.pli_due |= policy.pli_on_give_up;
        }
        for (ext, m) in self.missing.iter_mut() {
            if m.last_sent
                .is_none_or(|at| now.saturating_duration_since(at) >= policy.retry)
            {
                m.last_sent = Some(now);
                m.tries += 1;
                out.push(*ext as u16);
            }
        }
    }

    /// Whether a PLI should go out (and forget that it should).
    pub fn take_pli_due(&mut self) -> bool {
        std::mem::take(&mut self.pli_due)
    }

    /// The first packet that arrived.
    pub fn first(&self) -> Option<&RecvPacket> {
        self.packets.first()
    }

    /// Lowest and highest extended sequence numbers received.
    pub fn range(&self) -> Option<(u64, u64)> {
        Some((*self.received.first()?, *self.received.last()?))
    }

    /// Extended sequence numbers between the lowest and highest received that never arrived.
    pub fn gaps(&self) -> Vec<u64> {
        let Some((lo, hi)) = self.range() else {
            return Vec::new();
        };
        (lo..=hi).filter(|e| !self.received.contains(e)).collect()
    }

    /// Gaps still being NACKed (detected and neither filled nor given up).
    pub fn pending_nacks(&self) -> usize {
        self.missing.len()
    }

    /// Distinct packets received.
    pub fn unique_packets(&self) -> usize {
        self.received.len()
    }

    /// The original sequence numbers carried by the packets received.
    pub fn original_seqs(&self) -> BTreeSet<u16> {
        self.packets
            .iter()
            .filter_map(|p| p.tag.map(|(t, _)| t.seq))
            .collect()
    }

    /// Checks VP8 PictureIDs (15-bit) in sequence-number order: equal within a frame, one
    /// more on each new frame, across pauses and restarts too.
    pub fn check_picture_ids(&self) -> Result<(), String> {
        let mut by_seq: Vec<&RecvPacket> = self.packets.iter().collect();
        by_seq.sort_by_key(|p| p.ext);
        for w in by_seq.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (Some(pa), Some(pb)) = (a.picture_id, b.picture_id) else {
                return Err(format!("packet {} or {} has no PictureID", a.seq, b.seq));
            };
            let step = if b.ts == a.ts { 0 } else { 1 };
            if pb != (pa.wrapping_add(step) & 0x7FFF) {
                return Err(format!(
                    "PictureID {pa} then {pb} at sequence numbers {} and {}",
                    a.seq, b.seq
                ));
            }
        }
        Ok(())
    }

    /// Checks that the stream is one rewritten copy of one publisher's stream: every payload
    /// intact, from one source, and sequence numbers and timestamps offset from the
    /// original ones by one constant each (so contiguous where the original was).
    pub fn check_consistency(&self) -> Result<(), String> {
        let Some(first) = self.packets.first() else {
            return Err("nothing received".into());
        };
        let Some((t0, _)) = first.tag else {
            return Err("first packet has no tag".into());
        };
        for p in &self.packets {
            let Some((t, intact)) = p.tag else {
                return Err(format!("packet {} has no tag", p.seq));
            };
            if !intact {
                return Err(format!("packet {} (original {}) is corrupt", p.seq, t.seq));
            }
            if t.ssrc != t0.ssrc {
                return Err(format!(
                    "packet {} comes from SSRC {:#x}, not {:#x}",
                    p.seq, t.ssrc, t0.ssrc
                ));
            }
            if p.seq.wrapping_sub(first.seq) != t.seq.wrapping_sub(t0.seq) {
                return Err(format!(
                    "packet {} carries original {}: sequence offset differs from the first ({} -> {})",
                    p.seq, t.seq, t0.seq, first.seq
                ));
            }
            if p.ts.wrapping_sub(first.ts) != t.ts.wrapping_sub(t0.ts) {
                return Err(format!(
                    "packet {} has timestamp {} for original {}: offset differs from the first ({} -> {})",
                    p.seq, p.ts, t.ts, t0.ts, first.ts
                ));
            }
        }
        Ok(())
    }
}
