//! The live node page: `GET /node` serves one self-contained HTML page (no external assets)
//! that shows this node's rooms, participants and tracks, with each track's bitrate, loss
//! and simulcast layers, refreshed every second and laid out for a phone as well.
//!
//! Every data request is authenticated: `POST /node/login` trades the API key and secret
//! for a one-hour token with the `roomList` grant; `GET /node/stats` takes that token, or
//! any access token with `roomList` (every room) or `roomAdmin` (its own room only), as
//! `Authorization: Bearer`. Anything else gets 401.
//!
//! The snapshot joins the room machine's records (one call on the control task) with the
//! media core's per-track counters, which each media thread publishes once a second.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use lkr_proto::pb;
use lkr_proto::token::{AccessToken, Claims, VideoGrant};
use serde_json::{Value, json};

use crate::node::Node;

type Resp = Response<Full<Bytes>>;

const PAGE: &str = include_str!("node_page.html");
/// Largest login body, bytes.
const MAX_LOGIN_BODY: usize = 4096;
/// How long a login token lasts.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    answer(status, "text/plain; charset=utf-8", body)
}

/// Whether `path` is the node page's.
pub fn is_node_path(path: &str) -> bool {
    matches!(path, "/node" | "/node/" | "/node/login" | "/node/stats")
}

/// Answers a node page request.
pub async fn handle(node: &Node, req: Request<Incoming>) -> Resp {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/node" | "/node/") => {
            let mut r = answer(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
                ),
            );
            r
        }
        (&Method::POST, "/node/login") => login(node, req).await,
        (&Method::GET, "/node/stats") => stats(node, &req).await,
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn login(node: &Node, req: Request<Incoming>) -> Resp {
    let read = Limited::new(req.into_body(), MAX_LOGIN_BODY).collect();
    let body = match tokio::time::timeout(node.settings.limits.http_read_body_timeout, read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body read timed out"),
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "send {\"key\": ..., \"secret\": ...}",
        );
    };
    let (key, secret) = (
        v["key"].as_str().unwrap_or_default(),
        v["secret"].as_str().unwrap_or_default(),
    );
    let known = node.settings.keys.get(key).is_some_and(|s| same(s, secret));
    if !known {
        return text(StatusCode::UNAUTHORIZED, "invalid API key or secret");
    }
    let token = AccessToken::new(key, secret)
        .with_ttl(TOKEN_TTL)
        .with_identity("node-page")
        .with_grant(VideoGrant {
            room_list: true,
            ..Default::default()
        })
        .to_jwt();
    match token {
        Ok(t) => answer(
            StatusCode::OK,
            "application/json",
            json!({ "token": t }).to_string(),
        ),
        Err(e) => {
            tracing::error!("node page token: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "could not make a token")
        }
    }
}

/// The rooms a token may see: every room (`Ok(None)`) or one.
fn scope(claims: &Claims) -> Option<Option<String>> {
    let g = claims.video();
    if g.room_list {
        Some(None)
    } else if g.room_admin && !g.room.is_empty() {
        Some(Some(g.room.clone()))
    } else {
        None
    }
}

async fn stats(node: &Node, req: &Request<Incoming>) -> Resp {
    let claims =
        match crate::auth::authenticate(req.headers(), req.uri().query(), &node.settings.keys) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return text(
                    StatusCode::UNAUTHORIZED,
                    "log in with the API key and secret",
                );
            }
            Err(e) => {
                tracing::debug!(error = ?e, "node page refused");
                return text(StatusCode::UNAUTHORIZED, "invalid authorization token");
            }
        };
    let Some(only) = scope(&claims) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "the token needs the roomList or roomAdmin grant",
        );
    };
    let media = node
        .counters
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let tracks = media.as_ref().map(|m| m.tracks()).unwrap_or_default();
    let traffic = media.as_ref().map(|m| m.snapshot().traffic);
    let snap = node
        .control
        .call(move |m, _| {
            let rooms: Vec<(pb::Room, Vec<pb::ParticipantInfo>)> = m
                .api_list_rooms(&[])
                .into_iter()
                .filter(|r| only.as_ref().is_none_or(|o| *o == r.name))
                .map(|r| {
                    let people = m.api_list_participants(&r.name).unwrap_or_default();
                    (r, people)
                })
                .collect();
            let egresses = m.api_list_egress("", "", true);
            (
                m.config().node_id.clone(),
                m.config().region.clone(),
                rooms,
                m.published_tracks(),
                egresses,
            )
        })
        .await;
    let Ok((node_id, region, rooms, published, egresses)) = snap else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    };
    let mut total_in = 0u64;
    let mut n_tracks = 0usize;
    let mut n_subs = 0usize;
    let rooms: Vec<Value> = rooms
        .iter()
        .map(|(room, people)| {
            let participants: Vec<Value> = people
                .iter()
                .filter(|p| !p.permission.as_ref().is_some_and(|x| x.hidden))
                .map(|p| {
                    let tracks: Vec<Value> = p
                        .tracks
                        .iter()
                        .map(|t| {
                            let pubd = published.iter().find(|x| x.sid == t.sid);
                            let media = pubd.and_then(|x| tracks.iter().find(|s| s.track == x.track_id));
                            let layers: Vec<Value> = media
                                .map(|s| {
                                    s.layers
                                        .iter()
                                        .map(|l| {
                                            json!({
                                                "rid": l.rid, "bitrate_bps": l.bitrate_bps,
                                                "loss": l.loss, "live": l.live, "packets": l.packets,
                                            })
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            let bps: u64 = media.map_or(0, |s| s.layers.iter().map(|l| l.bitrate_bps).sum());
                            // Loss of the layers that flow, weighted by nothing finer than
                            // their worst: one bad layer is what a viewer would see.
                            let loss = media.map_or(0.0, |s| {
                                s.layers.iter().filter(|l| l.live).map(|l| l.loss).fold(0.0, f32::max)
                            });
                            let subscribers = pubd.map_or(0, |x| x.subscribers);
                            let recording = egresses
                                .iter()
                                .filter(|e| matches!(&e.request, Some(pb::egress_info::Request::Track(r)) if r.track_id == t.sid))
                                .count();
                            total_in += bps;
                            n_tracks += 1;
                            n_subs += subscribers;
                            json!({
                                "sid": t.sid, "name": t.name,
                                "kind": if t.r#type == pb::TrackType::Video as i32 { "video" } else { "audio" },
                                "mime": t.mime_type, "muted": t.muted,
                                "width": t.width, "height": t.height,
                                "bitrate_bps": bps, "loss": loss, "layers": layers,
                                "subscribers": subscribers, "egresses": recording,
                            })
                        })
                        .collect();
                    let state = pb::participant_info::State::try_from(p.state)
                        .map(|s| s.as_str_name())
                        .unwrap_or("UNKNOWN");
                    json!({
                        "identity": p.identity, "sid": p.sid, "name": p.name, "state": state,
                        "joined_at": p.joined_at, "tracks": tracks,
                    })
                })
                .collect();
            json!({
                "name": room.name, "sid": room.sid, "created_at": room.creation_time,
                "participants": participants,
            })
        })
        .collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({
        "node": {
            "id": node_id, "region": region, "version": env!("CARGO_PKG_VERSION"), "now_ms": now_ms,
        },
        "totals": {
            "rooms": rooms.len(),
            "participants": rooms.iter().map(|r| r["participants"].as_array().map_or(0, Vec::len)).sum::<usize>(),
            "tracks": n_tracks, "subscriptions": n_subs, "egresses": egresses.len(),
            "bitrate_in_bps": total_in,
            "rtp_in": traffic.map_or(0, |t| t.rtp_in), "rtp_out": traffic.map_or(0, |t| t.rtp_out),
        },
        "rooms": rooms,
    });
    answer(StatusCode::OK, "application/json", body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(grant: VideoGrant) -> Claims {
        Claims {
            video: Some(grant),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_sees_every_room_with_room_list_and_its_own_with_room_admin() {
        let all = claims(VideoGrant {
            room_list: true,
            ..Default::default()
        });
        assert_eq!(scope(&all), Some(None));
        let one = claims(VideoGrant {
            room_admin: true,
            room: "r1".into(),
            ..Default::default()
        });
        assert_eq!(scope(&one), Some(Some("r1".into())));
        let join = claims(VideoGrant {
            room_join: true,
            room: "r1".into(),
            ..Default::default()
        });
        assert_eq!(scope(&join), None);
        let admin_of_nothing = claims(VideoGrant {
            room_admin: true,
            ..Default::default()
        });
        assert_eq!(scope(&admin_of_nothing), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("secret", "secret"));
        assert!(!same("secret", "secreT"));
        assert!(!same("secret", "secret2"));
        assert!(!same("", "x"));
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(!PAGE.contains("<script src") && !PAGE.contains("<link"));
        assert!(PAGE.contains("name=\"viewport\""));
        assert!(is_node_path("/node") && is_node_path("/node/stats") && !is_node_path("/nodes"));
    }
}
