//! The engine: every peer and track of one media shard, driven by datagrams, commands and
//! time, with no I/O of its own.
//!
//! Demultiplexing follows RFC 7983 on the first byte: 0–3 STUN, 20–63 DTLS, 128–191
//! RTP/RTCP. STUN finds its peer by the USERNAME's local ufrag; everything else by source
//! address, and only from addresses that passed an ICE check.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lkr_datachannel::{DataChannelEvent, SctpTransport};
use lkr_dtls_glue::cert::{Certificate, Fingerprint};
use lkr_dtls_glue::dtls::{DtlsEndpoint, DtlsEvent, Role};
use lkr_dtls_glue::keying::SrtpSession;
use lkr_dtls_glue::srtp::{SrtpContext, SrtpError};
use lkr_ice::{IceLite, IceState};
use lkr_rtp::{RtcpPacket, RtpView};
use rustc_hash::FxHashMap;

use crate::api::{
    CodecKind, Command, Event, LayerStats, MediaKind, MediaLimits, PeerConfig, PeerId, SinkId,
    TrackId, TrackStats,
};
use crate::forward::{LocalSink, Subscription, Track, is_keyframe, pick_layer, red_primary};
use crate::svc;

/// Our SSRC as the sender of RTCP feedback.
const FEEDBACK_SSRC: u32 = 1;
/// Delay before the first NACK for a gap, so that slightly reordered packets are not asked
/// for.
const NACK_DELAY: Duration = Duration::from_millis(10);
mod bwe;
mod early;

pub use early::{EARLY_CHECK_AGE, EARLY_CHECK_BYTES, EARLY_CHECKS};

/// Time between transport-wide congestion feedback packets to a sending peer.
const TWCC_INTERVAL: Duration = Duration::from_millis(20);
/// Minimum time between keyframe requests for one layer.
/// A video layer silent this long that comes back without a keyframe (the publisher's path
/// was down and its encoder went on with delta frames) gets a keyframe request at once: its
/// subscribers cannot decode the rest until one comes, and would otherwise each have to
/// notice and ask.
const RESUME_GAP: Duration = Duration::from_secs(1);
/// A peer heard again after this long without a datagram from it, while media was sent to
/// it, had its path down (an outage, a move between networks: a peer receiving media sends
/// feedback several times a second); the same span after which its estimator takes it for
/// unheard and holds its estimate. A peer receiving nothing is heard only by its consent
/// checks, seconds apart, and such a gap is no outage ([`Engine::on_path_back`]).
const PATH_SILENCE: Duration = lkr_bwe::HEARD_WITHIN;
/// Time between NACKs for the same lost packet: about a round trip, so that a resent packet
/// still in flight is not asked for again.
const NACK_RETRY: Duration = Duration::from_millis(100);
/// A lost packet is given up after this many NACKs or this long.
const NACK_MAX_TRIES: u8 = 8;
const NACK_GIVE_UP: Duration = Duration::from_millis(1000);
/// Time between receiver reports to publishers.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// A publisher's sender reports for one layer are sent on to its subscribers at most this
/// often (libwebrtc sends one a second per video stream, randomized down to half that);
/// the ones in between only update what our receiver reports answer.
const SR_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Room for the SRTP tag behind a packet.
const SRTP_ROOM: usize = 32;
/// Local sinks one track feeds at most (further `AddSink`s for it are ignored and logged).
pub const MAX_SINKS_PER_TRACK: usize = 8;
/// Datagram buffers kept for reuse (about 6 MB): one packet's fan-out to this many
/// subscribers plus a send batch allocates nothing.
const POOL_LIMIT: usize = 4096;

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub data: Vec<u8>,
}

/// What the core forwarded and heard, counted with plain integers on the media thread (the
/// driver publishes a copy now and then; nothing shared is touched per packet).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// RTP packets received from publishers (after SRTP), and their bytes.
    pub rtp_in: u64,
    pub rtp_in_bytes: u64,
    /// RTP packets forwarded to subscribers, and their bytes (protected).
    pub rtp_out: u64,
    pub rtp_out_bytes: u64,
    /// Packets resent to subscribers in answer to their NACKs.
    pub rtx_out: u64,
    /// Sequence numbers subscribers asked again for (NACK entries).
    pub nack_in: u64,
    /// Keyframe requests from subscribers (PLI and FIR), and PLIs sent to publishers.
    pub pli_in: u64,
    pub pli_out: u64,
    /// Packets from publishers found missing at receiver reports (RFC 3550 interval loss,
    /// before any NACK repair).
    pub upstream_lost: u64,
    /// Peers heard again after a silence that media was sent into (an outage): their loss
    /// readings started over (`Engine::on_path_back`).
    pub path_returns: u64,
}

/// Work for another shard of a sharded driver, queued by [`Engine`] and taken with
/// [`Engine::drain_relays`]. `to` names the shards (a bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// A media packet of an owned track (plain RTP, the bytes passed along) for the shards
    /// that mirror it.
    Media { to: u64, track: TrackId, layer: u8 },
    /// The publisher's sender report of one layer, for the mirrors' subscribers.
    SenderReport {
        to: u64,
        track: TrackId,
        layer: u8,
        ntp: u64,
        rtp_ts: u32,
    },
    /// A mirror's subscribers want a keyframe: for the shard that owns the track.
    Keyframe {
        to: u64,
        track: TrackId,
        layer: Option<u8>,
    },
}

/// Relays waiting for the driver, with the packet bytes of `Media` items in one reused
/// buffer (no allocation per packet once it has grown).
#[derive(Default)]
struct RelayOut {
    items: Vec<(Relay, u32, u32)>,
    bytes: Vec<u8>,
}

/// Packets for local sinks waiting for the driver, their bytes in one reused buffer (no
/// allocation per packet once it has grown): (sink, codec, start, length).
#[derive(Default)]
struct SinkOut {
    items: Vec<(SinkId, CodecKind, u32, u32)>,
    bytes: Vec<u8>,
}

/// Why packets were dropped, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub unknown_source: u64,
    pub bad_stun: u64,
    pub dtls_error: u64,
    pub srtp_error: u64,
    /// Packets seen before (SRTP replay check): duplicates and repeated retransmissions.
    pub replayed: u64,
    pub malformed_rtp: u64,
    pub unknown_ssrc: u64,
    pub unknown_first_byte: u64,
    /// Bandwidth probes from publishers: padding-only retransmission packets,
    /// retransmissions of packets already held (libwebrtc probes with old packets), and
    /// padding-only packets on a media stream left out for some subscriber.
    pub padding: u64,
    /// Packets too old to forward to a subscriber (behind its current segment).
    pub late: u64,
    /// Datagrams the driver could not send (socket buffer full), summed over peers.
    pub unsent: u64,
    /// NACKed packets asked for twice in one RTCP datagram.
    pub nack_duplicate: u64,
    /// NACKed packets past `max_nacks_per_packet` in one RTCP datagram.
    pub nack_over_cap: u64,
    /// NACKed packets past the peer's `max_retransmissions_per_sec`.
    pub nack_over_rate: u64,
    /// Sender reports of a layer that came within `SR_MIN_INTERVAL` of the last one sent
    /// on, not sent on to its subscribers.
    pub sender_report_over_rate: u64,
    /// Reliable data messages for a peer whose reliable channel was not open yet, past
    /// what is held for it (`HELD_DATA_MESSAGES`, `HELD_DATA_BYTES`).
    pub data_over_hold: u64,
}

/// Reliable data messages held for a peer whose reliable channel is not open yet (a client
/// that has connected but not finished opening its data channels), at most this many ...
const HELD_DATA_MESSAGES: usize = 32;
/// ... and this many bytes (two of the largest messages, 256 KiB) ...
const HELD_DATA_BYTES: usize = 512 * 1024;
/// ... and this many bytes for all the engine's peers together; what comes past any of the
/// three is dropped and counted (`Drops::data_over_hold`).
const HELD_DATA_TOTAL: usize = 8 * 1024 * 1024;
/// The label of the reliable data channel.
const RELIABLE_LABEL: &str = "_reliable";
/// The channel LiveKit's data tracks travel on, both ways.
const DATA_TRACK_LABEL: &str = "_data_track";

/// The stream id of the open data channel labelled `label`.
fn channel_sid(channels: &[(u16, String)], label: &str) -> Option<u16> {
    channels
        .iter()
        .find(|(_, l)| l == label)
        .map(|(sid, _)| *sid)
}

/// Reliable data for a peer, held in order until its reliable channel opens.
#[derive(Default)]
struct HeldData {
    messages: VecDeque<Bytes>,
    bytes: usize,
}

impl HeldData {
    /// Holds `data`, counted in `total` (what all peers hold); false (nothing held) past
    /// the caps.
    fn push(&mut self, data: Bytes, total: &mut usize) -> bool {
        if self.messages.len() >= HELD_DATA_MESSAGES
            || self.bytes + data.len() > HELD_DATA_BYTES
            || *total + data.len() > HELD_DATA_TOTAL
        {
            return false;
        }
        self.bytes += data.len();
        *total += data.len();
        self.messages.push_back(data);
        true
    }

    /// Sends what is held, in order, once `channels` has the reliable channel.
    fn flush(
        &mut self,
        id: PeerId,
        sctp: &mut SctpTransport,
        channels: &[(u16, String)],
        total: &mut usize,
    ) {
        if self.messages.is_empty() {
            return;
        }
        let Some(sid) = channel_sid(channels, RELIABLE_LABEL) else {
            return;
        };
        for data in self.messages.drain(..) {
            if let Err(e) = sctp.send(sid, true, &data) {
                tracing::debug!(?id, "held data: send failed: {e}");
            }
        }
        *total -= self.bytes;
        self.bytes = 0;
    }
}

struct Peer {
    config: PeerConfig,
    ice: IceLite,
    dtls: Option<DtlsEndpoint>,
    remote_fp: Option<Fingerprint>,
    srtp_in: Option<SrtpContext>,
    srtp_out: Option<SrtpContext>,
    sctp: Option<SctpTransport>,
    channels: Vec<(u16, String)>,
    /// Reliable data sent to the peer before its reliable channel opened.
    held: HeldData,
    connected: bool,
    disconnected: bool,
    /// Incoming SSRC → (track, layer).
    ssrc_routes: FxHashMap<u32, (TrackId, usize)>,
    /// Incoming retransmission SSRC → (track, layer).
    rtx_routes: FxHashMap<u32, (TrackId, usize)>,
    /// Our downstream SSRC → track.
    down_ssrcs: FxHashMap<u32, TrackId>,
    published: Vec<TrackId>,
    subscribed: Vec<TrackId>,
    /// Transport-wide sequence numbers received, for congestion feedback to the sender.
    twcc: lkr_rtp::TwccBuilder,
    /// The transport-cc header extension id the peer sends with (0: none).
    twcc_ext: u8,
    /// An SSRC the peer sends, named as the media source of its feedback.
    twcc_media_ssrc: u32,
    /// The deadline this peer has in the engine's timer heap (the earliest of its entries).
    armed: Option<Instant>,
    /// When the last datagram from the peer that passed its checks (STUN, SRTP, SRTCP)
    /// arrived: a subscriber whose transport feedback stops while it is still heard has its
    /// estimate backed off, one not heard at all (an outage) keeps it; one heard again after
    /// [`PATH_SILENCE`] has the loss readings media went into the silence for start over
    /// ([`Engine::on_path_back`]).
    heard: Option<Instant>,
    /// Datagrams to this peer the driver could not send.
    unsent: u64,
    /// The addresses `by_addr` maps to this peer (as many as ICE keeps valid, plus the one
    /// just added), so that those ICE drops leave `by_addr` too.
    addrs: Vec<SocketAddr>,
    /// Start of the current one-second retransmission budget, and what it spent.
    rtx_window: Option<Instant>,
    rtx_spent: u32,
    /// The bandwidth estimate of this peer's downstream link, once it negotiated
    /// transport-cc on a subscription.
    bwe: Option<Box<bwe::PeerBwe>>,
    /// A cap on what congestion control allocates it, bit/s (`SetChannelCapacity`).
    capacity: Option<u64>,
}

impl Peer {
    /// Notes a datagram from the peer that passed its checks; when the peer was silent for
    /// [`PATH_SILENCE`] before it (its path may be back from an outage), returns when it
    /// was last heard.
    fn hear(&mut self, now: Instant) -> Option<Instant> {
        let silent_since = self
            .heard
            .filter(|h| now.saturating_duration_since(*h) >= PATH_SILENCE);
        self.heard = Some(now);
        silent_since
    }

    fn dest(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// The peer's earliest deadline (ICE, DTLS, SCTP). Consent expiry (30 s after the last
    /// check, moved by every check) is rounded up to the next whole second after `grid`, so
    /// that the expiries of many idle peers come due together in one wake-up instead of one
    /// each; expiring up to a second late changes nothing. Our checks of a silent peer, DTLS
    /// and SCTP keep their exact times.
    fn deadline(&self, grid: Option<Instant>) -> Option<Instant> {
        let ice = self.ice.poll_timeout().map(|t| match grid {
            Some(grid) if !self.ice.probing() && t > grid => {
                let secs = (t - grid).as_secs() + u64::from((t - grid).subsec_nanos() > 0);
                grid + Duration::from_secs(secs)
            }
            _ => t,
        });
        [
            ice,
            self.dtls.as_ref().and_then(DtlsEndpoint::poll_timeout),
            self.sctp.as_ref().and_then(SctpTransport::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Buffers the RTCP paths reuse, so that feedback allocates nothing in steady state.
#[derive(Default)]
struct RtcpScratch {
    nacks: Vec<(TrackId, u32, u16)>,
    plis: Vec<TrackId>,
    srs: Vec<(TrackId, usize, u64, u32)>,
    losses: Vec<(TrackId, i32, u32)>,
    /// Sender reports to forward: (subscriber, ssrc, timestamp, packets, octets).
    reports: Vec<(PeerId, u32, u32, u32, u32)>,
    /// Receiver report blocks by publisher.
    blocks: Vec<(PeerId, lkr_rtp::ReportBlock)>,
}

/// The media core.
pub struct Engine {
    cert: Certificate,
    peers: FxHashMap<PeerId, Peer>,
    by_addr: FxHashMap<SocketAddr, PeerId>,
    by_ufrag: FxHashMap<String, PeerId>,
    /// Binding requests for a ufrag no peer has yet, answered when the peer arrives.
    early: early::EarlyChecks,
    tracks: FxHashMap<TrackId, Track>,
    /// Bytes of reliable data all peers hold until their channels open (`Peer::held`).
    held_total: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pool: Vec<Vec<u8>>,
    /// Per-peer deadlines, earliest first. Entries are never late but may be stale (the
    /// peer's deadline moved later, or the peer left): a stale entry is dropped when it
    /// comes up, and a peer that fires is armed again from its own timers.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// When lost upstream packets are next due for a NACK.
    next_nack: Option<Instant>,
    /// When congestion feedback is next due (some peer has pending feedback).
    next_twcc: Option<Instant>,
    /// When probe padding is next due (some subscriber's estimate is being probed).
    next_probe: Option<Instant>,
    /// Where retransmissions are rebuilt into the packets they repair.
    scratch: Vec<u8>,
    rtcp: RtcpScratch,
    /// Peers a silence sweep started checking (kept for its capacity).
    silent_scratch: Vec<PeerId>,
    /// Peers whose estimate backed off for lack of feedback (reused; see
    /// [`Engine::back_off_silent_estimates`]).
    backoff_scratch: Vec<PeerId>,
    next_report: Option<Instant>,
    next_levels: Option<Instant>,
    /// Highest upstream loss per publishing peer since the last `Loss` event.
    loss: Vec<(PeerId, f32)>,
    reports_since_loss: u32,
    /// The first instant the engine saw; arrival times are counted from it.
    epoch: Option<Instant>,
    /// Where the whole seconds that consent expiries are rounded to start
    /// ([`Peer::deadline`]): the time the first peer was added.
    grid: Option<Instant>,
    relays: RelayOut,
    /// The track of each local sink.
    sink_tracks: FxHashMap<SinkId, TrackId>,
    sink_out: SinkOut,
    pub drops: Drops,
    /// What was forwarded and heard.
    pub traffic: Traffic,
    limits: MediaLimits,
    /// Inputs that want handling at once, counted: see [`Engine::urgent_inputs`].
    urgent: u64,
}

/// Sends our check of a silent peer when its ICE has one due.
fn probe(p: &mut Peer, id: PeerId, pool: &mut Vec<Vec<u8>>, transmits: &mut VecDeque<Transmit>) {
    if !p.ice.probe_due() {
        return;
    }
    let mut out = take_buf(pool);
    if let Some(to) = p.ice.poll_probe(&mut out) {
        tracing::debug!(peer = ?id, %to, "peer silent: checking its path");
        transmits.push_back(Transmit {
            dest: to,
            data: out,
        });
    } else {
        pool.push(out);
    }
}

fn take_buf(pool: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut b = pool
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(1500 + SRTP_ROOM));
    b.clear();
    b
}

/// One downstream packet before it is written.
struct OutPacket<'a> {
    marker: bool,
    seq: u16,
    ts: u32,
    codec: CodecKind,
    payload: &'a [u8],
    /// A VP8 payload's descriptor, parsed once for every copy.
    vp8: Option<&'a lkr_rtp::vp8::Vp8Descriptor>,
}

/// The payload descriptor of a VP8 packet's payload, parsed once for all its copies.
fn vp8_descriptor(codec: CodecKind, payload: &[u8]) -> Option<lkr_rtp::vp8::Vp8Descriptor> {
    (codec == CodecKind::Vp8)
        .then(|| lkr_rtp::vp8::parse(payload).ok())
        .flatten()
}

/// Stamps downstream packets with a transport-wide sequence number from a subscriber's
/// estimator: the extension id, the estimator and the time.
type Stamp<'a> = Option<(u8, &'a mut lkr_bwe::Estimator, Instant)>;

/// Bytes SRTP adds to an RTP packet (the authentication tag), counted in what the
/// estimator is told was sent.
const SRTP_TAG: u32 = 10;

/// Writes the transport-wide sequence number into a header written with it as the first
/// extension element, in the one-byte form or (`one_byte` false) the two-byte form.
fn stamp_seq(buf: &mut [u8], one_byte: bool, seq: u16) {
    let at = if one_byte { 17 } else { 18 };
    if let Some(d) = buf.get_mut(at..at + 2) {
        d.copy_from_slice(&seq.to_be_bytes());
    }
}

/// [`write_down`]'s header when the packet carries a playout delay: the transport-wide
/// sequence number element (if any) first, then the delay. Returns the header's length and
/// whether it took the one-byte form.
#[cold]
#[inline(never)]
fn header_with_delay(
    buf: &mut Vec<u8>,
    p: &OutPacket<'_>,
    (pt, seq, ssrc): (u8, u16, u32),
    twcc: Option<u8>,
    (pd, value): (u8, [u8; 3]),
) -> (Result<usize, lkr_rtp::RtpError>, bool) {
    // The fixed header and two elements in the two-byte form.
    buf.resize(32, 0);
    let both = [(twcc.unwrap_or(0), &[0u8, 0][..]), (pd, &value[..])];
    let elems = if twcc.is_some() {
        &both[..]
    } else {
        &both[1..]
    };
    let one_byte = elems.iter().all(|(id, _)| (1..=14).contains(id));
    let w = lkr_rtp::RtpWriter::write_header(buf, p.marker, pt, seq, p.ts, ssrc, elems);
    (w, one_byte)
}

/// Writes a downstream packet for subscription `s` into a pooled buffer and protects it:
/// a fresh header with the subscriber's SSRC and payload type, the payload (a RED payload
/// reduced to its primary Opus where the subscriber did not take RED), VP8 ids rewritten.
/// Returns the datagram and the payload length, or `None` when the subscriber cannot take
/// this packet.
///
/// With `rtx`, the packet goes out as a retransmission on the subscription's RTX stream
/// (RFC 4588: its own payload type, SSRC and sequence number, the original sequence number
/// before the payload). With `stamp`, it carries a transport-wide sequence number.
fn write_down(
    pool: &mut Vec<Vec<u8>>,
    srtp: &mut SrtpContext,
    s: &mut Subscription,
    p: &OutPacket<'_>,
    rtx: bool,
    stamp: Stamp<'_>,
) -> Option<(Vec<u8>, usize)> {
    let (pt, body) = match (p.codec, s.payload_type(p.codec)) {
        (_, Some(pt)) => (pt, p.payload),
        (CodecKind::Red, None) => (s.payload_type(CodecKind::Opus)?, red_primary(p.payload)?),
        _ => return None,
    };
    let (pt, seq, ssrc, osn) = match s.rtx_for(pt).filter(|_| rtx) {
        Some((rtx_pt, rtx_ssrc)) => {
            s.rtx_seq = s.rtx_seq.wrapping_add(1);
            (rtx_pt, s.rtx_seq, rtx_ssrc, Some(p.seq))
        }
        None => (pt, p.seq, s.ssrc, None),
    };
    let mut buf = take_buf(pool);
    // The transport-wide sequence number (stamped below) is the first element; the playout
    // delay, where the room sets one, the second.
    let ext = stamp.as_ref().map(|(id, _, _)| *id);
    let (written, one_byte) = match s.playout_delay {
        None => {
            buf.resize(20, 0);
            let elems: &[(u8, &[u8])] = match ext {
                Some(id) => &[(id, &[0, 0])],
                None => &[],
            };
            let w =
                lkr_rtp::RtpWriter::write_header(&mut buf, p.marker, pt, seq, p.ts, ssrc, elems);
            (w, ext.is_none_or(|id| (1..=14).contains(&id)))
        }
        Some(delay) => header_with_delay(&mut buf, p, (pt, seq, ssrc), ext, delay),
    };
    let Ok(hdr) = written else {
        pool.push(buf);
        return None;
    };
    buf.truncate(hdr);
    if let Some(osn) = osn {
        buf.extend_from_slice(&osn.to_be_bytes());
    }
    let at = buf.len();
    buf.extend_from_slice(body);
    if let Some(d) = p.vp8 {
        s.vp8.rewrite(&mut buf[at..], d);
    }
    let len = buf.len();
    if let Some((_, est, now)) = stamp {
        let tseq = est.on_send(now, len as u32 + SRTP_TAG);
        stamp_seq(&mut buf, one_byte, tseq);
    }
    protect(pool, srtp, buf, len).map(|b| (b, body.len()))
}

/// Protects the RTP packet in `buf[..len]` in place; on failure the buffer goes back to the
/// pool.
fn protect(
    pool: &mut Vec<Vec<u8>>,
    srtp: &mut SrtpContext,
    mut buf: Vec<u8>,
    len: usize,
) -> Option<Vec<u8>> {
    buf.resize(len + SRTP_ROOM, 0);
    match srtp.protect_rtp(&mut buf, len) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => {
            pool.push(buf);
            None
        }
    }
}

/// Writes one RTCP packet with `write` into a pooled buffer, protects it and queues it to
/// `peer`.
fn feedback(
    peers: &mut FxHashMap<PeerId, Peer>,
    pool: &mut Vec<Vec<u8>>,
    transmits: &mut VecDeque<Transmit>,
    peer: PeerId,
    write: impl FnOnce(&mut [u8]) -> Result<usize, lkr_rtp::RtcpError>,
) {
    let Some(p) = peers.get_mut(&peer) else {
        return;
    };
    let (Some(dest), Some(srtp)) = (p.dest(), p.srtp_out.as_mut()) else {
        return;
    };
    let mut buf = take_buf(pool);
    buf.resize(1200, 0);
    let Ok(n) = write(&mut buf) else {
        pool.push(buf);
        return;
    };
    match srtp.protect_rtcp(&mut buf, n) {
        Ok(m) => {
            buf.truncate(m);
            transmits.push_back(Transmit { dest, data: buf });
        }
        Err(_) => pool.push(buf),
    }
}

/// A peer's DTLS handshake completed with `keying` (`profile_id`, exported keying material,
/// whether we were the DTLS client): its SRTP contexts and SCTP association start.
fn dtls_connected(
    p: &mut Peer,
    id: PeerId,
    now: Instant,
    limits: &MediaLimits,
    events: &mut VecDeque<Event>,
    (profile_id, keying_material, we_are_client): (u16, &[u8], bool),
) {
    match SrtpSession::from_dtls(profile_id, keying_material, we_are_client) {
        Ok(SrtpSession { inbound, outbound }) => {
            p.srtp_in = Some(inbound);
            p.srtp_out = Some(outbound);
            p.connected = true;
            p.sctp = Some(SctpTransport::with_limits(
                we_are_client,
                now,
                limits.data_channel,
            ));
            tracing::debug!(?id, profile_id, "DTLS connected");
            events.push_back(Event::PeerConnected { peer: id });
        }
        Err(e) => {
            tracing::warn!(?id, "SRTP setup failed: {e}");
            events.push_back(Event::PeerDisconnected {
                peer: id,
                reason: e.to_string(),
            });
        }
    }
}

impl Engine {
    /// An engine whose DTLS identity is `cert`.
    pub fn new(cert: Certificate) -> Self {
        Self {
            cert,
            peers: FxHashMap::default(),
            by_addr: FxHashMap::default(),
            by_ufrag: FxHashMap::default(),
            early: early::EarlyChecks::default(),
            tracks: FxHashMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pool: Vec::new(),
            timers: BinaryHeap::new(),
            next_nack: None,
            next_twcc: None,
            next_probe: None,
            scratch: Vec::with_capacity(1500),
            rtcp: RtcpScratch::default(),
            silent_scratch: Vec::new(),
            backoff_scratch: Vec::new(),
            next_report: None,
            next_levels: None,
            loss: Vec::new(),
            reports_since_loss: 0,
            epoch: None,
            grid: None,
            relays: RelayOut::default(),
            sink_tracks: FxHashMap::default(),
            sink_out: SinkOut::default(),
            drops: Drops::default(),
            held_total: 0,
            urgent: 0,
            traffic: Traffic::default(),
            limits: MediaLimits::default(),
        }
    }

    /// Sets the caps on what one peer may cause; peers connected later get them.
    pub fn set_limits(&mut self, limits: MediaLimits) {
        self.limits = limits;
    }

    /// Packets a new track's layers keep for answering NACKs.
    fn cache_slots(&self, kind: MediaKind) -> usize {
        match kind {
            MediaKind::Video => self.limits.packet_buffer.0,
            MediaKind::Audio => self.limits.packet_buffer.1,
        }
    }

    /// Entries a peer's subscriptions hold (tracks it receives, and downstream SSRCs).
    pub fn subscription_entries(&self, peer: PeerId) -> usize {
        self.peers
            .get(&peer)
            .map_or(0, |p| p.subscribed.len() + p.down_ssrcs.len())
    }

    /// Source addresses the engine routes to some peer.
    pub fn address_count(&self) -> usize {
        self.by_addr.len()
    }

    /// The fingerprint of our certificate, as `(algorithm, value)` for SDP.
    pub fn fingerprint(&self) -> (String, String) {
        let fp = self.cert.fingerprint();
        (fp.algorithm.clone(), fp.to_sdp_value())
    }

    /// Gives a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT {
            self.pool.push(buf);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// How many datagrams wait in [`Engine::poll_transmit`]. A driver sends them while it
    /// handles a batch, once there are a batch's worth, so that buffers come back to the pool
    /// before the next packet's fan-out needs them.
    pub fn pending_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// The next event for the control plane.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.urgent += u64::from(!self.events.is_empty());
        self.events.pop_front()
    }

    /// How many inputs so far wanted handling at once: media and its reports (SRTP, SRTCP),
    /// handshakes (a check before ICE connects, DTLS before it does) and whatever the
    /// control plane hears of (every event). What is left out is an idle connected peer's
    /// upkeep: its consent checks and its SCTP heartbeats. A driver that sees this unchanged
    /// may batch its reads.
    pub fn urgent_inputs(&self) -> u64 {
        self.urgent
    }

    /// When [`Engine::handle_timeout`] is due: the earliest real deadline of any part, or
    /// `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = if self.tracks.is_empty() {
            [None, None]
        } else {
            [self.next_report, self.next_levels]
        };
        [
            self.timers.peek().map(|Reverse((t, _))| *t),
            self.next_nack,
            self.next_twcc,
            self.next_probe,
        ]
        .into_iter()
        .chain(media)
        .flatten()
        .min()
    }

    /// Puts `id`'s earliest deadline in the timer heap when it is earlier than the one
    /// already there.
    fn arm(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(d) = p.deadline(self.grid) else {
            return;
        };
        if p.armed.is_none_or(|a| d < a) {
            p.armed = Some(d);
            self.timers.push(Reverse((d, id)));
        }
        // Stale entries pile up only while deadlines keep moving earlier; rebuild then.
        if self.timers.len() > 2 * self.peers.len() + 64 {
            self.timers = self
                .peers
                .iter()
                .filter_map(|(id, p)| p.armed.map(|a| Reverse((a, *id))))
                .collect();
        }
    }

    /// Applies one command.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::SetLimits(limits) => self.set_limits(limits),
            Command::AddPeer { peer, config } => self.add_peer(now, peer, config),
            Command::RemovePeer { peer } => self.remove_peer(peer),
            Command::RestartIce {
                peer,
                local_ufrag,
                local_pwd,
                remote_ufrag,
                remote_pwd,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    self.by_ufrag.remove(&p.config.local_ufrag);
                    self.by_ufrag.insert(local_ufrag.clone(), peer);
                    p.config.local_ufrag = local_ufrag.clone();
                    p.config.local_pwd = local_pwd.clone();
                    p.config.remote_ufrag = remote_ufrag.clone();
                    p.config.remote_pwd = remote_pwd.clone();
                    p.ice
                        .restart(local_ufrag.clone(), local_pwd, remote_ufrag, remote_pwd);
                    // Checks with the new ufrag from a new address may have come first.
                    self.answer_early(now, &local_ufrag);
                }
            }
            Command::Publish(spec) => {
                if let Some(p) = self.peers.get_mut(&spec.peer) {
                    if !p.published.contains(&spec.track) {
                        p.published.push(spec.track);
                    }
                    if spec.ext.transport_cc != 0 {
                        p.twcc_ext = spec.ext.transport_cc;
                    }
                    for (i, ssrc) in spec.ssrcs.iter().enumerate().take(1) {
                        p.ssrc_routes.insert(*ssrc, (spec.track, i));
                    }
                }
                let mut t = Track::new(&spec, self.cache_slots(spec.kind));
                if let (Some(ssrc), 1) = (spec.ssrcs.first(), t.layers.len()) {
                    t.layers[0].ssrc = Some(*ssrc);
                }
                self.tracks.insert(spec.track, t);
                self.next_report.get_or_insert(now + REPORT_INTERVAL);
                let every = self.limits.speakers.update_interval;
                if !every.is_zero() {
                    self.next_levels.get_or_insert(now + every);
                }
            }
            Command::Unpublish { track } => {
                self.sink_tracks.retain(|_, t| *t != track);
                if let Some(t) = self.tracks.remove(&track) {
                    if let Some(p) = self.peers.get_mut(&t.publisher) {
                        p.published.retain(|x| *x != track);
                        p.ssrc_routes.retain(|_, (tid, _)| *tid != track);
                    }
                    for s in &t.subs {
                        if let Some(p) = self.peers.get_mut(&s.peer) {
                            p.down_ssrcs.remove(&s.ssrc);
                            p.subscribed.retain(|x| *x != track);
                        }
                    }
                }
            }
            Command::Subscribe(spec) => {
                let Some(t) = self.tracks.get_mut(&spec.track) else {
                    return;
                };
                // A re-subscription replaces the old entry, and the old downstream SSRC.
                let old_ssrc = t.subs.iter().find(|s| s.peer == spec.peer).map(|s| s.ssrc);
                t.subs.retain(|s| s.peer != spec.peer);
                let clock = t.clock_rate();
                let mut sub = Subscription::new(spec.peer, spec.ssrc, spec.payload_types, clock);
                sub.rtx = spec.rtx;
                sub.priority = spec.priority;
                sub.playout_delay = spec.playout_delay;
                t.subs.push(sub);
                if let Some(p) = self.peers.get_mut(&spec.peer) {
                    if spec.transport_cc != 0 && self.limits.bandwidth_estimation {
                        match p.bwe.as_mut() {
                            Some(b) => b.ext = spec.transport_cc,
                            None => {
                                p.bwe = Some(Box::new(bwe::PeerBwe::new(now, spec.transport_cc)))
                            }
                        }
                    }
                    if let Some(old) = old_ssrc
                        && p.down_ssrcs.get(&old) == Some(&spec.track)
                    {
                        p.down_ssrcs.remove(&old);
                    }
                    p.down_ssrcs.insert(spec.ssrc, spec.track);
                    if !p.subscribed.contains(&spec.track) {
                        p.subscribed.push(spec.track);
                    }
                }
                self.request_keyframe(now, spec.track, None);
            }
            Command::Unsubscribe { peer, track } => self.unsubscribe(peer, track),
            Command::SetChannelCapacity { peer, bps } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.capacity = (bps > 0).then_some(bps);
                    self.allocate(now, peer);
                }
            }
            Command::SetPaused {
                peer,
                track,
                paused,
            } => {
                if let Some(t) = self.tracks.get_mut(&track)
                    && let Some(s) = t.subs.iter_mut().find(|s| s.peer == peer)
                {
                    let resumed = s.paused && !paused;
                    s.paused = paused;
                    if resumed {
                        // Restart on a keyframe so the decoder recovers.
                        s.resync = true;
                        self.request_keyframe(now, track, None);
                    }
                }
            }
            Command::SendData {
                peer,
                reliable,
                data,
            } => {
                let label = if reliable { RELIABLE_LABEL } else { "_lossy" };
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let sid = channel_sid(&p.channels, label);
                match (p.sctp.as_mut(), sid) {
                    // after what is held, if anything is: the pump sends it all in order
                    (Some(sctp), Some(sid)) if !reliable || p.held.messages.is_empty() => {
                        if let Err(e) = sctp.send(sid, true, &data) {
                            tracing::debug!(?peer, "data channel send failed: {e}");
                        }
                    }
                    // a client that has connected but not yet opened its reliable channel
                    // gets it once it does (held), unless the caps are reached (dropped)
                    _ if reliable && !p.held.push(data, &mut self.held_total) => {
                        self.drops.data_over_hold += 1;
                    }
                    // held; or lossy data to a channel not open: lost, as lossy data may be
                    _ => {}
                }
                self.pump(now, peer);
            }
            Command::SendDataTrack { peer, data } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                // Lost when the channel is not open, as a lossy channel's data may be.
                if let (Some(sctp), Some(sid)) =
                    (p.sctp.as_mut(), channel_sid(&p.channels, DATA_TRACK_LABEL))
                    && let Err(e) = sctp.send(sid, true, &data)
                {
                    tracing::debug!(?peer, "data track send failed: {e}");
                }
                self.pump(now, peer);
            }
            Command::RequestKeyframe { track } => self.request_keyframe(now, track, None),
            Command::AddSink { sink, track } => self.add_sink(now, sink, track),
            Command::RemoveSink { sink } => {
                if let Some(track) = self.sink_tracks.remove(&sink)
                    && let Some(t) = self.tracks.get_mut(&track)
                {
                    t.sinks.retain(|s| s.id != sink);
                }
            }
            Command::SetMaxLayer {
                peer,
                track,
                max_layer,
            } => {
                if let Some(t) = self.tracks.get_mut(&track)
                    && let Some(s) = t.subs.iter_mut().find(|s| s.peer == peer)
                {
                    s.max_layer = usize::from(max_layer);
                }
            }
        }
    }

    fn add_peer(&mut self, now: Instant, id: PeerId, config: PeerConfig) {
        let mut ice = IceLite::new(config.local_ufrag.clone(), config.local_pwd.clone());
        ice.set_remote_credentials(config.remote_ufrag.clone(), config.remote_pwd.clone());
        let remote_fp = Fingerprint::parse(
            &config.remote_fingerprint.algorithm,
            &config.remote_fingerprint.value,
        )
        .map_err(|e| tracing::warn!(?id, "unusable remote fingerprint: {e}"))
        .ok();
        let ufrag = config.local_ufrag.clone();
        self.by_ufrag.insert(ufrag.clone(), id);
        self.peers.insert(
            id,
            Peer {
                config,
                ice,
                dtls: None,
                remote_fp,
                srtp_in: None,
                srtp_out: None,
                sctp: None,
                channels: Vec::new(),
                held: HeldData::default(),
                connected: false,
                disconnected: false,
                ssrc_routes: FxHashMap::default(),
                rtx_routes: FxHashMap::default(),
                down_ssrcs: FxHashMap::default(),
                published: Vec::new(),
                subscribed: Vec::new(),
                twcc: lkr_rtp::TwccBuilder::new(),
                twcc_ext: 0,
                twcc_media_ssrc: 0,
                armed: None,
                heard: None,
                unsent: 0,
                addrs: Vec::new(),
                rtx_window: None,
                rtx_spent: 0,
                bwe: None,
                capacity: None,
            },
        );
        self.grid.get_or_insert(now);
        self.arm(id);
        self.answer_early(now, &ufrag);
    }

    /// Answers the binding requests that came for `ufrag` before its peer did.
    fn answer_early(&mut self, now: Instant, ufrag: &str) {
        while let Some((from, data)) = self.early.take(now, ufrag, &mut self.pool) {
            self.handle_stun(now, from, &data);
            self.recycle(data);
        }
    }

    /// Hands `f` the binding requests kept for `ufrag` ([`EARLY_CHECKS`]) because they came
    /// before its peer, for the driver to pass to the shard that has the peer now.
    pub fn take_early_checks(
        &mut self,
        now: Instant,
        ufrag: &str,
        mut f: impl FnMut(SocketAddr, &mut [u8]),
    ) {
        while let Some((from, mut data)) = self.early.take(now, ufrag, &mut self.pool) {
            f(from, &mut data);
            self.recycle(data);
        }
    }

    /// Binding requests kept for peers not known yet.
    pub fn early_checks(&self) -> usize {
        self.early.len()
    }

    /// Starts feeding `sink` with an owned track's packets (a mirror has no sinks: the
    /// driver sends `AddSink` to the track's owner).
    fn add_sink(&mut self, now: Instant, sink: SinkId, track: TrackId) {
        let Some(t) = self.tracks.get_mut(&track) else {
            tracing::debug!(?sink, ?track, "sink for an unknown track");
            return;
        };
        if t.mirror.is_some() || t.sinks.len() >= MAX_SINKS_PER_TRACK {
            tracing::warn!(
                ?sink,
                ?track,
                "sink refused: a mirror, or the track's sinks are full"
            );
            return;
        }
        if !t.sinks.iter().any(|s| s.id == sink) {
            t.sinks.push(LocalSink {
                id: sink,
                layer: None,
                since: now,
            });
            self.sink_tracks.insert(sink, track);
        }
        self.request_keyframe(now, track, None);
    }

    /// Hands each packet queued for local sinks to `f` (sink, codec of its payload type, the
    /// RTP packet as the publisher sent it, after SRTP), oldest first.
    pub fn drain_sinks(&mut self, mut f: impl FnMut(SinkId, CodecKind, &[u8])) {
        for &(sink, codec, start, len) in &self.sink_out.items {
            let (a, b) = (start as usize, (start + len) as usize);
            f(sink, codec, &self.sink_out.bytes[a..b]);
        }
        self.sink_out.items.clear();
        self.sink_out.bytes.clear();
    }

    /// The counters of every track published on this engine (mirrors excluded), with the
    /// bitrate and loss of each layer since the previous call. Called about once a second,
    /// off the packet path.
    pub fn track_stats(&mut self, now: Instant, out: &mut Vec<TrackStats>) {
        out.clear();
        for t in self.tracks.values_mut().filter(|t| t.mirror.is_none()) {
            let live = t.liveness(now);
            let layers = t
                .layers
                .iter_mut()
                .enumerate()
                .map(|(i, l)| {
                    let expected = match (l.highest, l.first_ext) {
                        (Some(h), Some(f)) => h.saturating_sub(f) + 1,
                        _ => 0,
                    };
                    let (bitrate_bps, loss) = match l.stats_prior {
                        Some((at, bytes, packets, exp)) if now > at => {
                            let secs = now.duration_since(at).as_secs_f64();
                            let bps = (l.bytes.saturating_sub(bytes) * 8) as f64 / secs;
                            let de = expected.saturating_sub(exp);
                            let got = l.packets.saturating_sub(packets);
                            let loss = if de > 0 {
                                de.saturating_sub(got) as f32 / de as f32
                            } else {
                                0.0
                            };
                            (bps as u64, loss)
                        }
                        _ => (0, 0.0),
                    };
                    l.stats_prior = Some((now, l.bytes, l.packets, expected));
                    LayerStats {
                        rid: l.rid.clone(),
                        packets: l.packets,
                        bytes: l.bytes,
                        bitrate_bps,
                        loss,
                        live: live.get(i).copied().unwrap_or(false),
                    }
                })
                .collect();
            out.push(TrackStats {
                track: t.id,
                kind: t.kind,
                layers,
                sinks: t.sinks.len(),
            });
        }
    }

    /// Whether packets wait for [`Engine::drain_sinks`].
    pub fn has_sink_packets(&self) -> bool {
        !self.sink_out.items.is_empty()
    }

    fn remove_peer(&mut self, id: PeerId) {
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        self.held_total -= p.held.bytes;
        self.sink_tracks.retain(|_, t| !p.published.contains(t));
        self.by_ufrag.remove(&p.config.local_ufrag);
        self.by_addr.retain(|_, v| *v != id);
        for t in p.published {
            if let Some(track) = self.tracks.remove(&t) {
                for s in &track.subs {
                    if let Some(sp) = self.peers.get_mut(&s.peer) {
                        sp.down_ssrcs.remove(&s.ssrc);
                        sp.subscribed.retain(|x| *x != t);
                    }
                }
            }
        }
        for t in p.subscribed {
            if let Some(track) = self.tracks.get_mut(&t) {
                track.subs.retain(|s| s.peer != id);
            }
        }
    }

    fn unsubscribe(&mut self, peer: PeerId, track: TrackId) {
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subs.retain(|s| {
                if s.peer == peer {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.down_ssrcs.remove(&s.ssrc);
                    }
                    false
                } else {
                    true
                }
            });
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.subscribed.retain(|x| *x != track);
        }
    }

    /// Handles one datagram from `from`. The buffer is decrypted in place.
    pub fn handle_receive(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        let Some(&first) = buf.first() else { return };
        match first {
            0..=3 => self.handle_stun(now, from, buf),
            20..=63 => self.handle_dtls(now, from, buf),
            128..=191 => self.handle_srtp(now, from, buf),
            _ => self.drops.unknown_first_byte += 1,
        }
    }

    fn handle_stun(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        let id = match self.by_addr.get(&from) {
            Some(id) => *id,
            None => {
                let Some(local) = early::local_ufrag(buf) else {
                    self.drops.unknown_source += 1;
                    return;
                };
                let Some(id) = self.by_ufrag.get(local) else {
                    // Counted here, and kept: its peer may be on its way (see `early`).
                    self.drops.unknown_source += 1;
                    self.early.keep(now, from, buf, &mut self.pool);
                    return;
                };
                *id
            }
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        self.urgent += u64::from(p.ice.state() != IceState::Connected);
        let mut out = take_buf(&mut self.pool);
        let mut back = None;
        match p.ice.handle_stun(now, from, buf, &mut out) {
            Ok(input) => {
                back = p.hear(now);
                if input.moved {
                    tracing::debug!(?id, to = %from, "peer's media moved to a new address");
                }
                if input.became_valid {
                    self.by_addr.insert(from, id);
                    p.addrs.push(from);
                    // ICE keeps a bounded set of valid addresses per peer and drops the
                    // stalest for a new one: drop it from the routing map too, or a peer
                    // changing source ports would grow it without end.
                    let (ice, by_addr) = (&p.ice, &mut self.by_addr);
                    p.addrs.retain(|a| {
                        let keep = ice.is_valid_source(*a);
                        if !keep && by_addr.get(a) == Some(&id) {
                            by_addr.remove(a);
                        }
                        keep
                    });
                    self.arm(id);
                }
                if input.response_written {
                    self.transmits.push_back(Transmit {
                        dest: from,
                        data: out,
                    });
                } else {
                    self.pool.push(out);
                }
            }
            Err(e) => {
                self.drops.bad_stun += 1;
                tracing::trace!(?id, %from, "STUN dropped: {e}");
                self.pool.push(out);
                // From a peer's address but for a ufrag nobody has: an ICE restart's first
                // check, come before the restart command; kept like a new peer's.
                if matches!(e, lkr_ice::StunError::UnknownUsername)
                    && early::local_ufrag(buf).is_some_and(|l| !self.by_ufrag.contains_key(l))
                {
                    self.early.keep(now, from, buf, &mut self.pool);
                }
            }
        }
        if let Some(since) = back {
            self.on_path_back(now, id, since);
        }
    }

    /// A peer heard again after [`PATH_SILENCE`] (last heard at `since`): what was sent to
    /// it meanwhile was lost to the outage, so its loss readings start over, and the first
    /// reports after the outage, which count that loss, neither cut its estimate nor pause
    /// its video. Only readings that media went into the silence for are touched: a peer
    /// that receives nothing is heard only by its consent checks, every 2.5-5 s, and its
    /// silences are no outage.
    ///
    /// When the peer's transport feedback, which comes every 50-100 ms from a receiver of
    /// media, had been coming before the silence (so the silence was an outage of a path
    /// that worked, not a starved receiver heard only by its consent checks), each video
    /// stream that went into it also gets a keyframe: what was lost in it is more than the
    /// retransmission cache holds once it lasts a second or two, and a decoder missing it
    /// shows nothing until a keyframe, which libwebrtc asks for itself only after 3 s
    /// without a decodable frame or when its NACK list overflows (1000 packets).
    fn on_path_back(&mut self, now: Instant, id: PeerId, since: Instant) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let mut restarted = 0usize;
        let mut outage = false;
        let mut keyframes: Vec<(TrackId, usize)> = Vec::new();
        if let Some(b) = p.bwe.as_deref_mut()
            && b.est.awaiting_feedback()
        {
            outage = b.est.on_receiver_back(now);
            restarted += 1;
        }
        for tid in &p.subscribed {
            if let Some(t) = self.tracks.get_mut(tid)
                && t.kind == MediaKind::Video
                && let Some(s) = t.subs.iter_mut().find(|s| s.peer == id)
                && s.munger.last_out_at().is_some_and(|at| at > since)
            {
                s.restart_loss_window();
                restarted += 1;
                if outage && s.munger.is_started() && !s.paused && !s.cc_paused {
                    keyframes.push((*tid, s.munger.layer));
                }
            }
        }
        if restarted > 0 {
            self.traffic.path_returns += 1;
            tracing::debug!(peer = ?id, restarted, keyframes = keyframes.len(), "heard again after a silence: loss readings start over");
        }
        for (tid, layer) in keyframes {
            self.request_keyframe(now, tid, Some(layer));
        }
    }

    fn handle_dtls(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        let Some(&id) = self.by_addr.get(&from) else {
            self.drops.unknown_source += 1;
            return;
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if !p.ice.is_valid_source(from) {
            self.drops.unknown_source += 1;
            return;
        }
        self.urgent += u64::from(!p.connected);
        if p.dtls.is_none() {
            let Some(fp) = p.remote_fp.clone() else {
                return;
            };
            match DtlsEndpoint::new(Role::Server, &self.cert, fp, from, now) {
                Ok(d) => p.dtls = Some(d),
                Err(e) => {
                    tracing::warn!(?id, "DTLS endpoint: {e}");
                    return;
                }
            }
        }
        if let Some(d) = p.dtls.as_mut()
            && let Err(e) = d.handle_receive(now, buf)
        {
            self.drops.dtls_error += 1;
            tracing::debug!(?id, "DTLS: {e}");
        }
        self.pump(now, id);
    }

    /// Moves data between a peer's DTLS and SCTP and out to the network, then arms the
    /// peer's timers.
    fn pump(&mut self, now: Instant, id: PeerId) {
        self.pump_inner(now, id);
        self.arm(id);
    }

    fn pump_inner(&mut self, now: Instant, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(dest) = p.dest() else { return };
        for _ in 0..64 {
            let Some(dtls) = p.dtls.as_mut() else { return };
            let mut progressed = false;
            while let Some(d) = dtls.poll_transmit() {
                self.transmits.push_back(Transmit { dest, data: d });
                progressed = true;
            }
            while let Some(ev) = p.dtls.as_mut().and_then(DtlsEndpoint::poll_event) {
                progressed = true;
                match ev {
                    DtlsEvent::Connected {
                        profile_id,
                        keying_material,
                        we_are_client,
                    } => dtls_connected(
                        p,
                        id,
                        now,
                        &self.limits,
                        &mut self.events,
                        (profile_id, &keying_material, we_are_client),
                    ),
                    DtlsEvent::ApplicationData(data) => {
                        if let Some(s) = p.sctp.as_mut() {
                            s.handle_receive(now, &data);
                        }
                    }
                    DtlsEvent::Closed => {
                        tracing::debug!(?id, "DTLS closed by the peer");
                    }
                    DtlsEvent::Failed(reason) => {
                        tracing::info!(?id, %reason, "DTLS failed");
                        if !p.disconnected {
                            p.disconnected = true;
                            self.events
                                .push_back(Event::PeerDisconnected { peer: id, reason });
                        }
                    }
                }
            }
            if let Some(s) = p.sctp.as_mut() {
                while let Some(ev) = s.poll_event() {
                    progressed = true;
                    match ev {
                        DataChannelEvent::Established => {
                            for c in &p.config.open_channels {
                                match s.open_channel(&c.label, c.ordered, c.max_retransmits, "") {
                                    Ok(sid) => p.channels.push((sid, c.label.clone())),
                                    Err(e) => tracing::debug!(?id, "open {}: {e}", c.label),
                                }
                            }
                        }
                        DataChannelEvent::ChannelOpen { stream_id, label } => {
                            if channel_sid(&p.channels, &label).is_none() {
                                p.channels.push((stream_id, label.clone()));
                            }
                            self.events
                                .push_back(Event::ChannelOpen { peer: id, label });
                        }
                        DataChannelEvent::Message {
                            stream_id,
                            binary,
                            data,
                        } => {
                            let label = p
                                .channels
                                .iter()
                                .find(|(s, _)| *s == stream_id)
                                .map(|(_, l)| l.clone())
                                .unwrap_or_default();
                            self.events.push_back(Event::Data {
                                peer: id,
                                label,
                                binary,
                                data,
                            });
                        }
                        DataChannelEvent::ChannelClosed { stream_id } => {
                            p.channels.retain(|(s, _)| *s != stream_id);
                        }
                        DataChannelEvent::Closed => {}
                    }
                }
                p.held.flush(id, s, &p.channels, &mut self.held_total);
                while let Some(pkt) = s.poll_transmit(now) {
                    progressed = true;
                    if let Some(d) = p.dtls.as_mut()
                        && let Err(e) = d.send_application_data(&pkt)
                    {
                        tracing::debug!(?id, "SCTP over DTLS: {e}");
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Takes a peer's DTLS endpoint out of the engine (the peer keeps its SRTP keys), so that
    /// a fuzz harness can hand an established association to its next engine instead of
    /// paying for a handshake per input. Not for the server: built with the `fuzzing`
    /// feature only.
    #[cfg(feature = "fuzzing")]
    pub fn take_dtls(&mut self, peer: PeerId) -> Option<DtlsEndpoint> {
        self.peers.get_mut(&peer)?.dtls.take()
    }

    /// Gives `peer` an established DTLS endpoint (one [`Self::take_dtls`] returned) and the
    /// `(profile_id, keying_material, we_are_client)` its handshake exported, exactly as if
    /// its handshake had just completed in this engine. Built with the `fuzzing` feature
    /// only.
    #[cfg(feature = "fuzzing")]
    pub fn adopt_dtls(
        &mut self,
        now: Instant,
        peer: PeerId,
        dtls: DtlsEndpoint,
        keying: (u16, &[u8], bool),
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.dtls = Some(dtls);
        dtls_connected(p, peer, now, &self.limits, &mut self.events, keying);
        self.pump(now, peer);
    }

    fn handle_srtp(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        let Some(&id) = self.by_addr.get(&from) else {
            self.drops.unknown_source += 1;
            return;
        };
        self.urgent += 1;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(srtp) = p.srtp_in.as_mut() else {
            self.drops.srtp_error += 1;
            return;
        };
        if lkr_rtp::is_rtcp(buf) {
            match srtp.unprotect_rtcp(buf) {
                Ok(n) => {
                    if let Some(since) = p.hear(now) {
                        self.on_path_back(now, id, since);
                    }
                    self.handle_rtcp(now, id, n, buf);
                }
                Err(SrtpError::Replay) => self.drops.replayed += 1,
                Err(_) => self.drops.srtp_error += 1,
            }
        } else {
            match srtp.unprotect_rtp(buf) {
                Ok(n) => {
                    if let Some(since) = p.hear(now) {
                        self.on_path_back(now, id, since);
                    }
                    self.handle_rtp(now, id, &buf[..n]);
                }
                Err(SrtpError::Replay) => self.drops.replayed += 1,
                Err(_) => self.drops.srtp_error += 1,
            }
        }
    }

    /// Finds the track and layer of an incoming SSRC, learning it from the mid/rid header
    /// extensions the first time.
    fn route(&mut self, id: PeerId, view: &RtpView<'_>) -> Option<(TrackId, usize)> {
        let p = self.peers.get_mut(&id)?;
        let ssrc = view.ssrc();
        if let Some(r) = p.ssrc_routes.get(&ssrc) {
            return Some(*r);
        }
        // Learn: the mid names the track, the rid the layer.
        let mut found = None;
        for tid in &p.published {
            let Some(t) = self.tracks.get(tid) else {
                continue;
            };
            let spec_ext = (t.ext.mid, t.ext.rid);
            let mid = (spec_ext.0 != 0)
                .then(|| view.extension(spec_ext.0))
                .flatten()
                .and_then(lkr_rtp::parse_str_ext);
            if mid.is_some_and(|m| m != t.mid) {
                continue;
            }
            if mid.is_none() && !t.announced_ssrcs.contains(&ssrc) {
                continue;
            }
            let layer = if t.layers.len() > 1 {
                let rid = (spec_ext.1 != 0)
                    .then(|| view.extension(spec_ext.1))
                    .flatten()
                    .and_then(lkr_rtp::parse_str_ext);
                match rid.and_then(|r| t.rids.iter().position(|x| x == r)) {
                    Some(l) => l,
                    None => continue,
                }
            } else {
                0
            };
            found = Some((*tid, layer));
            break;
        }
        let (tid, layer) = found?;
        p.ssrc_routes.insert(ssrc, (tid, layer));
        if let Some(t) = self.tracks.get_mut(&tid) {
            t.layers[layer].ssrc = Some(ssrc);
            if !t.started {
                t.started = true;
                self.events.push_back(Event::TrackStarted { track: tid });
            }
        }
        Some((tid, layer))
    }

    fn handle_rtp(&mut self, now: Instant, id: PeerId, pkt: &[u8]) {
        let Ok(view) = RtpView::parse(pkt) else {
            self.drops.malformed_rtp += 1;
            return;
        };
        self.traffic.rtp_in += 1;
        self.traffic.rtp_in_bytes += pkt.len() as u64;
        let epoch = *self.epoch.get_or_insert(now);
        if let Some(p) = self.peers.get_mut(&id)
            && p.twcc_ext != 0
            && let Some(seq) = view
                .extension(p.twcc_ext)
                .and_then(lkr_rtp::parse_transport_cc)
        {
            p.twcc
                .push(seq, now.saturating_duration_since(epoch).as_micros() as i64);
            p.twcc_media_ssrc = view.ssrc();
            self.next_twcc.get_or_insert(now + TWCC_INTERVAL);
        }
        if let Some((tid, layer, apt)) = self.rtx_route(id, &view) {
            self.handle_rtx(now, id, tid, layer, apt, &view);
            return;
        }
        let Some((tid, layer)) = self.route(id, &view) else {
            self.drops.unknown_ssrc += 1;
            return;
        };
        self.forward(now, tid, layer, pkt);
    }

    /// The track, layer and repaired payload type of an RFC 4588 retransmission packet,
    /// learned from its SSRC (SDP `FID` group) or its mid/repaired-rid extensions.
    fn rtx_route(&mut self, id: PeerId, view: &RtpView<'_>) -> Option<(TrackId, usize, u8)> {
        let p = self.peers.get_mut(&id)?;
        let pt = view.payload_type();
        if let Some(&(tid, layer)) = p.rtx_routes.get(&view.ssrc()) {
            let apt = self.tracks.get(&tid)?.rtx.iter().find(|(r, _)| *r == pt)?.1;
            return Some((tid, layer, apt));
        }
        for tid in &p.published {
            let Some(t) = self.tracks.get(tid) else {
                continue;
            };
            let Some(&(_, apt)) = t.rtx.iter().find(|(r, _)| *r == pt) else {
                continue;
            };
            let by_ssrc = t
                .rtx_ssrcs
                .iter()
                .find(|(_, rtx)| *rtx == view.ssrc())
                .and_then(|(media, _)| t.layer_of_ssrc(*media).or(Some(0)));
            let mid = (t.ext.mid != 0)
                .then(|| view.extension(t.ext.mid))
                .flatten()
                .and_then(lkr_rtp::parse_str_ext);
            let layer = match by_ssrc {
                Some(l) => l,
                None if mid.is_some_and(|m| m == t.mid) => {
                    if t.layers.len() > 1 {
                        let rrid = (t.ext.repaired_rid != 0)
                            .then(|| view.extension(t.ext.repaired_rid))
                            .flatten()
                            .and_then(lkr_rtp::parse_str_ext);
                        match rrid.and_then(|r| t.rids.iter().position(|x| x == r)) {
                            Some(l) => l,
                            None => continue,
                        }
                    } else {
                        0
                    }
                }
                None => continue,
            };
            p.rtx_routes.insert(view.ssrc(), (*tid, layer));
            return Some((*tid, layer, apt));
        }
        None
    }

    /// Unwraps a retransmission (RFC 4588 §4: the original sequence number leads the
    /// payload) into the packet it repairs and forwards that. Padding-only packets, which
    /// libwebrtc sends on this stream to probe bandwidth, end here.
    fn handle_rtx(
        &mut self,
        now: Instant,
        id: PeerId,
        tid: TrackId,
        layer: usize,
        apt: u8,
        view: &RtpView<'_>,
    ) {
        let payload = view.payload();
        if payload.len() <= 2 {
            self.drops.padding += 1;
            return;
        }
        let Some(media_ssrc) = self
            .tracks
            .get(&tid)
            .and_then(|t| t.layers.get(layer)?.ssrc)
        else {
            self.drops.unknown_ssrc += 1;
            return;
        };
        let osn = u16::from_be_bytes([payload[0], payload[1]]);
        // libwebrtc probes by resending packets that arrived long ago: a resend of a packet
        // already held is not forwarded again (subscribers would drop it as a replay, after
        // it cost their link and showed as loss in their congestion feedback).
        if self
            .tracks
            .get(&tid)
            .and_then(|t| t.layers.get(layer)?.cache.get(osn))
            .is_some()
        {
            self.drops.padding += 1;
            return;
        }
        let mut pkt = std::mem::take(&mut self.scratch);
        pkt.clear();
        pkt.extend_from_slice(&view.as_bytes()[..view.header_len()]);
        pkt[0] &= !0x20; // no padding in the rebuilt packet
        lkr_rtp::set_sequence(&mut pkt, osn);
        lkr_rtp::set_payload_type(&mut pkt, apt);
        lkr_rtp::set_ssrc(&mut pkt, media_ssrc);
        pkt.extend_from_slice(&payload[2..]);
        let _ = id;
        self.forward(now, tid, layer, &pkt);
        self.scratch = pkt;
    }

    /// Caches a media packet of `layer` and sends it to every subscriber that should get it.
    fn forward(&mut self, now: Instant, tid: TrackId, layer: usize, pkt: &[u8]) {
        let Ok(view) = RtpView::parse(pkt) else {
            self.drops.malformed_rtp += 1;
            return;
        };
        let Engine {
            tracks,
            peers,
            transmits,
            pool,
            events,
            traffic,
            ..
        } = self;
        let Some(t) = tracks.get_mut(&tid) else {
            return;
        };
        if layer >= t.layers.len() {
            self.drops.malformed_rtp += 1;
            return;
        }
        if !t.started && t.mirror.is_none() {
            t.started = true;
            events.push_back(Event::TrackStarted { track: tid });
        }
        let Some(codec) = t.codec_of(view.payload_type()) else {
            self.drops.malformed_rtp += 1;
            return;
        };
        let seq = view.sequence();
        if t.relay_to != 0 {
            let start = self.relays.bytes.len() as u32;
            self.relays.bytes.extend_from_slice(pkt);
            let relay = Relay::Media {
                to: t.relay_to,
                track: tid,
                layer: layer as u8,
            };
            self.relays.items.push((relay, start, pkt.len() as u32));
        }
        if t.mirror.is_none()
            && t.kind == MediaKind::Audio
            && t.ext.audio_level != 0
            && !self.limits.speakers.update_interval.is_zero()
            && let Some((_, level)) = view
                .extension(t.ext.audio_level)
                .and_then(lkr_rtp::parse_audio_level)
        {
            t.audio.observe(level, &self.limits.speakers);
        }
        let missing = t.layers[layer].missing.len();
        let silent = t.layers[layer]
            .last_packet
            .map(|at| now.saturating_duration_since(at))
            .filter(|gap| *gap >= RESUME_GAP);
        let ext = t.layers[layer].on_packet(seq, now);
        // A packet of nothing but padding (libwebrtc's bandwidth probe on the media SSRC of
        // a publisher without RTX, e.g. the Rust SDK's) keeps its place in the sequence space
        // but carries no media: the layer's rate, which the node page shows and allocation
        // relies on, counts what the layer costs to forward.
        if !view.payload().is_empty() {
            t.layers[layer].bytes += (pkt.len() - view.padding_len()) as u64;
        }
        if t.mirror.is_some() {
            // Upstream loss is the owning shard's to repair.
            t.layers[layer].missing.clear();
        } else if t.layers[layer].missing.len() > missing {
            let first = now + NACK_DELAY;
            self.next_nack = Some(self.next_nack.map_or(first, |n| n.min(first)));
        }
        t.layers[layer].cache.store(seq, pkt);
        let keyframe = t.kind == MediaKind::Video && is_keyframe(codec.codec, view.payload());
        if keyframe {
            t.layers[layer].last_keyframe = Some(now);
        }
        // VP9 whose stream carries several spatial layers (SVC; the Rust SDK offers three
        // rids and sends them all in its top one).
        let spatial = if codec.codec == CodecKind::Vp9 {
            let l = lkr_rtp::vp9::layer(view.payload());
            if let Some(l) = &l {
                t.spatial.on_packet(l, pkt.len() - view.padding_len());
            }
            l.filter(|_| t.is_svc())
        } else {
            None
        };
        let mut want_keyframe: Option<usize> = None;
        if let Some(gap) = silent
            && t.kind == MediaKind::Video
            && t.mirror.is_none()
        {
            tracing::debug!(track = ?tid, layer, gap_ms = gap.as_millis() as u64, keyframe, "video layer resumed after a gap");
            if !keyframe {
                want_keyframe = Some(layer);
            }
        }
        let live = t.liveness(now);
        let n_layers = t.layers.len();
        let svc = t.is_svc();
        if t.mirror.is_none() {
            for s in t.sinks.iter_mut() {
                if s.layer.is_none() {
                    let target = pick_layer(&live, n_layers, usize::MAX).unwrap_or(layer);
                    let settled = layer + 1 == n_layers
                        || now.saturating_duration_since(s.since) >= crate::forward::SINK_SETTLE;
                    if target == layer && settled && (keyframe || t.kind == MediaKind::Audio) {
                        s.layer = Some(layer);
                    } else if target == layer && settled {
                        want_keyframe = Some(layer);
                    }
                }
                if s.layer == Some(layer) {
                    let start = self.sink_out.bytes.len() as u32;
                    self.sink_out.bytes.extend_from_slice(pkt);
                    self.sink_out
                        .items
                        .push((s.id, codec.codec, start, pkt.len() as u32));
                }
            }
        }
        let payload = view.payload();
        let vp8 = vp8_descriptor(codec.codec, payload);
        let mut padding_left_out = false;
        for s in t.subs.iter_mut() {
            if s.paused || s.cc_paused {
                continue;
            }
            // Layer choice: follow the best live layer, switching on its keyframes. After a
            // pause (`resync`) the stream restarts on a keyframe of the layer it wants.
            if t.layers.len() > 1 {
                let current = s.munger.is_started().then_some(s.munger.layer);
                // An SVC track's cap is a spatial layer: its streams follow the best live one.
                let cap = if svc { usize::MAX } else { s.layer_cap() };
                let target = pick_layer(&live, n_layers, cap).unwrap_or(layer);
                s.pending_layer = (current != Some(target) || s.resync).then_some(target);
            } else if (!s.munger.is_started() || s.resync) && s.pending_layer.is_none() {
                s.pending_layer = Some(0);
            }
            if let Some(pl) = s.pending_layer {
                if pl == layer && (keyframe || t.kind == MediaKind::Audio) {
                    s.munger.start_segment(layer, ext, view.timestamp(), now);
                    s.vp8.restart();
                    s.pending_layer = None;
                    s.resync = false;
                } else {
                    if pl == layer {
                        want_keyframe = Some(layer);
                    }
                    // Keep sending the current layer until the switch, unless resyncing.
                    if pl == layer || s.resync || !s.munger.is_started() || s.munger.layer != layer
                    {
                        continue;
                    }
                }
            }
            // A packet of nothing but padding next in sequence is left out (the packets
            // after it move down by one): it is no media, and a subscriber's own estimate
            // probes for itself.
            if payload.is_empty() && s.munger.layer == layer && s.munger.skip(ext) {
                padding_left_out = true;
                continue;
            }
            let mut marker = view.marker();
            if let Some(l) = &spatial {
                let target = u8::try_from(s.layer_cap()).unwrap_or(u8::MAX);
                let (step, up) = s.spatial.step(l, marker, target, keyframe);
                if up {
                    want_keyframe = Some(layer);
                }
                match step {
                    svc::Step::Forward { marker: m } => marker = m,
                    svc::Step::LeaveOut => {
                        if s.munger.layer == layer {
                            s.munger.leave_out(ext);
                        }
                        continue;
                    }
                }
            }
            let mapped = if s.munger.layer == layer {
                s.munger.map(ext, view.timestamp(), now)
            } else {
                s.munger.map_previous(layer, ext, view.timestamp())
            };
            let Some((out_seq, out_ts)) = mapped else {
                if s.munger.layer == layer {
                    self.drops.late += 1;
                }
                continue;
            };
            let Some(sp) = peers.get_mut(&s.peer) else {
                continue;
            };
            let dest = sp.dest();
            let (Some(dest), Some(srtp)) = (dest, sp.srtp_out.as_mut()) else {
                continue;
            };
            let stamp = sp.bwe.as_deref_mut().map(|b| (b.ext, &mut b.est, now));
            let out = OutPacket {
                marker,
                seq: out_seq,
                ts: out_ts,
                codec: codec.codec,
                payload,
                vp8: vp8.as_ref(),
            };
            if let Some((data, body_len)) = write_down(pool, srtp, s, &out, false, stamp) {
                s.remember(out_seq, seq, layer, out_ts);
                s.packets_sent += 1;
                s.octets_sent += body_len as u64;
                traffic.rtp_out += 1;
                traffic.rtp_out_bytes += data.len() as u64;
                transmits.push_back(Transmit { dest, data });
            }
        }
        if padding_left_out {
            self.drops.padding += 1;
        }
        if want_keyframe.is_some() {
            self.request_keyframe(now, tid, want_keyframe);
        }
    }

    fn handle_rtcp(&mut self, now: Instant, id: PeerId, len: usize, buf: &[u8]) {
        let mut nacks = std::mem::take(&mut self.rtcp.nacks);
        let mut plis = std::mem::take(&mut self.rtcp.plis);
        let mut srs = std::mem::take(&mut self.rtcp.srs);
        let mut losses = std::mem::take(&mut self.rtcp.losses);
        let mut twcc = None;
        nacks.clear();
        plis.clear();
        srs.clear();
        losses.clear();
        'parse: {
            let Some(p) = self.peers.get(&id) else {
                break 'parse;
            };
            for pkt in lkr_rtp::rtcp_packets(&buf[..len]) {
                let Ok(pkt) = pkt else { break };
                match pkt {
                    RtcpPacket::Nack {
                        media_ssrc, pairs, ..
                    } => {
                        if let Some(t) = p.down_ssrcs.get(&media_ssrc) {
                            // One datagram may ask for at most `max_nacks_per_packet`
                            // packets, whatever number of NACKs it packs.
                            for seq in pairs {
                                if nacks.len() >= self.limits.max_nacks_per_packet {
                                    self.drops.nack_over_cap += 1;
                                } else {
                                    nacks.push((*t, media_ssrc, seq));
                                }
                            }
                        }
                    }
                    RtcpPacket::ReceiverReport { reports, .. } => {
                        for b in reports.iter() {
                            if let Some(t) = p.down_ssrcs.get(&b.ssrc) {
                                losses.push((*t, b.cumulative_lost, b.highest_seq));
                            }
                        }
                    }
                    RtcpPacket::SenderReport {
                        ssrc,
                        ntp,
                        rtp_ts,
                        reports,
                        ..
                    } => {
                        if let Some((t, layer)) = p.ssrc_routes.get(&ssrc) {
                            srs.push((*t, *layer, ntp, rtp_ts));
                        }
                        for b in reports.iter() {
                            if let Some(t) = p.down_ssrcs.get(&b.ssrc) {
                                losses.push((*t, b.cumulative_lost, b.highest_seq));
                            }
                        }
                    }
                    RtcpPacket::Pli { media_ssrc, .. } => {
                        if let Some(t) = p.down_ssrcs.get(&media_ssrc) {
                            plis.push(*t);
                        }
                    }
                    RtcpPacket::TransportCc(view) if p.bwe.is_some() => twcc = Some(view),
                    RtcpPacket::Fir { entries, .. } => {
                        for (ssrc, _) in entries.iter() {
                            if let Some(t) = p.down_ssrcs.get(&ssrc) {
                                plis.push(*t);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.traffic.nack_in += nacks.len() as u64;
        self.traffic.pli_in += plis.len() as u64;
        for &t in &plis {
            tracing::trace!(peer = ?id, track = ?t, "keyframe request from a subscriber");
            self.request_keyframe(now, t, None);
        }
        if let Some(view) = twcc {
            self.on_transport_feedback(now, id, &view);
        }
        // Loss-driven layer caps only for subscribers whose bandwidth is not estimated.
        let estimated = self
            .peers
            .get(&id)
            .and_then(|p| p.bwe.as_ref())
            .is_some_and(|b| b.active());
        for &(tid, cumulative_lost, highest) in losses.iter().filter(|_| !estimated) {
            let Some(t) = self.tracks.get_mut(&tid) else {
                continue;
            };
            if t.kind != MediaKind::Video {
                continue;
            }
            let layers = t.choice_layers();
            let Some(s) = t.subs.iter_mut().find(|s| s.peer == id) else {
                continue;
            };
            let cap = s.layer_cap();
            let verdict = s.on_receiver_report(now, cumulative_lost, highest, layers);
            if s.layer_cap() != cap {
                tracing::debug!(peer = ?id, track = ?tid, cap = s.layer_cap(), "congestion control layer cap");
            }
            if let Some(paused) = verdict {
                tracing::debug!(peer = ?id, track = ?tid, paused, "congestion control");
                self.events.push_back(Event::StreamState {
                    peer: id,
                    track: tid,
                    paused,
                });
                if !paused {
                    self.request_keyframe(now, tid, Some(0));
                }
            }
        }
        for &(tid, layer, ntp, rtp_ts) in &srs {
            self.forward_sender_report(now, tid, layer, ntp, rtp_ts);
        }
        // Each packet is resent once per datagram however often it is asked for, and a
        // peer gets at most `max_retransmissions_per_sec` resends a second.
        let asked = nacks.len();
        nacks.sort_unstable_by_key(|(t, _, seq)| (t.0, *seq));
        nacks.dedup_by_key(|(t, _, seq)| (t.0, *seq));
        self.drops.nack_duplicate += (asked - nacks.len()) as u64;
        let allowed = match self.peers.get_mut(&id) {
            Some(p) => {
                if p.rtx_window.is_none_or(|start| {
                    now.saturating_duration_since(start) >= Duration::from_secs(1)
                }) {
                    p.rtx_window = Some(now);
                    p.rtx_spent = 0;
                }
                let left = self
                    .limits
                    .max_retransmissions_per_sec
                    .saturating_sub(p.rtx_spent);
                let allowed = nacks.len().min(left as usize);
                p.rtx_spent += allowed as u32;
                allowed
            }
            None => 0,
        };
        self.drops.nack_over_rate += (nacks.len() - allowed) as u64;
        for &(t, _ssrc, seq) in nacks.iter().take(allowed) {
            self.retransmit(now, id, t, seq);
        }
        self.rtcp.nacks = nacks;
        self.rtcp.plis = plis;
        self.rtcp.srs = srs;
        self.rtcp.losses = losses;
    }

    /// Notes a publisher's sender report and sends each subscriber of that layer one with
    /// its own SSRC and rewritten timestamp, so receivers can keep audio and video in sync;
    /// at most one per [`SR_MIN_INTERVAL`] and layer, however many the publisher packs.
    fn forward_sender_report(
        &mut self,
        now: Instant,
        tid: TrackId,
        layer: usize,
        ntp: u64,
        rtp_ts: u32,
    ) {
        let Some(t) = self.tracks.get_mut(&tid) else {
            return;
        };
        let Some(l) = t.layers.get_mut(layer) else {
            return;
        };
        l.last_sr = Some((ntp, now));
        if l.sr_forwarded
            .is_some_and(|at| now.saturating_duration_since(at) < SR_MIN_INTERVAL)
        {
            self.drops.sender_report_over_rate += 1;
            return;
        }
        l.sr_forwarded = Some(now);
        if t.relay_to != 0 {
            let relay = Relay::SenderReport {
                to: t.relay_to,
                track: tid,
                layer: layer as u8,
                ntp,
                rtp_ts,
            };
            self.relays.items.push((relay, 0, 0));
        }
        let mut reports = std::mem::take(&mut self.rtcp.reports);
        reports.clear();
        reports.extend(
            t.subs
                .iter()
                .filter(|s| !s.paused && s.munger.is_started() && s.munger.layer == layer)
                .filter_map(|s| {
                    let ts = s.munger.map_timestamp(rtp_ts)?;
                    Some((
                        s.peer,
                        s.ssrc,
                        ts,
                        s.packets_sent as u32,
                        s.octets_sent as u32,
                    ))
                }),
        );
        for &(peer, ssrc, ts, packets, octets) in &reports {
            self.send_feedback(peer, |out| {
                lkr_rtp::write_sender_report(out, ssrc, ntp, ts, packets, octets, &[])
            });
        }
        self.rtcp.reports = reports;
    }

    /// Sends transport-wide congestion feedback to every peer that sent media since the last
    /// tick, so its bandwidth estimator can grow (and enable higher simulcast layers).
    fn send_twcc(&mut self) {
        let Engine {
            peers,
            transmits,
            pool,
            ..
        } = self;
        for p in peers.values_mut() {
            if p.twcc.pending() == 0 {
                continue;
            }
            let (Some(dest), Some(srtp)) = (p.ice.selected(), p.srtp_out.as_mut()) else {
                continue;
            };
            for _ in 0..8 {
                let mut buf = take_buf(pool);
                buf.resize(1200, 0);
                match p.twcc.write(&mut buf, FEEDBACK_SSRC, p.twcc_media_ssrc) {
                    Ok(Some(n)) => match srtp.protect_rtcp(&mut buf, n) {
                        Ok(m) => {
                            buf.truncate(m);
                            transmits.push_back(Transmit { dest, data: buf });
                        }
                        Err(_) => pool.push(buf),
                    },
                    _ => {
                        pool.push(buf);
                        break;
                    }
                }
            }
        }
    }

    /// Sends each publisher a receiver report on every layer it sends.
    fn send_receiver_reports(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.rtcp.blocks);
        due.clear();
        for t in self.tracks.values_mut().filter(|t| t.mirror.is_none()) {
            for l in t.layers.iter_mut() {
                let Some(b) = l.report(now) else { continue };
                self.traffic.upstream_lost += l.lost_last_interval;
                let loss = f32::from(b.fraction_lost) / 256.0;
                match self.loss.iter_mut().find(|(p, _)| *p == t.publisher) {
                    Some((_, l)) => *l = l.max(loss),
                    None => self.loss.push((t.publisher, loss)),
                }
                due.push((t.publisher, b));
            }
        }
        // One report per publisher (31 blocks at most each), in place.
        due.sort_unstable_by_key(|(p, _)| *p);
        let mut blocks = [lkr_rtp::ReportBlock::default(); 31];
        for run in due.chunk_by(|a, b| a.0 == b.0) {
            for chunk in run.chunks(31) {
                for (slot, (_, b)) in blocks.iter_mut().zip(chunk) {
                    *slot = *b;
                }
                let n = chunk.len();
                self.send_feedback(chunk[0].0, |out| {
                    lkr_rtp::write_receiver_report(out, FEEDBACK_SSRC, &blocks[..n])
                });
            }
        }
        self.rtcp.blocks = due;
    }

    /// Resends a packet a subscriber reported lost, with the header it had.
    fn retransmit(&mut self, now: Instant, peer: PeerId, tid: TrackId, out_seq: u16) {
        let Engine {
            tracks,
            peers,
            transmits,
            pool,
            ..
        } = self;
        let Some(t) = tracks.get_mut(&tid) else {
            return;
        };
        let Track {
            subs,
            layers,
            payload_types,
            ..
        } = t;
        let Some(s) = subs.iter_mut().find(|s| s.peer == peer) else {
            return;
        };
        // Packets sent are remembered; a packet of the current segment that was never sent
        // (it passed before the segment began on a late keyframe) is found through the
        // munger's mapping.
        let Some((layer, in_seq, out_ts)) = s.lookup(out_seq).or_else(|| {
            let o = s.munger.origin(out_seq)?;
            let cached = layers.get(o.layer)?.cache.get(o.ext as u16)?;
            let ts = RtpView::parse(cached).ok()?.timestamp();
            Some((o.layer, o.ext as u16, o.timestamp(ts)))
        }) else {
            return;
        };
        let Some(cached) = layers.get(layer).and_then(|l| l.cache.get(in_seq)) else {
            return;
        };
        let Ok(view) = RtpView::parse(cached) else {
            return;
        };
        let Some(codec) = payload_types
            .iter()
            .find(|p| p.pt == view.payload_type())
            .copied()
        else {
            return;
        };
        // A layer of an SVC picture is resent as it was sent: not at all above the
        // subscriber's layer, with the marker where its top layer ends.
        let mut marker = view.marker();
        if codec.codec == CodecKind::Vp9
            && let Some(l) = lkr_rtp::vp9::layer(view.payload())
        {
            match s.spatial.decide(&l, marker) {
                svc::Step::Forward { marker: m } => marker = m,
                svc::Step::LeaveOut => return,
            }
        }
        let Some(sp) = peers.get_mut(&peer) else {
            return;
        };
        let dest = sp.dest();
        let (Some(dest), Some(srtp)) = (dest, sp.srtp_out.as_mut()) else {
            return;
        };
        let stamp = sp.bwe.as_deref_mut().map(|b| (b.ext, &mut b.est, now));
        let vp8 = vp8_descriptor(codec.codec, view.payload());
        let out = OutPacket {
            marker,
            seq: out_seq,
            ts: out_ts,
            codec: codec.codec,
            payload: view.payload(),
            vp8: vp8.as_ref(),
        };
        if let Some((data, _)) = write_down(pool, srtp, s, &out, true, stamp) {
            self.traffic.rtx_out += 1;
            transmits.push_back(Transmit { dest, data });
        }
    }

    /// Sends a PLI for `layer` (or every live layer) of a track, throttled per layer.
    fn request_keyframe(&mut self, now: Instant, tid: TrackId, layer: Option<usize>) {
        let Some(t) = self.tracks.get_mut(&tid) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let publisher = t.publisher;
        if let Some(owner) = t.mirror {
            // Throttled here as well, so that a thousand subscribers make one request.
            let throttle = self.limits.pli_throttle;
            let due = t
                .layers
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| layer.is_none_or(|x| x == *i))
                .fold(false, |due, (i, l)| {
                    let d = l.last_pli.is_none_or(|at| {
                        now.saturating_duration_since(at) >= throttle.for_layer(i)
                    });
                    if d {
                        l.last_pli = Some(now);
                    }
                    due || d
                });
            if due {
                let relay = Relay::Keyframe {
                    to: 1 << owner,
                    track: tid,
                    layer: layer.map(|l| l as u8),
                };
                self.relays.items.push((relay, 0, 0));
            }
            return;
        }
        let mut ssrcs: [Option<u32>; 4] = [None; 4];
        for (i, l) in t.layers.iter_mut().enumerate().take(4) {
            if layer.is_some_and(|x| x != i) {
                continue;
            }
            let due = l.last_pli.is_none_or(|at| {
                now.saturating_duration_since(at) >= self.limits.pli_throttle.for_layer(i)
            });
            if let (Some(ssrc), true) = (l.ssrc, due) {
                l.last_pli = Some(now);
                ssrcs[i] = Some(ssrc);
            }
        }
        for ssrc in ssrcs.into_iter().flatten() {
            tracing::trace!(track = ?tid, ssrc, "keyframe request to the publisher");
            self.traffic.pli_out += 1;
            self.send_feedback(publisher, |out| {
                lkr_rtp::write_pli(out, FEEDBACK_SSRC, ssrc)
            });
        }
    }

    /// Writes one RTCP packet with `write`, protects it and queues it to `peer`.
    fn send_feedback(
        &mut self,
        peer: PeerId,
        write: impl FnOnce(&mut [u8]) -> Result<usize, lkr_rtp::RtcpError>,
    ) {
        feedback(
            &mut self.peers,
            &mut self.pool,
            &mut self.transmits,
            peer,
            write,
        );
    }

    /// Runs every timer that is due: each due peer's ICE consent, DTLS and SCTP timers;
    /// NACKs for upstream loss, congestion feedback, receiver reports, audio levels.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.armed != Some(at) {
                continue; // stale: a later entry (or none) is the peer's real deadline
            }
            p.armed = None;
            p.ice.handle_timeout(now);
            probe(p, id, &mut self.pool, &mut self.transmits);
            // Addresses whose consent expired no longer route to the peer.
            if p.addrs.iter().any(|a| !p.ice.is_valid_source(*a)) {
                let (ice, by_addr) = (&p.ice, &mut self.by_addr);
                p.addrs.retain(|a| {
                    let keep = ice.is_valid_source(*a);
                    if !keep && by_addr.get(a) == Some(&id) {
                        by_addr.remove(a);
                    }
                    keep
                });
            }
            if p.ice.state() == IceState::Disconnected && !p.disconnected {
                p.disconnected = true;
                self.events.push_back(Event::PeerDisconnected {
                    peer: id,
                    reason: "ICE consent expired".into(),
                });
            }
            if let Some(d) = p.dtls.as_mut()
                && d.poll_timeout().is_some_and(|t| t <= now)
            {
                d.handle_timeout(now);
            }
            if let Some(s) = p.sctp.as_mut()
                && s.poll_timeout().is_some_and(|t| t <= now)
            {
                s.handle_timeout(now);
            }
            self.pump(now, id);
        }
        if self.next_nack.is_some_and(|t| t <= now) {
            self.send_nacks(now);
        }
        if self.next_twcc.is_some_and(|t| t <= now) {
            self.next_twcc = None;
            self.send_twcc();
        }
        if self.next_probe.is_some_and(|t| t <= now) {
            self.next_probe = None;
            self.send_probes(now);
        }
        if self.tracks.is_empty() {
            self.next_levels = None;
            self.next_report = None;
            return;
        }
        let speakers = self.limits.speakers;
        if !speakers.update_interval.is_zero() && self.next_levels.is_none_or(|t| t <= now) {
            self.next_levels = Some(now + speakers.update_interval);
            let levels: Vec<(TrackId, f32, bool)> = self
                .tracks
                .values_mut()
                .filter(|t| t.kind == MediaKind::Audio)
                .filter_map(|t| t.audio.take(&speakers).map(|(l, a)| (t.id, l, a)))
                .collect();
            if !levels.is_empty() {
                self.events.push_back(Event::AudioLevels { levels });
            }
        }
        if self.next_report.is_none_or(|t| t <= now) {
            self.next_report = Some(now + REPORT_INTERVAL);
            for t in self.tracks.values_mut() {
                for l in t.layers.iter_mut() {
                    l.measure_rate(now);
                }
                t.spatial.measure_rate(now);
            }
            self.send_receiver_reports(now);
            self.sweep_silence(now);
            self.back_off_silent_estimates(now);
            self.reports_since_loss += 1;
            if self.reports_since_loss >= 5 {
                self.reports_since_loss = 0;
                // The event gets its own copy (one allocation per 5 s); the working list
                // keeps its capacity.
                if !self.loss.is_empty() {
                    let peers = self.loss.clone();
                    self.loss.clear();
                    self.events.push_back(Event::Loss { peers });
                }
            }
        }
    }

    /// Looks over the peers for one whose selected path has gone silent, and starts checking
    /// it ourselves (RFC 7675 consent checks, every 500 ms from then on, on its own timer).
    /// It runs with the receiver reports, once a second while the shard has media (a few
    /// nanoseconds a peer, and no wake-up of its own), instead of a timer per peer that
    /// every check from it would move: what a path coming back needs is its media flowing
    /// again at once. A shard without media does not look (its peers' clients find their
    /// paths again with their own checks or an ICE restart).
    fn sweep_silence(&mut self, now: Instant) {
        let mut started = std::mem::take(&mut self.silent_scratch);
        for (id, p) in self.peers.iter_mut() {
            if p.ice.check_silence(now) {
                probe(p, *id, &mut self.pool, &mut self.transmits);
                started.push(*id);
            }
        }
        for id in started.drain(..) {
            self.arm(id);
        }
        self.silent_scratch = started;
    }

    fn send_nacks(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let Engine {
            tracks,
            peers,
            pool,
            transmits,
            ..
        } = self;
        for t in tracks.values_mut() {
            for l in t.layers.iter_mut() {
                let Some(ssrc) = l.ssrc else { continue };
                l.missing.retain(|m| {
                    m.tries < NACK_MAX_TRIES
                        && now.saturating_duration_since(m.since) < NACK_GIVE_UP
                });
                let mut lost = [0u16; 64];
                let mut n = 0;
                for m in l.missing.iter_mut() {
                    if n < lost.len()
                        && m.last_sent
                            .is_none_or(|at| now.saturating_duration_since(at) >= NACK_RETRY)
                    {
                        m.last_sent = Some(now);
                        m.tries += 1;
                        lost[n] = m.ext as u16;
                        n += 1;
                    }
                    let again = m.last_sent.map_or(now, |at| at + NACK_RETRY);
                    next = Some(next.map_or(again, |x| x.min(again)));
                }
                if n > 0 {
                    feedback(peers, pool, transmits, t.publisher, |out| {
                        lkr_rtp::write_nack(out, FEEDBACK_SSRC, ssrc, &lost[..n])
                    });
                }
            }
        }
        self.next_nack = next;
    }

    /// Counts a datagram the driver could not send (socket buffer full) against the peer
    /// it was for, and gives its buffer back.
    pub fn note_unsent(&mut self, t: Transmit) {
        self.drops.unsent += 1;
        if let Some(id) = self.by_addr.get(&t.dest)
            && let Some(p) = self.peers.get_mut(id)
        {
            p.unsent += 1;
        }
        self.recycle(t.data);
    }

    /// Appends `(peer, datagrams not sent)` for every peer that lost any at the socket.
    pub fn unsent_by_peer(&self, out: &mut Vec<(PeerId, u64)>) {
        out.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.unsent > 0)
                .map(|(id, p)| (*id, p.unsent)),
        );
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `addr` passed an ICE check with one of this engine's peers and is still
    /// routed to it.
    pub fn knows_address(&self, addr: SocketAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    /// Whether this engine is the one to handle a datagram from `from`: the address passed
    /// an ICE check here, or it is STUN whose USERNAME names one of this engine's peers.
    pub fn owns(&self, from: SocketAddr, buf: &[u8]) -> bool {
        self.by_addr.contains_key(&from)
            || matches!(buf.first(), Some(0..=3))
                && early::local_ufrag(buf).is_some_and(|local| self.by_ufrag.contains_key(local))
    }

    /// Adds a mirror of a track that shard `owner` publishes: subscribers of this engine
    /// subscribe to it as to any track; its packets come from [`Engine::handle_relayed`].
    pub fn add_mirror(&mut self, spec: &crate::api::PublishSpec, owner: u8) {
        let mut t = Track::new(spec, self.cache_slots(spec.kind));
        t.mirror = Some(owner);
        self.tracks.entry(spec.track).or_insert(t);
    }

    /// Starts (or stops) handing an owned track's packets to shard `shard`.
    pub fn set_relay(&mut self, track: TrackId, shard: u8, on: bool) {
        if let Some(t) = self.tracks.get_mut(&track)
            && t.mirror.is_none()
            && shard < 64
        {
            if on {
                t.relay_to |= 1 << shard;
            } else {
                t.relay_to &= !(1 << shard);
            }
        }
    }

    /// A packet of a mirrored track, relayed by its owner (plain RTP).
    pub fn handle_relayed(&mut self, now: Instant, track: TrackId, layer: u8, pkt: &[u8]) {
        if self.tracks.get(&track).is_some_and(|t| t.mirror.is_some()) {
            self.forward(now, track, usize::from(layer), pkt);
        }
    }

    /// A sender report of a mirrored track, relayed by its owner.
    pub fn handle_relayed_report(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: u8,
        ntp: u64,
        rtp_ts: u32,
    ) {
        if self.tracks.get(&track).is_some_and(|t| t.mirror.is_some()) {
            self.forward_sender_report(now, track, usize::from(layer), ntp, rtp_ts);
        }
    }

    /// A keyframe request from a shard that mirrors an owned track.
    pub fn handle_relayed_keyframe(&mut self, now: Instant, track: TrackId, layer: Option<u8>) {
        if self.tracks.get(&track).is_some_and(|t| t.mirror.is_none()) {
            self.request_keyframe(now, track, layer.map(usize::from));
        }
    }

    /// Hands every queued [`Relay`] (with its packet bytes, empty for reports and requests)
    /// to `f`, oldest first, and forgets them.
    pub fn drain_relays(&mut self, mut f: impl FnMut(&Relay, &[u8])) {
        for (r, start, len) in &self.relays.items {
            let (start, len) = (*start as usize, *len as usize);
            f(r, &self.relays.bytes[start..start + len]);
        }
        self.relays.items.clear();
        self.relays.bytes.clear();
    }

    /// Whether relays wait for [`Engine::drain_relays`].
    pub fn has_relays(&self) -> bool {
        !self.relays.items.is_empty()
    }
}
