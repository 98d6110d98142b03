//! Spatial layer choice for a VP9 SVC track: one RTP stream whose pictures carry several
//! spatial layers (livekit-client publishes VP9 as `L3T3_KEY` by default: three sizes, each
//! upper layer built on the one below only at keyframes).
//!
//! A subscriber gets the layers up to the one it is on. It goes down at the start of any
//! picture (a lower layer never refers to a higher one) and up only at a keyframe (each
//! layer refers to its own earlier frames). The packets of the layers above are left out of
//! its sequence space, and the last packet of its top layer in each picture carries the
//! marker bit that ends the picture.

use std::time::Instant;

use lkr_rtp::vp9;

/// Spatial layers a track's counters keep apart; ids above it count as the top one.
pub const MAX_SPATIAL: usize = 4;

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send it, with this marker bit.
    Forward { marker: bool },
    /// Leave it out: it belongs to a layer above the subscriber's.
    LeaveOut,
}

/// One subscriber's spatial layer of an SVC track.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpatialChoice {
    /// The highest spatial layer it is sent, once its first packet chose one.
    pub current: Option<u8>,
}

impl SpatialChoice {
    /// Decides one packet of the subscriber's stream. `target` is the highest layer it
    /// should have (its wish and its link's limit), `keyframe` whether the packet starts a
    /// keyframe. Also returns whether a keyframe is needed to go up to `target`.
    pub fn step(
        &mut self,
        l: &vp9::Layer,
        marker: bool,
        target: u8,
        keyframe: bool,
    ) -> (Step, bool) {
        let mut cur = *self.current.get_or_insert(target);
        let mut want_keyframe = false;
        if l.sid == 0 && l.begins_frame {
            if target < cur || (target > cur && keyframe) {
                cur = target;
            } else if target > cur {
                want_keyframe = true;
            }
            self.current = Some(cur);
        }
        (self.decide(l, marker), want_keyframe)
    }

    /// What the packet is for this subscriber at its current layer, without moving it (a
    /// retransmission).
    pub fn decide(&self, l: &vp9::Layer, marker: bool) -> Step {
        match self.current {
            Some(cur) if l.sid > cur => Step::LeaveOut,
            Some(cur) => Step::Forward {
                marker: marker || (l.sid == cur && l.ends_frame),
            },
            None => Step::Forward { marker },
        }
    }
}

/// What a track knows of its spatial layers: how many there are and what each costs.
#[derive(Debug, Default)]
pub struct SpatialLayers {
    /// Layers seen: the scalability structure's count, or the highest id seen plus one.
    pub count: u8,
    /// Media bytes per layer.
    bytes: [u64; MAX_SPATIAL],
    /// Bit rate per layer, measured from `bytes`.
    pub rate_bps: [u64; MAX_SPATIAL],
    mark: Option<(Instant, [u64; MAX_SPATIAL])>,
}

impl SpatialLayers {
    /// Notes a packet of `bytes` media bytes in its layer.
    pub fn on_packet(&mut self, l: &vp9::Layer, bytes: usize) {
        let known = l.spatial_layers.unwrap_or(0).max(l.sid.saturating_add(1));
        self.count = self.count.max(known.min(MAX_SPATIAL as u8));
        self.bytes[usize::from(l.sid).min(MAX_SPATIAL - 1)] += bytes as u64;
    }

    /// Whether the stream has more than one spatial layer.
    pub fn is_scalable(&self) -> bool {
        self.count > 1
    }

    /// Updates the rates from the bytes since the last call (smoothed as a simulcast
    /// layer's are).
    pub fn measure_rate(&mut self, now: Instant) {
        if let Some((at, prior)) = self.mark {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.05 {
                for (i, rate) in self.rate_bps.iter_mut().enumerate() {
                    let fresh = ((self.bytes[i] - prior[i]) as f64 * 8.0 / dt) as u64;
                    *rate = crate::forward::smoothed_rate(*rate, fresh);
                }
            }
        }
        self.mark = Some((now, self.bytes));
    }

    /// What sending layers 0 to `i` costs.
    pub fn cumulative_bps(&self, i: usize) -> u64 {
        self.rate_bps.iter().take(i + 1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(sid: u8, begins: bool, ends: bool) -> vp9::Layer {
        vp9::Layer {
            sid,
            tid: 0,
            begins_frame: begins,
            ends_frame: ends,
            inter_predicted: true,
            spatial_layers: None,
            descriptor_len: 5,
        }
    }

    /// One picture of three layers, two packets each; the top one's last packet has the
    /// marker. Returns the steps and whether a keyframe was asked for.
    fn picture(c: &mut SpatialChoice, target: u8, keyframe: bool) -> (Vec<Step>, bool) {
        let mut steps = Vec::new();
        let mut want = false;
        for sid in 0..3 {
            for first in [true, false] {
                let (s, w) = c.step(
                    &pkt(sid, first, !first),
                    sid == 2 && !first,
                    target,
                    keyframe && sid == 0 && first,
                );
                steps.push(s);
                want |= w;
            }
        }
        (steps, want)
    }

    const FWD: Step = Step::Forward { marker: false };
    const END: Step = Step::Forward { marker: true };
    const OUT: Step = Step::LeaveOut;

    #[test]
    fn down_at_any_picture_up_only_at_a_keyframe() {
        let mut c = SpatialChoice::default();
        // Starts at its target (the stream starts on a keyframe).
        assert_eq!(
            picture(&mut c, 2, true),
            (vec![FWD, FWD, FWD, FWD, FWD, END], false)
        );
        // Down to 0 at the next picture: layer 0's last packet ends the picture.
        assert_eq!(
            picture(&mut c, 0, false),
            (vec![FWD, END, OUT, OUT, OUT, OUT], false)
        );
        // Up to 1 waits for a keyframe, and asks for one.
        assert_eq!(
            picture(&mut c, 1, false),
            (vec![FWD, END, OUT, OUT, OUT, OUT], true)
        );
        assert_eq!(
            picture(&mut c, 1, true),
            (vec![FWD, FWD, FWD, END, OUT, OUT], false)
        );
        assert_eq!(c.current, Some(1));
        // A retransmission is judged at the current layer.
        assert_eq!(c.decide(&pkt(2, false, true), true), OUT);
        assert_eq!(c.decide(&pkt(1, false, true), false), END);
        // A wish above the layers there are takes them all.
        assert_eq!(
            picture(&mut c, 7, true).0,
            vec![FWD, FWD, FWD, FWD, FWD, END]
        );
    }

    #[test]
    fn a_switch_waits_for_the_start_of_a_picture() {
        let mut c = SpatialChoice::default();
        picture(&mut c, 2, true);
        // The wish changes in the middle of a picture: that picture is sent whole.
        assert_eq!(c.step(&pkt(0, true, false), false, 2, false).0, FWD);
        assert_eq!(c.step(&pkt(0, false, true), false, 0, false).0, FWD);
        assert_eq!(c.step(&pkt(1, true, true), false, 0, false).0, FWD);
        assert_eq!(c.step(&pkt(0, true, true), false, 0, false).0, END);
        assert_eq!(c.step(&pkt(1, true, true), false, 0, false).0, OUT);
    }

    #[test]
    fn layers_and_their_rates() {
        let t0 = Instant::now();
        let mut s = SpatialLayers::default();
        assert!(!s.is_scalable());
        let mut first = pkt(0, true, false);
        first.spatial_layers = Some(3);
        s.on_packet(&first, 100);
        assert_eq!(s.count, 3);
        s.measure_rate(t0);
        s.on_packet(&pkt(1, true, true), 400);
        s.on_packet(&pkt(2, true, true), 1600);
        s.on_packet(&pkt(6, true, true), 1000);
        s.measure_rate(t0 + std::time::Duration::from_secs(1));
        assert_eq!(s.count, MAX_SPATIAL as u8);
        assert_eq!(s.rate_bps[..3], [0, 3200, 12800]);
        assert_eq!(s.cumulative_bps(1), 3200);
        assert_eq!(s.cumulative_bps(2), 16000);
        assert_eq!(s.cumulative_bps(3), 24000);
    }
}
