//! Webhooks, as LiveKit sends them: every room event is a `WebhookEvent` in protobuf JSON,
//! POSTed to each configured URL with `Content-Type: application/webhook+json` and an
//! `Authorization` JWT signed with the webhook key, whose `sha256` claim is the base64
//! SHA-256 of the body.
//!
//! Delivery never slows rooms down: the room machine hands events to a bounded queue; each URL
//! has its own bounded queue and task, so events reach a URL in order, a slow or dead receiver
//! delays only itself, and what does not fit is dropped, counted and logged. A failed POST is
//! retried with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lkr_proto::pb;
use lkr_room::RoomEvent;
use sha2::Digest as _;
use tokio::sync::mpsc;

/// Events waiting for one URL.
pub const URL_QUEUE: usize = 1024;
/// Bytes (protobuf) of the events waiting for one URL: an event past them is dropped as
/// one past [`URL_QUEUE`] is. One is always queued when nothing else waits.
pub const URL_QUEUE_BYTES: usize = 64 << 20;
/// Attempts per event and URL.
const ATTEMPTS: u32 = 3;
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where webhooks go and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub api_key: String,
    pub api_secret: String,
    pub urls: Vec<String>,
}

/// Counters of one notifier (shared with whoever reports them).
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The LiveKit event name and record of a room event.
pub fn to_webhook_event(ev: &RoomEvent, now_unix: i64) -> pb::WebhookEvent {
    let (name, room, participant, track) = match ev {
        RoomEvent::RoomStarted { room } => ("room_started", room, None, None),
        RoomEvent::RoomFinished { room } => ("room_finished", room, None, None),
        RoomEvent::ParticipantJoined { room, participant } => {
            ("participant_joined", room, Some(participant), None)
        }
        RoomEvent::ParticipantActive { room, participant } => {
            ("participant_active", room, Some(participant), None)
        }
        RoomEvent::ParticipantConnectionAborted { room, participant } => (
            "participant_connection_aborted",
            room,
            Some(participant),
            None,
        ),
        RoomEvent::ParticipantLeft {
            room, participant, ..
        } => ("participant_left", room, Some(participant), None),
        RoomEvent::TrackPublished {
            room,
            participant,
            track,
        } => ("track_published", room, Some(participant), Some(track)),
        RoomEvent::TrackUnpublished {
            room,
            participant,
            track,
        } => ("track_unpublished", room, Some(participant), Some(track)),
        RoomEvent::EgressStarted { info } => return egress_event("egress_started", info, now_unix),
        RoomEvent::EgressUpdated { info } => return egress_event("egress_updated", info, now_unix),
        RoomEvent::EgressEnded { info } => return egress_event("egress_ended", info, now_unix),
    };
    pb::WebhookEvent {
        event: name.into(),
        room: Some(room.clone()),
        participant: participant.cloned(),
        track: track.cloned(),
        id: lkr_proto::id::new_id("EV_"),
        created_at: now_unix,
        ..Default::default()
    }
}

/// An egress event as LiveKit sends it: its name and the `egress_info`, no room record.
fn egress_event(name: &str, info: &pb::EgressInfo, now_unix: i64) -> pb::WebhookEvent {
    pb::WebhookEvent {
        event: name.into(),
        egress_info: Some(info.clone()),
        id: lkr_proto::id::new_id("EV_"),
        created_at: now_unix,
        ..Default::default()
    }
}

/// Whether LiveKit sends this event as a webhook (it has no `participant_active` webhook).
fn is_webhook(ev: &RoomEvent) -> bool {
    !matches!(ev, RoomEvent::ParticipantActive { .. })
}

/// The `Authorization` token for `body`.
fn sign(settings: &WebhookSettings, body: &[u8]) -> Option<String> {
    let hash = sha2::Sha256::digest(body);
    let mut token = lkr_proto::token::AccessToken::new(&settings.api_key, &settings.api_secret)
        .with_ttl(Duration::from_secs(300));
    token.claims.sha256 = base64::engine::general_purpose::STANDARD.encode(hash);
    token.to_jwt().ok()
}

/// One URL's queue, bounded in events ([`URL_QUEUE`]) and in bytes ([`URL_QUEUE_BYTES`]).
struct UrlQueue(lkr_signal::bounded::Sender<pb::WebhookEvent>);

/// The delivering end of a [`UrlQueue`].
type Delivery = lkr_signal::bounded::Receiver<pb::WebhookEvent>;

fn url_queue() -> (UrlQueue, Delivery) {
    let (tx, rx) = lkr_signal::bounded::channel(URL_QUEUE, URL_QUEUE_BYTES);
    (UrlQueue(tx), rx)
}

impl UrlQueue {
    /// Queues `event`; `false` when the queue is full (in events or bytes) or gone.
    fn offer(&self, event: &pb::WebhookEvent) -> bool {
        let size = prost::Message::encoded_len(event);
        self.0.try_send(event.clone(), size).is_ok()
    }
}

/// Starts the notifier: it reads room events from `events` until the channel closes; its task
/// ends once every URL's queue is delivered (or given up on).
pub fn spawn(
    settings: WebhookSettings,
    mut events: mpsc::Receiver<RoomEvent>,
) -> (Arc<WebhookStats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(WebhookStats::default());
    let settings = Arc::new(settings);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut queues = Vec::new();
    let mut deliveries = tokio::task::JoinSet::new();
    for url in settings.urls.clone() {
        let (tx, rx) = url_queue();
        deliveries.spawn(deliver(
            url.clone(),
            rx,
            client.clone(),
            settings.clone(),
            stats.clone(),
        ));
        queues.push((url, tx, 0u32));
    }
    let st = stats.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if !is_webhook(&ev) {
                continue;
            }
            let now = lkr_proto::token::unix_now() as i64;
            let event = to_webhook_event(&ev, now);
            for (url, tx, dropped) in queues.iter_mut() {
                match tx.offer(&event) {
                    true => *dropped = 0,
                    false => {
                        *dropped += 1;
                        st.dropped.fetch_add(1, Ordering::Relaxed);
                        if dropped.is_power_of_two() {
                            tracing::warn!(%url, dropped = *dropped, event = %event.event, "webhook receiver is behind; events dropped");
                        }
                    }
                }
            }
        }
        // The room events ended (shutdown): each URL gets what is queued for it.
        drop(queues);
        while deliveries.join_next().await.is_some() {}
    });
    (stats, task)
}

/// Delivers one URL's events in order.
async fn deliver(
    url: String,
    mut rx: Delivery,
    client: Client<HttpConnector, Full<Bytes>>,
    settings: Arc<WebhookSettings>,
    stats: Arc<WebhookStats>,
) {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(%url, error = %e, "webhook URL does not parse; its events are dropped");
            while rx.recv().await.is_some() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "webhook event does not encode");
                continue;
            }
        };
        let Some(auth) = sign(&settings, &body) else {
            tracing::error!("webhook token cannot be signed");
            continue;
        };
        let mut delivered = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let req = Request::post(uri.clone())
                .header(header::CONTENT_TYPE, "application/webhook+json")
                .header(header::AUTHORIZATION, auth.as_str())
                .body(Full::new(body.clone()));
            let Ok(req) = req else { break };
            match tokio::time::timeout(POST_TIMEOUT, client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(Ok(resp)) => {
                    tracing::debug!(%url, status = %resp.status(), event = %event.event, "webhook refused");
                }
                Ok(Err(e)) => tracing::debug!(%url, error = %e, "webhook POST failed"),
                Err(_) => tracing::debug!(%url, "webhook POST timed out"),
            }
        }
        if delivered {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, event = %event.event, id = %event.id, "webhook not delivered after {ATTEMPTS} attempts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that does not take its events holds at most [`URL_QUEUE_BYTES`] of them, however
    /// large each is; each one delivered makes room again.
    #[tokio::test]
    async fn a_url_queue_is_bounded_in_bytes() {
        let (queue, mut delivery) = url_queue();
        let big = pb::WebhookEvent {
            event: "participant_left".into(),
            participant: Some(pb::ParticipantInfo {
                identity: "p".into(),
                metadata: "x".repeat(512 << 10),
                ..Default::default()
            }),
            ..Default::default()
        };
        let taken = (0..URL_QUEUE).take_while(|_| queue.offer(&big)).count();
        assert_eq!(taken, URL_QUEUE_BYTES / prost::Message::encoded_len(&big));
        assert!(queue.0.bytes() <= URL_QUEUE_BYTES);
        assert!(!queue.offer(&big));
        assert!(delivery.recv().await.is_some());
        assert!(queue.offer(&big), "room for one again");
        for _ in 0..taken {
            assert!(delivery.recv().await.is_some());
        }
        assert_eq!(queue.0.bytes(), 0);
        // Alone in the queue, an event over the whole budget still goes.
        let huge = pb::WebhookEvent {
            room: Some(pb::Room {
                metadata: "y".repeat(URL_QUEUE_BYTES + 1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(queue.offer(&huge));
    }

    #[test]
    fn events_carry_livekit_names_and_records() {
        let room = pb::Room {
            name: "r".into(),
            sid: "RM_1".into(),
            ..Default::default()
        };
        let participant = pb::ParticipantInfo {
            identity: "alice".into(),
            ..Default::default()
        };
        let ev = to_webhook_event(
            &RoomEvent::ParticipantLeft {
                room: room.clone(),
                participant,
                reason: pb::DisconnectReason::ClientInitiated,
                duration: Duration::from_secs(3),
            },
            1_700_000_000,
        );
        assert_eq!(ev.event, "participant_left");
        assert_eq!(ev.room.as_ref().unwrap().sid, "RM_1");
        assert_eq!(ev.participant.as_ref().unwrap().identity, "alice");
        assert!(ev.id.starts_with("EV_"));
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"createdAt\":\"1700000000\""), "{json}");
        assert!(!is_webhook(&RoomEvent::ParticipantActive {
            room,
            participant: pb::ParticipantInfo::default()
        }));
    }

    #[test]
    fn the_token_signs_the_body_hash() {
        let s = WebhookSettings {
            api_key: "devkey".into(),
            api_secret: "secret".into(),
            urls: vec![],
        };
        let body = br#"{"event":"room_started"}"#;
        let token = sign(&s, body).unwrap();
        let keys = std::collections::HashMap::from([("devkey".to_string(), "secret".to_string())]);
        let claims = lkr_proto::token::verify(&token, &keys).unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
        assert_eq!(claims.sha256, want);
    }
}
