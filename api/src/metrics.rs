//! Prometheus metrics on their own port (`prometheus.port`, or the older `prometheus_port`),
//! in the text exposition format, with LiveKit's metric names where LiveKit has them.
//!
//! Nothing here sits on the packet path: room figures are a snapshot the room machine gives
//! when scraped, media figures are the copy the media thread publishes once a second from its
//! own plain counters, process figures come from `/proc`, and the control plane's counters
//! (Twirp calls, webhooks) are plain atomics of the request path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lkr_signal::Control;
use tokio::net::TcpListener;

use crate::webhook::WebhookStats;

/// `prometheus:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSettings {
    pub port: u16,
    pub username: String,
    pub password: String,
}

/// Counters of the control plane, kept by the HTTP handlers.
#[derive(Debug, Default)]
pub struct ControlCounters {
    /// Twirp calls by (service, method, status, error code).
    twirp: Mutex<BTreeMap<(String, String, u16, String), u64>>,
    pub webhook: Mutex<Option<Arc<WebhookStats>>>,
    /// The media thread's published counters.
    pub media: Mutex<Option<Arc<lkr_driver::MediaStats>>>,
    pub join_refused: AtomicU64,
}

impl ControlCounters {
    /// Counts one Twirp call.
    pub fn twirp(&self, service: &str, method: &str, status: u16, code: &str) {
        // Unknown methods are counted under one name, so a caller cannot grow the map.
        let method = if method.len() > 64 || !method.bytes().all(|b| b.is_ascii_alphanumeric()) {
            "unknown"
        } else {
            method
        };
        let mut m = self.twirp.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < 256 || m.contains_key(&(service.into(), method.into(), status, code.into())) {
            *m.entry((service.into(), method.into(), status, code.into()))
                .or_default() += 1;
        }
    }
}

fn proc_stat() -> Option<(f64, u64)> {
    // utime and stime (fields 14, 15) in clock ticks; rss pages from statm.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0;
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((cpu, rss_pages * 4096))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text.
pub async fn render(control: &Control, counters: &ControlCounters, node_id: &str) -> String {
    let stats = control.call(|m, _| m.stats()).await.unwrap_or_default();
    let node = format!("node_id=\"{}\",node_type=\"SERVER\"", escape(node_id));
    let mut out = String::new();
    metric(
        &mut out,
        "livekit_room_total",
        "gauge",
        "Rooms on this node.",
    );
    let _ = writeln!(out, "livekit_room_total{{{node}}} {}", stats.rooms);
    metric(
        &mut out,
        "livekit_participant_total",
        "gauge",
        "Participants on this node.",
    );
    let _ = writeln!(
        out,
        "livekit_participant_total{{{node}}} {}",
        stats.participants
    );
    metric(
        &mut out,
        "livekit_track_published_total",
        "gauge",
        "Published tracks by kind.",
    );
    for (kind, n) in [
        ("audio", stats.published_audio),
        ("video", stats.published_video),
    ] {
        let _ = writeln!(
            out,
            "livekit_track_published_total{{{node},kind=\"{kind}\"}} {n}"
        );
    }
    metric(
        &mut out,
        "livekit_track_subscribed_total",
        "gauge",
        "Subscriptions by kind.",
    );
    for (kind, n) in [
        ("audio", stats.subscribed_audio),
        ("video", stats.subscribed_video),
    ] {
        let _ = writeln!(
            out,
            "livekit_track_subscribed_total{{{node},kind=\"{kind}\"}} {n}"
        );
    }
    metric(
        &mut out,
        "livekit_participant_join_total",
        "counter",
        "Joins by outcome.",
    );
    let _ = writeln!(
        out,
        "livekit_participant_join_total{{{node},state=\"joined\"}} {}",
        stats.joins_total
    );
    let _ = writeln!(
        out,
        "livekit_participant_join_total{{{node},state=\"refused\"}} {}",
        counters.join_refused.load(Ordering::Relaxed)
    );
    metric(
        &mut out,
        "livekit_session_join_latency_ms",
        "histogram",
        "From join to connected media, in ms.",
    );
    for (n, le) in stats
        .join_latency_buckets
        .iter()
        .zip(lkr_room::JOIN_LATENCY_BUCKETS_MS)
    {
        let _ = writeln!(
            out,
            "livekit_session_join_latency_ms_bucket{{{node},le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "livekit_session_join_latency_ms_bucket{{{node},le=\"+Inf\"}} {}",
        stats.join_latency_count
    );
    let _ = writeln!(
        out,
        "livekit_session_join_latency_ms_sum{{{node}}} {}",
        stats.join_latency_sum_ms
    );
    let _ = writeln!(
        out,
        "livekit_session_join_latency_ms_count{{{node}}} {}",
        stats.join_latency_count
    );
    metric(
        &mut out,
        "livekit_node_twirp_request_status",
        "counter",
        "Twirp requests by service, method, status and error code.",
    );
    {
        let m = counters.twirp.lock().unwrap_or_else(|p| p.into_inner());
        for ((service, method, status, code), n) in m.iter() {
            let _ = writeln!(
                out,
                "livekit_node_twirp_request_status{{{node},service=\"{}\",method=\"{}\",status=\"{status}\",code=\"{}\"}} {n}",
                escape(service),
                escape(method),
                escape(code)
            );
        }
    }
    if let Some(w) = counters
        .webhook
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        metric(
            &mut out,
            "livekit_webhook_total",
            "counter",
            "Webhook deliveries by outcome.",
        );
        for (state, n) in [
            ("sent", w.sent.load(Ordering::Relaxed)),
            ("failed", w.failed.load(Ordering::Relaxed)),
            ("dropped", w.dropped.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "livekit_webhook_total{{{node},state=\"{state}\"}} {n}");
        }
    }
    let media = counters
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|m| m.snapshot());
    if let Some(m) = media {
        let t = m.traffic;
        metric(
            &mut out,
            "livekit_packet_total",
            "counter",
            "RTP packets by direction.",
        );
        for (dir, tx, n) in [
            ("incoming", "primary", t.rtp_in),
            ("outgoing", "primary", t.rtp_out),
            ("outgoing", "retransmit", t.rtx_out),
        ] {
            let _ = writeln!(
                out,
                "livekit_packet_total{{{node},direction=\"{dir}\",transmission=\"{tx}\"}} {n}"
            );
        }
        metric(
            &mut out,
            "livekit_packet_bytes",
            "counter",
            "RTP bytes by direction.",
        );
        for (dir, n) in [("incoming", t.rtp_in_bytes), ("outgoing", t.rtp_out_bytes)] {
            let _ = writeln!(
                out,
                "livekit_packet_bytes{{{node},direction=\"{dir}\"}} {n}"
            );
        }
        metric(
            &mut out,
            "livekit_media_polling_shards",
            "gauge",
            "Media shards reading their socket on a schedule (only idle peers' upkeep arrived).",
        );
        let _ = writeln!(
            out,
            "livekit_media_polling_shards{{{node}}} {}",
            m.polling_shards
        );
        metric(
            &mut out,
            "livekit_signal_pacing",
            "gauge",
            "1 while the signalling threads wake on a schedule (only keepalives arrived).",
        );
        let _ = writeln!(
            out,
            "livekit_signal_pacing{{{node}}} {}",
            u8::from(control.pacer().is_pacing())
        );
        metric(
            &mut out,
            "livekit_media_segmented_sends_total",
            "counter",
            "Runs of datagrams to one destination sent as one segmented (UDP GSO) send.",
        );
        let _ = writeln!(
            out,
            "livekit_media_segmented_sends_total{{{node}}} {}",
            m.segmented_sends
        );
        metric(
            &mut out,
            "livekit_media_segmented_datagrams_total",
            "counter",
            "Datagrams that left in segmented sends.",
        );
        let _ = writeln!(
            out,
            "livekit_media_segmented_datagrams_total{{{node}}} {}",
            m.segmented_datagrams
        );
        metric(
            &mut out,
            "livekit_nack_total",
            "counter",
            "NACKed packets by direction.",
        );
        let _ = writeln!(
            out,
            "livekit_nack_total{{{node},direction=\"incoming\"}} {}",
            t.nack_in
        );
        metric(
            &mut out,
            "livekit_pli_total",
            "counter",
            "Keyframe requests by direction.",
        );
        for (dir, n) in [("incoming", t.pli_in), ("outgoing", t.pli_out)] {
            let _ = writeln!(out, "livekit_pli_total{{{node},direction=\"{dir}\"}} {n}");
        }
        metric(
            &mut out,
            "livekit_forward_latency",
            "histogram",
            "From a received batch to the end of the wake that forwarded it, in microseconds.",
        );
        for (n, le) in m.latency.buckets.iter().zip(lkr_driver::LATENCY_BUCKETS_US) {
            let _ = writeln!(
                out,
                "livekit_forward_latency_bucket{{{node},le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "livekit_forward_latency_bucket{{{node},le=\"+Inf\"}} {}",
            m.latency.count
        );
        let _ = writeln!(
            out,
            "livekit_forward_latency_sum{{{node}}} {}",
            m.latency.sum_us
        );
        let _ = writeln!(
            out,
            "livekit_forward_latency_count{{{node}}} {}",
            m.latency.count
        );
        metric(
            &mut out,
            "livekit_packet_loss_total",
            "counter",
            "Packets from publishers found missing at receiver reports.",
        );
        let _ = writeln!(
            out,
            "livekit_packet_loss_total{{{node},direction=\"incoming\"}} {}",
            t.upstream_lost
        );
        metric(
            &mut out,
            "livekit_media_path_returns_total",
            "counter",
            "Participants heard again after an outage of their path (media was sent into the silence).",
        );
        let _ = writeln!(
            out,
            "livekit_media_path_returns_total{{{node}}} {}",
            t.path_returns
        );
        metric(
            &mut out,
            "livekit_media_dropped_total",
            "counter",
            "What the media plane dropped, by reason.",
        );
        let d = m.engine;
        for (reason, n) in [
            ("socket_full", m.send_dropped),
            ("socket_error", m.send_failed),
            ("event_queue_full", m.events_dropped),
            ("command_queue_full", m.commands_rejected),
            ("unknown_source", d.unknown_source),
            ("bad_stun", d.bad_stun),
            ("dtls_error", d.dtls_error),
            ("srtp_error", d.srtp_error),
            ("replayed", d.replayed),
            ("malformed_rtp", d.malformed_rtp),
            ("unknown_ssrc", d.unknown_ssrc),
            ("late", d.late),
            ("padding", d.padding),
            ("nack_duplicate", d.nack_duplicate),
            ("nack_over_cap", d.nack_over_cap),
            ("nack_over_rate", d.nack_over_rate),
            ("sender_report_over_rate", d.sender_report_over_rate),
            ("data_over_hold", d.data_over_hold),
            ("tcp_refused", m.tcp.refused),
            ("tcp_bad_frame", m.tcp.bad_frames),
            ("tcp_timed_out", m.tcp.timed_out),
            ("tcp_frame_dropped", m.tcp.frames_dropped),
        ] {
            let _ = writeln!(
                out,
                "livekit_media_dropped_total{{{node},reason=\"{reason}\"}} {n}"
            );
        }
    }
    if let Some((cpu, rss)) = proc_stat() {
        metric(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "CPU time of the process.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
        metric(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    metric(
        &mut out,
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
    );
    let _ = writeln!(out, "process_open_fds {}", open_fds());
    out
}

fn authorized(req: &Request<Incoming>, s: &PrometheusSettings) -> bool {
    if s.username.is_empty() && s.password.is_empty() {
        return true;
    }
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.username, s.password));
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|got| got.trim() == want)
}

fn text(status: StatusCode, body: String, ct: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Serves `/metrics` on `listener` until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    settings: PrometheusSettings,
    control: Control,
    counters: Arc<ControlCounters>,
    node_id: String,
) {
    let shared = Arc::new((settings, control, counters, node_id));
    loop {
        let Ok((stream, _peer)): Result<(_, SocketAddr), _> = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let (settings, control, counters, node_id) = &*shared;
                    let resp = if req.uri().path() != "/metrics" || req.method() != Method::GET {
                        text(
                            StatusCode::NOT_FOUND,
                            "404 page not found".into(),
                            "text/plain",
                        )
                    } else if !authorized(&req, settings) {
                        let mut r = text(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized".into(),
                            "text/plain",
                        );
                        r.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"metrics\""),
                        );
                        r
                    } else {
                        text(
                            StatusCode::OK,
                            render(control, counters, node_id).await,
                            "text/plain; version=0.0.4",
                        )
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
