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
use lkr_room::{CreateRoom, Machine, RoomError};
use lkr_signal::RpcOutcome;
use serde::de::DeserializeOwned;

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

pub(crate) fn ensure_admin(claims: Option<&Claims>, room: &str) -> Result<(), TwirpError> {
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

/// What `method` asks of a token whatever its request says, checked before the body is
/// read: a token that cannot call it costs no body reading or decoding. The per-room
/// methods check the request's room once it is decoded; unknown methods are left to
/// [`dispatch`].
pub(crate) fn precheck(method: &str, claims: &Claims) -> Result<(), TwirpError> {
    match method {
        "CreateRoom" | "DeleteRoom" => ensure_create(Some(claims)),
        "ListRooms" => ensure_list(Some(claims)),
        "ListParticipants"
        | "GetParticipant"
        | "RemoveParticipant"
        | "MutePublishedTrack"
        | "UpdateParticipant"
        | "UpdateSubscriptions"
        | "SendData"
        | "UpdateRoomMetadata"
        | "PerformRpc"
        | "MoveParticipant"
        | "ForwardParticipant" => ensure_some_admin(claims),
        _ => Ok(()),
    }
}

/// The token administers some room (which one is checked against the request).
pub(crate) fn ensure_some_admin(claims: &Claims) -> Result<(), TwirpError> {
    if claims.video().room_admin {
        Ok(())
    } else {
        Err(denied("the roomAdmin grant is required"))
    }
}

fn decode<Req: prost::Message + Default + DeserializeOwned>(
    format: Format,
    body: &[u8],
) -> Result<Req, TwirpError> {
    format.decode::<Req>(body)
}

/// Runs `f` on the room machine; a machine that is gone is an internal error.
async fn on_machine<R: Send + 'static>(
    node: &Node,
    f: impl FnOnce(&mut Machine, Instant) -> Result<R, RoomError> + Send + 'static,
) -> Result<R, TwirpError> {
    match node.control.call(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(TwirpError::new(Code::Internal, e.to_string())),
    }
}

/// MoveParticipant / ForwardParticipant, checked as LiveKit checks them (the token
/// administers the source room and names the destination as its `destinationRoom`; the two
/// differ) and refused as not implemented.
fn move_or_forward(claims: Option<&Claims>, room: &str, destination: &str) -> TwirpError {
    if let Err(e) = ensure_admin(claims, room) {
        return e;
    }
    let named = claims
        .and_then(|c| c.video.as_ref())
        .map(|v| v.destination_room.as_str());
    if named != Some(destination) {
        return denied(&format!(
            "the token's destinationRoom must be the destination room {destination:?}"
        ));
    }
    if room == destination {
        return TwirpError::new(
            Code::InvalidArgument,
            "destination room cannot be the same as source room",
        );
    }
    TwirpError::new(
        Code::Unimplemented,
        "not implemented: moving or forwarding a participant to another room",
    )
}

/// Runs `method` with a decoded `body`; `claims` are the caller's verified token, if any.
pub async fn dispatch(
    node: &Node,
    method: &str,
    format: Format,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, TwirpError> {
    match method {
        "CreateRoom" => {
            let r: pb::CreateRoomRequest = decode(format, body)?;
            ensure_create(claims)?;
            let mut req: CreateRoom = (&r).into();
            let mut agents = r.agents;
            let preset = r.room_preset;
            let room = on_machine(node, move |m, now| {
                m.apply_room_preset(&preset, &mut req, &mut agents)?;
                let existed = m.room_exists(&req.name);
                let room = m.api_create_room(now, &req)?;
                // A new room's agent dispatches (LiveKit Agents), read when it starts.
                if !existed && !agents.is_empty() {
                    m.set_room_agents(&req.name, agents)?;
                }
                Ok(room)
            })
            .await?;
            Ok(format.encode(&room))
        }
        "ListRooms" => {
            let r: pb::ListRoomsRequest = decode(format, body)?;
            ensure_list(claims)?;
            let rooms = on_machine(node, move |m, _| Ok(m.api_list_rooms(&r.names))).await?;
            Ok(format.encode(&pb::ListRoomsResponse { rooms }))
        }
        "DeleteRoom" => {
            let r: pb::DeleteRoomRequest = decode(format, body)?;
            ensure_create(claims)?;
            on_machine(node, move |m, now| m.api_delete_room(now, &r.room)).await?;
            Ok(format.encode(&pb::DeleteRoomResponse {}))
        }
        "ListParticipants" => {
            let r: pb::ListParticipantsRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            let participants =
                on_machine(node, move |m, _| m.api_list_participants(&r.room)).await?;
            Ok(format.encode(&pb::ListParticipantsResponse { participants }))
        }
        "GetParticipant" => {
            let r: pb::RoomParticipantIdentity = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            let p = on_machine(node, move |m, _| {
                m.api_get_participant(&r.room, &r.identity)
            })
            .await?;
            Ok(format.encode(&p))
        }
        "RemoveParticipant" => {
            let r: pb::RoomParticipantIdentity = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            on_machine(node, move |m, now| {
                m.api_remove_participant(now, &r.room, &r.identity)
            })
            .await?;
            Ok(format.encode(&pb::RemoveParticipantResponse {}))
        }
        "MutePublishedTrack" => {
            let r: pb::MuteRoomTrackRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            let track = on_machine(node, move |m, _| {
                m.api_mute_published_track(&r.room, &r.identity, &r.track_sid, r.muted)
            })
            .await?;
            Ok(format.encode(&pb::MuteRoomTrackResponse { track: Some(track) }))
        }
        "UpdateParticipant" => {
            let r: pb::UpdateParticipantRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            let p = on_machine(node, move |m, now| m.api_update_participant(now, &r)).await?;
            Ok(format.encode(&p))
        }
        "UpdateSubscriptions" => {
            let r: pb::UpdateSubscriptionsRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            on_machine(node, move |m, now| m.api_update_subscriptions(now, &r)).await?;
            Ok(format.encode(&pb::UpdateSubscriptionsResponse {}))
        }
        "SendData" => {
            let r: pb::SendDataRequest = decode(format, body)?;
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
            on_machine(node, move |m, _| m.api_send_data(&r)).await?;
            Ok(format.encode(&pb::SendDataResponse {}))
        }
        "UpdateRoomMetadata" => {
            let r: pb::UpdateRoomMetadataRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            let room = on_machine(node, move |m, _| {
                m.api_update_room_metadata(&r.room, &r.metadata)
            })
            .await?;
            Ok(format.encode(&room))
        }
        // LiveKit Cloud's: the open-source server checks them as LiveKit does and answers that
        // they are not implemented.
        "MoveParticipant" => {
            let r: pb::MoveParticipantRequest = decode(format, body)?;
            Err(move_or_forward(claims, &r.room, &r.destination_room))
        }
        "ForwardParticipant" => {
            let r: pb::ForwardParticipantRequest = decode(format, body)?;
            Err(move_or_forward(claims, &r.room, &r.destination_room))
        }
        "PerformRpc" => {
            let r: pb::PerformRpcRequest = decode(format, body)?;
            ensure_admin(claims, &r.room)?;
            match node.control.perform_rpc(r).await {
                Ok(RpcOutcome::Done(Ok(payload))) => {
                    Ok(format.encode(&pb::PerformRpcResponse { payload }))
                }
                Ok(RpcOutcome::Done(Err(f))) => {
                    let code = Code::from_name(f.twirp_code()).unwrap_or(Code::Internal);
                    Err(TwirpError::new(code, f.to_string()))
                }
                Ok(RpcOutcome::Refused(e)) => Err(e.into()),
                Err(e) => Err(TwirpError::new(Code::Internal, e.to_string())),
            }
        }
        _ => Err(TwirpError::bad_route(
            format!("no handler for path \"/twirp/{SERVICE}/{method}\""),
            "POST",
            &format!("/twirp/{SERVICE}/{method}"),
        )),
    }
}
