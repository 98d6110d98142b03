//! A node's record in the cluster: who it is, where the other nodes reach it, whether it
//! takes new rooms, and the load figures the node selector sorts by.

use serde::{Deserialize, Serialize};

/// Whether a node takes new rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes new rooms and serves its own.
    #[default]
    Serving,
    /// Shutting down: serves the rooms it has until they end, takes no new ones.
    Draining,
}

/// Load figures, refreshed with the record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStats {
    /// CPU cores of the host.
    pub num_cpus: u32,
    /// Share of CPU time spent busy since the previous refresh, 0..=1.
    pub cpu_load: f32,
    /// One-minute load average divided by the cores.
    pub sys_load: f32,
    /// Rooms open on the node.
    pub rooms: u32,
    /// Participants connected to the node.
    pub clients: u32,
    /// Tracks published on the node.
    pub tracks_in: u32,
    /// Subscriptions served by the node.
    pub tracks_out: u32,
    /// Media bytes per second the node forwards, as last measured.
    pub bytes_per_sec: u64,
}

/// One node's record, stored as JSON under its key for as long as it refreshes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id (`ND_…`), new at every start.
    pub id: String,
    /// `region` of its configuration (may be empty).
    #[serde(default)]
    pub region: String,
    /// Where the other nodes reach its HTTP port (`http://ip:port`), for relayed signalling
    /// and routed Twirp calls.
    pub http_url: String,
    /// The media address its participants are sent to (`ip:udp_port`), for operators.
    #[serde(default)]
    pub rtc_addr: String,
    #[serde(default)]
    pub state: NodeState,
    /// Unix time (s) the node started.
    #[serde(default)]
    pub started_at: u64,
    #[serde(default)]
    pub stats: NodeStats,
}

impl NodeInfo {
    /// Whether the node may be given a new room.
    pub fn takes_rooms(&self) -> bool {
        self.state == NodeState::Serving
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored record; `None` for one that does not parse (written by something else).
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_tolerates_missing_fields() {
        let n = NodeInfo {
            id: "ND_a".into(),
            region: "eu".into(),
            http_url: "http://10.0.0.1:7880".into(),
            rtc_addr: "10.0.0.1:7882".into(),
            state: NodeState::Draining,
            started_at: 5,
            stats: NodeStats {
                rooms: 3,
                cpu_load: 0.5,
                ..Default::default()
            },
        };
        assert_eq!(NodeInfo::from_json(&n.to_json()), Some(n));
        let old = NodeInfo::from_json(r#"{"id":"ND_b","http_url":"http://x:1"}"#).unwrap();
        assert!(old.takes_rooms());
        assert_eq!(old.stats, NodeStats::default());
        assert_eq!(NodeInfo::from_json("not json"), None);
    }
}
