//! The node selector: which node gets a new room, with LiveKit's `node_selector` names.
//!
//! - `kind: any` takes every node that takes rooms; `cpuload` only those under
//!   `cpu_load_limit`, `sysload` only those under `sysload_limit` (when none is under its
//!   limit, every node is a candidate again, as LiveKit does); `regionaware` keeps the nodes of
//!   the region closest to the asking node's (by the `regions` coordinates; the asking node's
//!   own region when coordinates are missing) and then applies the sysload rule.
//! - `sort_by` picks among the candidates: `random` (the default), or the lowest `sysload`,
//!   `cpuload`, `rooms`, `clients`, `tracks` or `bytespersec`.

use serde::Deserialize;

use crate::node::NodeInfo;

/// `node_selector.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Any,
    #[serde(rename = "cpuload")]
    CpuLoad,
    #[serde(rename = "sysload")]
    SysLoad,
    #[serde(rename = "regionaware")]
    RegionAware,
}

/// `node_selector.sort_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Random,
    #[serde(rename = "sysload")]
    SysLoad,
    #[serde(rename = "cpuload")]
    CpuLoad,
    Rooms,
    Clients,
    Tracks,
    #[serde(rename = "bytespersec")]
    BytesPerSec,
}

/// One entry of `node_selector.regions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// `node_selector:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    pub kind: Kind,
    pub sort_by: SortBy,
    /// `cpuload`: nodes at or over this CPU share are passed over (default 0.9).
    pub cpu_load_limit: f32,
    /// `sysload` and `regionaware`: nodes at or over this load per core are passed over
    /// (default 0.9).
    pub sysload_limit: f32,
    pub regions: Vec<Region>,
}

impl Default for Selector {
    fn default() -> Self {
        Self {
            kind: Kind::Any,
            sort_by: SortBy::Random,
            cpu_load_limit: 0.9,
            sysload_limit: 0.9,
            regions: Vec::new(),
        }
    }
}

impl Selector {
    /// The node a new room goes to, among `nodes` (the live ones), asked by a node of
    /// `from_region`; `random` breaks ties and drives `sort_by: random`. `None` when no node
    /// takes rooms.
    pub fn select<'a>(
        &self,
        nodes: &'a [NodeInfo],
        from_region: &str,
        random: u64,
    ) -> Option<&'a NodeInfo> {
        let mut candidates: Vec<&NodeInfo> = nodes.iter().filter(|n| n.takes_rooms()).collect();
        if candidates.is_empty() {
            return None;
        }
        match self.kind {
            Kind::Any => {}
            Kind::CpuLoad => {
                keep_if_any(&mut candidates, |n| n.stats.cpu_load < self.cpu_load_limit)
            }
            Kind::SysLoad => {
                keep_if_any(&mut candidates, |n| n.stats.sys_load < self.sysload_limit)
            }
            Kind::RegionAware => {
                if let Some(region) = self.closest_region(&candidates, from_region) {
                    candidates.retain(|n| n.region == region);
                }
                keep_if_any(&mut candidates, |n| n.stats.sys_load < self.sysload_limit);
            }
        }
        let metric = |n: &NodeInfo| -> f64 {
            let s = &n.stats;
            match self.sort_by {
                SortBy::Random => 0.0,
                SortBy::SysLoad => f64::from(s.sys_load),
                SortBy::CpuLoad => f64::from(s.cpu_load),
                SortBy::Rooms => f64::from(s.rooms),
                SortBy::Clients => f64::from(s.clients),
                SortBy::Tracks => f64::from(s.tracks_in) + f64::from(s.tracks_out),
                SortBy::BytesPerSec => s.bytes_per_sec as f64,
            }
        };
        let best = candidates
            .iter()
            .map(|n| metric(n))
            .fold(f64::INFINITY, f64::min);
        candidates.retain(|n| metric(n) <= best);
        // Ties (every node, for `random`) are broken by the random draw.
        let i = (random % candidates.len() as u64) as usize;
        candidates.get(i).copied()
    }

    /// The region with candidates closest to `from` (by great-circle distance between the
    /// configured coordinates); `from` itself when it has candidates and no coordinates are
    /// known; `None` to keep every candidate.
    fn closest_region(&self, candidates: &[&NodeInfo], from: &str) -> Option<String> {
        let here = self.regions.iter().find(|r| r.name == from);
        let has = |name: &str| candidates.iter().any(|n| n.region == name);
        match here {
            Some(here) => self
                .regions
                .iter()
                .filter(|r| has(&r.name))
                .map(|r| (distance_km(here, r), &r.name))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, name)| name.clone()),
            None if !from.is_empty() && has(from) => Some(from.to_string()),
            None => None,
        }
    }
}

/// Keeps the candidates that pass `ok`, unless none does (then all stay).
fn keep_if_any(candidates: &mut Vec<&NodeInfo>, ok: impl Fn(&NodeInfo) -> bool) {
    if candidates.iter().any(|n| ok(n)) {
        candidates.retain(|n| ok(n));
    }
}

fn distance_km(a: &Region, b: &Region) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dla = la2 - la1;
    let dlo = (b.lon - a.lon).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeState, NodeStats};

    fn node(id: &str, region: &str, stats: NodeStats) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            region: region.into(),
            http_url: format!("http://{id}"),
            rtc_addr: String::new(),
            state: NodeState::Serving,
            started_at: 0,
            stats,
        }
    }

    fn load(cpu: f32, sys: f32, rooms: u32) -> NodeStats {
        NodeStats {
            cpu_load: cpu,
            sys_load: sys,
            rooms,
            ..Default::default()
        }
    }

    fn pick(s: &Selector, nodes: &[NodeInfo], from: &str, r: u64) -> String {
        s.select(nodes, from, r)
            .map(|n| n.id.clone())
            .unwrap_or_default()
    }

    #[test]
    fn random_spreads_over_every_serving_node_and_skips_draining_ones() {
        let mut nodes = vec![
            node("a", "", load(0.1, 0.1, 0)),
            node("b", "", load(0.1, 0.1, 0)),
            node("c", "", load(0.1, 0.1, 0)),
        ];
        nodes[1].state = NodeState::Draining;
        let s = Selector::default();
        let picked: std::collections::BTreeSet<String> =
            (0..12).map(|r| pick(&s, &nodes, "", r)).collect();
        assert_eq!(picked, ["a", "c"].map(String::from).into());
        for n in &mut nodes {
            n.state = NodeState::Draining;
        }
        assert!(s.select(&nodes, "", 0).is_none());
    }

    #[test]
    fn load_kinds_pass_over_busy_nodes_unless_all_are_busy() {
        let nodes = vec![
            node("busy", "", load(0.95, 0.95, 0)),
            node("calm", "", load(0.2, 0.3, 9)),
        ];
        for kind in [Kind::CpuLoad, Kind::SysLoad] {
            let s = Selector {
                kind,
                ..Default::default()
            };
            for r in 0..6 {
                assert_eq!(pick(&s, &nodes, "", r), "calm", "{kind:?}");
            }
        }
        let all_busy = vec![
            node("x", "", load(0.95, 0.95, 0)),
            node("y", "", load(0.99, 0.99, 0)),
        ];
        let s = Selector {
            kind: Kind::CpuLoad,
            sort_by: SortBy::CpuLoad,
            ..Default::default()
        };
        assert_eq!(pick(&s, &all_busy, "", 1), "x");
    }

    #[test]
    fn sort_by_takes_the_lowest_figure() {
        let nodes = vec![
            node("many", "", load(0.1, 0.1, 9)),
            node("few", "", load(0.8, 0.8, 1)),
        ];
        let by = |sort_by| Selector {
            sort_by,
            ..Default::default()
        };
        for r in 0..4 {
            assert_eq!(pick(&by(SortBy::Rooms), &nodes, "", r), "few");
            assert_eq!(pick(&by(SortBy::CpuLoad), &nodes, "", r), "many");
            assert_eq!(pick(&by(SortBy::SysLoad), &nodes, "", r), "many");
        }
    }

    #[test]
    fn region_aware_keeps_the_closest_region_with_nodes() {
        let nodes = vec![
            node("fra", "eu-central", load(0.1, 0.1, 0)),
            node("sfo", "us-west", load(0.1, 0.1, 0)),
        ];
        let s = Selector {
            kind: Kind::RegionAware,
            regions: vec![
                Region {
                    name: "eu-central".into(),
                    lat: 50.1,
                    lon: 8.7,
                },
                Region {
                    name: "eu-west".into(),
                    lat: 53.3,
                    lon: -6.3,
                },
                Region {
                    name: "us-west".into(),
                    lat: 37.8,
                    lon: -122.4,
                },
            ],
            ..Default::default()
        };
        for r in 0..4 {
            // eu-west has no node; eu-central is the closest that has one.
            assert_eq!(pick(&s, &nodes, "eu-west", r), "fra");
            assert_eq!(pick(&s, &nodes, "us-west", r), "sfo");
        }
        let plain = Selector {
            kind: Kind::RegionAware,
            ..Default::default()
        };
        assert_eq!(pick(&plain, &nodes, "us-west", 0), "sfo");
        assert_eq!(pick(&plain, &nodes, "us-west", 1), "sfo");
    }
}
