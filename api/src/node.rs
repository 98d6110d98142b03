//! The state one server node shares between its HTTP handlers and background tasks.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use lkr_room::Rooms;
use tokio::sync::Notify;

use crate::config::Settings;

/// One node: its settings and its rooms.
#[derive(Debug)]
pub struct Node {
    pub settings: Settings,
    rooms: Mutex<Rooms>,
    rooms_changed: Notify,
}

impl Node {
    /// A node with no rooms.
    pub fn new(settings: Settings) -> Self {
        let rooms = Rooms::new(settings.room.clone());
        Self {
            settings,
            rooms: Mutex::new(rooms),
            rooms_changed: Notify::new(),
        }
    }

    /// The rooms, locked. Hold the guard briefly: it is the control plane's only lock.
    pub fn rooms(&self) -> MutexGuard<'_, Rooms> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the room closer after a change that may move a room's deadline.
    pub fn rooms_changed(&self) {
        self.rooms_changed.notify_one();
    }

    /// Closes empty rooms when their timeouts pass, until the task is dropped.
    pub async fn run_room_closer(&self) {
        loop {
            let deadline = self.rooms().next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.rooms_changed.notified() => {}
            }
            for room in self.rooms().close_expired(Instant::now()) {
                tracing::info!(room = %room.info().name, sid = %room.sid(), "closing empty room");
            }
        }
    }
}
