//! The one HTTP port: health, Twirp, and (with the media plane) signalling.
//!
//! What a client can make this listener hold is bounded (`limit:` in the configuration):
//! connections open at once (WebSockets included; more get a 503 and are closed), the time to
//! send request headers (which is also the longest idle keep-alive), the time and size of a
//! Twirp body, which is read only after the request's token was verified from its headers,
//! and the time from a WebSocket's `101` answer to a usable socket.

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use lkr_signal::join::http_headers::HeaderView;
use lkr_signal::join::{JoinError, SignalPath, parse_join};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::auth;
use crate::cluster::{Forwarded, Route, Target};
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

/// A connection's place under `limit.max_http_connections`, carried in each request's
/// extensions so that a WebSocket keeps it after the HTTP exchange is over.
#[derive(Clone)]
struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// An upgraded connection that keeps its [`ConnectionSlot`] for as long as the socket lives
/// (not the task that serves it), so a WebSocket counts under the cap until it is dropped.
struct SlottedIo {
    io: TokioIo<hyper::upgrade::Upgraded>,
    _slot: Option<ConnectionSlot>,
}

impl tokio::io::AsyncRead for SlottedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SlottedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Answers one request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if crate::whip::is_route(&path) {
        return crate::whip::handle(node, req).await;
    }
    let resp = if req.method() == Method::OPTIONS {
        preflight()
    } else if path == "/" && req.method() == Method::GET {
        // Healthy only while the media plane runs: signalling without media is no service.
        if !node.control.media_up() {
            text(StatusCode::SERVICE_UNAVAILABLE, "media plane is down")
        } else {
            text(StatusCode::OK, "OK")
        }
    } else if crate::node_page::is_node_path(&path) {
        crate::node_page::handle(&node, req).await
    } else if let Some(sig) = signal_path(&path) {
        signal(node, req, sig).await
    } else if path == "/agent" {
        agent_worker(node, req).await
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
    if let Some(cluster) = node.cluster.get().cloned()
        && !cluster.is_relayed(req.headers())
    {
        let create = node.settings.auto_create && !validate;
        match cluster.route(&node, &params.room, create).await {
            Ok(Route::Here) => {}
            Ok(Route::There(owner)) => {
                return relay_signal(&node, req, &cluster, &owner, validate).await;
            }
            Err(e) => return join_error(&JoinError::new(503, e.to_string())),
        }
    }
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
    let Some(key) = websocket_key(&req) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let joined = node.control.join(params.to_join()).await;
    if params.reconnect && !matches!(joined, Ok(Ok(_))) {
        tracing::debug!(participant = %params.participant_sid, "resume refused; asking for a full reconnect");
        spawn_upgraded(
            &node,
            &mut req,
            lkr_signal::session::refuse_resume,
            |_| async {},
        );
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
    let (psid, link) = (joined.participant_sid.clone(), joined.link);
    let on_failure = control.clone();
    spawn_upgraded(
        &node,
        &mut req,
        move |ws| lkr_signal::session::run(ws, control, joined),
        move |why| async move {
            tracing::debug!(participant = %psid, "websocket upgrade {why}");
            let _ = on_failure.lost(&psid, link).await;
        },
    );
    switching_protocols(&key)
}

/// A signal connection (or its `/validate` twin) for a room that lives on `owner`: the
/// client's WebSocket is relayed to the same route there, with the same token, and the
/// owner's refusal, if any, is the client's answer.
async fn relay_signal(
    node: &Node,
    mut req: Request<Incoming>,
    cluster: &crate::cluster::Cluster,
    owner: &lkr_cluster::NodeInfo,
    validate: bool,
) -> Resp {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    if validate {
        return cluster
            .validate(owner, &path_and_query, authorization.as_ref())
            .await;
    }
    let Some(key) = websocket_key(&req) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let config = ws_config(node);
    let upstream = match cluster
        .connect_upstream(owner, &path_and_query, authorization.as_ref(), config)
        .await
    {
        Ok(ws) => ws,
        Err(refusal) => return refusal,
    };
    tracing::debug!(node = %owner.id, "signal connection relayed to the room's node");
    spawn_upgraded(
        node,
        &mut req,
        move |ws| crate::cluster::pipe(ws, upstream),
        |_| async {},
    );
    switching_protocols(&key)
}

/// `/agent`: an agent worker's WebSocket (LiveKit Agents). The token (header or
/// `access_token`) must carry the `agent` grant; its API key signs the tokens of the agents
/// the worker runs. Refusals are LiveKit's: 404 for a request that is not an upgrade, 401
/// without the grant, 503 past the cap on connected workers.
async fn agent_worker(node: Arc<Node>, mut req: Request<Incoming>) -> Resp {
    let Some(key) = websocket_key(&req) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let claims = match auth::authenticate(req.headers(), req.uri().query(), &node.settings.keys) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = ?e, "agent worker refused");
            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return r;
        }
    };
    let Some(claims) = claims.filter(|c| c.video.as_ref().is_some_and(|v| v.agent)) else {
        tracing::debug!("agent worker refused: no agent grant");
        return text(
            StatusCode::UNAUTHORIZED,
            "no permissions to access the room",
        );
    };
    use lkr_proto::token::KeyProvider as _;
    let secret = node
        .settings
        .keys
        .secret(&claims.iss)
        .unwrap_or_default()
        .to_string();
    let joined = match node.control.worker_connect(&claims.iss, &secret).await {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => {
            tracing::info!("agent worker refused: {e}");
            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return r;
        }
        Err(e) => return join_error(&JoinError::new(503, e.to_string())),
    };
    let control = node.control.clone();
    let (conn, on_failure) = (joined.conn, control.clone());
    spawn_upgraded(
        &node,
        &mut req,
        move |ws| lkr_signal::agents::run_worker(ws, control, joined),
        move |why| async move {
            tracing::debug!(worker = conn, "agent worker upgrade {why}");
            let _ = on_failure.worker_gone(conn).await;
        },
    );
    switching_protocols(&key)
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request; `None` for anything else (which
/// is answered 404, as LiveKit does).
fn websocket_key(req: &Request<Incoming>) -> Option<HeaderValue> {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    req.headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade)
        .cloned()
}

/// Serves the WebSocket that `req` upgrades to, in a task of its own: waits for the upgrade
/// (up to `limit.websocket_upgrade_timeout`), wraps it with the connection's slot and hands it
/// to `serve`; an upgrade that fails or times out goes to `failed` with what happened.
fn spawn_upgraded<S, SF, F, FF>(node: &Node, req: &mut Request<Incoming>, serve: S, failed: F)
where
    S: FnOnce(WebSocketStream<SlottedIo>) -> SF + Send + 'static,
    SF: Future<Output = ()> + Send,
    F: FnOnce(String) -> FF + Send + 'static,
    FF: Future<Output = ()> + Send,
{
    let slot = req.extensions_mut().remove::<ConnectionSlot>();
    let upgrade_timeout = node.settings.limits.websocket_upgrade_timeout;
    let config = ws_config(node);
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match tokio::time::timeout(upgrade_timeout, on_upgrade).await {
            Ok(Ok(upgraded)) => {
                let io = SlottedIo {
                    io: TokioIo::new(upgraded),
                    _slot: slot,
                };
                let ws = WebSocketStream::from_raw_socket(
                    io,
                    tungstenite::protocol::Role::Server,
                    Some(config),
                )
                .await;
                serve(ws).await;
            }
            Ok(Err(e)) => failed(format!("failed: {e}")).await,
            Err(_) => failed("timed out".to_string()).await,
        }
    });
}

/// Read buffer of a WebSocket: tungstenite zero-fills the whole buffer before every read
/// (every poll, even one that finds nothing), so its 128 KiB default cost a 128 KiB memset per
/// read of a few hundred bytes; a frame larger than this still grows the buffer to fit.
const WS_READ_BUFFER: usize = 4096;

/// The configuration of every WebSocket this port serves (or relays): the signal message
/// limit and a small read buffer.
fn ws_config(node: &Node) -> WebSocketConfig {
    let limit = match node.settings.limits.signal_message_size_limit {
        0 => None,
        n => Some(n),
    };
    WebSocketConfig::default()
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(WS_READ_BUFFER)
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
    let known = service == room_service::SERVICE
        || service == crate::egress::SERVICE
        || service == crate::agent_service::SERVICE;
    if !known || rpc.is_empty() || rpc.contains('/') {
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
    // Credentials come from the headers (or the query), and are checked before a single
    // body byte is read: a request without a valid token costs no body reading or decoding.
    let claims = auth::authenticate(req.headers(), req.uri().query(), &node.settings.keys)
        .map_err(|e| {
            tracing::debug!(error = ?e, "twirp request refused");
            TwirpError::new(Code::Unauthenticated, e.to_string())
        })?
        .ok_or_else(|| TwirpError::new(Code::Unauthenticated, "permissions denied"))?;
    // So is the grant the method needs whatever its request: a token that cannot call it
    // (a participant's roomJoin token, say) costs no body reading or decoding either.
    if service == crate::egress::SERVICE {
        crate::egress::precheck(&claims)?;
    } else if service == crate::agent_service::SERVICE {
        crate::agent_service::precheck(rpc, &claims)?;
    } else {
        room_service::precheck(rpc, &claims)?;
    }
    let cluster = node
        .cluster
        .get()
        .filter(|c| !c.is_relayed(req.headers()))
        .cloned();
    let mut call = Forwarded {
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        content_type: HeaderValue::from_str(&ct)
            .unwrap_or(HeaderValue::from_static("application/json")),
        authorization: req.headers().get(header::AUTHORIZATION).cloned(),
        timeout: crate::cluster::FORWARD_TIMEOUT,
    };
    let body = match read_body(&node.settings, req).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let Some(cluster) = cluster else {
        return dispatch(node, service, rpc, format, &claims, &body).await;
    };
    call.timeout = crate::cluster::forward_timeout(service, rpc, format, &body);
    match crate::cluster::twirp_target(service, rpc, format, &body) {
        Target::Here => dispatch(node, service, rpc, format, &claims, &body).await,
        Target::Room { name, create } => match cluster.route(node, &name, create).await {
            Ok(Route::Here) => dispatch(node, service, rpc, format, &claims, &body).await,
            Ok(Route::There(owner)) => Ok(cluster.forward(&owner, &call, body).await),
            Err(e) => Err(TwirpError::new(Code::Unavailable, e.to_string())),
        },
        Target::Everywhere => {
            let local = dispatch(node, service, rpc, format, &claims, &body).await?;
            if service == crate::egress::SERVICE {
                cluster.list_egress(&call, format, body, local).await
            } else {
                cluster.list_rooms(&call, format, body, local).await
            }
        }
        Target::FirstFound => {
            let local = match dispatch(node, service, rpc, format, &claims, &body).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
            Ok(cluster.first_found(&call, body, local).await)
        }
    }
}

/// Runs a Twirp call on this node.
async fn dispatch(
    node: &Node,
    service: &str,
    rpc: &str,
    format: Format,
    claims: &lkr_proto::token::Claims,
    body: &[u8],
) -> Result<Resp, TwirpError> {
    if service == crate::egress::SERVICE {
        return crate::egress::dispatch(node, rpc, format, claims, body).await;
    }
    if service == crate::agent_service::SERVICE {
        return crate::agent_service::dispatch(node, rpc, format, Some(claims), body).await;
    }
    room_service::dispatch(node, rpc, format, Some(claims), body).await
}

/// Reads a request body within `limit.max_api_request_body_size` and
/// `limit.http_read_body_timeout`; the refusal is LiveKit's `413 request body too large`,
/// or `408` for a body that does not arrive in time.
async fn read_body(
    settings: &crate::config::Settings,
    req: Request<Incoming>,
) -> Result<Bytes, Resp> {
    let limit = match settings.max_api_request_body_size {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let read = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(settings.limits.http_read_body_timeout, read).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "request body read timed out",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body unreadable");
            Err(TwirpError::new(Code::Malformed, "failed to read request body").into_response())
        }
        Ok(Ok(body)) => Ok(body.to_bytes()),
    }
}

/// The whole answer to a connection over `limit.max_http_connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n\
too many connections";

/// Serves HTTP on `listener` until the future is dropped.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let limits = node.settings.limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_http_connections));
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over the cap the connection gets a 503 if its socket takes it at once (never
        // waiting), and is closed: it holds nothing, and the clients already connected are
        // served as before.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, cap = limits.max_http_connections, "connection refused: too many open");
            let _ = stream.try_write(TOO_MANY_CONNECTIONS);
            drop(stream);
            continue;
        };
        // Signal messages are small and often written back to back (an answer, then an
        // update): with Nagle's algorithm the second would wait for the client's delayed
        // ACK, up to 40 ms. Go, and so LiveKit, turns it off on every connection.
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot(Arc::new(slot));
        let node = node.clone();
        let header_timeout = limits.http_read_header_timeout;
        tokio::spawn(async move {
            let svc = service_fn(move |mut req: Request<Incoming>| {
                // A request is not a keepalive: the signalling threads stop pacing.
                node.control.pacer().busy();
                let node = node.clone();
                req.extensions_mut().insert(slot.clone());
                async move { Ok::<_, Infallible>(handle(node, req).await) }
            });
            // The header timeout also ends keep-alive connections left idle, and those whose
            // client went away without closing.
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}
