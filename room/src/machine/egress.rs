//! Track egress as the room machine sees it: an egress keyed by id, on one track of one
//! room, with LiveKit's `EgressInfo` record and status. The machine starts and stops the
//! media core's local sink of the track, ends the egress when the track (or its room) goes,
//! answers ListEgress, and emits `egress_started`, `egress_updated` and `egress_ended`.
//! Writing the file is its owner's business; the owner reports back with
//! [`Machine::handle_egress_active`] and [`Machine::handle_egress_ended`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use lkr_proto::pb;
use lkr_sfu::{Command, SinkId};

use super::{Machine, RoomEvent};
use crate::RoomError;

/// Ended egresses kept for ListEgress, newest last.
pub const ENDED_EGRESS_KEPT: usize = 256;

/// The egresses of a node.
#[derive(Debug, Default)]
pub(super) struct Egresses {
    live: BTreeMap<String, LiveEgress>,
    ended: VecDeque<pb::EgressInfo>,
}

#[derive(Debug)]
struct LiveEgress {
    info: pb::EgressInfo,
    track_sid: String,
    sink: SinkId,
}

/// What an egress needs to know of the track it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressTrack {
    pub room_sid: String,
    /// The media core's id of the track.
    pub track_id: lkr_sfu::TrackId,
    /// The track's codec name (`opus`, `VP8`, ...).
    pub codec: String,
}

/// A track egress to start.
#[derive(Debug, Clone)]
pub struct StartEgress {
    pub egress_id: String,
    pub sink: SinkId,
    pub request: pb::TrackEgressRequest,
    /// The file's name as reported (relative to the egress directory).
    pub filename: String,
    /// Where it is written (the full path).
    pub location: String,
    /// Live egresses allowed on the node.
    pub max_active: usize,
}

/// How a track egress ended, from its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEnd {
    /// Bytes in the file.
    pub size: i64,
    /// Media time in the file, ns.
    pub duration_ns: i64,
    /// The writer's error (the egress FAILED), if any.
    pub error: Option<String>,
    /// Packets dropped because the writer fell behind (reported in `details`).
    pub dropped: u64,
}

fn status(info: &pb::EgressInfo) -> pb::EgressStatus {
    pb::EgressStatus::try_from(info.status).unwrap_or(pb::EgressStatus::EgressFailed)
}

impl Machine {
    fn wall_ns(&self, now: Instant) -> i64 {
        self.clock.ms(now) * 1_000_000
    }

    /// The track `track_sid` of room `room`, for an egress.
    pub fn egress_track(&self, room: &str, track_sid: &str) -> Result<EgressTrack, RoomError> {
        let room_sid = self.rooms.get(room)?.sid().to_string();
        let t = self
            .tracks
            .get(track_sid)
            .filter(|t| t.room == room)
            .ok_or(RoomError::TrackNotFound)?;
        let codec = t
            .offer
            .codecs
            .iter()
            .map(|c| c.name.as_str())
            .find(|n| {
                !["red", "rtx", "ulpfec", "flexfec-03"]
                    .iter()
                    .any(|x| n.eq_ignore_ascii_case(x))
            })
            .unwrap_or_default()
            .to_string();
        Ok(EgressTrack {
            room_sid,
            track_id: t.offer.track_id,
            codec,
        })
    }

    /// StartTrackEgress: records the egress (EGRESS_STARTING) and starts the track's local
    /// sink `start.sink` in the media core.
    pub fn api_start_track_egress(
        &mut self,
        now: Instant,
        start: StartEgress,
    ) -> Result<pb::EgressInfo, RoomError> {
        if self.draining {
            return Err(RoomError::ShuttingDown);
        }
        let req = &start.request;
        let track = self.egress_track(&req.room_name, &req.track_id)?;
        if self.egresses.live.len() >= start.max_active {
            return Err(RoomError::LimitExceeded(format!(
                "this node records at most {} tracks at once",
                start.max_active
            )));
        }
        let track_id = track.track_id;
        let ns = self.wall_ns(now);
        let info = pb::EgressInfo {
            egress_id: start.egress_id.clone(),
            room_id: track.room_sid,
            room_name: req.room_name.clone(),
            source_type: pb::EgressSourceType::Sdk as i32,
            status: pb::EgressStatus::EgressStarting as i32,
            started_at: ns,
            updated_at: ns,
            file_results: vec![pb::FileInfo {
                filename: start.filename.clone(),
                started_at: ns,
                location: start.location.clone(),
                ..Default::default()
            }],
            request: Some(pb::egress_info::Request::Track(req.clone())),
            ..Default::default()
        };
        tracing::info!(egress = %start.egress_id, room = %req.room_name, track = %req.track_id, file = %start.location, "track egress starting");
        self.want_for_egress(&req.track_id, &start.egress_id, true);
        self.egresses.live.insert(
            start.egress_id.clone(),
            LiveEgress {
                info: info.clone(),
                track_sid: req.track_id.clone(),
                sink: start.sink,
            },
        );
        self.out.media(Command::AddSink {
            sink: start.sink,
            track: track_id,
        });
        self.out.event(RoomEvent::EgressStarted {
            info: Box::new(info.clone()),
        });
        Ok(info)
    }

    /// StopEgress: the egress ends (EGRESS_ENDING) and its file is completed; the writer's
    /// report then makes it COMPLETE.
    pub fn api_stop_egress(
        &mut self,
        now: Instant,
        egress_id: &str,
    ) -> Result<pb::EgressInfo, RoomError> {
        if let Some(e) = self.egresses.live.get(egress_id) {
            if status(&e.info) == pb::EgressStatus::EgressEnding {
                return Err(RoomError::EgressNotStoppable(
                    pb::EgressStatus::EgressEnding.as_str_name().to_string(),
                ));
            }
            return self
                .end_egress(now, egress_id)
                .ok_or(RoomError::EgressNotFound);
        }
        match self
            .egresses
            .ended
            .iter()
            .find(|e| e.egress_id == egress_id)
        {
            Some(e) => Err(RoomError::EgressNotStoppable(
                status(e).as_str_name().to_string(),
            )),
            None => Err(RoomError::EgressNotFound),
        }
    }

    /// ListEgress: every egress of the node (live first), or those of one room, or one
    /// egress; `active` keeps the live ones only.
    pub fn api_list_egress(
        &self,
        room: &str,
        egress_id: &str,
        active: bool,
    ) -> Vec<pb::EgressInfo> {
        let keep = |i: &pb::EgressInfo| {
            (room.is_empty() || i.room_name == room)
                && (egress_id.is_empty() || i.egress_id == egress_id)
        };
        let live = self.egresses.live.values().map(|e| &e.info);
        let ended = self.egresses.ended.iter().rev().filter(|_| !active);
        live.chain(ended).filter(|i| keep(i)).cloned().collect()
    }

    /// Live egresses (for the node page and metrics).
    pub fn egress_count(&self) -> usize {
        self.egresses.live.len()
    }

    /// The writer of egress `egress_id` wrote its first media: EGRESS_ACTIVE.
    pub fn handle_egress_active(&mut self, now: Instant, egress_id: &str) {
        let ns = self.wall_ns(now);
        let Some(e) = self.egresses.live.get_mut(egress_id) else {
            return;
        };
        if status(&e.info) != pb::EgressStatus::EgressStarting {
            return;
        }
        e.info.status = pb::EgressStatus::EgressActive as i32;
        e.info.updated_at = ns;
        let info = e.info.clone();
        self.out.event(RoomEvent::EgressUpdated {
            info: Box::new(info),
        });
    }

    /// The writer of egress `egress_id` finished (its sink closed, or writing failed):
    /// EGRESS_COMPLETE with the file's size and duration, or EGRESS_FAILED with the error.
    pub fn handle_egress_ended(&mut self, now: Instant, egress_id: &str, end: EgressEnd) {
        let Some(mut e) = self.egresses.live.remove(egress_id) else {
            return;
        };
        self.want_for_egress(&e.track_sid, egress_id, false);
        let ns = self.wall_ns(now);
        // A failed writer stops reading: the core lets go of the sink (again, harmlessly,
        // when it was stopped already).
        self.out.media(Command::RemoveSink { sink: e.sink });
        let info = &mut e.info;
        info.ended_at = ns;
        info.updated_at = ns;
        for f in info.file_results.iter_mut() {
            f.ended_at = ns;
            f.size = end.size;
            f.duration = end.duration_ns;
        }
        if end.dropped > 0 {
            info.details = format!(
                "{} packets dropped: the file writer fell behind",
                end.dropped
            );
        }
        match &end.error {
            Some(err) => {
                tracing::warn!(egress = %egress_id, error = %err, "track egress failed");
                info.status = pb::EgressStatus::EgressFailed as i32;
                info.error = err.clone();
            }
            None => {
                tracing::info!(egress = %egress_id, bytes = end.size, "track egress complete");
                info.status = pb::EgressStatus::EgressComplete as i32;
            }
        }
        #[allow(deprecated)] // still read by clients that predate file_results
        {
            info.result = info
                .file_results
                .first()
                .cloned()
                .map(pb::egress_info::Result::File);
        }
        let info = e.info;
        if self.egresses.ended.len() >= ENDED_EGRESS_KEPT {
            self.egresses.ended.pop_front();
        }
        self.egresses.ended.push_back(info.clone());
        self.out.event(RoomEvent::EgressEnded {
            info: Box::new(info),
        });
    }

    /// Dynacast: a recording wants the track's best layer, as a subscriber with a large
    /// view would (its entry is keyed by the egress id, which no participant sid equals).
    fn want_for_egress(&mut self, track_sid: &str, egress_id: &str, on: bool) {
        let Some(t) = self.tracks.get_mut(track_sid) else {
            return;
        };
        if on {
            t.wanted
                .insert(egress_id.to_string(), pb::VideoQuality::High as i32);
        } else if t.wanted.remove(egress_id).is_none() {
            return;
        }
        self.tell_qualities(track_sid);
    }

    /// Ends a live egress: EGRESS_ENDING, its sink stopped. Returns its record.
    fn end_egress(&mut self, now: Instant, egress_id: &str) -> Option<pb::EgressInfo> {
        let ns = self.wall_ns(now);
        let e = self.egresses.live.get_mut(egress_id)?;
        e.info.status = pb::EgressStatus::EgressEnding as i32;
        e.info.updated_at = ns;
        let (info, sink, track_sid) = (e.info.clone(), e.sink, e.track_sid.clone());
        self.want_for_egress(&track_sid, egress_id, false);
        tracing::info!(egress = %egress_id, "track egress ending");
        self.out.media(Command::RemoveSink { sink });
        self.out.event(RoomEvent::EgressUpdated {
            info: Box::new(info.clone()),
        });
        Some(info)
    }

    /// The track is gone: its egresses end (and complete once their files are written).
    pub(super) fn end_egresses_of_track(&mut self, now: Instant, track_sid: &str) {
        let ids: Vec<String> = self
            .egresses
            .live
            .iter()
            .filter(|(_, e)| {
                e.track_sid == track_sid && status(&e.info) != pb::EgressStatus::EgressEnding
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.end_egress(now, &id);
        }
    }
}
