//! The state one server node shares between its HTTP handlers and background tasks.

use std::sync::Arc;

use lkr_signal::Hub;

use crate::config::Settings;

/// One node: its settings and its hub (rooms, sessions, tracks).
pub struct Node {
    pub settings: Settings,
    pub hub: Arc<Hub>,
}

impl Node {
    /// A node around `hub`.
    pub fn new(settings: Settings, hub: Arc<Hub>) -> Self {
        Self { settings, hub }
    }
}
