//! Fitting a subscriber's video subscriptions into its estimate.
//!
//! Order: higher priority first (screen share, then the active speaker, then the rest), then
//! the larger wish (the layer the subscriber asked for, which follows its size on screen),
//! then the order given. Every subscription first gets its lowest live layer while the budget
//! allows (those that do not fit are paused); what is left then raises subscriptions one
//! layer at a time, the first in order as far as it can go before the next. An upgrade that
//! does not fit names a probe target: the rate that would carry it.

/// Most layers a subscription may have.
pub const MAX_LAYERS: usize = 4;

/// One video subscription as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subscription {
    /// Higher goes first: 2 for screen share, 1 for the active speaker's camera, 0 otherwise.
    pub priority: u8,
    /// The highest layer wanted (adaptive stream, track settings).
    pub max_layer: usize,
    /// Bit rate of each layer as the publisher sends it now; 0 for a layer not live.
    pub layer_bps: [u64; MAX_LAYERS],
    /// The layer it receives now, if any.
    pub current: Option<usize>,
}

/// The allocator's choice for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerChoice {
    /// Forward this layer.
    Layer(usize),
    /// Not even the lowest layer fits: pause it (tell the subscriber).
    Paused,
    /// Nothing to send: no layer is live or none is wanted.
    Idle,
}

/// What the allocation used and what it would need next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allocation {
    /// Bit rate of the chosen layers.
    pub used_bps: u64,
    /// The total rate that would carry the next upgrade (or unpause) that did not fit.
    pub probe_bps: Option<u64>,
}

impl Subscription {
    fn live(&self, layer: usize) -> bool {
        layer < MAX_LAYERS && self.layer_bps[layer] > 0
    }

    fn lowest(&self) -> Option<usize> {
        (0..=self.max_layer.min(MAX_LAYERS - 1)).find(|&l| self.live(l))
    }

    fn next_above(&self, layer: usize) -> Option<usize> {
        (layer + 1..=self.max_layer.min(MAX_LAYERS - 1)).find(|&l| self.live(l))
    }
}

/// Chooses a layer for every subscription within `budget_bps` (the estimate less what
/// audio and data take). `order` is scratch space reused between calls; `out` receives one
/// choice per subscription.
pub fn allocate(
    budget_bps: u64,
    subs: &[Subscription],
    order: &mut Vec<usize>,
    out: &mut Vec<LayerChoice>,
) -> Allocation {
    order.clear();
    order.extend(0..subs.len());
    order.sort_by(|&a, &b| {
        let (x, y) = (&subs[a], &subs[b]);
        y.priority
            .cmp(&x.priority)
            .then(y.max_layer.cmp(&x.max_layer))
            .then(a.cmp(&b))
    });
    out.clear();
    out.resize(subs.len(), LayerChoice::Idle);
    let mut left = budget_bps;
    let mut wanted: Option<u64> = None;
    let used = |left: u64| budget_bps - left;
    for &i in order.iter() {
        let Some(low) = subs[i].lowest() else {
            continue;
        };
        let cost = subs[i].layer_bps[low];
        if cost <= left {
            left -= cost;
            out[i] = LayerChoice::Layer(low);
        } else {
            out[i] = LayerChoice::Paused;
            wanted.get_or_insert(used(left) + cost);
        }
    }
    for &i in order.iter() {
        let LayerChoice::Layer(mut at) = out[i] else {
            continue;
        };
        while let Some(up) = subs[i].next_above(at) {
            let extra = subs[i].layer_bps[up].saturating_sub(subs[i].layer_bps[at]);
            if extra > left {
                wanted.get_or_insert(used(left) + extra);
                break;
            }
            left -= extra;
            at = up;
        }
        out[i] = LayerChoice::Layer(at);
    }
    Allocation {
        used_bps: used(left),
        probe_bps: wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(priority: u8, max_layer: usize) -> Subscription {
        Subscription {
            priority,
            max_layer,
            layer_bps: [150_000, 500_000, 1_700_000, 0],
            current: None,
        }
    }

    fn run(budget: u64, subs: &[Subscription]) -> (Vec<LayerChoice>, Allocation) {
        let (mut order, mut out) = (Vec::new(), Vec::new());
        let a = allocate(budget, subs, &mut order, &mut out);
        (out, a)
    }

    use LayerChoice::{Idle, Layer, Paused};

    /// (budget, subscriptions, expected choices, expected probe target)
    type Case = (u64, Vec<Subscription>, Vec<LayerChoice>, Option<u64>);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            // Everything fits.
            (3_000_000, vec![sim(0, 2)], vec![Layer(2)], None),
            // Capacity below the top layer: the middle one, probe for the top.
            (1_000_000, vec![sim(0, 2)], vec![Layer(1)], Some(1_700_000)),
            // Below the lowest layer: paused, probe for the lowest.
            (100_000, vec![sim(0, 2)], vec![Paused], Some(150_000)),
            // The wish caps the layer; nothing to probe for.
            (3_000_000, vec![sim(0, 1)], vec![Layer(1)], None),
            // Screen share before camera: it gets the top layer, the camera the low one.
            (
                2_000_000,
                vec![sim(0, 2), sim(2, 2)],
                vec![Layer(0), Layer(2)],
                Some(2_200_000),
            ),
            // Both get the lowest layer first, then the first in order climbs.
            (
                700_000,
                vec![sim(0, 2), sim(0, 2)],
                vec![Layer(1), Layer(0)],
                Some(1_850_000),
            ),
            // The larger wish goes first.
            (
                700_000,
                vec![sim(0, 1), sim(0, 2)],
                vec![Layer(0), Layer(1)],
                Some(1_850_000),
            ),
            // Only one lowest layer fits: the second is paused.
            (
                200_000,
                vec![sim(1, 2), sim(0, 2)],
                vec![Layer(0), Paused],
                Some(300_000),
            ),
        ];
        for (budget, subs, want, probe) in cases {
            let (got, a) = run(*budget, subs);
            assert_eq!(&got, want, "budget {budget}");
            assert_eq!(a.probe_bps, *probe, "budget {budget}");
            assert!(a.used_bps <= *budget);
        }
    }

    #[test]
    fn layers_not_live_are_skipped_and_none_live_is_idle() {
        let mut s = sim(0, 2);
        s.layer_bps = [0, 500_000, 1_700_000, 0];
        assert_eq!(run(1_000_000, &[s]).0, vec![Layer(1)]);
        s.layer_bps = [150_000, 0, 1_700_000, 0];
        assert_eq!(run(1_000_000, &[s]).0, vec![Layer(0)]);
        s.layer_bps = [0; MAX_LAYERS];
        assert_eq!(run(1_000_000, &[s]).0, vec![Idle]);
    }
}
