//! Participants whose signalling is plain HTTP (WHIP ingest and WHEP playback).
//!
//! A WHIP publisher is an ordinary single-PC participant: its front door turns the offer's
//! sending sections into `add_track` requests and hands the offer over as a signal request.
//! A WHEP player needs one thing more: its offer of receive-only sections must be answered
//! with the chosen publisher's tracks already bound to them, because a WHEP session is never
//! renegotiated by the server. [`Machine::handle_play_offer`] does that in one input:
//! subscribe, answer, and cap the simulcast layer when the player asked for one.

use std::time::Instant;

use lkr_proto::pb;
use lkr_sfu::MediaKind;

use super::Machine;
use crate::RoomError;

/// A WHEP player's offer and what it wants to play.
#[derive(Debug, Clone)]
pub struct PlayOffer {
    /// Identity of the participant whose tracks are played.
    pub publisher: String,
    /// Play only this track (its sid); `None`: every track of the publisher.
    pub track_sid: Option<String>,
    /// Highest simulcast quality the player takes (LOW 0, MEDIUM 1, HIGH 2); `None`: the
    /// congestion controller chooses.
    pub quality: Option<i32>,
    /// The player's SDP offer (receive-only sections).
    pub offer: pb::SessionDescription,
}

impl Machine {
    /// Whether participant `psid` is here (`None` if not) and whether its media transport
    /// ever came up.
    pub fn participant_media_up(&self, psid: &str) -> Option<bool> {
        self.participants.get(psid).map(|p| p.was_active())
    }

    /// How many tracks participant `psid` receives (forwarding set up).
    pub fn participant_subscriptions(&self, psid: &str) -> usize {
        let Some(p) = self.participants.get(psid) else {
            return 0;
        };
        self.tracks
            .in_room(p.room())
            .filter(|(_, t)| t.subscribers.contains(psid))
            .count()
    }

    /// The room and identity of participant `psid`, if it is here.
    pub fn participant_place(&self, psid: &str) -> Option<(String, String)> {
        self.participants
            .get(psid)
            .map(|p| (p.room().to_string(), p.identity().to_string()))
    }

    /// Answers a WHEP player's offer: `psid` (a single-PC participant that joined without
    /// auto-subscription) subscribes to the publisher's tracks (or the one named), which the
    /// answer binds to the offer's receive-only sections of their kind; the answer goes out
    /// as a signal response to `psid`. Refused, with nothing changed, when the player may not
    /// subscribe, the publisher is not in its room, or it has no such track.
    pub fn handle_play_offer(
        &mut self,
        now: Instant,
        psid: &str,
        req: PlayOffer,
    ) -> Result<(), RoomError> {
        let p = self
            .participants
            .get(psid)
            .ok_or(RoomError::ParticipantNotFound)?;
        if !p.can_subscribe() {
            return Err(RoomError::NotAllowed(
                "the token does not allow subscribing".into(),
            ));
        }
        let room = p.room().to_string();
        lkr_sdp::parse(&req.offer.sdp)
            .map_err(|e| RoomError::InvalidArgument(format!("bad offer: {e}")))?;
        let publisher_sid = self
            .rooms
            .participant(&room, &req.publisher)
            .map_err(|_| RoomError::ParticipantNotFound)?
            .info
            .sid
            .clone();
        if publisher_sid == psid {
            return Err(RoomError::InvalidArgument(
                "a participant cannot play its own tracks".into(),
            ));
        }
        let offers: Vec<_> = self
            .tracks
            .in_room(&room)
            .filter(|(sid, t)| {
                t.publisher_sid == publisher_sid
                    && req.track_sid.as_ref().is_none_or(|want| want == *sid)
            })
            .map(|(_, t)| t.offer.clone())
            .collect();
        if offers.is_empty() {
            return Err(RoomError::TrackNotFound);
        }
        let videos: Vec<String> = offers
            .iter()
            .filter(|o| o.kind == MediaKind::Video)
            .map(|o| o.track_sid.clone())
            .collect();
        for offer in offers {
            self.subscribe(now, psid, offer);
        }
        self.with_participant(now, psid, |p, ctx| p.handle_offer(ctx, req.offer))?;
        if let Some(q) = req.quality
            && !videos.is_empty()
        {
            #[allow(deprecated)] // `quality` is deprecated upstream but is what selects a layer
            let ts = pb::UpdateTrackSettings {
                track_sids: videos,
                quality: q.clamp(0, pb::VideoQuality::High as i32),
                ..Default::default()
            };
            self.with_participant(now, psid, |p, ctx| {
                p.handle_request(ctx, pb::signal_request::Message::TrackSetting(ts))
            })?;
        }
        Ok(())
    }
}
