//! Twirp framing: content types, error codes and their HTTP statuses.
//!
//! Requests carry protobuf (`application/protobuf`) or protobuf-JSON (`application/json`,
//! camelCase or snake_case keys, unknown fields ignored); the answer uses the request's
//! format. Errors are always the Twirp JSON body `{"code","msg"}` with the status Twirp
//! assigns to the code.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Serialize, de::DeserializeOwned};

/// Twirp error codes (the ones this server produces and their status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    Malformed,
    NotFound,
    BadRoute,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    FailedPrecondition,
    Unimplemented,
    Internal,
    Unavailable,
    Canceled,
}

impl Code {
    /// The code as written in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::Malformed => "malformed",
            Code::NotFound => "not_found",
            Code::BadRoute => "bad_route",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::Unauthenticated => "unauthenticated",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Canceled => "canceled",
        }
    }

    /// The code written as `name` in an error body.
    pub fn from_name(name: &str) -> Option<Code> {
        const ALL: [Code; 13] = [
            Code::InvalidArgument,
            Code::Malformed,
            Code::NotFound,
            Code::BadRoute,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::Canceled,
        ];
        ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The HTTP status Twirp pairs with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::Malformed => StatusCode::BAD_REQUEST,
            Code::NotFound | Code::BadRoute => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Canceled => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// A Twirp error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    pub code: Code,
    pub msg: String,
    /// Optional `meta` entry, e.g. `twirp_invalid_route`.
    pub meta: Option<(String, String)>,
}

impl TwirpError {
    /// An error with `code` and `msg`.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            meta: None,
        }
    }

    /// A `bad_route` error for `method path`, with Twirp's meta entry.
    pub fn bad_route(msg: impl Into<String>, method: &str, path: &str) -> Self {
        Self {
            code: Code::BadRoute,
            msg: msg.into(),
            meta: Some(("twirp_invalid_route".into(), format!("{method} {path}"))),
        }
    }

    /// The HTTP answer for this error.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({ "code": self.code.as_str(), "msg": self.msg });
        if let Some((k, v)) = self.meta {
            body["meta"] = serde_json::json!({ k: v });
        }
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.code.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<lkr_room::RoomError> for TwirpError {
    fn from(e: lkr_room::RoomError) -> Self {
        // The room crate names the code (its one mapping of errors to wire forms).
        let code = Code::from_name(e.twirp_code()).unwrap_or(Code::Internal);
        TwirpError::new(code, e.to_string())
    }
}

/// The body format of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The format named by a Content-Type header value (parameters ignored).
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let mime = ct.split(';').next().unwrap_or_default().trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/protobuf" | "application/x-protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Decodes a request body.
    pub fn decode<T: prost::Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<T, TwirpError> {
        match self {
            // Twirp's own words; the decoder's detail goes to the debug log only.
            Format::Protobuf => T::decode(body).map_err(|e| {
                tracing::debug!(error = %e, "protobuf request body refused");
                TwirpError::new(Code::Malformed, "the protobuf request could not be decoded")
            }),
            Format::Json => {
                let body = if body.iter().all(u8::is_ascii_whitespace) {
                    b"{}"
                } else {
                    body
                };
                serde_json::from_slice(body).map_err(|e| {
                    tracing::debug!(error = %e, "json request body refused");
                    TwirpError::new(Code::Malformed, "the json request could not be decoded")
                })
            }
        }
    }

    /// Encodes an answer.
    pub fn encode<T: prost::Message + Serialize>(self, msg: &T) -> Response<Full<Bytes>> {
        let (body, ct) = match self {
            Format::Protobuf => (msg.encode_to_vec(), "application/protobuf"),
            Format::Json => match serde_json::to_vec(msg) {
                Ok(b) => (b, "application/json"),
                Err(e) => {
                    return TwirpError::new(Code::Internal, format!("encoding the answer: {e}"))
                        .into_response();
                }
            },
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_proto::pb;

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type("application/json;charset=UTF-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }

    #[test]
    fn json_accepts_both_casings_and_unknown_fields() {
        let a: pb::CreateRoomRequest = Format::Json
            .decode(br#"{"name":"r1","emptyTimeout":600,"maxParticipants":20,"whatever":1}"#)
            .unwrap();
        let b: pb::CreateRoomRequest = Format::Json
            .decode(br#"{"name":"r1","empty_timeout":600,"max_participants":20}"#)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.empty_timeout, 600);
        let e = Format::Json
            .decode::<pb::CreateRoomRequest>(b"{nope")
            .unwrap_err();
        assert_eq!(e.code, Code::Malformed);
        assert_eq!(e.msg, "the json request could not be decoded");
        let e = Format::Protobuf
            .decode::<pb::CreateRoomRequest>(&[0x0a, 0xff, 0xff])
            .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (Code::Malformed, "the protobuf request could not be decoded")
        );
    }

    #[test]
    fn protobuf_body_from_python_sdk() {
        // CreateRoom body as captured from livekit-api 1.2.2.
        let body = [
            0x0a, 0x02, 0x72, 0x31, 0x10, 0xd8, 0x04, 0x18, 0x14, 0x2a, 0x01, 0x6d,
        ];
        let r: pb::CreateRoomRequest = Format::Protobuf.decode(&body).unwrap();
        assert_eq!(
            (r.name.as_str(), r.empty_timeout, r.max_participants),
            ("r1", 600, 20)
        );
        assert_eq!(r.metadata, "m");
    }

    #[test]
    fn error_body_and_status() {
        let r = TwirpError::bad_route("no handler", "GET", "/twirp/x").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = TwirpError::new(Code::Unauthenticated, "x").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}
