//! The state one server node shares between its HTTP handlers and background tasks.

use lkr_signal::Control;

use crate::config::Settings;

/// One node: its settings and the handle on its room machine.
pub struct Node {
    pub settings: Settings,
    pub control: Control,
    /// Counters of the control plane, for metrics.
    pub counters: std::sync::Arc<crate::metrics::ControlCounters>,
    /// WHIP and WHEP sessions.
    pub http_sessions: lkr_signal::whip::HttpSessions,
    /// Track egress, once the media core runs.
    pub egress: std::sync::OnceLock<crate::egress::EgressRuntime>,
    /// The cluster this node is part of (`redis:`), once joined.
    pub cluster: std::sync::OnceLock<std::sync::Arc<crate::cluster::Cluster>>,
}

impl Node {
    /// A node whose rooms are run by `control`.
    pub fn new(settings: Settings, control: Control) -> Self {
        Self {
            http_sessions: lkr_signal::whip::HttpSessions::new(
                control.clone(),
                lkr_signal::whip::HttpLimits::default(),
            ),
            settings,
            control,
            counters: Default::default(),
            egress: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
        }
    }
}
