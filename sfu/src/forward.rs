//! Published tracks and their forwarding state: per-layer retransmission caches and loss
//! tracking, per-subscriber sequence/timestamp rewriting and layer choice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lkr_rtp::SeqUnwrapper;

use crate::api::{CodecKind, ExtIds, MediaKind, PayloadType, PeerId, SpeakerDetection, TrackId};

/// Packets kept per layer for answering NACKs, unless configured
/// ([`crate::MediaLimits::packet_buffer`]).
pub const CACHE_SLOTS: usize = 512;
/// The fewest and most packets a layer's cache may be configured to keep.
pub const CACHE_SLOTS_RANGE: (usize, usize) = (16, 4096);
/// Outgoing sequence numbers remembered per subscription for answering NACKs.
const HISTORY_SLOTS: usize = 1024;
/// Loss entries tracked per layer.
const MAX_MISSING: usize = 128;
/// A layer silent for this long is not chosen for new switches.
const LAYER_IDLE: Duration = Duration::from_millis(1500);
/// Simulcast layers one track may have (each holds a packet cache); layer choice looks at
/// the first four. Rids past it, and SSRC or codec lists past their own caps, are ignored.
pub const MAX_LAYERS: usize = 4;
/// Longest rid kept: an RTP header extension element carries at most 255 bytes, so a longer
/// one can never be matched.
const MAX_RID_LEN: usize = 255;
/// Payload types one track may list (the dynamic range has 96).
const MAX_PAYLOAD_TYPES: usize = 96;

/// The capacities a cache slot grows through: audio packets take the first ones, a full
/// video packet (about 1200 bytes) the third, the largest datagram the driver reads the last.
const SLOT_CLASSES: [usize; 4] = [256, 512, 1280, 2048];

/// One cached packet.
#[derive(Debug, Default)]
struct Slot {
    seq: u16,
    valid: bool,
    data: Vec<u8>,
}

/// The last packets of one layer, by sequence number. Slots keep their buffers, so steady
/// state stores without allocating.
#[derive(Debug)]
pub struct RtxCache {
    slots: Vec<Slot>,
    /// `slots.len() - 1`: the length is a power of two, so a sequence number's slot is a mask
    /// away.
    mask: usize,
}

impl RtxCache {
    /// A cache of at least `slots` packets (rounded up to a power of two, within
    /// [`CACHE_SLOTS_RANGE`]).
    fn new(slots: usize) -> Self {
        let n = slots
            .clamp(CACHE_SLOTS_RANGE.0, CACHE_SLOTS_RANGE.1)
            .next_power_of_two();
        Self {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
        }
    }

    /// Keeps a copy of a plain RTP packet.
    pub fn store(&mut self, seq: u16, packet: &[u8]) {
        let s = &mut self.slots[usize::from(seq) & self.mask];
        s.seq = seq;
        s.valid = true;
        s.data.clear();
        if s.data.capacity() < packet.len() {
            grow_slot(&mut s.data, packet.len());
        }
        s.data.extend_from_slice(packet);
    }

    /// The cached packet with `seq`, if still there.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let s = &self.slots[usize::from(seq) & self.mask];
        (s.valid && s.seq == seq).then_some(s.data.as_slice())
    }
}

/// Makes room in an empty slot for a packet of `len` bytes. A slot grows by size classes,
/// not to each packet's length: a packet a byte longer than the last one there (a keyframe's
/// scalability structure, a larger header extension) costs no new allocation, and a slot
/// grows at most a few times in its life.
#[cold]
#[inline(never)]
fn grow_slot(data: &mut Vec<u8>, len: usize) {
    let class = SLOT_CLASSES
        .iter()
        .copied()
        .find(|&c| c >= len)
        .unwrap_or(len);
    data.reserve_exact(class);
}

/// A measured bit rate after a fresh measurement: the mean of the two, or the fresh one at
/// once when either is 0 (a layer starting, or silent for a whole interval).
pub(crate) fn smoothed_rate(rate: u64, fresh: u64) -> u64 {
    if fresh == 0 || rate == 0 {
        fresh
    } else {
        (rate + fresh) / 2
    }
}

/// A lost upstream packet waiting to be NACKed.
#[derive(Debug, Clone, Copy)]
pub struct Missing {
    pub ext: u64,
    pub since: Instant,
    pub last_sent: Option<Instant>,
    pub tries: u8,
}

/// One simulcast layer (or the only stream) of a track.
#[derive(Debug)]
pub struct Layer {
    pub rid: String,
    pub ssrc: Option<u32>,
    pub unwrapper: SeqUnwrapper,
    pub highest: Option<u64>,
    pub cache: RtxCache,
    pub missing: VecDeque<Missing>,
    pub last_packet: Option<Instant>,
    pub last_keyframe: Option<Instant>,
    pub last_pli: Option<Instant>,
    pub packets: u64,
    /// Media bytes received: whole RTP packets less their padding; padding-only packets
    /// count none.
    pub bytes: u64,
    /// (when, bytes, packets, expected) at the previous look of the node page's counters.
    pub stats_prior: Option<(Instant, u64, u64, u64)>,
    /// The first extended sequence number seen, for loss accounting.
    pub first_ext: Option<u64>,
    /// Expected and received counts at the previous receiver report.
    pub expected_prior: u64,
    /// Packets the last report found missing in its interval.
    pub lost_last_interval: u64,
    pub received_prior: u64,
    /// The publisher's last sender report: NTP time and when it arrived.
    pub last_sr: Option<(u64, Instant)>,
    /// When a sender report of this layer was last sent on to its subscribers.
    pub sr_forwarded: Option<Instant>,
    /// The bit rate measured from `bytes`.
    pub rate_bps: u64,
    /// Byte count and time of the last rate measurement.
    rate_mark: Option<(Instant, u64)>,
}

impl Layer {
    fn new(rid: String, cache_slots: usize) -> Self {
        Self {
            rid,
            ssrc: None,
            unwrapper: SeqUnwrapper::new(),
            highest: None,
            cache: RtxCache::new(cache_slots),
            missing: VecDeque::with_capacity(MAX_MISSING),
            last_packet: None,
            last_keyframe: None,
            last_pli: None,
            packets: 0,
            bytes: 0,
            stats_prior: None,
            first_ext: None,
            expected_prior: 0,
            lost_last_interval: 0,
            received_prior: 0,
            last_sr: None,
            sr_forwarded: None,
            rate_bps: 0,
            rate_mark: None,
        }
    }

    /// Updates the layer's bit rate from the bytes since the last call (smoothed); a layer
    /// silent for the whole interval reads 0 at once.
    pub fn measure_rate(&mut self, now: Instant) {
        if let Some((at, bytes)) = self.rate_mark {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.05 {
                let fresh = ((self.bytes - bytes) as f64 * 8.0 / dt) as u64;
                self.rate_bps = smoothed_rate(self.rate_bps, fresh);
            }
        }
        self.rate_mark = Some((now, self.bytes));
    }

    /// Notes an arriving packet for loss tracking; returns its extended sequence number.
    pub fn on_packet(&mut self, seq: u16, now: Instant) -> u64 {
        let ext = self.unwrapper.unwrap(seq);
        self.packets += 1;
        self.first_ext.get_or_insert(ext);
        self.last_packet = Some(now);
        match self.highest {
            None => self.highest = Some(ext),
            Some(h) if ext > h => {
                // Everything between the old highest and this one is missing for now.
                let gap = ext - h - 1;
                if gap > 0 && gap < 1000 {
                    for e in (h + 1)..ext {
                        if self.missing.len() == MAX_MISSING {
                            self.missing.pop_front();
                        }
                        self.missing.push_back(Missing {
                            ext: e,
                            since: now,
                            last_sent: None,
                            tries: 0,
                        });
                    }
                }
                self.highest = Some(ext);
            }
            Some(_) => {
                if let Some(i) = self.missing.iter().position(|m| m.ext == ext) {
                    self.missing.remove(i);
                }
            }
        }
        ext
    }

    /// A reception report block for this layer (RFC 3550 §6.4.1, A.3), and the counters
    /// moved on to this report.
    pub fn report(&mut self, now: Instant) -> Option<lkr_rtp::ReportBlock> {
        let ssrc = self.ssrc?;
        let (first, highest) = (self.first_ext?, self.highest?);
        let expected = highest - first + 1;
        let lost = expected.saturating_sub(self.packets);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.packets.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.packets;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        self.lost_last_interval = lost_interval;
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (lsr, dlsr) = match self.last_sr {
            Some((ntp, at)) => {
                let delay = now.saturating_duration_since(at);
                (
                    ((ntp >> 16) & 0xffff_ffff) as u32,
                    (delay.as_micros() as u64 * 65_536 / 1_000_000) as u32,
                )
            }
            None => (0, 0),
        };
        Some(lkr_rtp::ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.min(0x7f_ffff) as i32,
            highest_seq: highest as u32,
            jitter: 0,
            lsr,
            dlsr,
        })
    }

    /// Whether the layer carried media lately.
    pub fn is_live(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }
}

/// One outgoing packet remembered for NACKs: where it came from and its rewritten timestamp.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    out_seq: u16,
    in_seq: u16,
    layer: u8,
    out_ts: u32,
    valid: bool,
}

/// Rewrites sequence numbers and timestamps so that a subscriber sees one contiguous stream
/// across pauses and layer switches.
#[derive(Debug)]
pub struct Munger {
    started: bool,
    pub layer: usize,
    in_base: u64,
    out_base: u16,
    in_ts_base: u32,
    out_ts_base: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    clock_rate: u32,
    /// Padding-only packets of the current segment left out of the output.
    skips: Skips,
    /// The highest incoming extended sequence number of the current segment mapped or
    /// left out.
    last_in: u64,
    /// The segment before the current one: late packets (retransmissions) of it are still
    /// placed where they belong.
    prev: Option<Segment>,
}

/// Ranges of a segment's incoming sequence numbers left out (padding-only packets dropped
/// in order, as LiveKit does), oldest first. Packets after them move down by as many; a fixed
/// array, so a segment stays `Copy` and nothing is allocated.
#[derive(Debug, Clone, Copy, Default)]
struct Skips {
    /// `(first, count)`.
    ranges: [(u64, u64); SKIP_RANGES],
    len: usize,
}

/// Runs of left-out packets a segment remembers; one more moves the segment's start past
/// the oldest (packets from before it are then too late to forward).
const SKIP_RANGES: usize = 16;

impl Skips {
    fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// Forgets the oldest run: `(first, count)`. Only called when full.
    fn pop_oldest(&mut self) -> (u64, u64) {
        let oldest = self.ranges[0];
        self.ranges.copy_within(1..self.len, 0);
        self.len -= 1;
        oldest
    }

    /// Leaves out `ext`, newer than every sequence number seen; `false` when a new range
    /// would be needed and there is no room.
    fn push(&mut self, ext: u64) -> bool {
        if let Some((first, count)) = self.len.checked_sub(1).map(|i| &mut self.ranges[i])
            && *first + *count == ext
        {
            *count += 1;
            return true;
        }
        if self.len == SKIP_RANGES {
            return false;
        }
        self.ranges[self.len] = (ext, 1);
        self.len += 1;
        true
    }

    /// The incoming sequence number `offset` packets into the output of a segment that began
    /// at `in_base`.
    fn unmap(&self, in_base: u64, offset: u64) -> u64 {
        let mut ext = in_base + offset;
        for &(first, count) in self.ranges() {
            if first > ext {
                break;
            }
            ext += count;
        }
        ext
    }

    /// How far into the output of a segment beginning at `in_base` packet `ext` went;
    /// `None` for one left out or before the segment.
    fn offset(&self, in_base: u64, ext: u64) -> Option<u64> {
        let mut offset = ext.checked_sub(in_base)?;
        // The runs are in order: those wholly below `ext` move it down; one holding it
        // means it was left out.
        for &(first, count) in self.ranges() {
            if ext < first {
                break;
            }
            if ext - first < count {
                return None;
            }
            offset -= count;
        }
        Some(offset)
    }
}

/// How far `out_seq` lies into a segment that starts at `out_base` and has sent up to
/// `last`; `None` outside it (or when the segment has sent nothing: `last` is then
/// `out_base - 1`).
fn segment_offset(out_base: u16, last: u16, out_seq: u16) -> Option<u64> {
    let span = last.wrapping_sub(out_base);
    let delta = out_seq.wrapping_sub(out_base);
    (span < 0x8000 && delta <= span).then_some(u64::from(delta))
}

/// A finished segment's mapping.
#[derive(Debug, Clone, Copy)]
struct Segment {
    layer: usize,
    in_base: u64,
    out_base: u16,
    in_ts_base: u32,
    out_ts_base: u32,
    last_out_seq: u16,
    skips: Skips,
}

/// Where an outgoing sequence number came from: its layer and incoming extended sequence
/// number, and the timestamp mapping of its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub layer: usize,
    pub ext: u64,
    in_ts_base: u32,
    out_ts_base: u32,
}

impl Origin {
    /// The outgoing form of an incoming timestamp of this segment.
    pub fn timestamp(&self, ts: u32) -> u32 {
        self.out_ts_base
            .wrapping_add(ts.wrapping_sub(self.in_ts_base))
    }
}

impl Munger {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            started: false,
            layer: 0,
            in_base: 0,
            out_base: rand::random::<u16>() & 0x7fff,
            in_ts_base: 0,
            out_ts_base: rand::random(),
            last_out_seq: 0,
            last_out_ts: 0,
            last_out_at: None,
            clock_rate,
            skips: Skips::default(),
            last_in: 0,
            prev: None,
        }
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Starts a new segment at this packet: the first packet, or the first after a layer
    /// switch or a pause. The output continues right after the last packet sent.
    pub fn start_segment(&mut self, layer: usize, ext: u64, ts: u32, now: Instant) {
        if self.started {
            self.prev = Some(Segment {
                layer: self.layer,
                in_base: self.in_base,
                out_base: self.out_base,
                in_ts_base: self.in_ts_base,
                out_ts_base: self.out_ts_base,
                last_out_seq: self.last_out_seq,
                skips: self.skips,
            });
            let elapsed = self
                .last_out_at
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            let ticks =
                (elapsed.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000).max(1);
            self.out_base = self.last_out_seq.wrapping_add(1);
            self.out_ts_base = self.last_out_ts.wrapping_add(ticks as u32);
        }
        self.started = true;
        self.layer = layer;
        self.in_base = ext;
        self.last_in = ext;
        self.skips = Skips::default();
        self.in_ts_base = ts;
        self.last_out_seq = self.out_base.wrapping_sub(1);
        self.last_out_ts = self.out_ts_base;
        self.last_out_at = Some(now);
    }

    /// When the newest packet so far was mapped out (sent), if any was.
    pub fn last_out_at(&self) -> Option<Instant> {
        self.last_out_at
    }

    /// The incoming extended sequence number of an outgoing one of the current segment,
    /// if it is not newer than what was sent.
    pub fn unmap(&self, out_seq: u16) -> Option<u64> {
        if !self.started {
            return None;
        }
        segment_offset(self.out_base, self.last_out_seq, out_seq)
            .map(|d| self.skips.unmap(self.in_base, d))
    }

    /// Leaves a padding-only packet of the current segment out of the output when it is the
    /// next in sequence (nothing missing before it, nothing after it sent yet): the packets
    /// after it move down by one, so the subscriber sees no gap. Returns whether it was left
    /// out; one out of order is forwarded as any packet. With `SKIP_RANGES` runs already
    /// left out, the segment starts again after the oldest.
    pub fn skip(&mut self, ext: u64) -> bool {
        if !self.started || ext != self.last_in + 1 {
            return false;
        }
        self.leave_out(ext)
    }

    /// Leaves a packet of the current segment newer than every one seen out of the output
    /// (a spatial layer the subscriber does not take): the packets after it move down by
    /// one. Packets missing before it keep their places when they come. Returns whether it
    /// was left out; an older one cannot be (its place may have been counted on).
    pub fn leave_out(&mut self, ext: u64) -> bool {
        if !self.started || ext <= self.last_in {
            return false;
        }
        if !self.skips.push(ext) {
            // Full. The oldest run has nothing left out before it: the output continues from
            // its end where it stood, and what came before it is late from now on.
            let (first, count) = self.skips.pop_oldest();
            self.out_base = self.out_base.wrapping_add((first - self.in_base) as u16);
            self.in_base = first + count;
            let pushed = self.skips.push(ext);
            debug_assert!(pushed, "a run was just made room for");
        }
        self.last_in = ext;
        true
    }

    /// The rewritten (sequence, timestamp) of a late packet of the previous segment's layer
    /// that falls inside that segment (a retransmission arriving after a switch).
    pub fn map_previous(&self, layer: usize, ext: u64, ts: u32) -> Option<(u16, u32)> {
        let p = self.prev.filter(|p| p.layer == layer)?;
        let delta = p.skips.offset(p.in_base, ext)?;
        let span = p.last_out_seq.wrapping_sub(p.out_base);
        if span >= 0x8000 || delta > u64::from(span) {
            return None;
        }
        Some((
            p.out_base.wrapping_add(delta as u16),
            p.out_ts_base.wrapping_add(ts.wrapping_sub(p.in_ts_base)),
        ))
    }

    /// Where an outgoing sequence number of the current or the previous segment came from.
    pub fn origin(&self, out_seq: u16) -> Option<Origin> {
        if let Some(ext) = self.unmap(out_seq) {
            return Some(Origin {
                layer: self.layer,
                ext,
                in_ts_base: self.in_ts_base,
                out_ts_base: self.out_ts_base,
            });
        }
        let p = self.prev?;
        segment_offset(p.out_base, p.last_out_seq, out_seq).map(|d| Origin {
            layer: p.layer,
            ext: p.skips.unmap(p.in_base, d),
            in_ts_base: p.in_ts_base,
            out_ts_base: p.out_ts_base,
        })
    }

    /// The rewritten form of an incoming timestamp of the current segment.
    pub fn map_timestamp(&self, ts: u32) -> Option<u32> {
        self.started.then(|| {
            self.out_ts_base
                .wrapping_add(ts.wrapping_sub(self.in_ts_base))
        })
    }

    /// The rewritten (sequence, timestamp) of a packet of the current segment, or `None` for
    /// a packet from before it.
    pub fn map(&mut self, ext: u64, ts: u32, now: Instant) -> Option<(u16, u32)> {
        if !self.started {
            return None;
        }
        let offset = self.skips.offset(self.in_base, ext)?;
        self.last_in = self.last_in.max(ext);
        let out_seq = self.out_base.wrapping_add(offset as u16);
        let out_ts = self
            .out_ts_base
            .wrapping_add(ts.wrapping_sub(self.in_ts_base));
        if lkr_rtp::seq_newer(out_seq, self.last_out_seq) {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

/// Rewrites VP8 picture ids and TL0PICIDX so that decoders see them continue across layer
/// switches and pauses (each layer of a simulcast track counts its own).
#[derive(Debug, Default)]
pub struct Vp8Munger {
    started: bool,
    in_pid: u16,
    out_pid: u16,
    last_pid: u16,
    in_tl0: u8,
    out_tl0: u8,
    last_tl0: u8,
    /// Set when the next packet starts a new segment.
    restart: bool,
}

impl Vp8Munger {
    /// The next packet begins a new segment (first packet, layer switch, resume).
    pub fn restart(&mut self) {
        self.restart = true;
    }

    /// Rewrites the descriptor `d` (parsed from this payload, or from the one it is a copy
    /// of) of a VP8 payload in place.
    pub fn rewrite(&mut self, payload: &mut [u8], d: &lkr_rtp::vp8::Vp8Descriptor) {
        let mask: u16 = if d.picture_id_15bit { 0x7fff } else { 0x7f };
        if self.restart || !self.started {
            if let Some(pid) = d.picture_id {
                self.in_pid = pid;
                self.out_pid = if self.started {
                    self.last_pid.wrapping_add(1) & mask
                } else {
                    pid
                };
                self.last_pid = self.out_pid;
            }
            if let Some(t) = d.tl0picidx {
                self.in_tl0 = t;
                self.out_tl0 = if self.started {
                    self.last_tl0.wrapping_add(1)
                } else {
                    t
                };
                self.last_tl0 = self.out_tl0;
            }
            self.started = true;
            self.restart = false;
        }
        if let Some(pid) = d.picture_id {
            let out = self.out_pid.wrapping_add(pid.wrapping_sub(self.in_pid)) & mask;
            lkr_rtp::vp8::write_picture_id(payload, d, out);
            if (out.wrapping_sub(self.last_pid) & mask) < mask / 2 {
                self.last_pid = out;
            }
        }
        if let Some(t) = d.tl0picidx {
            let out = self.out_tl0.wrapping_add(t.wrapping_sub(self.in_tl0));
            lkr_rtp::vp8::write_tl0picidx(payload, d, out);
            if out.wrapping_sub(self.last_tl0) < 128 {
                self.last_tl0 = out;
            }
        }
    }
}

/// One subscriber of a track.
#[derive(Debug)]
pub struct Subscription {
    pub peer: PeerId,
    pub ssrc: u32,
    pub payload_types: Vec<(CodecKind, u8)>,
    pub munger: Munger,
    pub paused: bool,
    /// Waiting for a keyframe on this layer before switching to it.
    pub pending_layer: Option<usize>,
    /// The highest layer this subscriber wants (adaptive stream, track settings).
    pub max_layer: usize,
    /// The highest layer its link carries, from its loss reports (congestion control).
    pub cc_cap: usize,
    /// Paused by congestion control at the lowest layer.
    pub cc_paused: bool,
    /// After a pause: restart on the next keyframe rather than leave a gap.
    pub resync: bool,
    /// Consecutive loss windows with little loss, and with heavy loss.
    pub good_reports: u32,
    pub bad_reports: u32,
    /// The current loss window: its start and the report counters at that time.
    loss_window: Option<(Instant, i64, u32)>,
    history: Vec<Sent>,
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub vp8: Vp8Munger,
    /// The RTX stream (RFC 4588) for retransmissions and probe padding: SSRC, `(rtx pt,
    /// media pt)` pairs, and its own sequence numbers.
    pub rtx: Option<(u32, Vec<(u8, u8)>)>,
    pub rtx_seq: u16,
    /// Bandwidth allocation priority (2: screen share).
    pub priority: u8,
    /// The playout-delay extension element (id, value) every packet carries.
    pub playout_delay: Option<(u8, [u8; 3])>,
    /// Its spatial layer of an SVC track.
    pub spatial: crate::svc::SpatialChoice,
}

impl Subscription {
    pub fn new(
        peer: PeerId,
        ssrc: u32,
        payload_types: Vec<(CodecKind, u8)>,
        clock_rate: u32,
    ) -> Self {
        Self {
            peer,
            ssrc,
            payload_types,
            munger: Munger::new(clock_rate),
            paused: false,
            pending_layer: None,
            max_layer: usize::MAX,
            cc_cap: usize::MAX,
            cc_paused: false,
            resync: false,
            good_reports: 0,
            bad_reports: 0,
            loss_window: None,
            history: vec![Sent::default(); HISTORY_SLOTS],
            packets_sent: 0,
            octets_sent: 0,
            vp8: Vp8Munger::default(),
            rtx: None,
            rtx_seq: rand::random(),
            priority: 0,
            playout_delay: None,
            spatial: crate::svc::SpatialChoice::default(),
        }
    }

    /// The layer it is sent now: its spatial layer of an SVC track, else its simulcast
    /// stream (0 before anything was sent).
    pub fn current_layer(&self) -> usize {
        match self.spatial.current {
            Some(l) => usize::from(l),
            None if self.munger.is_started() => self.munger.layer,
            None => 0,
        }
    }

    /// The RTX payload type and SSRC for a media payload type, if this subscription has an
    /// RTX stream for it.
    pub fn rtx_for(&self, media_pt: u8) -> Option<(u8, u32)> {
        let (ssrc, pairs) = self.rtx.as_ref()?;
        pairs
            .iter()
            .find(|(_, apt)| *apt == media_pt)
            .map(|(pt, _)| (*pt, *ssrc))
    }

    /// The layer cap in force: the subscriber's wish and its link's limit.
    pub fn layer_cap(&self) -> usize {
        self.max_layer.min(self.cc_cap)
    }

    /// Takes one receiver report block (cumulative lost, extended highest sequence number)
    /// for this subscription. Loss is judged over windows of at least a second and 20
    /// packets, not per report: a report covering a few packets, one of them NACKed and not
    /// yet resent, says little. Returns what [`Subscription::on_loss_report`] returns.
    pub fn on_receiver_report(
        &mut self,
        now: Instant,
        cumulative_lost: i32,
        highest: u32,
        layers: usize,
    ) -> Option<bool> {
        const WINDOW: Duration = Duration::from_secs(1);
        const MIN_PACKETS: u32 = 20;
        let lost = i64::from(cumulative_lost);
        let Some((start, lost0, highest0)) = self.loss_window else {
            self.loss_window = Some((now, lost, highest));
            return None;
        };
        let expected = highest.wrapping_sub(highest0);
        if expected >= 0x8000_0000 {
            // The stream restarted its numbering: start over.
            self.loss_window = Some((now, lost, highest));
            return None;
        }
        let elapsed = now.saturating_duration_since(start);
        if self.cc_paused && elapsed >= WINDOW {
            // Nothing flows while paused: each quiet window counts as clean, so the
            // subscription probes again after a clean run.
            self.loss_window = Some((now, lost, highest));
            return self.on_loss_report(0.0, layers);
        }
        if elapsed < WINDOW || expected < MIN_PACKETS {
            return None;
        }
        self.loss_window = Some((now, lost, highest));
        let loss = ((lost - lost0).max(0) as f32 / expected as f32).min(1.0);
        self.on_loss_report(loss, layers)
    }

    /// Starts the loss readings over with the next receiver report (the path was down:
    /// the loss its next report counts was the outage's). A paused subscription keeps its
    /// window: nothing was sent to it, so there is no loss to excuse, and its quiet windows
    /// count towards the clean run that resumes it.
    pub fn restart_loss_window(&mut self) {
        if self.cc_paused {
            return;
        }
        self.loss_window = None;
        self.bad_reports = 0;
    }

    /// Applies a loss window's loss (fraction 0..1) for a video subscription of a track
    /// with `layers` layers. Returns `Some(paused)` when the subscription is paused or
    /// resumed. Heavy loss steps the cap down a layer (pausing below the lowest); a run of
    /// clean reports steps it back up.
    pub fn on_loss_report(&mut self, loss: f32, layers: usize) -> Option<bool> {
        const BAD: f32 = 0.10;
        const GOOD: f32 = 0.02;
        const CLEAN_RUN: u32 = 3;
        if loss > BAD {
            self.good_reports = 0;
            self.bad_reports += 1;
            // One bad window can be a burst: act on two in a row, or on one very bad one.
            if self.cc_paused || (self.bad_reports < 2 && loss <= 0.25) {
                return None;
            }
            self.bad_reports = 0;
            let cap = self.layer_cap().min(self.current_layer());
            if cap == 0 {
                if layers > 1 || loss > 0.25 {
                    self.cc_paused = true;
                    return Some(true);
                }
            } else {
                self.cc_cap = cap - 1;
            }
        } else if loss < GOOD {
            self.bad_reports = 0;
            self.good_reports += 1;
            if self.good_reports >= CLEAN_RUN {
                self.good_reports = 0;
                if self.cc_paused {
                    self.cc_paused = false;
                    self.resync = true;
                    return Some(false);
                }
                if self.cc_cap < layers.saturating_sub(1) {
                    self.cc_cap += 1;
                } else {
                    self.cc_cap = usize::MAX;
                }
            }
        }
        None
    }

    /// The subscriber's payload type for a codec family.
    pub fn payload_type(&self, codec: CodecKind) -> Option<u8> {
        self.payload_types
            .iter()
            .find(|(c, _)| *c == codec)
            .map(|(_, pt)| *pt)
    }

    pub fn remember(&mut self, out_seq: u16, in_seq: u16, layer: usize, out_ts: u32) {
        self.history[usize::from(out_seq) % HISTORY_SLOTS] = Sent {
            out_seq,
            in_seq,
            layer: layer as u8,
            out_ts,
            valid: true,
        };
    }

    /// Where an outgoing sequence number came from: (layer, incoming seq, outgoing ts).
    pub fn lookup(&self, out_seq: u16) -> Option<(usize, u16, u32)> {
        let s = self.history[usize::from(out_seq) % HISTORY_SLOTS];
        (s.valid && s.out_seq == out_seq).then_some((usize::from(s.layer), s.in_seq, s.out_ts))
    }
}

/// A published track.
#[derive(Debug)]
pub struct Track {
    pub id: TrackId,
    pub publisher: PeerId,
    pub kind: MediaKind,
    pub mid: String,
    pub rids: Vec<String>,
    pub announced_ssrcs: Vec<u32>,
    pub payload_types: Vec<PayloadType>,
    pub ext: ExtIds,
    pub rtx: Vec<(u8, u8)>,
    pub rtx_ssrcs: Vec<(u32, u32)>,
    pub layers: Vec<Layer>,
    pub subs: Vec<Subscription>,
    pub started: bool,
    pub audio: AudioLevels,
    /// A copy of a track published on another shard (the shard's index): it is fed the
    /// packets that shard relays and asks it for keyframes; it reports nothing upstream.
    pub mirror: Option<u8>,
    /// Shards (bit per shard) that hold a mirror of this track and get its packets.
    pub relay_to: u64,
    /// Local sinks (track egress) fed this track's packets.
    pub sinks: Vec<LocalSink>,
    /// The spatial layers of a VP9 stream (one stream carrying several sizes: SVC).
    pub spatial: crate::svc::SpatialLayers,
}

/// A local sink of a track and the simulcast layer it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSink {
    pub id: crate::api::SinkId,
    /// The layer it records, chosen at a keyframe and kept, so that a file keeps one
    /// resolution: the top layer's first keyframe, or after [`SINK_SETTLE`] the best live
    /// layer's (the publisher may need a moment to resume layers nobody watched); `None`
    /// until then.
    pub layer: Option<usize>,
    /// When it was added.
    pub since: Instant,
}

/// How long a new sink waits for a simulcast track's top layer before it takes the best
/// live one.
pub const SINK_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Audio levels of one track over the current interval. An interval is speech when at least
/// [`SpeakerDetection::min_percentile`] percent of its packets are at or above
/// [`SpeakerDetection::active_level`]; its level is then the mean linear level of those
/// packets, smoothed over intervals as [`SpeakerDetection::smooth_intervals`] says.
#[derive(Debug, Default, Clone, Copy)]
pub struct AudioLevels {
    packets: u32,
    loud: u32,
    loud_linear: f32,
    /// The level reported last (0 after an interval that was not speech).
    smoothed: f32,
    /// Whether the previous interval reported this track.
    pub reported: bool,
    /// Whether the last interval was speech (false once the track falls silent).
    pub speaking: bool,
}

impl AudioLevels {
    /// Notes one packet's level (`-dBov`, 0 loudest).
    pub fn observe(&mut self, level: u8, cfg: &SpeakerDetection) {
        self.packets += 1;
        if level <= cfg.active_level {
            self.loud += 1;
            self.loud_linear += 10f32.powf(-f32::from(level) / 20.0);
        }
    }

    /// The interval's (linear level, speaking), and a fresh interval.
    pub fn take(&mut self, cfg: &SpeakerDetection) -> Option<(f32, bool)> {
        if self.packets == 0 {
            self.speaking = false;
            self.smoothed = 0.0;
            return None;
        }
        let active =
            self.loud > 0 && self.loud * 100 >= self.packets * u32::from(cfg.min_percentile);
        let level = if active {
            let mean = self.loud_linear / self.loud as f32;
            // LiveKit's factor: the centre of mass of a moving average of that many intervals.
            let k = 2.0 / (cfg.smooth_intervals.max(1) as f32 + 1.0);
            self.smoothed + (mean - self.smoothed) * k
        } else {
            0.0
        };
        *self = AudioLevels {
            reported: true,
            speaking: active,
            smoothed: level,
            ..Default::default()
        };
        Some((level, active))
    }
}

impl Track {
    /// A track as `spec` describes it, with its lists cut to the caps above, so that no
    /// offer can make one track hold more than [`MAX_LAYERS`] packet caches (of
    /// `cache_slots` packets each).
    pub fn new(spec: &crate::api::PublishSpec, cache_slots: usize) -> Self {
        let rids: Vec<String> = spec
            .rids
            .iter()
            .filter(|r| r.len() <= MAX_RID_LEN)
            .take(MAX_LAYERS)
            .cloned()
            .collect();
        let layers = if rids.is_empty() {
            vec![Layer::new(String::new(), cache_slots)]
        } else {
            rids.iter()
                .map(|r| Layer::new(r.clone(), cache_slots))
                .collect()
        };
        let capped = |v: &[u32]| v.iter().copied().take(MAX_LAYERS).collect::<Vec<_>>();
        Self {
            id: spec.track,
            publisher: spec.peer,
            kind: spec.kind,
            mid: spec.mid.clone(),
            rids,
            announced_ssrcs: capped(&spec.ssrcs),
            payload_types: spec
                .payload_types
                .iter()
                .copied()
                .take(MAX_PAYLOAD_TYPES)
                .collect(),
            ext: spec.ext,
            rtx: spec.rtx.iter().copied().take(MAX_PAYLOAD_TYPES).collect(),
            rtx_ssrcs: spec.rtx_ssrcs.iter().copied().take(MAX_LAYERS).collect(),
            layers,
            subs: Vec::new(),
            started: false,
            audio: AudioLevels::default(),
            mirror: None,
            relay_to: 0,
            sinks: Vec::new(),
            spatial: crate::svc::SpatialLayers::default(),
        }
    }

    /// Whether its stream carries several spatial layers (VP9 SVC): subscribers then choose
    /// among those; of several streams, the best live one carries them.
    pub fn is_svc(&self) -> bool {
        self.spatial.is_scalable()
    }

    /// The layers subscribers choose among: its simulcast streams, or the spatial layers of
    /// its SVC stream.
    pub fn choice_layers(&self) -> usize {
        if self.is_svc() {
            usize::from(self.spatial.count)
        } else {
            self.layers.len()
        }
    }

    /// The codec of a payload type.
    pub fn codec_of(&self, pt: u8) -> Option<PayloadType> {
        self.payload_types.iter().copied().find(|p| p.pt == pt)
    }

    /// The clock rate of the track's media.
    pub fn clock_rate(&self) -> u32 {
        self.payload_types.first().map(|p| p.clock_rate).unwrap_or(
            if self.kind == MediaKind::Audio {
                48_000
            } else {
                90_000
            },
        )
    }

    /// The layer a subscriber capped at `max` should receive: the highest live layer not
    /// above the cap, else the lowest live one.
    pub fn best_layer(&self, now: Instant, max: usize) -> Option<usize> {
        pick_layer(&self.liveness(now), self.layers.len(), max)
    }

    /// Which of the first four layers carried media lately.
    pub fn liveness(&self, now: Instant) -> [bool; 4] {
        let mut live = [false; 4];
        for (l, slot) in self.layers.iter().zip(live.iter_mut()) {
            *slot = l.is_live(now);
        }
        live
    }

    /// The layer whose SSRC is `ssrc`.
    pub fn layer_of_ssrc(&self, ssrc: u32) -> Option<usize> {
        self.layers.iter().position(|l| l.ssrc == Some(ssrc))
    }
}

/// The primary encoding of an RFC 2198 RED payload: the last block, after the headers of the
/// redundant blocks (4 bytes each, F bit set) and the 1-byte primary header.
pub fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    let mut redundant = 0usize;
    loop {
        let b = *payload.get(pos)?;
        if b & 0x80 == 0 {
            pos += 1;
            break;
        }
        let hdr = payload.get(pos..pos + 4)?;
        redundant += usize::from(u16::from_be_bytes([hdr[2], hdr[3]]) & 0x03ff);
        pos += 4;
    }
    payload.get(pos + redundant..)
}

/// The highest live layer not above `max`, else the lowest live one.
pub fn pick_layer(live: &[bool; 4], n: usize, max: usize) -> Option<usize> {
    let n = n.min(live.len());
    (0..n.min(max.saturating_add(1)))
        .rev()
        .find(|&l| live[l])
        .or_else(|| (0..n).find(|&l| live[l]))
}

/// Whether a payload starts a keyframe in its codec.
pub fn is_keyframe(codec: CodecKind, payload: &[u8]) -> bool {
    match codec {
        CodecKind::Vp8 => lkr_rtp::vp8::is_keyframe(payload),
        CodecKind::Vp9 => lkr_rtp::vp9::is_keyframe(payload),
        CodecKind::H264 => lkr_rtp::h264::is_keyframe(payload),
        CodecKind::Av1 => lkr_rtp::av1::is_keyframe(payload),
        CodecKind::Opus | CodecKind::Red | CodecKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One interval of `loud` packets at `level` and `quiet` at 60 (-60 dBov).
    fn interval(
        a: &mut AudioLevels,
        cfg: &SpeakerDetection,
        level: u8,
        loud: u32,
        quiet: u32,
    ) -> Option<(f32, bool)> {
        for _ in 0..loud {
            a.observe(level, cfg);
        }
        for _ in 0..quiet {
            a.observe(60, cfg);
        }
        a.take(cfg)
    }

    fn near(got: Option<(f32, bool)>, level: f32, speaking: bool) {
        let (l, s) = got.expect("a report");
        assert!(
            (l - level).abs() < 1e-6 && s == speaking,
            "{got:?}: want ({level}, {speaking})"
        );
    }

    #[test]
    fn speech_is_as_loud_and_as_frequent_as_the_configuration_says() {
        let d = SpeakerDetection {
            smooth_intervals: 0,
            ..SpeakerDetection::default()
        };
        let mut a = AudioLevels::default();
        // -40 dBov is under LiveKit's default -35 dBov; -30 is over it.
        assert_eq!(interval(&mut a, &d, 40, 20, 0), Some((0.0, false)));
        let (level, speaking) = interval(&mut a, &d, 30, 20, 0).unwrap();
        assert!(
            speaking && (level - 10f32.powf(-1.5)).abs() < 1e-6,
            "{level}"
        );
        // A lower bar (-45 dBov) takes the -40 dBov packets.
        let low = SpeakerDetection {
            active_level: 45,
            ..d
        };
        near(interval(&mut a, &low, 40, 20, 0), 0.01, true);
        // 3 loud packets in 10: under the default 40%, over a 30% bar.
        assert_eq!(interval(&mut a, &d, 20, 3, 7), Some((0.0, false)));
        let few = SpeakerDetection {
            min_percentile: 30,
            ..d
        };
        near(interval(&mut a, &few, 20, 3, 7), 0.1, true);
        // Nothing heard: no report, no longer speaking.
        assert_eq!(a.take(&d), None);
        assert!(!a.speaking);
        // A bar of 0% still wants one loud packet.
        let none = SpeakerDetection {
            min_percentile: 0,
            ..d
        };
        assert_eq!(interval(&mut a, &none, 20, 0, 10), Some((0.0, false)));
    }

    #[test]
    fn the_reported_level_is_smoothed_over_intervals_and_drops_at_once() {
        let d = SpeakerDetection::default();
        assert_eq!(d.smooth_intervals, 2);
        let mut a = AudioLevels::default();
        // 2 intervals: a factor of 2/3 toward each new level (-20 dBov: 0.1).
        let (first, _) = interval(&mut a, &d, 20, 10, 0).unwrap();
        assert!((first - 0.1 * 2.0 / 3.0).abs() < 1e-6, "{first}");
        let (second, _) = interval(&mut a, &d, 20, 10, 0).unwrap();
        assert!((second - 0.1 * 8.0 / 9.0).abs() < 1e-6, "{second}");
        // Falls silent: 0 at once, and the next speech starts from 0 again.
        assert_eq!(interval(&mut a, &d, 60, 0, 10), Some((0.0, false)));
        let (again, _) = interval(&mut a, &d, 20, 10, 0).unwrap();
        assert!((again - first).abs() < 1e-6, "{again}");
        // 4 intervals: a factor of 2/5.
        let slow = SpeakerDetection {
            smooth_intervals: 4,
            ..d
        };
        let mut b = AudioLevels::default();
        let (l, _) = interval(&mut b, &slow, 20, 10, 0).unwrap();
        assert!((l - 0.04).abs() < 1e-6, "{l}");
    }

    #[test]
    fn a_track_holds_at_most_max_layers_whatever_the_offer_lists() {
        let spec = crate::api::PublishSpec {
            peer: PeerId(1),
            track: crate::api::TrackId(1),
            kind: MediaKind::Video,
            mid: "0".into(),
            rids: (0..10_000).map(|i| format!("r{i}")).collect(),
            ssrcs: (0..10_000).collect(),
            payload_types: Vec::new(),
            ext: Default::default(),
            rtx: vec![(97, 96); 10_000],
            rtx_ssrcs: vec![(1, 2); 10_000],
        };
        let t = Track::new(&spec, CACHE_SLOTS);
        assert_eq!(t.layers.len(), MAX_LAYERS);
        assert_eq!(t.rids, ["r0", "r1", "r2", "r3"]);
        assert_eq!(t.announced_ssrcs.len(), MAX_LAYERS);
        assert_eq!(t.rtx_ssrcs.len(), MAX_LAYERS);
        assert!(t.rtx.len() <= MAX_PAYLOAD_TYPES);
        let long = crate::api::PublishSpec {
            rids: vec!["x".repeat(300), "q".into()],
            ..spec
        };
        assert_eq!(Track::new(&long, CACHE_SLOTS).rids, ["q"]);
    }

    #[test]
    fn munger_contiguous_across_switch() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000);
        m.start_segment(0, 1000, 5000, t0);
        let (s0, ts0) = m.map(1000, 5000, t0).unwrap();
        let (s1, _) = m.map(1001, 8000, t0).unwrap();
        assert_eq!(s1, s0.wrapping_add(1));
        assert!(m.map(999, 4000, t0).is_none(), "older than the segment");
        // switch to a layer with unrelated numbers
        let t1 = t0 + Duration::from_millis(33);
        m.start_segment(2, 70_000, 123_456, t1);
        let (s2, ts2) = m.map(70_000, 123_456, t1).unwrap();
        assert_eq!(s2, s1.wrapping_add(1));
        assert!(ts2.wrapping_sub(ts0) >= 3000, "timestamp moves forward");
        let (s3, ts3) = m.map(70_001, 126_456, t1).unwrap();
        assert_eq!((s3, ts3), (s2.wrapping_add(1), ts2.wrapping_add(3000)));
    }

    #[test]
    fn congestion_steps_down_pauses_and_recovers() {
        let t0 = Instant::now();
        let mut s = Subscription::new(PeerId(1), 1, vec![], 90_000);
        s.munger.start_segment(2, 0, 0, t0);
        assert_eq!(s.on_loss_report(0.2, 3), None);
        assert_eq!(s.layer_cap(), usize::MAX, "one bad report is not enough");
        assert_eq!(s.on_loss_report(0.2, 3), None);
        assert_eq!(s.layer_cap(), 1, "heavy loss on layer 2 caps at 1");
        s.munger.start_segment(1, 10, 0, t0);
        assert_eq!(s.on_loss_report(0.3, 3), None);
        assert_eq!(s.layer_cap(), 0, "very heavy loss acts at once");
        s.munger.start_segment(0, 20, 0, t0);
        assert_eq!(s.on_loss_report(0.3, 3), Some(true), "paused at the floor");
        assert_eq!(s.on_loss_report(0.2, 3), None);
        for _ in 0..2 {
            assert_eq!(s.on_loss_report(0.0, 3), None);
        }
        assert_eq!(
            s.on_loss_report(0.0, 3),
            Some(false),
            "resumes after clean reports"
        );
        for _ in 0..6 {
            s.on_loss_report(0.0, 3);
        }
        assert_eq!(s.layer_cap(), 2, "climbs back to the top layer");
        s.max_layer = 1;
        assert_eq!(s.layer_cap(), 1, "the subscriber's own wish still caps");
    }

    #[test]
    fn red_primary_block() {
        // One redundant block of 3 bytes (PT 111, offset 960), then the primary (PT 111).
        let p = [0x80 | 111, 0x0f, 0x00, 0x03, 111, 1, 2, 3, 9, 9];
        assert_eq!(red_primary(&p), Some(&[9u8, 9][..]));
        // Only a primary.
        assert_eq!(red_primary(&[111, 5, 6]), Some(&[5u8, 6][..]));
        // Truncated: a redundant header that claims more than there is.
        assert_eq!(red_primary(&[0x80 | 111, 0, 0, 50, 111]), None);
        assert_eq!(red_primary(&[]), None);
    }

    #[test]
    fn loss_is_judged_over_windows_not_single_reports() {
        let t0 = Instant::now();
        let mut s = Subscription::new(PeerId(1), 1, vec![], 90_000);
        s.munger.start_segment(2, 0, 0, t0);
        assert_eq!(s.on_receiver_report(t0, 0, 1000, 3), None);
        // A report 200 ms later over 4 packets with one still missing: no verdict yet.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(s.on_receiver_report(t1, 1, 1004, 3), None);
        assert_eq!(s.layer_cap(), usize::MAX);
        // Two windows of a second with 15% loss step the cap down.
        let t2 = t0 + Duration::from_millis(1000);
        s.on_receiver_report(t2, 15, 1100, 3);
        let t3 = t2 + Duration::from_millis(1000);
        s.on_receiver_report(t3, 30, 1200, 3);
        assert_eq!(s.layer_cap(), 1);
        // Repaired loss (cumulative lost going back down) counts as none.
        let t4 = t3 + Duration::from_millis(1000);
        assert_eq!(s.on_receiver_report(t4, 28, 1300, 3), None);
        assert_eq!(s.good_reports, 1);
    }

    /// After an outage the loss readings start over, so the first report's loss (the
    /// outage's) is not judged; a paused subscription keeps its window and its clean run.
    #[test]
    fn an_outage_restarts_the_loss_window_unless_paused() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Subscription::new(PeerId(1), 1, vec![], 90_000);
        s.munger.start_segment(0, 0, 0, t0);
        assert_eq!(s.on_receiver_report(at(0), 0, 1000, 1), None);
        // Back from a 5 s outage: 450 of 480 packets lost, not judged.
        s.restart_loss_window();
        assert_eq!(s.on_receiver_report(at(6), 450, 1480, 1), None);
        assert_eq!(s.on_receiver_report(at(7), 450, 1570, 1), None);
        assert!(!s.cc_paused);
        // Without the restart the same reports pause it.
        let mut s = Subscription::new(PeerId(1), 1, vec![], 90_000);
        s.munger.start_segment(0, 0, 0, t0);
        s.on_receiver_report(at(0), 0, 1000, 1);
        assert_eq!(s.on_receiver_report(at(6), 450, 1480, 1), Some(true));
        // Paused: a restart keeps the window, and quiet windows still resume it.
        s.restart_loss_window();
        assert_eq!(s.on_receiver_report(at(7), 450, 1480, 1), None);
        s.restart_loss_window();
        assert_eq!(s.on_receiver_report(at(8), 450, 1480, 1), None);
        s.restart_loss_window();
        assert_eq!(s.on_receiver_report(at(9), 450, 1480, 1), Some(false));
    }

    #[test]
    fn layer_choice() {
        let live = [true, false, true, false];
        assert_eq!(pick_layer(&live, 3, usize::MAX), Some(2));
        assert_eq!(pick_layer(&live, 3, 1), Some(0));
        assert_eq!(
            pick_layer(&[false, true, false, false], 3, 0),
            Some(1),
            "lowest live above the cap"
        );
        assert_eq!(pick_layer(&[false; 4], 3, 2), None);
    }

    /// A VP8 payload descriptor with a 15-bit picture id and TL0PICIDX, then a byte.
    fn vp8(pid: u16, tl0: u8) -> Vec<u8> {
        vec![0x90, 0xc0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0x00]
    }

    /// As the engine does: the descriptor parsed from the packet received, the copy
    /// rewritten.
    fn rewrite(m: &mut Vp8Munger, p: &mut [u8]) {
        let d = lkr_rtp::vp8::parse(p).unwrap();
        m.rewrite(p, &d);
    }

    #[test]
    fn vp8_ids_continue_across_switch() {
        let mut m = Vp8Munger::default();
        let mut p = vp8(100, 7);
        rewrite(&mut m, &mut p);
        let d = lkr_rtp::vp8::parse(&p).unwrap();
        assert_eq!((d.picture_id, d.tl0picidx), (Some(100), Some(7)));
        let mut p = vp8(101, 8);
        rewrite(&mut m, &mut p);
        // Switch to a layer counting from elsewhere.
        m.restart();
        let mut p = vp8(30_000, 200);
        rewrite(&mut m, &mut p);
        let d = lkr_rtp::vp8::parse(&p).unwrap();
        assert_eq!((d.picture_id, d.tl0picidx), (Some(102), Some(9)));
        let mut p = vp8(30_001, 201);
        rewrite(&mut m, &mut p);
        let d = lkr_rtp::vp8::parse(&p).unwrap();
        assert_eq!((d.picture_id, d.tl0picidx), (Some(103), Some(10)));
    }

    #[test]
    fn late_packets_of_the_previous_segment_keep_their_place() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000);
        m.start_segment(0, 100, 0, t0);
        for e in [100u64, 101, 103] {
            m.map(e, 0, t0);
        }
        let (s103, _) = m.map(103, 0, t0).unwrap();
        m.start_segment(1, 5000, 90_000, t0);
        // 102 was lost upstream and arrives after the switch: it fills its old place.
        let (s102, _) = m.map_previous(0, 102, 0).unwrap();
        assert_eq!(s102, s103.wrapping_sub(1));
        assert!(
            m.map_previous(0, 104, 0).is_none(),
            "after the old segment's end"
        );
        assert!(m.map_previous(1, 102, 0).is_none(), "another layer");
        let o = m.origin(s102).unwrap();
        assert_eq!((o.layer, o.ext), (0, 102));
        let (first_new, _) = m.map(5000, 90_000, t0).unwrap();
        assert_eq!(
            m.origin(first_new).map(|o| (o.layer, o.ext)),
            Some((1, 5000))
        );
    }

    /// Padding-only packets next in sequence are left out and the packets after them move
    /// down; packets before them, arriving late, keep their places; NACK lookups find each
    /// packet's origin across the runs left out, in this segment and the previous one.
    #[test]
    fn padding_left_out_moves_later_packets_down() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000);
        assert!(!m.skip(99), "nothing to leave out before the first packet");
        m.start_segment(0, 100, 0, t0);
        let (s100, _) = m.map(100, 0, t0).unwrap();
        // 101 is lost for now; 102 is padding but not next in sequence: forwarded.
        assert!(!m.skip(102));
        let (s102, _) = m.map(102, 0, t0).unwrap();
        assert_eq!(s102, s100.wrapping_add(2));
        // 103, 104 padding, next in sequence: left out; 105 follows 102 directly.
        assert!(m.skip(103) && m.skip(104));
        let (s105, _) = m.map(105, 0, t0).unwrap();
        assert_eq!(s105, s102.wrapping_add(1));
        assert!(
            m.map(104, 0, t0).is_none(),
            "a packet left out has no place"
        );
        // The late 101 keeps its place.
        assert_eq!(m.map(101, 0, t0).unwrap().0, s100.wrapping_add(1));
        // Another run after a gap in the output.
        assert!(m.skip(106));
        let (s107, _) = m.map(107, 0, t0).unwrap();
        assert_eq!(s107, s105.wrapping_add(1));
        for (out, ext) in [(s100, 100), (s102, 102), (s105, 105), (s107, 107)] {
            assert_eq!(m.unmap(out), Some(ext));
        }
        // After a switch, the previous segment's late packets and origins still skip.
        m.start_segment(1, 9000, 0, t0);
        assert_eq!(m.map_previous(0, 105, 0).map(|p| p.0), Some(s105));
        assert!(m.map_previous(0, 103, 0).is_none());
        assert_eq!(m.origin(s107).map(|o| (o.layer, o.ext)), Some((0, 107)));
        let (s9000, _) = m.map(9000, 0, t0).unwrap();
        assert!(
            m.skip(9001),
            "the new segment leaves out from its own start"
        );
        assert_eq!(m.map(9002, 0, t0).unwrap().0, s9000.wrapping_add(1));
    }

    /// At most [`SKIP_RANGES`] runs are remembered: past them the segment starts after the
    /// oldest, every padding packet is still left out and the output has no gap; packets from
    /// before the new start are late.
    #[test]
    fn runs_left_out_are_bounded() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000);
        m.start_segment(0, 0, 0, t0);
        let (mut out, _) = m.map(0, 0, t0).unwrap();
        let mut ext = 0;
        for _ in 0..3 * SKIP_RANGES {
            ext += 1;
            assert!(m.skip(ext));
            ext += 1;
            let (o, _) = m.map(ext, 0, t0).unwrap();
            assert_eq!(o, out.wrapping_add(1), "no gap in the output");
            assert_eq!(m.unmap(o), Some(ext));
            out = o;
            assert!(m.skips.len <= SKIP_RANGES);
        }
        assert!(
            m.map(2, 0, t0).is_none(),
            "from before the moved start: late"
        );
        let back = ext - 2 * (SKIP_RANGES as u64 - 1);
        assert_eq!(
            m.map(back, 0, t0).map(|(o, _)| m.unmap(o)),
            Some(Some(back))
        );
    }

    #[test]
    fn loss_tracking() {
        let now = Instant::now();
        let mut l = Layer::new(String::new(), CACHE_SLOTS);
        l.on_packet(10, now);
        l.on_packet(13, now);
        assert_eq!(
            l.missing.iter().map(|m| m.ext).collect::<Vec<_>>(),
            vec![11, 12]
        );
        l.on_packet(11, now);
        assert_eq!(
            l.missing.iter().map(|m| m.ext).collect::<Vec<_>>(),
            vec![12]
        );
    }

    #[test]
    fn cache_and_history() {
        let mut c = RtxCache::new(CACHE_SLOTS);
        c.store(5, &[1, 2, 3]);
        assert_eq!(c.get(5), Some(&[1u8, 2, 3][..]));
        assert_eq!(c.get(5 + CACHE_SLOTS as u16), None);
        // LiveKit's audio default, 200, keeps 256; the caps hold both ways.
        let mut c = RtxCache::new(200);
        for seq in 0..=300u16 {
            c.store(seq, &seq.to_be_bytes());
        }
        assert_eq!(c.get(300 - 255), Some(&(300u16 - 255).to_be_bytes()[..]));
        assert_eq!(c.get(300 - 256), None);
        assert_eq!(RtxCache::new(1).slots.len(), 16);
        assert_eq!(RtxCache::new(1 << 20).slots.len(), 4096);
        let mut s = Subscription::new(PeerId(1), 1, vec![], 90_000);
        s.remember(77, 7, 2, 900);
        assert_eq!(s.lookup(77), Some((2, 7, 900)));
        assert_eq!(s.lookup(78), None);
    }

    #[test]
    fn a_cache_slot_grows_by_classes() {
        let mut c = RtxCache::new(16);
        c.store(0, &[0; 100]);
        assert_eq!(c.slots[0].data.capacity(), 256);
        c.store(16, &[0; 1128]);
        let buf = c.slots[0].data.as_ptr();
        assert_eq!(c.slots[0].data.capacity(), 1280);
        // A packet a byte longer (a keyframe's extra descriptor byte) reuses the buffer.
        c.store(32, &[0; 1129]);
        assert_eq!(c.slots[0].data.as_ptr(), buf);
        assert_eq!(c.get(32).map(<[u8]>::len), Some(1129));
        c.store(48, &[0; 1500]);
        assert_eq!(c.slots[0].data.capacity(), 2048);
    }
}
