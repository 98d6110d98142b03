//! A Twirp client for `livekit.RoomService`, with protobuf bodies (as `lk` and the Go, Python
//! and Rust SDKs send them).
//!
//! Each call is `POST {base}/twirp/livekit.RoomService/<Method>` with
//! `Content-Type: application/protobuf` and `Authorization: Bearer <jwt>`. The token is signed
//! per call, lives 10 minutes (as the Node SDK's) and carries only the grant that call needs:
//! `roomCreate` for CreateRoom and DeleteRoom, `roomList` for ListRooms, and `roomAdmin` for
//! the named room for everything else. A 200 answer holds the protobuf response; any other
//! status holds a Twirp JSON error `{"code","msg"}`, or, from servers whose auth layer answers
//! before Twirp, plain text.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lkr_proto::pb;
use lkr_proto::token::{AccessToken, VideoGrant};
use prost::Message;

use super::Error;
use super::connection::{Credentials, ServerUrl};

/// The Twirp service name, fully qualified.
pub const SERVICE: &str = "livekit.RoomService";
/// Lifetime of the token signed for each call.
pub const CALL_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const PROTOBUF: &str = "application/protobuf";

/// A RoomService client for one server and one API key.
#[derive(Debug, Clone)]
pub struct RoomClient {
    base: String,
    creds: Credentials,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl RoomClient {
    /// A client for `url`; `https`/`wss` are refused, as this client has no TLS.
    pub fn new(url: &ServerUrl, creds: Credentials) -> Result<Self, Error> {
        let base = url.http_base()?.to_owned();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CALL_TIMEOUT));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { base, creds, http })
    }

    /// The URL of `method`.
    pub fn method_url(&self, method: &str) -> String {
        format!("{}/twirp/{SERVICE}/{method}", self.base)
    }

    pub async fn create_room(&self, req: pb::CreateRoomRequest) -> Result<pb::Room, Error> {
        self.call("CreateRoom", create_grant(), &req).await
    }

    pub async fn list_rooms(
        &self,
        req: pb::ListRoomsRequest,
    ) -> Result<pb::ListRoomsResponse, Error> {
        let grant = VideoGrant {
            room_list: true,
            ..Default::default()
        };
        self.call("ListRooms", grant, &req).await
    }

    pub async fn delete_room(
        &self,
        req: pb::DeleteRoomRequest,
    ) -> Result<pb::DeleteRoomResponse, Error> {
        self.call("DeleteRoom", create_grant(), &req).await
    }

    pub async fn update_room_metadata(
        &self,
        req: pb::UpdateRoomMetadataRequest,
    ) -> Result<pb::Room, Error> {
        let grant = admin_grant(&req.room);
        self.call("UpdateRoomMetadata", grant, &req).await
    }

    pub async fn list_participants(
        &self,
        req: pb::ListParticipantsRequest,
    ) -> Result<pb::ListParticipantsResponse, Error> {
        let grant = admin_grant(&req.room);
        self.call("ListParticipants", grant, &req).await
    }

    pub async fn get_participant(
        &self,
        req: pb::RoomParticipantIdentity,
    ) -> Result<pb::ParticipantInfo, Error> {
        let grant = admin_grant(&req.room);
        self.call("GetParticipant", grant, &req).await
    }

    pub async fn remove_participant(
        &self,
        req: pb::RoomParticipantIdentity,
    ) -> Result<pb::RemoveParticipantResponse, Error> {
        let grant = admin_grant(&req.room);
        self.call("RemoveParticipant", grant, &req).await
    }

    pub async fn update_participant(
        &self,
        req: pb::UpdateParticipantRequest,
    ) -> Result<pb::ParticipantInfo, Error> {
        let grant = admin_grant(&req.room);
        self.call("UpdateParticipant", grant, &req).await
    }

    pub async fn mute_published_track(
        &self,
        req: pb::MuteRoomTrackRequest,
    ) -> Result<pb::MuteRoomTrackResponse, Error> {
        let grant = admin_grant(&req.room);
        self.call("MutePublishedTrack", grant, &req).await
    }

    pub async fn update_subscriptions(
        &self,
        req: pb::UpdateSubscriptionsRequest,
    ) -> Result<pb::UpdateSubscriptionsResponse, Error> {
        let grant = admin_grant(&req.room);
        self.call("UpdateSubscriptions", grant, &req).await
    }

    pub async fn send_data(&self, req: pb::SendDataRequest) -> Result<pb::SendDataResponse, Error> {
        let grant = admin_grant(&req.room);
        self.call("SendData", grant, &req).await
    }

    /// One Twirp call: sign, post, decode.
    async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &'static str,
        grant: VideoGrant,
        req: &Req,
    ) -> Result<Resp, Error> {
        let url = self.method_url(method);
        let jwt = AccessToken::new(&self.creds.api_key, &self.creds.api_secret)
            .with_grant(grant)
            .with_ttl(CALL_TOKEN_TTL)
            .to_jwt()?;
        let request = Request::post(&url)
            .header(CONTENT_TYPE, PROTOBUF)
            .header(AUTHORIZATION, format!("Bearer {jwt}"))
            .header(
                USER_AGENT,
                concat!("livekit-cli/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(req.encode_to_vec())))
            .map_err(|e| Error::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| Error::Timeout {
                url: self.base.clone(),
                secs: CALL_TIMEOUT.as_secs(),
            })??;
        if status == StatusCode::OK {
            Resp::decode(body).map_err(|source| Error::Decode { method, source })
        } else {
            Err(server_error(status, &body))
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Error> {
        let response = self.http.request(request).await.map_err(|e| {
            let reason = root_cause(&e);
            if e.is_connect() {
                Error::Connect {
                    url: self.base.clone(),
                    reason,
                }
            } else {
                Error::Transport {
                    url: self.base.clone(),
                    reason,
                }
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| Error::Transport {
                url: self.base.clone(),
                reason: format!("reading the response body: {e}"),
            })?
            .to_bytes();
        Ok((status, body))
    }
}

/// The grant for CreateRoom and DeleteRoom.
fn create_grant() -> VideoGrant {
    VideoGrant {
        room_create: true,
        ..Default::default()
    }
}

/// The grant for calls on one room: `roomAdmin` for that room.
fn admin_grant(room: &str) -> VideoGrant {
    VideoGrant {
        room_admin: true,
        room: room.to_owned(),
        ..Default::default()
    }
}

/// The Twirp error in a non-200 answer.
fn server_error(status: StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct TwirpError {
        code: String,
        #[serde(default)]
        msg: String,
    }
    if let Ok(e) = serde_json::from_slice::<TwirpError>(body) {
        return Error::Server {
            status: status.as_u16(),
            code: e.code,
            msg: e.msg,
        };
    }
    // Not Twirp JSON: name the code that Twirp gives this status, and pass the text on.
    let code = match status.as_u16() {
        400 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        408 => "deadline_exceeded",
        409 => "already_exists",
        412 => "failed_precondition",
        429 | 413 => "resource_exhausted",
        501 => "unimplemented",
        503 => "unavailable",
        500 => "internal",
        _ => "unknown",
    };
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let msg = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    };
    Error::Server {
        status: status.as_u16(),
        code: code.into(),
        msg,
    }
}

/// The innermost cause of `err`, e.g. `Connection refused (os error 111)`.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twirp_json_errors_and_plain_text() {
        let e = server_error(
            StatusCode::NOT_FOUND,
            br#"{"code":"not_found","msg":"requested room does not exist"}"#,
        );
        assert_eq!(e.to_string(), "not_found: requested room does not exist");
        let e = server_error(
            StatusCode::UNAUTHORIZED,
            b"invalid authorization token: token is expired\n",
        );
        assert_eq!(
            e.to_string(),
            "unauthenticated: HTTP 401 Unauthorized: invalid authorization token: token is expired"
        );
        assert!(matches!(
            server_error(StatusCode::BAD_GATEWAY, b""),
            Error::Server { status: 502, .. }
        ));
    }
}
