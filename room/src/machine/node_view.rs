//! What the node page needs from the machine beyond the room records: which media-core
//! track each published track is, and how many receive it.

use lkr_sfu::TrackId;

use super::Machine;

/// A published track, for the node page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrack {
    pub sid: String,
    pub track_id: TrackId,
    pub room: String,
    pub publisher_sid: String,
    /// Participants subscribed to it.
    pub subscribers: usize,
}

impl Machine {
    /// Every published track of the node.
    pub fn published_tracks(&self) -> Vec<PublishedTrack> {
        self.tracks
            .iter()
            .map(|(sid, t)| PublishedTrack {
                sid: sid.clone(),
                track_id: t.offer.track_id,
                room: t.room.clone(),
                publisher_sid: t.publisher_sid.clone(),
                subscribers: t.subscribers.len(),
            })
            .collect()
    }
}
