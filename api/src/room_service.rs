//! Twirp `livekit.RoomService`: every method, with LiveKit's grant checks.
//!
//! Grants, as LiveKit checks them: CreateRoom and DeleteRoom need `roomCreate`, ListRooms
//! needs `roomList`, every per-room call needs `roomAdmin` for that very room (`video.room`
//! equal to the request's room). A missing grant is `unauthenticated`.

use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use lkr_proto::pb;
use lkr_proto::token::Claims;
use serde::{Serialize, de::DeserializeOwned};

use crate::node::Node;
use crate::twirp::{Code, Format, TwirpError};

/// The service name in Twirp paths.
pub const SERVICE: &str = "livekit.RoomService";

fn denied(what: &str) -> TwirpError {
    TwirpError::new(Code::Unauthenticated, format!("permissions denied: {what}"))
}

fn grant(claims: Option<&Claims>) -> Result<lkr_proto::token::VideoGrant, TwirpError> {
    claims
        .map(Claims::video)
        .ok_or_else(|| denied("no access token (send Authorization: Bearer <token>)"))
}

fn ensure_create(claims: Option<&Claims>) -> Result<(), TwirpError> {
    if grant(claims)?.room_create {
        Ok(())
    } else {
        Err(denied("the roomCreate grant is required"))
    }
}

fn ensure_list(claims: Option<&Claims>) -> Result<(), TwirpError> {
    if grant(claims)?.room_list {
        Ok(())
    } else {
        Err(denied("the roomList grant is required"))
    }
}

fn ensure_admin(claims: Option<&Claims>, room: &str) -> Result<(), TwirpError> {
    let g = grant(claims)?;
    if g.admins(room) {
        Ok(())
    } else if !g.room_admin {
        Err(denied("the roomAdmin grant is required"))
    } else {
        Err(denied(&format!(
            "the token administers room {:?}, not {room:?}",
            g.room
        )))
    }
}

fn call<Req, Resp>(
    format: Format,
    body: &[u8],
    f: impl FnOnce(Req) -> Result<Resp, TwirpError>,
) -> Result<Response<Full<Bytes>>, TwirpError>
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
{
    let req = format.decode::<Req>(body)?;
    Ok(format.encode(&f(req)?))
}

/// Runs `method` with a decoded `body`; `claims` are the caller's verified token, if any.
pub fn dispatch(
    node: &Node,
    method: &str,
    format: Format,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, TwirpError> {
    match method {
        "CreateRoom" => call(format, body, |r: pb::CreateRoomRequest| {
            ensure_create(claims)?;
            let (room, created) = node
                .hub
                .with_rooms(|rooms| rooms.create(Instant::now(), &(&r).into()))?;
            if created {
                tracing::info!(room = %room.name, sid = %room.sid, "room created");
            }
            Ok(room)
        }),
        "ListRooms" => call(format, body, |r: pb::ListRoomsRequest| {
            ensure_list(claims)?;
            Ok(pb::ListRoomsResponse {
                rooms: node.hub.with_rooms(|rooms| rooms.list(&r.names)),
            })
        }),
        "DeleteRoom" => call(format, body, |r: pb::DeleteRoomRequest| {
            ensure_create(claims)?;
            node.hub
                .with_rooms(|rooms| rooms.get(&r.room).map(|_| ()))?;
            node.hub.close_room_sessions(&r.room);
            let room = node.hub.with_rooms(|rooms| rooms.delete(&r.room))?;
            tracing::info!(room = %r.room, sid = %room.sid(), "room deleted");
            Ok(pb::DeleteRoomResponse {})
        }),
        "ListParticipants" => call(format, body, |r: pb::ListParticipantsRequest| {
            ensure_admin(claims, &r.room)?;
            let participants = node.hub.with_rooms(|rooms| {
                rooms
                    .get(&r.room)
                    .map(|room| room.participants().map(|p| p.info.clone()).collect())
            })?;
            Ok(pb::ListParticipantsResponse { participants })
        }),
        "GetParticipant" => call(format, body, |r: pb::RoomParticipantIdentity| {
            ensure_admin(claims, &r.room)?;
            Ok(node.hub.with_rooms(|rooms| {
                rooms
                    .participant(&r.room, &r.identity)
                    .map(|p| p.info.clone())
            })?)
        }),
        "RemoveParticipant" => call(format, body, |r: pb::RoomParticipantIdentity| {
            ensure_admin(claims, &r.room)?;
            node.hub.remove_participant(&r.room, &r.identity)?;
            Ok(pb::RemoveParticipantResponse {})
        }),
        "MutePublishedTrack" => call(format, body, |r: pb::MuteRoomTrackRequest| {
            ensure_admin(claims, &r.room)?;
            let track =
                node.hub
                    .mute_published_track(&r.room, &r.identity, &r.track_sid, r.muted)?;
            Ok(pb::MuteRoomTrackResponse { track: Some(track) })
        }),
        "UpdateParticipant" => call(format, body, |r: pb::UpdateParticipantRequest| {
            ensure_admin(claims, &r.room)?;
            Ok(node.hub.admin_update_participant(&r)?)
        }),
        "UpdateSubscriptions" => call(format, body, |r: pb::UpdateSubscriptionsRequest| {
            ensure_admin(claims, &r.room)?;
            node.hub.admin_update_subscriptions(&r)?;
            Ok(pb::UpdateSubscriptionsResponse {})
        }),
        "SendData" => call(format, body, |r: pb::SendDataRequest| {
            ensure_admin(claims, &r.room)?;
            if !r.nonce.is_empty() && r.nonce.len() != 16 {
                return Err(TwirpError::new(
                    Code::InvalidArgument,
                    format!(
                        "nonce should be 16-bytes or not present, got: {} bytes",
                        r.nonce.len()
                    ),
                ));
            }
            node.hub.api_send_data(&r)?;
            Ok(pb::SendDataResponse {})
        }),
        "UpdateRoomMetadata" => call(format, body, |r: pb::UpdateRoomMetadataRequest| {
            ensure_admin(claims, &r.room)?;
            let room = node
                .hub
                .with_rooms(|rooms| rooms.update_metadata(&r.room, &r.metadata))?;
            node.hub.broadcast_room_update(&room);
            Ok(room)
        }),
        _ => Err(TwirpError::bad_route(
            format!("no handler for path \"/twirp/{SERVICE}/{method}\""),
            "POST",
            &format!("/twirp/{SERVICE}/{method}"),
        )),
    }
}
