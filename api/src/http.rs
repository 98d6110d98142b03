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

use crate::auth;
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
        text(StatusCode::OK, "OK")
    } else if let Some(rest) = path.strip_prefix("/twirp/") {
        let rest = rest.to_string();
        match twirp(&node, req, &rest).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(path = %path, code = e.code.as_str(), msg = %e.msg, "twirp error");
                e.into_response()
            }
        }
    } else {
        text(StatusCode::NOT_FOUND, "404 page not found")
    };
    with_cors(resp)
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
    room_service::dispatch(node, rpc, format, claims.as_ref(), &body)
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
