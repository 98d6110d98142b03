//! The RoomService operations (Twirp), on live rooms and participants.

use std::time::Instant;

use lkr_proto::pb;

use super::participant::{
    DataTargets, MAX_DATA_DESTINATIONS, check_subscription_update, subscription_targets,
};
use super::{Machine, Resp, RoomEvent};
use crate::{CreateRoom, RoomError};

impl Machine {
    /// CreateRoom: creates the room, or updates the non-zero settings of the existing one.
    pub fn api_create_room(
        &mut self,
        now: Instant,
        req: &CreateRoom,
    ) -> Result<pb::Room, RoomError> {
        if self.draining {
            return Err(RoomError::ShuttingDown);
        }
        let (room, created) = self.rooms.create(now, req)?;
        if created {
            tracing::info!(room = %room.name, sid = %room.sid, "room created");
            self.out
                .event(RoomEvent::RoomStarted { room: room.clone() });
        }
        Ok(room)
    }

    /// Fills what a CreateRoom leaves unset from the room configuration `preset` names
    /// ([`crate::Rooms::apply_preset`]).
    pub fn apply_room_preset(
        &self,
        preset: &str,
        req: &mut CreateRoom,
        agents: &mut Vec<pb::RoomAgentDispatch>,
    ) -> Result<(), RoomError> {
        self.rooms.apply_preset(preset, req, agents)
    }

    /// ListRooms: all rooms, or those named.
    pub fn api_list_rooms(&self, names: &[String]) -> Vec<pb::Room> {
        self.rooms.list(names)
    }

    /// Whether a room exists (for `/rtc/validate`).
    pub fn room_exists(&self, name: &str) -> bool {
        self.rooms.get(name).is_ok()
    }

    /// DeleteRoom: every participant is sent away with ROOM_DELETED and the room goes.
    pub fn api_delete_room(&mut self, now: Instant, room: &str) -> Result<(), RoomError> {
        self.rooms.get(room)?;
        let sids: Vec<String> = self.members.get(room).cloned().unwrap_or_default();
        for sid in sids {
            self.send_away(
                now,
                &sid,
                pb::DisconnectReason::RoomDeleted,
                pb::leave_request::Action::Disconnect,
                false,
            );
        }
        let gone = self.rooms.delete(room)?;
        tracing::info!(room = %room, sid = %gone.sid(), "room deleted");
        self.speakers.remove(room);
        self.out
            .event(RoomEvent::RoomFinished { room: gone.info() });
        Ok(())
    }

    /// ListParticipants.
    pub fn api_list_participants(&self, room: &str) -> Result<Vec<pb::ParticipantInfo>, RoomError> {
        Ok(self
            .rooms
            .get(room)?
            .participants()
            .map(|p| p.info.clone())
            .collect())
    }

    /// GetParticipant.
    pub fn api_get_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<pb::ParticipantInfo, RoomError> {
        Ok(self.rooms.participant(room, identity)?.info.clone())
    }

    /// RemoveParticipant: the client is told to leave with PARTICIPANT_REMOVED.
    pub fn api_remove_participant(
        &mut self,
        now: Instant,
        room: &str,
        identity: &str,
    ) -> Result<(), RoomError> {
        let psid = self.rooms.participant(room, identity)?.info.sid.clone();
        if self.participants.contains_key(&psid) {
            self.send_away(
                now,
                &psid,
                pb::DisconnectReason::ParticipantRemoved,
                pb::leave_request::Action::Disconnect,
                true,
            );
        } else {
            self.rooms.leave(now, room, identity)?;
        }
        Ok(())
    }

    /// MutePublishedTrack: the publisher is told to mute (or unmute, where the configuration
    /// allows it); everyone sees the new state.
    pub fn api_mute_published_track(
        &mut self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<pb::TrackInfo, RoomError> {
        let p = self.rooms.participant(room, identity)?;
        if !p.info.tracks.iter().any(|t| t.sid == track_sid) {
            return Err(RoomError::TrackNotFound);
        }
        if !muted && !self.config.enable_remote_unmute {
            return Err(RoomError::RemoteUnmuteDisabled);
        }
        let psid = p.info.sid.clone();
        self.send_one(
            &psid,
            Resp::Mute(pb::MuteTrackRequest {
                sid: track_sid.to_string(),
                muted,
            }),
        );
        self.set_track_muted(&psid, track_sid, muted)
            .ok_or(RoomError::TrackNotFound)
    }

    /// UpdateParticipant: metadata, name, attributes, permission.
    pub fn api_update_participant(
        &mut self,
        now: Instant,
        req: &pb::UpdateParticipantRequest,
    ) -> Result<pb::ParticipantInfo, RoomError> {
        let current = &self.rooms.participant(&req.room, &req.identity)?.info;
        self.config
            .check_limits(&req.metadata, std::iter::empty())
            .and_then(|()| self.config.check_name(&req.name))
            .and_then(|()| {
                self.config
                    .check_merged_attributes(&current.attributes, &req.attributes)
            })
            .map_err(RoomError::InvalidArgument)?;
        let (_, info) = self
            .rooms
            .update_participant(&req.room, &req.identity, |p| {
                if !req.metadata.is_empty() {
                    p.metadata = req.metadata.clone();
                }
                if !req.name.is_empty() {
                    p.name = req.name.clone();
                }
                for (k, v) in &req.attributes {
                    if v.is_empty() {
                        p.attributes.remove(k);
                    } else {
                        p.attributes.insert(k.clone(), v.clone());
                    }
                }
                if let Some(perm) = &req.permission {
                    p.permission = Some(perm.clone());
                    if !perm.can_publish {
                        p.tracks.clear();
                    }
                }
            })?;
        if req.permission.as_ref().is_some_and(|p| !p.can_publish) {
            self.drop_tracks_of(now, &req.room, &info.sid);
        }
        let hidden = info.permission.as_ref().is_some_and(|p| p.hidden);
        if let Some(p) = self.participants.get_mut(&info.sid)
            && let Some(perm) = &info.permission
        {
            p.set_permission(perm.clone());
        }
        if !hidden {
            self.broadcast(&req.room, &info, None);
        } else {
            self.send_one(
                &info.sid,
                Resp::Update(pb::ParticipantUpdate {
                    participants: vec![info.clone()],
                }),
            );
        }
        // Its token follows what the API granted (a client that joins afresh keeps it).
        self.refresh_token(now, &info.sid);
        Ok(info)
    }

    /// UpdateSubscriptions.
    pub fn api_update_subscriptions(
        &mut self,
        now: Instant,
        req: &pb::UpdateSubscriptionsRequest,
    ) -> Result<(), RoomError> {
        let psid = self
            .rooms
            .participant(&req.room, &req.identity)?
            .info
            .sid
            .clone();
        check_subscription_update(&req.track_sids, &req.participant_tracks)?;
        if !self.participants.contains_key(&psid) {
            return Ok(());
        }
        // Participants named without tracks name none here, as before.
        let (sids, _) =
            subscription_targets(req.track_sids.clone(), req.participant_tracks.clone());
        for sid in sids {
            if req.subscribe {
                let offer = self
                    .tracks
                    .get(&sid)
                    .filter(|t| t.room == req.room)
                    .map(|t| t.offer.clone());
                if let Some(offer) = offer {
                    self.subscribe(now, &psid, offer);
                }
            } else {
                self.unsubscribe(now, &psid, &sid);
            }
        }
        Ok(())
    }

    /// SendData: a user packet with no sender, to the room or the named identities.
    #[allow(deprecated)] // kind and the inner destination fields are still read by clients
    pub fn api_send_data(&mut self, req: &pb::SendDataRequest) -> Result<(), RoomError> {
        self.rooms.get(&req.room)?;
        if req
            .destination_identities
            .len()
            .max(req.destination_sids.len())
            > MAX_DATA_DESTINATIONS
        {
            return Err(RoomError::LimitExceeded(format!(
                "a data packet may name at most {MAX_DATA_DESTINATIONS} destinations"
            )));
        }
        let reliable = req.kind != pb::data_packet::Kind::Lossy as i32;
        let packet = pb::DataPacket {
            kind: req.kind,
            destination_identities: req.destination_identities.clone(),
            value: Some(pb::data_packet::Value::User(pb::UserPacket {
                payload: req.data.clone(),
                topic: req.topic.clone(),
                nonce: req.nonce.clone(),
                destination_identities: req.destination_identities.clone(),
                destination_sids: req.destination_sids.clone(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let data = bytes::Bytes::from(prost::Message::encode_to_vec(&packet));
        let targets = DataTargets {
            identities: req.destination_identities.clone(),
            sids: req.destination_sids.clone(),
        };
        self.broadcast_data(None, &req.room, reliable, data, &targets);
        Ok(())
    }

    /// UpdateRoomMetadata: every participant gets the new room record (RoomUpdate).
    pub fn api_update_room_metadata(
        &mut self,
        room: &str,
        metadata: &str,
    ) -> Result<pb::Room, RoomError> {
        let info = self.rooms.update_metadata(room, metadata)?;
        let msg = Resp::RoomUpdate(pb::RoomUpdate {
            room: Some(info.clone()),
        });
        self.send_room(room, None, &msg);
        Ok(info)
    }
}
