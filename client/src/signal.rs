//! The signalling WebSocket: the URL (`/rtc/v1` with a `join_request`, or `/rtc` with query
//! parameters), the token as a Bearer header, binary protobuf frames, and the first-message
//! rule (a JoinResponse, or a leave that refuses the join).

use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use lkr_proto::pb;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;

/// The signalling protocol version we speak.
pub const PROTOCOL_VERSION: i32 = 17;

/// Read buffer of the signal WebSocket (a larger message still grows it to fit).
const WS_READ_BUFFER: usize = 4096;

/// How long the server may take to send the JoinResponse.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// An open signalling WebSocket.
pub type SignalStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the join asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSettings {
    /// Single peer connection over `/rtc/v1` (the default), or dual over `/rtc`.
    pub single_pc: bool,
    /// Subscribe to every track in the room automatically.
    pub auto_subscribe: bool,
}

impl Default for JoinSettings {
    fn default() -> Self {
        Self {
            single_pc: true,
            auto_subscribe: true,
        }
    }
}

fn client_info() -> pb::ClientInfo {
    pb::ClientInfo {
        sdk: pb::client_info::Sdk::Rust as i32,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        os: std::env::consts::OS.to_owned(),
        ..Default::default()
    }
}

/// The `join_request` parameter: base64url (padded) of a WrappedJoinRequest holding an
/// uncompressed JoinRequest.
pub fn join_request_param(settings: &JoinSettings) -> String {
    let join = pb::JoinRequest {
        client_info: Some(client_info()),
        connection_settings: Some(pb::ConnectionSettings {
            auto_subscribe: settings.auto_subscribe,
            adaptive_stream: false,
            ..Default::default()
        }),
        ..Default::default()
    };
    let wrapped = pb::WrappedJoinRequest {
        compression: pb::wrapped_join_request::Compression::None as i32,
        join_request: join.encode_to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(wrapped.encode_to_vec())
}

/// The signalling URL for a server URL (`ws`, `wss`, `http` or `https`, with an optional path
/// prefix).
pub fn signal_url(server_url: &str, settings: &JoinSettings) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: server_url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = server_url.trim();
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("http", trimmed));
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => {
            return Err(bad("TLS is not supported: use ws:// or http://"));
        }
        other => return Err(bad(&format!("unsupported scheme {other:?}"))),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("missing host"));
    }
    let base = rest.trim_end_matches('/');
    let url = if settings.single_pc {
        let param = join_request_param(settings).replace('=', "%3D");
        format!("{scheme}://{base}/rtc/v1?join_request={param}")
    } else {
        format!(
            "{scheme}://{base}/rtc?auto_subscribe={}&sdk=rust&version={}&protocol={PROTOCOL_VERSION}&adaptive_stream=0",
            u8::from(settings.auto_subscribe),
            env!("CARGO_PKG_VERSION"),
        )
    };
    Ok(url)
}

/// Opens the WebSocket with the token as a Bearer header and waits for the JoinResponse.
pub async fn connect(
    server_url: &str,
    token: &str,
    settings: &JoinSettings,
) -> Result<(SignalStream, pb::JoinResponse), ClientError> {
    let url = signal_url(server_url, settings)?;
    let shown = url.split('?').next().unwrap_or_default().to_owned();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl {
            url: server_url.to_owned(),
            reason: e.to_string(),
        })?;
    let auth = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        ClientError::Connect {
            url: shown.clone(),
            status: None,
            reason: "the token is not a valid header value".into(),
        }
    })?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, auth);
    // tungstenite zero-fills its whole read buffer before every read: its 128 KiB default
    // costs a 128 KiB memset per signal message read.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER);
    // Nagle's algorithm off (`true`): a message written right after another (an offer
    // after an AddTrackRequest) would otherwise wait for the server's delayed ACK.
    let (mut ws, _) =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                return Err(ClientError::Connect {
                    url: shown,
                    status: Some(status),
                    reason: if body.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {body}")
                    },
                });
            }
            Err(e) => {
                return Err(ClientError::Connect {
                    url: shown,
                    status: None,
                    reason: e.to_string(),
                });
            }
        };
    let first = tokio::time::timeout(JOIN_TIMEOUT, async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(frame) => {
                    if let Some(resp) = decode(&frame) {
                        return Some(resp);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .map_err(|_| ClientError::JoinTimeout(JOIN_TIMEOUT.as_secs()))?;
    use pb::signal_response::Message as Resp;
    match first.and_then(|r| r.message) {
        Some(Resp::Join(join)) => Ok((ws, join)),
        Some(Resp::Leave(leave)) => Err(ClientError::JoinRefused(format!(
            "leave with reason {:?}",
            pb::DisconnectReason::try_from(leave.reason).unwrap_or_default()
        ))),
        Some(other) => Err(ClientError::UnexpectedMessage(format!("{other:?}"))),
        None => Err(ClientError::JoinRefused(
            "the server closed the connection".into(),
        )),
    }
}

/// A request as a binary frame.
pub fn encode(message: pb::signal_request::Message) -> WsMessage {
    WsMessage::Binary(
        pb::SignalRequest {
            message: Some(message),
        }
        .encode_to_vec()
        .into(),
    )
}

/// A response from a binary (protobuf) or text (protobuf-JSON) frame.
pub fn decode(frame: &WsMessage) -> Option<pb::SignalResponse> {
    match frame {
        WsMessage::Binary(b) => pb::SignalResponse::decode(b.as_ref()).ok(),
        WsMessage::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let v1 = JoinSettings::default();
        let u = signal_url("http://127.0.0.1:7880", &v1).unwrap();
        assert!(
            u.starts_with("ws://127.0.0.1:7880/rtc/v1?join_request="),
            "{u}"
        );
        let u = signal_url("ws://h:1/prefix/", &v1).unwrap();
        assert!(u.starts_with("ws://h:1/prefix/rtc/v1?"), "{u}");
        let v0 = JoinSettings {
            single_pc: false,
            auto_subscribe: false,
        };
        let u = signal_url("localhost:7880", &v0).unwrap();
        assert!(
            u.starts_with("ws://localhost:7880/rtc?auto_subscribe=0&"),
            "{u}"
        );
        assert!(signal_url("wss://x", &v1).is_err());
        assert!(signal_url("ftp://x", &v1).is_err());
        assert!(signal_url("http://", &v1).is_err());
    }

    #[test]
    fn join_request_decodes() {
        let s = JoinSettings {
            single_pc: true,
            auto_subscribe: false,
        };
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(join_request_param(&s))
            .unwrap();
        let w = pb::WrappedJoinRequest::decode(raw.as_slice()).unwrap();
        let j = pb::JoinRequest::decode(w.join_request.as_slice()).unwrap();
        assert_eq!(j.client_info.unwrap().protocol, PROTOCOL_VERSION);
        assert!(!j.connection_settings.unwrap().auto_subscribe);
    }
}
