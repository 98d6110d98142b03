//! The engine's side of bandwidth estimation: each subscriber peer that negotiated
//! transport-cc has an [`lkr_bwe::Estimator`] fed by its feedback, and its video
//! subscriptions are fitted into the estimate by [`lkr_bwe::allocate`] (layer caps and
//! congestion pauses, the same fields the loss-based fallback sets). Probes are padding on
//! a subscription's RTX stream, paced every [`PROBE_STEP`].

use std::time::{Duration, Instant};

use lkr_bwe::{Estimator, LayerChoice, allocator::MAX_LAYERS};
use lkr_dtls_glue::srtp::SrtpContext;
use lkr_rtp::TwccView;

use super::{Engine, SRTP_TAG, Transmit, protect, stamp_seq, take_buf};
use crate::api::{Event, MediaKind, PeerId, TrackId};

/// The estimate a subscriber starts with, bit/s.
const INITIAL_BPS: u64 = 1_500_000;
const MIN_BPS: u64 = 30_000;
const MAX_BPS: u64 = 50_000_000;
/// Pacing step of probe padding.
const PROBE_STEP: Duration = Duration::from_millis(5);
/// Largest padding of one packet (the RTP padding count is one byte).
const MAX_PADDING: usize = 255;
/// An upgrade must fit with this margin over the layer's measured rate (rates swing with
/// keyframes; without it a subscriber near a boundary would flip layers).
const UPGRADE_MARGIN: f64 = 1.1;

/// One subscriber peer's estimate and the scratch its allocation reuses.
pub(super) struct PeerBwe {
    pub est: Estimator,
    /// The transport-cc extension id on this peer's downstream packets.
    pub ext: u8,
    /// Feedback received, and whether the allocation is in force (feedback arrives and
    /// some video subscription has an RTX stream to probe on).
    feedbacks: u64,
    active: bool,
    subs: Vec<lkr_bwe::Subscription>,
    tids: Vec<TrackId>,
    order: Vec<usize>,
    choices: Vec<LayerChoice>,
    resumed: Vec<TrackId>,
    /// Publishers whose audio this peer receives and who are speaking.
    speaking: Vec<PeerId>,
}

impl PeerBwe {
    pub fn new(now: Instant, ext: u8) -> Self {
        PeerBwe {
            est: Estimator::new(now, INITIAL_BPS, MIN_BPS, MAX_BPS),
            ext,
            feedbacks: 0,
            active: false,
            subs: Vec::new(),
            tids: Vec::new(),
            order: Vec::new(),
            choices: Vec::new(),
            resumed: Vec::new(),
            speaking: Vec::new(),
        }
    }

    /// Whether the estimate, not receiver-report loss, sets this peer's layers.
    pub fn active(&self) -> bool {
        self.active
    }
}

/// Writes a padding-only packet (RFC 3550 §5.1 P bit) on an RTX stream.
fn write_padding(
    pool: &mut Vec<Vec<u8>>,
    srtp: &mut SrtpContext,
    (pt, ssrc, seq): (u8, u32, u16),
    pad: usize,
    (ext, est, now): (u8, &mut Estimator, Instant),
) -> Option<Vec<u8>> {
    let mut buf = take_buf(pool);
    buf.resize(20, 0);
    let Ok(hdr) =
        lkr_rtp::RtpWriter::write_header(&mut buf, false, pt, seq, 0, ssrc, &[(ext, &[0, 0])])
    else {
        pool.push(buf);
        return None;
    };
    buf.truncate(hdr);
    buf[0] |= 0x20;
    let pad = pad.clamp(1, MAX_PADDING);
    buf.resize(hdr + pad, 0);
    let len = buf.len();
    buf[len - 1] = pad as u8;
    let tseq = est.on_send(now, len as u32 + SRTP_TAG);
    stamp_seq(&mut buf, (1..=14).contains(&ext), tseq);
    protect(pool, srtp, buf, len)
}

impl Engine {
    /// A subscriber's transport-cc feedback: update its estimate and its allocation.
    pub(super) fn on_transport_feedback(&mut self, now: Instant, id: PeerId, view: &TwccView<'_>) {
        let Some(b) = self.peers.get_mut(&id).and_then(|p| p.bwe.as_deref_mut()) else {
            return;
        };
        b.feedbacks += 1;
        let sum = b
            .est
            .on_feedback(now, view.reference_time_us(), view.packets());
        if let Some(p) = sum.probe {
            tracing::debug!(peer = ?id, sent = p.sent_bps as u64, received = p.received_bps as u64, estimate = sum.estimate_bps, "probe result");
        }
        if b.feedbacks % 20 == 1 || sum.lost > 0 {
            tracing::debug!(peer = ?id, estimate = sum.estimate_bps, usage = ?sum.usage, received = sum.received, lost = sum.lost, delivered = ?b.est.delivered_bps().map(|d| d as u64), trend = ?b.est.trend(), "transport feedback");
        }
        self.allocate(now, id);
    }

    /// Once a second with the receiver reports: a subscriber whose estimate is in force and
    /// that has sent no transport feedback for a while although packets went to it (every
    /// one lost on a saturated path, say) while it is still heard otherwise (its reports,
    /// its checks) has its estimate backed off ([`Estimator::on_feedback_timeout`]) and its
    /// subscriptions fitted again, so that a path that swallows everything is not filled at
    /// the last estimate for good. One not heard at all is cut off (an outage): its
    /// estimate is held for when its path comes back.
    pub(super) fn back_off_silent_estimates(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.backoff_scratch);
        for (id, p) in self.peers.iter_mut() {
            if let Some(b) = p.bwe.as_deref_mut()
                && b.active
                && b.est.on_feedback_timeout(now, p.heard)
            {
                tracing::debug!(peer = ?id, estimate = b.est.estimate(), "no transport feedback: estimate backed off");
                due.push(*id);
            }
        }
        for id in due.drain(..) {
            self.allocate(now, id);
        }
        self.backoff_scratch = due;
    }

    /// Fits the peer's video subscriptions into its estimate.
    pub(super) fn allocate(&mut self, now: Instant, id: PeerId) {
        let allow_pause = self.limits.allow_pause;
        let Engine {
            peers,
            tracks,
            events,
            next_probe,
            ..
        } = self;
        let Some(p) = peers.get_mut(&id) else {
            return;
        };
        let Some(b) = p.bwe.as_deref_mut() else {
            return;
        };
        b.subs.clear();
        b.tids.clear();
        // The active speakers' cameras come right after screen shares.
        b.speaking.clear();
        for tid in &p.subscribed {
            if let Some(t) = tracks.get(tid)
                && t.kind == MediaKind::Audio
                && t.audio.speaking
                && !b.speaking.contains(&t.publisher)
            {
                b.speaking.push(t.publisher);
            }
        }
        let mut audio = 0u64;
        let mut probe_ok = false;
        for tid in &p.subscribed {
            let Some(t) = tracks.get(tid) else { continue };
            let Some(s) = t.subs.iter().find(|s| s.peer == id) else {
                continue;
            };
            if s.paused {
                continue;
            }
            if t.kind == MediaKind::Audio {
                audio += t.layers.first().map_or(0, |l| l.rate_bps);
                continue;
            }
            probe_ok |= s.rtx.is_some();
            let current = s.munger.is_started().then_some(s.current_layer());
            let mut layer_bps = [0u64; MAX_LAYERS];
            // An SVC track's layer i costs its spatial layers 0 to i together.
            let svc = t.is_svc();
            for (i, bps) in layer_bps.iter_mut().enumerate().take(t.choice_layers()) {
                let rate = if svc {
                    t.spatial.cumulative_bps(i)
                } else {
                    t.layers[i].rate_bps
                };
                let above = current.is_none_or(|c| i > c);
                *bps = if above {
                    (rate as f64 * UPGRADE_MARGIN) as u64
                } else {
                    rate
                };
            }
            let speaker = u8::from(b.speaking.contains(&t.publisher));
            b.subs.push(lkr_bwe::Subscription {
                priority: s.priority.max(speaker),
                max_layer: s.max_layer.min(t.choice_layers().saturating_sub(1)),
                layer_bps,
                current,
            });
            b.tids.push(*tid);
        }
        // Without an RTX stream there is nothing to probe with, and an estimate that cannot
        // be probed cannot rise: such a peer stays on the loss-driven caps.
        b.active = b.feedbacks > 0 && probe_ok;
        if !b.active {
            return;
        }
        let capacity = p.capacity.unwrap_or(u64::MAX);
        let budget = b.est.estimate().min(capacity).saturating_sub(audio);
        let a = lkr_bwe::allocate(budget, &b.subs, &mut b.order, &mut b.choices);
        b.resumed.clear();
        for (i, (tid, choice)) in b.tids.iter().zip(&b.choices).enumerate() {
            // Without pausing, a subscription that does not fit keeps its lowest layer.
            let choice = match *choice {
                LayerChoice::Paused if !allow_pause => b.subs[i]
                    .layer_bps
                    .iter()
                    .position(|&r| r > 0)
                    .map_or(LayerChoice::Idle, LayerChoice::Layer),
                c => c,
            };
            let Some(s) = tracks
                .get_mut(tid)
                .and_then(|t| t.subs.iter_mut().find(|s| s.peer == id))
            else {
                continue;
            };
            match choice {
                LayerChoice::Layer(l) => {
                    if s.cc_paused {
                        s.cc_paused = false;
                        s.resync = true;
                        events.push_back(Event::StreamState {
                            peer: id,
                            track: *tid,
                            paused: false,
                        });
                        b.resumed.push(*tid);
                    }
                    if s.cc_cap != l {
                        tracing::debug!(peer = ?id, track = ?tid, layer = l, estimate = b.est.estimate(), "allocation");
                    }
                    s.cc_cap = l;
                }
                LayerChoice::Paused => {
                    if !s.cc_paused {
                        s.cc_paused = true;
                        tracing::debug!(peer = ?id, track = ?tid, estimate = b.est.estimate(), "allocation pauses");
                        events.push_back(Event::StreamState {
                            peer: id,
                            track: *tid,
                            paused: true,
                        });
                    }
                }
                LayerChoice::Idle => {}
            }
        }
        // No probing past a cap: what the estimate could rise to would not be sent.
        if let Some(want) = a.probe_bps.filter(|w| w + audio <= capacity)
            && b.est.start_probe(now, want + audio)
        {
            tracing::debug!(peer = ?id, want = want + audio, estimate = b.est.estimate(), "probe");
            *next_probe = Some(next_probe.map_or(now, |t| t.min(now)));
        }
        let resumed = std::mem::take(&mut b.resumed);
        for &tid in &resumed {
            self.request_keyframe(now, tid, Some(0));
        }
        if let Some(b) = self.peers.get_mut(&id).and_then(|p| p.bwe.as_deref_mut()) {
            b.resumed = resumed;
        }
    }

    /// Sends the padding running probes are due, and schedules the next step.
    pub(super) fn send_probes(&mut self, now: Instant) {
        let Engine {
            peers,
            tracks,
            pool,
            transmits,
            traffic,
            ..
        } = self;
        let mut again = false;
        for (id, p) in peers.iter_mut() {
            let dest = p.dest();
            let super::Peer {
                bwe,
                srtp_out,
                subscribed,
                ..
            } = p;
            let Some(b) = bwe.as_deref_mut() else {
                continue;
            };
            if !b.est.probing() {
                continue;
            }
            let mut due = b.est.padding_due(now);
            again |= b.est.probing();
            if due == 0 {
                continue;
            }
            let (Some(dest), Some(srtp)) = (dest, srtp_out.as_mut()) else {
                continue;
            };
            // The first video subscription with an RTX stream carries the padding.
            let has_rtx = |s: &crate::forward::Subscription| s.peer == *id && s.rtx.is_some();
            let Some(tid) = subscribed
                .iter()
                .find(|tid| tracks.get(tid).is_some_and(|t| t.subs.iter().any(has_rtx)))
                .copied()
            else {
                continue;
            };
            let Some(s) = tracks
                .get_mut(&tid)
                .and_then(|t| t.subs.iter_mut().find(|s| has_rtx(s)))
            else {
                continue;
            };
            let Some((ssrc, pairs)) = s.rtx.as_ref() else {
                continue;
            };
            let Some(&(pt, _)) = pairs.first() else {
                continue;
            };
            let ssrc = *ssrc;
            while due > 0 {
                let pad = due.min(MAX_PADDING);
                s.rtx_seq = s.rtx_seq.wrapping_add(1);
                let Some(data) = write_padding(
                    pool,
                    srtp,
                    (pt, ssrc, s.rtx_seq),
                    pad,
                    (b.ext, &mut b.est, now),
                ) else {
                    break;
                };
                due = due.saturating_sub(data.len());
                traffic.rtp_out += 1;
                traffic.rtp_out_bytes += data.len() as u64;
                transmits.push_back(Transmit { dest, data });
            }
        }
        if again {
            self.next_probe = Some(now + PROBE_STEP);
        }
    }
}
