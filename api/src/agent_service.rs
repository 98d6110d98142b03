//! Twirp `livekit.AgentDispatchService`: explicit dispatch of named agents to a room.
//!
//! Every method needs `roomAdmin` for the request's room, as LiveKit checks. CreateDispatch
//! creates the room when `room.auto_create` allows (as LiveKit does) and otherwise answers
//! `not_found` for a room that does not exist; the dispatch's jobs are launched at once. A
//! dispatch for an agent name no worker has registered is kept, with no job (LiveKit's
//! behaviour: nothing is offered until a matching worker exists when a job is made).

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use lkr_agent::{AgentError, Fault};
use lkr_proto::pb;
use lkr_proto::token::Claims;
use lkr_room::{CreateRoom, RoomError};

use crate::node::Node;
use crate::room_service::ensure_admin;
use crate::twirp::{Code, Format, TwirpError};

/// The service name in Twirp paths.
pub const SERVICE: &str = "livekit.AgentDispatchService";

fn agent_error(e: AgentError) -> TwirpError {
    let code = match e.fault() {
        Fault::Peer => Code::InvalidArgument,
        Fault::NotFound => Code::NotFound,
        Fault::Limit => Code::ResourceExhausted,
        Fault::Internal => Code::Internal,
    };
    TwirpError::new(code, e.to_string())
}

enum Failure {
    Room(RoomError),
    Agent(AgentError),
}

impl From<Failure> for TwirpError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Room(e) => e.into(),
            Failure::Agent(e) => agent_error(e),
        }
    }
}

async fn on_control<R: Send + 'static>(
    node: &Node,
    f: impl FnOnce(
        &mut lkr_room::Machine,
        &mut lkr_agent::Dispatcher,
        std::time::Instant,
    ) -> Result<R, Failure>
    + Send
    + 'static,
) -> Result<R, TwirpError> {
    match node.control.agent_call(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(TwirpError::new(Code::Internal, e.to_string())),
    }
}

/// Every dispatch method needs `roomAdmin` (for the request's room, checked once it is
/// decoded): checked before the body is read (see [`crate::room_service::precheck`]).
pub(crate) fn precheck(method: &str, claims: &Claims) -> Result<(), TwirpError> {
    match method {
        "CreateDispatch" | "DeleteDispatch" | "ListDispatch" => {
            crate::room_service::ensure_some_admin(claims)
        }
        _ => Ok(()),
    }
}

/// Runs `method` with a decoded `body`; `claims` are the caller's verified token, if any.
pub async fn dispatch(
    node: &Node,
    method: &str,
    format: Format,
    claims: Option<&Claims>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, TwirpError> {
    let auto_create = node.settings.auto_create;
    match method {
        "CreateDispatch" => {
            let r: pb::CreateAgentDispatchRequest = format.decode(body)?;
            ensure_admin(claims, &r.room)?;
            let d = on_control(node, move |m, d, now| {
                if !m.room_exists(&r.room) {
                    if !auto_create {
                        return Err(Failure::Room(RoomError::RoomNotFound));
                    }
                    let req = CreateRoom {
                        name: r.room.clone(),
                        ..Default::default()
                    };
                    m.api_create_room(now, &req).map_err(Failure::Room)?;
                }
                let (room, people) = m.room_with_participants(&r.room).map_err(Failure::Room)?;
                d.create_dispatch(now, &room, &people, &r)
                    .map_err(Failure::Agent)
            })
            .await?;
            Ok(format.encode(&d))
        }
        "DeleteDispatch" => {
            let r: pb::DeleteAgentDispatchRequest = format.decode(body)?;
            ensure_admin(claims, &r.room)?;
            let d = on_control(node, move |m, d, now| {
                if !m.room_exists(&r.room) {
                    return Err(Failure::Room(RoomError::RoomNotFound));
                }
                d.delete_dispatch(now, &r.room, &r.dispatch_id)
                    .map_err(Failure::Agent)
            })
            .await?;
            Ok(format.encode(&d))
        }
        "ListDispatch" => {
            let r: pb::ListAgentDispatchRequest = format.decode(body)?;
            ensure_admin(claims, &r.room)?;
            let agent_dispatches = on_control(node, move |m, d, _| {
                if !m.room_exists(&r.room) {
                    return Err(Failure::Room(RoomError::RoomNotFound));
                }
                Ok(d.list_dispatch(&r.room, &r.dispatch_id))
            })
            .await?;
            Ok(format.encode(&pb::ListAgentDispatchResponse { agent_dispatches }))
        }
        _ => Err(TwirpError::bad_route(
            format!("no handler for path \"/twirp/{SERVICE}/{method}\""),
            "POST",
            &format!("/twirp/{SERVICE}/{method}"),
        )),
    }
}
