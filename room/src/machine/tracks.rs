//! The node's published tracks, found by sid, by the media core's id and by room, so that
//! what concerns one room (a join, a departure, an unpublish) or one track (its audio level)
//! costs that room's or that track's entries, not a walk over every track of the node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lkr_sfu::TrackId;

use super::TrackEntry;

/// Every published track of the node, by sid, with two indexes kept beside the map: the
/// media core's id of each and the sids of each room's. A track's `room` and
/// `offer.track_id` are set when it is inserted and never changed through [`Tracks::get_mut`]
/// (nothing in the machine writes them), which is what keeps the indexes true.
#[derive(Default)]
pub(super) struct Tracks {
    by_sid: BTreeMap<String, TrackEntry>,
    by_id: HashMap<TrackId, String>,
    by_room: HashMap<String, BTreeSet<String>>,
}

impl Tracks {
    /// Adds (or replaces) track `sid`.
    pub(super) fn insert(&mut self, sid: String, t: TrackEntry) {
        self.remove(&sid);
        self.by_id.insert(t.offer.track_id, sid.clone());
        self.by_room
            .entry(t.room.clone())
            .or_default()
            .insert(sid.clone());
        self.by_sid.insert(sid, t);
    }

    /// Takes track `sid` out.
    pub(super) fn remove(&mut self, sid: &str) -> Option<TrackEntry> {
        let t = self.by_sid.remove(sid)?;
        if self.by_id.get(&t.offer.track_id).is_some_and(|s| s == sid) {
            self.by_id.remove(&t.offer.track_id);
        }
        if let Some(in_room) = self.by_room.get_mut(&t.room) {
            in_room.remove(sid);
            if in_room.is_empty() {
                self.by_room.remove(&t.room);
            }
        }
        Some(t)
    }

    pub(super) fn get(&self, sid: &str) -> Option<&TrackEntry> {
        self.by_sid.get(sid)
    }

    pub(super) fn get_mut(&mut self, sid: &str) -> Option<&mut TrackEntry> {
        self.by_sid.get_mut(sid)
    }

    /// The track the media core knows as `id`.
    pub(super) fn by_track_id(&self, id: TrackId) -> Option<&TrackEntry> {
        self.by_id.get(&id).and_then(|sid| self.by_sid.get(sid))
    }

    /// The tracks published in `room`, by sid.
    pub(super) fn in_room<'a>(
        &'a self,
        room: &str,
    ) -> impl Iterator<Item = (&'a String, &'a TrackEntry)> + 'a {
        self.by_room
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|sid| self.by_sid.get_key_value(sid))
    }

    /// Calls `f` on each track published in `room`.
    pub(super) fn for_each_in_room_mut(&mut self, room: &str, mut f: impl FnMut(&mut TrackEntry)) {
        let Self {
            by_sid, by_room, ..
        } = self;
        for sid in by_room.get(room).into_iter().flatten() {
            if let Some(t) = by_sid.get_mut(sid) {
                f(t);
            }
        }
    }

    /// Every track of the node, by sid.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &TrackEntry)> {
        self.by_sid.iter()
    }

    /// Every track of the node.
    pub(super) fn values(&self) -> impl Iterator<Item = &TrackEntry> {
        self.by_sid.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::TrackOffer;
    use lkr_sfu::MediaKind;

    fn entry(room: &str, id: u64) -> TrackEntry {
        TrackEntry {
            room: room.into(),
            publisher_sid: format!("PA_{id}"),
            offer: TrackOffer {
                track_sid: String::new(),
                track_id: TrackId(id),
                publisher_sid: format!("PA_{id}"),
                kind: MediaKind::Audio,
                codecs: Vec::new(),
                layers: Vec::new(),
                layer_count: 1,
                stream: String::new(),
                priority: 0,
            },
            subscribers: BTreeSet::new(),
            wanted: BTreeMap::new(),
            told: None,
            denied: BTreeSet::new(),
        }
    }

    fn sids(t: &Tracks, room: &str) -> Vec<String> {
        t.in_room(room).map(|(s, _)| s.clone()).collect()
    }

    #[test]
    fn the_indexes_follow_inserts_replacements_and_removals() {
        let mut t = Tracks::default();
        t.insert("TR_a".into(), entry("r1", 1));
        t.insert("TR_b".into(), entry("r1", 2));
        t.insert("TR_c".into(), entry("r2", 3));
        assert_eq!(sids(&t, "r1"), ["TR_a", "TR_b"]);
        assert_eq!(
            t.by_track_id(TrackId(3)).map(|e| e.room.as_str()),
            Some("r2")
        );

        // Replaced under the same sid in another room with another id: the old entries go.
        t.insert("TR_a".into(), entry("r2", 4));
        assert!(t.by_track_id(TrackId(1)).is_none());
        assert_eq!(sids(&t, "r1"), ["TR_b"]);
        assert_eq!(sids(&t, "r2"), ["TR_a", "TR_c"]);

        assert!(t.remove("TR_b").is_some());
        assert!(t.remove("TR_b").is_none());
        assert!(sids(&t, "r1").is_empty());
        assert!(
            !t.by_room.contains_key("r1"),
            "an emptied room leaves no entry"
        );
        assert!(t.by_track_id(TrackId(2)).is_none());
        assert_eq!(t.values().count(), 2);
        assert_eq!(t.by_id.len(), 2);
    }
}
