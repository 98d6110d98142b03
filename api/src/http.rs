//! The one HTTP port: health, Twirp, and (with the media plane) signalling.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use lkr_signal::join::http_headers::HeaderView;
use lkr_signal::join::{JoinError, SignalPath, parse_join};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::auth;

/// Largest signalling message accepted, as LiveKit's `signal_message_size_limit`.
const SIGNAL_MESSAGE_LIMIT: usize = 2 << 20;
use crate::node::Node;
use crate::room_service;
use crate::twirp::{Code, Format, TwirpError};

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every origin, method and header is allowed, as LiveKit's CORS middleware does.
fn with_cors(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn preflight() -> Resp {
    let mut r = text(StatusCode::NO_CONTENT, "");
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// Answers one request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let resp = if req.method() == Method::OPTIONS {
        preflight()
    } else if path == "/" && req.method() == Method::GET {
        // Healthy only while the media plane runs: signalling without media is no service.
        if !node.control.media_up() {
            text(StatusCode::SERVICE_UNAVAILABLE, "media plane is down")
        } else {
            text(StatusCode::OK, "OK")
        }
    } else if let Some(sig) = signal_path(&path) {
        signal(node, req, sig).await
    } else if let Some(rest) = path.strip_prefix("/twirp/") {
        let rest = rest.to_string();
        let (service, method) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
        let (resp, code) = match twirp(&node, req, &rest).await {
            Ok(r) => (r, ""),
            Err(e) => {
                tracing::debug!(path = %path, code = e.code.as_str(), msg = %e.msg, "twirp error");
                let code = e.code.as_str();
                (e.into_response(), code)
            }
        };
        node.counters
            .twirp(service, method, resp.status().as_u16(), code);
        resp
    } else {
        text(StatusCode::NOT_FOUND, "404 page not found")
    };
    with_cors(resp)
}

/// Which signalling route a path is, and whether it is the `/validate` twin.
fn signal_path(path: &str) -> Option<(SignalPath, bool)> {
    match path {
        "/rtc" => Some((SignalPath::V0, false)),
        "/rtc/validate" => Some((SignalPath::V0, true)),
        "/rtc/v1" => Some((SignalPath::V1, false)),
        "/rtc/v1/validate" => Some((SignalPath::V1, true)),
        _ => None,
    }
}

fn join_error(e: &JoinError) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(e.message.clone())));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `/rtc`, `/rtc/v1` (WebSocket upgrade) and their `/validate` twins.
async fn signal(
    node: Arc<Node>,
    mut req: Request<Incoming>,
    (path, validate): (SignalPath, bool),
) -> Resp {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = HeaderView {
        authorization: auth.as_deref(),
    };
    let params = match parse_join(path, &headers, req.uri().query(), &node.settings.keys) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(path = %req.uri().path(), status = e.status, msg = %e.message, "join refused");
            return join_error(&e);
        }
    };
    if validate {
        let room = params.room.clone();
        let missing = !node.settings.auto_create
            && !node
                .control
                .call(move |m, _| m.room_exists(&room))
                .await
                .unwrap_or(false);
        if missing {
            return join_error(&JoinError::new(404, "requested room does not exist"));
        }
        return text(StatusCode::OK, "success");
    }
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if !is_upgrade {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let joined = node.control.join(params.to_join()).await;
    if params.reconnect && !matches!(joined, Ok(Ok(_))) {
        tracing::debug!(participant = %params.participant_sid, "resume refused; asking for a full reconnect");
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                lkr_signal::session::refuse_resume(ws).await;
            }
        });
        return switching_protocols(&key);
    }
    let joined = match joined {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => {
            node.counters
                .join_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return join_error(&JoinError::new(e.join_status(), e.to_string()));
        }
        Err(e) => return join_error(&JoinError::new(503, e.to_string())),
    };
    let control = node.control.clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(SIGNAL_MESSAGE_LIMIT))
                    .max_frame_size(Some(SIGNAL_MESSAGE_LIMIT));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tungstenite::protocol::Role::Server,
                    Some(config),
                )
                .await;
                lkr_signal::session::run(ws, control, joined).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "websocket upgrade failed");
                let _ = control.lost(&joined.participant_sid, joined.link).await;
            }
        }
    });
    switching_protocols(&key)
}

/// The 101 answer to a WebSocket upgrade with `key`.
fn switching_protocols(key: &HeaderValue) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

async fn twirp(node: &Node, req: Request<Incoming>, rest: &str) -> Result<Resp, TwirpError> {
    let full_path = format!("/twirp/{rest}");
    let method = req.method().as_str().to_string();
    if req.method() != Method::POST {
        return Err(TwirpError::bad_route(
            format!("unsupported method {method:?} (only POST is allowed)"),
            &method,
            &full_path,
        ));
    }
    let Some((service, rpc)) = rest.split_once('/') else {
        return Err(TwirpError::bad_route(
            format!("no handler for path {full_path:?}"),
            &method,
            &full_path,
        ));
    };
    if service != room_service::SERVICE || rpc.is_empty() || rpc.contains('/') {
        return Err(TwirpError::bad_route(
            format!("no handler for path {full_path:?}"),
            &method,
            &full_path,
        ));
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(format) = Format::from_content_type(&ct) else {
        return Err(TwirpError::bad_route(
            format!("unexpected Content-Type: {ct:?}"),
            &method,
            &full_path,
        ));
    };
    let claims = auth::authenticate(req.headers(), req.uri().query(), &node.settings.keys)
        .map_err(|e| TwirpError::new(Code::Unauthenticated, e.to_string()))?;
    let limit = usize::try_from(node.settings.max_api_request_body_size).unwrap_or(usize::MAX);
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| TwirpError::new(Code::Malformed, format!("failed to read request body: {e}")))?
        .to_bytes();
    room_service::dispatch(node, rpc, format, claims.as_ref(), &body).await
}

/// Serves HTTP on `listener` until the future is dropped.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(handle(node, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}
