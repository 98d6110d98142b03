//! The WHIP and WHEP routes: HTTP in, [`lkr_signal::whip::HttpSessions`] calls out.
//!
//! - `POST /whip/v1` (`application/sdp`, `Authorization: Bearer <token>`): publish; the
//!   token names the room and identity. `201 Created` with the answer, `Location:
//!   /whip/v1/{participant_sid}`, `ETag` (the server's ICE ufrag) and a `Link` for each ICE
//!   server URL ([`ice_links`]).
//! - `POST /whep/v1/{room}/{identity}[/{track_sid}][?quality=low|medium|high]`: play that
//!   participant's tracks (or one); `Location: /whep/v1/sessions/{participant_sid}`.
//! - `PATCH` on a session (`application/trickle-ice-sdpfrag`): `If-Match: <etag>` trickles
//!   candidates (`204`), `If-Match: *` restarts ICE (`200` with the server's new fragment
//!   and `ETag`). `DELETE` ends the session (`200`).
//! - `OPTIONS` on any of them: CORS preflight, with `Accept-Post`/`Accept-Patch`; `GET`:
//!   `204`, as LiveKit answers; other methods `405`.
//!
//! Every response carries `Access-Control-Allow-Origin: *` and exposes `Location`, `ETag`,
//! `Link`, `Accept-Patch` and `Accept-Post` to pages of other origins. The token is checked
//! before the body is read; bodies are capped at [`MAX_SDP_BYTES`].

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use lkr_proto::pb;
use lkr_proto::token::Claims;
use lkr_signal::whip::{HttpError, Kind, MAX_SDP_BYTES, PlayRequest};

use crate::auth;
use crate::node::Node;

type Resp = Response<Full<Bytes>>;

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Whether `path` is one of the WHIP/WHEP routes.
pub fn is_route(path: &str) -> bool {
    path == "/whip/v1"
        || path.starts_with("/whip/v1/")
        || path == "/whep/v1"
        || path.starts_with("/whep/v1/")
}

enum Route {
    WhipCreate,
    WhepCreate(PlayPath),
    Session(Kind, String),
}

struct PlayPath {
    room: String,
    identity: String,
    track: Option<String>,
}

fn route(path: &str, method: &Method) -> Option<Route> {
    if path == "/whip/v1" {
        return Some(Route::WhipCreate);
    }
    if let Some(rest) = path.strip_prefix("/whip/v1/") {
        return single_segment(rest).map(|s| Route::Session(Kind::Whip, s));
    }
    let rest = path.strip_prefix("/whep/v1/")?;
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect::<Option<_>>()?;
    if segs.iter().any(String::is_empty) {
        return None;
    }
    match segs.as_slice() {
        [s, psid] if s == "sessions" && *method != Method::POST => {
            Some(Route::Session(Kind::Whep, psid.clone()))
        }
        [room, identity] => Some(Route::WhepCreate(PlayPath {
            room: room.clone(),
            identity: identity.clone(),
            track: None,
        })),
        [room, identity, track] => Some(Route::WhepCreate(PlayPath {
            room: room.clone(),
            identity: identity.clone(),
            track: Some(track.clone()),
        })),
        _ => None,
    }
}

fn single_segment(s: &str) -> Option<String> {
    if s.is_empty() || s.contains('/') {
        return None;
    }
    percent_decode(s)
}

/// Decodes `%XX` escapes of a path segment (UTF-8 only).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn body(status: StatusCode, content_type: &'static str, text: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(text.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error(e: &HttpError) -> Resp {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::debug!(status = status.as_u16(), "WHIP/WHEP request refused: {e}");
    body(status, "text/plain; charset=utf-8", e.to_string())
}

fn plain(status: StatusCode, text: &'static str) -> Resp {
    body(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn cors(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch, Accept-Post"),
    );
    r
}

fn preflight(create: bool) -> Resp {
    let mut r = plain(StatusCode::NO_CONTENT, "");
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    // A wildcard does not cover Authorization (Fetch standard): name every header used.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, If-Match, X-LiveKit-Ingress, X-LiveKit-ClientInfo",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    if create {
        h.insert("accept-post", HeaderValue::from_static(SDP));
    } else {
        h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    }
    r
}

/// Answers one WHIP/WHEP request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let Some(route) = route(&path, req.method()) else {
        return cors(plain(StatusCode::NOT_FOUND, "404 page not found"));
    };
    let method = req.method().clone();
    let resp = match (route, method) {
        (Route::WhipCreate, Method::OPTIONS) | (Route::WhepCreate(_), Method::OPTIONS) => {
            preflight(true)
        }
        (Route::Session(..), Method::OPTIONS) => preflight(false),
        (Route::WhipCreate, Method::POST) => create(&node, req, None).await,
        (Route::WhepCreate(p), Method::POST) => create(&node, req, Some(p)).await,
        (Route::Session(kind, psid), Method::PATCH) => patch(&node, req, kind, &psid).await,
        (Route::Session(kind, psid), Method::DELETE) => delete(&node, req, kind, &psid).await,
        // As LiveKit answers a GET on its WHIP paths.
        (_, Method::GET) => plain(StatusCode::NO_CONTENT, ""),
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
            );
            r
        }
    };
    cors(resp)
}

fn content_type_is(req: &Request<Incoming>, want: &str) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn claims_of(node: &Node, req: &Request<Incoming>) -> Result<Claims, HttpError> {
    match auth::authenticate(req.headers(), req.uri().query(), &node.settings.keys) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(HttpError::Unauthorized(
            "no access token: send Authorization: Bearer <token>".into(),
        )),
        Err(e) => Err(HttpError::Unauthorized(e.to_string())),
    }
}

/// The body, as text, within [`MAX_SDP_BYTES`] and the body timeout.
async fn read_text(node: &Node, req: Request<Incoming>) -> Result<String, Resp> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_SDP_BYTES as u64) {
        return Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let read = Limited::new(req.into_body(), MAX_SDP_BYTES).collect();
    let bytes = match tokio::time::timeout(node.settings.limits.http_read_body_timeout, read).await
    {
        Err(_) => {
            return Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body read timed out",
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        Ok(Err(_)) => {
            return Err(plain(StatusCode::BAD_REQUEST, "request body unreadable"));
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    String::from_utf8(bytes.to_vec())
        .map_err(|_| plain(StatusCode::BAD_REQUEST, "the body is not UTF-8 text"))
}

/// `?quality=low|medium|high` (or `q`/`h`/`f`, `0`/`1`/`2`).
fn quality_of(query: Option<&str>) -> Result<Option<i32>, HttpError> {
    let Some(q) = query else { return Ok(None) };
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k == "quality" {
            let q = match v.to_ascii_lowercase().as_str() {
                "low" | "q" | "0" => 0,
                "medium" | "h" | "1" => 1,
                "high" | "f" | "2" => 2,
                _ => {
                    return Err(HttpError::BadRequest(
                        "quality must be low, medium or high".into(),
                    ));
                }
            };
            return Ok(Some(q));
        }
    }
    Ok(None)
}

async fn create(node: &Node, req: Request<Incoming>, play: Option<PlayPath>) -> Resp {
    if !content_type_is(&req, SDP) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as application/sdp",
        );
    }
    let claims = match claims_of(node, &req) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let ingress = req.headers().contains_key("x-livekit-ingress");
    let quality = match quality_of(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return error(&e),
    };
    let offer = match read_text(node, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let sessions = &node.http_sessions;
    let (created, location_base) = match play {
        None => (
            sessions.create_whip(claims, offer, ingress).await,
            "/whip/v1/",
        ),
        Some(p) => (
            sessions
                .create_whep(
                    claims,
                    PlayRequest {
                        room: p.room,
                        publisher: p.identity,
                        track_sid: p.track,
                        quality,
                    },
                    offer,
                )
                .await,
            "/whep/v1/sessions/",
        ),
    };
    let c = match created {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let mut r = body(StatusCode::CREATED, SDP, c.answer);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{location_base}{}", c.participant_sid)) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", c.etag)) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in ice_links(&c.ice_servers) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    r
}

async fn patch(node: &Node, req: Request<Incoming>, kind: Kind, psid: &str) -> Resp {
    if !content_type_is(&req, SDPFRAG) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH bodies must be application/trickle-ice-sdpfrag",
        );
    }
    let claims = match claims_of(node, &req) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let Some(if_match) = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return plain(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match is required (the ETag, or * for an ICE restart)",
        );
    };
    let frag = match read_text(node, req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let sessions = &node.http_sessions;
    if if_match.trim() == "*" {
        match sessions.restart_ice(kind, psid, &claims, &frag).await {
            Ok(rs) => {
                let mut r = body(StatusCode::OK, SDPFRAG, rs.fragment);
                if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", rs.etag)) {
                    r.headers_mut().insert(header::ETAG, v);
                }
                r
            }
            Err(e) => error(&e),
        }
    } else {
        match sessions
            .trickle(kind, psid, &claims, &if_match, &frag)
            .await
        {
            Ok(()) => plain(StatusCode::NO_CONTENT, ""),
            Err(e) => error(&e),
        }
    }
}

async fn delete(node: &Node, req: Request<Incoming>, kind: Kind, psid: &str) -> Resp {
    let claims = match claims_of(node, &req) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    match node.http_sessions.delete(kind, psid, &claims).await {
        Ok(()) => plain(StatusCode::OK, ""),
        Err(e) => error(&e),
    }
}

/// `Link` values naming ICE servers (RFC 9725 §4.6), one per URL:
/// `<stun:host:port>; rel="ice-server"`, and for a server with credentials (TURN)
/// `<turn:host:port?transport=udp>; rel="ice-server"; username="u"; credential="c";
/// credential-type="password"`. A URL or credential that cannot be written in a header (a
/// control character, say, or `>` in a URL) leaves its entry out.
pub fn ice_links(servers: &[pb::IceServer]) -> Vec<String> {
    let url_ok = |u: &str| !u.is_empty() && u.bytes().all(|b| b.is_ascii_graphic() && b != b'>');
    let quoted = |s: &str| {
        s.bytes()
            .all(|b| b == b' ' || b.is_ascii_graphic())
            .then(|| s.replace('\\', "\\\\").replace('"', "\\\""))
    };
    let mut out = Vec::new();
    for s in servers {
        let auth = if s.username.is_empty() && s.credential.is_empty() {
            Some(String::new())
        } else {
            quoted(&s.username)
                .zip(quoted(&s.credential))
                .map(|(u, c)| {
                    format!("; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\"")
                })
        };
        let Some(auth) = auth else { continue };
        for u in s.urls.iter().filter(|u| url_ok(u)) {
            out.push(format!("<{u}>; rel=\"ice-server\"{auth}"));
        }
    }
    out
}

/// A `rtc.stun_servers` entry as a URL: `stun:host:port`, or as given when it has a scheme.
pub fn stun_url(s: &str) -> String {
    if s.starts_with("stun:") || s.starts_with("stuns:") {
        s.to_string()
    } else {
        format!("stun:{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            route("/whip/v1", &Method::POST),
            Some(Route::WhipCreate)
        ));
        assert!(matches!(
            route("/whip/v1/PA_x", &Method::DELETE),
            Some(Route::Session(Kind::Whip, s)) if s == "PA_x"
        ));
        assert!(route("/whip/v1/a/b", &Method::DELETE).is_none());
        assert!(matches!(
            route("/whep/v1/my%20room/alice", &Method::POST),
            Some(Route::WhepCreate(p)) if p.room == "my room" && p.identity == "alice" && p.track.is_none()
        ));
        assert!(matches!(
            route("/whep/v1/r/alice/TR_1", &Method::POST),
            Some(Route::WhepCreate(p)) if p.track.as_deref() == Some("TR_1")
        ));
        assert!(matches!(
            route("/whep/v1/sessions/PA_y", &Method::PATCH),
            Some(Route::Session(Kind::Whep, s)) if s == "PA_y"
        ));
        assert!(route("/whep/v1/r//x", &Method::POST).is_none());
        assert!(route("/whep/v1/r/%zz", &Method::POST).is_none());
    }

    #[test]
    fn ice_servers_become_links() {
        let server = |urls: &[&str], username: &str, credential: &str| pb::IceServer {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: username.into(),
            credential: credential.into(),
        };
        let v = [
            server(
                &[
                    "turn:t.example.net:3478?transport=udp",
                    "turns:t.example.net:443?transport=tcp",
                ],
                "1765000000:PA_x",
                "a/b+c=",
            ),
            server(&["turn:q:3478?transport=tcp"], "say \"hi\"", "back\\slash"),
            server(&["turn:bad:1?transport=udp"], "new\nline", "c"),
            server(
                &["stun:stun.example.net:3478", "stun:x:1", "stun:<x>:1", ""],
                "",
                "",
            ),
        ];
        assert_eq!(
            ice_links(&v),
            [
                "<turn:t.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"1765000000:PA_x\"; credential=\"a/b+c=\"; credential-type=\"password\"",
                "<turns:t.example.net:443?transport=tcp>; rel=\"ice-server\"; username=\"1765000000:PA_x\"; credential=\"a/b+c=\"; credential-type=\"password\"",
                "<turn:q:3478?transport=tcp>; rel=\"ice-server\"; username=\"say \\\"hi\\\"\"; credential=\"back\\\\slash\"; credential-type=\"password\"",
                "<stun:stun.example.net:3478>; rel=\"ice-server\"",
                "<stun:x:1>; rel=\"ice-server\"",
            ]
        );
        for l in ice_links(&v) {
            assert!(HeaderValue::from_str(&l).is_ok(), "{l}");
        }
        assert!(ice_links(&[]).is_empty());
    }

    #[test]
    fn quality_parameter() {
        assert_eq!(quality_of(Some("quality=low")).unwrap(), Some(0));
        assert_eq!(quality_of(Some("a=1&quality=HIGH")).unwrap(), Some(2));
        assert_eq!(quality_of(None).unwrap(), None);
        assert!(quality_of(Some("quality=ultra")).is_err());
    }
}
