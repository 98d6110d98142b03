//! Twirp `livekit.Egress` without an egress fleet: track egress to a file on this node's
//! disk.
//!
//! `StartTrackEgress` with a file output records one track as LiveKit's track egress does
//! (Opus → Ogg, VP8/VP9/AV1 → IVF, or WebM for Opus, VP8 and VP9 when the file name ends in
//! `.webm`) into `egress.file_dir`; `ListEgress` and `StopEgress`
//! answer with LiveKit's `EgressInfo`. Every method needs the `roomRecord` grant (LiveKit's
//! check: `unauthenticated`, "permissions denied" without it).
//!
//! The room machine owns the egress records (status, times, ListEgress, ending with the
//! track); this module checks the request, names the file, registers the media core's local
//! sink for the track and runs one writer thread per egress ([`writer`]), which reports
//! back to the machine. A write error (a full disk, a path that cannot be created) ends that
//! egress alone, EGRESS_FAILED with the error.

pub mod writer;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use lkr_driver::{MediaHandle, SINK_CAPACITY, sink_channel};
use lkr_media_file::{Codec, Container};
use lkr_proto::pb;
use lkr_proto::token::Claims;
use lkr_room::{RoomError, StartEgress};
use lkr_sfu::SinkId;

use crate::node::Node;
use crate::twirp::{Code, Format, TwirpError};

/// The service name in Twirp paths.
pub const SERVICE: &str = "livekit.Egress";
/// Longest `filepath` accepted, in bytes.
pub const MAX_FILEPATH: usize = 1024;

/// What a node needs to run track egress.
#[derive(Debug)]
pub struct EgressRuntime {
    pub media: MediaHandle,
    /// Where files go (`egress.file_dir`).
    pub dir: PathBuf,
    /// Live egresses at most (`egress.max_concurrent`).
    pub max_active: usize,
    next_sink: AtomicU64,
}

impl EgressRuntime {
    pub fn new(media: MediaHandle, dir: PathBuf, max_active: usize) -> Self {
        Self {
            media,
            dir,
            max_active,
            next_sink: AtomicU64::new(1),
        }
    }
}

/// Every egress method needs `roomRecord`: checked before the body is read (see
/// [`crate::room_service::precheck`]).
pub(crate) fn precheck(claims: &Claims) -> Result<(), TwirpError> {
    ensure_record(claims)
}

fn ensure_record(claims: &Claims) -> Result<(), TwirpError> {
    if claims.video().room_record {
        Ok(())
    } else {
        // LiveKit's answer to a token without roomRecord.
        Err(TwirpError::new(Code::Unauthenticated, "permissions denied"))
    }
}

fn room_error(e: RoomError) -> TwirpError {
    e.into()
}

/// `YYYY-MM-DDTHHMMSS` (UTC) of a Unix time, as LiveKit writes `{time}` in file names.
fn time_stamp(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The file name of an egress, relative to the egress directory: `filepath` with LiveKit's
/// `{room_name}`, `{room_id}`, `{track_id}` and `{time}` filled in (default
/// `{room_name}-{track_id}-{time}`), and the codec's extension added when it has another.
/// A path that would leave the directory is refused.
pub fn file_name(
    filepath: &str,
    room_name: &str,
    room_id: &str,
    track_id: &str,
    unix: u64,
    ext: &str,
) -> Result<String, TwirpError> {
    let template = if filepath.is_empty() {
        "{room_name}-{track_id}-{time}"
    } else {
        filepath
    };
    if template.len() > MAX_FILEPATH {
        return Err(TwirpError::new(
            Code::InvalidArgument,
            format!("filepath is longer than {MAX_FILEPATH} bytes"),
        ));
    }
    let mut name = template
        .replace("{room_name}", room_name)
        .replace("{room_id}", room_id)
        .replace("{track_id}", track_id)
        .replace("{time}", &time_stamp(unix));
    let path = Path::new(&name);
    let inside = !name.contains('\0')
        && !name.ends_with('/')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.file_name().is_some();
    if !inside {
        return Err(TwirpError::new(
            Code::InvalidArgument,
            format!("filepath {filepath:?} must name a file inside the egress directory"),
        ));
    }
    if path.extension().and_then(|e| e.to_str()) != Some(ext) {
        name.push('.');
        name.push_str(ext);
    }
    Ok(name)
}

/// WebM when the requested file name ends in `.webm`, else the codec's own format (Ogg for
/// Opus, IVF for video).
fn container_of(filepath: &str) -> Container {
    if filepath.to_ascii_lowercase().ends_with(".webm") {
        Container::Webm
    } else {
        Container::Native
    }
}

async fn start_track_egress(
    node: &Node,
    rt: &EgressRuntime,
    req: pb::TrackEgressRequest,
) -> Result<pb::EgressInfo, TwirpError> {
    let filepath = match &req.output {
        Some(pb::track_egress_request::Output::File(f)) => f.filepath.clone(),
        Some(pb::track_egress_request::Output::WebsocketUrl(_)) => {
            return Err(TwirpError::new(
                Code::Unimplemented,
                "track egress to a WebSocket is not supported by this node (use a file output)",
            ));
        }
        None => {
            return Err(TwirpError::new(
                Code::InvalidArgument,
                "a track egress needs an output (file)",
            ));
        }
    };
    if req.room_name.is_empty() || req.track_id.is_empty() {
        return Err(TwirpError::new(
            Code::InvalidArgument,
            "room_name and track_id are required",
        ));
    }
    let egress_id = lkr_proto::id::new_id("EG_");
    let sink = SinkId(rt.next_sink.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = sink_channel(SINK_CAPACITY);
    if !rt.media.register_sink(sink, tx) {
        return Err(TwirpError::new(
            Code::ResourceExhausted,
            "too many track egresses are starting",
        ));
    }
    let dir = rt.dir.clone();
    let max_active = rt.max_active;
    let id = egress_id.clone();
    let started = node
        .control
        .call(move |m, now| {
            let track = m.egress_track(&req.room_name, &req.track_id)?;
            let container = container_of(&filepath);
            let codec = Codec::from_name(&track.codec);
            let Some((codec, ext)) = codec.and_then(|c| {
                Some((c, lkr_media_file::track::extension_in(c, container)?))
            }) else {
                return Err(RoomError::InvalidArgument(match container {
                    Container::Webm => format!(
                        "tracks of codec {:?} cannot be recorded to WebM (Opus, VP8 and VP9 can)",
                        track.codec
                    ),
                    Container::Native => format!(
                        "tracks of codec {:?} cannot be recorded to a file (Opus, VP8, VP9 and AV1 can)",
                        track.codec
                    ),
                }));
            };
            let filename = file_name(
                &filepath,
                &req.room_name,
                &track.room_sid,
                &req.track_id,
                lkr_proto::token::unix_now(),
                ext,
            )
            .map_err(|e| RoomError::InvalidArgument(e.msg))?;
            let path = dir.join(&filename);
            let info = m.api_start_track_egress(
                now,
                StartEgress {
                    egress_id: id,
                    sink,
                    request: req,
                    filename,
                    location: path.display().to_string(),
                    max_active,
                },
            )?;
            Ok((info, codec, container, path, track.track_id))
        })
        .await;
    let (info, codec, container, path, track) = match started {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            rt.media.forget_sink(sink);
            return Err(room_error(e));
        }
        Err(e) => {
            rt.media.forget_sink(sink);
            return Err(TwirpError::new(Code::Internal, e.to_string()));
        }
    };
    let job = writer::Job {
        egress_id: egress_id.clone(),
        rx,
        codec,
        container,
        path,
        track,
        media: rt.media.clone(),
        control: node.control.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    if let Err(e) = writer::spawn(job) {
        // The machine hears of it as a failed writer (the sink closes with the job).
        tracing::error!("egress writer thread: {e}");
        let end = lkr_room::EgressEnd {
            size: 0,
            duration_ns: 0,
            error: Some(format!("cannot start the egress writer: {e}")),
            dropped: 0,
        };
        let _ = node
            .control
            .call(move |m, now| m.handle_egress_ended(now, &egress_id, end))
            .await;
    }
    Ok(info)
}

/// Runs `method` of `livekit.Egress` with a decoded `body`.
pub async fn dispatch(
    node: &Node,
    method: &str,
    format: Format,
    claims: &Claims,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, TwirpError> {
    let Some(rt) = node.egress.get() else {
        return Err(TwirpError::new(
            Code::Unavailable,
            "egress is not available on this node",
        ));
    };
    match method {
        "StartTrackEgress" => {
            let r: pb::TrackEgressRequest = format.decode(body)?;
            ensure_record(claims)?;
            let info = start_track_egress(node, rt, r).await?;
            Ok(format.encode(&info))
        }
        "ListEgress" => {
            let r: pb::ListEgressRequest = format.decode(body)?;
            ensure_record(claims)?;
            let items = node
                .control
                .call(move |m, _| m.api_list_egress(&r.room_name, &r.egress_id, r.active))
                .await
                .map_err(|e| TwirpError::new(Code::Internal, e.to_string()))?;
            Ok(format.encode(&pb::ListEgressResponse {
                items,
                next_page_token: None,
            }))
        }
        "StopEgress" => {
            let r: pb::StopEgressRequest = format.decode(body)?;
            ensure_record(claims)?;
            let info = node
                .control
                .call(move |m, now| m.api_stop_egress(now, &r.egress_id))
                .await
                .map_err(|e| TwirpError::new(Code::Internal, e.to_string()))?
                .map_err(room_error)?;
            Ok(format.encode(&info))
        }
        "StartRoomCompositeEgress"
        | "StartWebEgress"
        | "StartParticipantEgress"
        | "StartTrackCompositeEgress"
        | "StartEgress"
        | "UpdateLayout"
        | "UpdateStream"
        | "ExportReplay" => {
            ensure_record(claims)?;
            Err(TwirpError::new(
                Code::Unimplemented,
                format!(
                    "{method} needs an egress fleet; this node records single tracks to files (StartTrackEgress)"
                ),
            ))
        }
        _ => Err(TwirpError::bad_route(
            format!("no handler for path \"/twirp/{SERVICE}/{method}\""),
            "POST",
            &format!("/twirp/{SERVICE}/{method}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_fill_templates_add_the_extension_and_stay_inside() {
        let n = |p: &str| file_name(p, "r1", "RM_a", "TR_b", 1_764_806_400 + 3723, "ogg");
        assert_eq!(n("").unwrap(), "r1-TR_b-2025-12-04T010203.ogg");
        assert_eq!(
            n("rec/{room_id}/{track_id}.ogg").unwrap(),
            "rec/RM_a/TR_b.ogg"
        );
        assert_eq!(n("x.webm").unwrap(), "x.webm.ogg");
        assert_eq!(n("./a").unwrap(), "./a.ogg");
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/", "", "a\0b"] {
            if bad.is_empty() {
                continue;
            }
            let e = n(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad:?}");
        }
        assert!(n(&"a".repeat(MAX_FILEPATH + 1)).is_err());
    }

    #[test]
    fn time_stamps_are_utc_civil_time() {
        assert_eq!(time_stamp(0), "1970-01-01T000000");
        assert_eq!(time_stamp(951_782_400), "2000-02-29T000000");
        assert_eq!(time_stamp(4_102_444_799), "2099-12-31T235959");
    }
}
