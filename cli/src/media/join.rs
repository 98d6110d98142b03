//! `room join` (the `lk` form) and the legacy `join --token`: join a room with our own
//! client, publish files and data, record what others publish, print what happens.
//!
//! The session lasts until Ctrl-C or SIGTERM, until `--duration` passes, until every file
//! has been sent with `--exit-after-publish`, or until the server ends it. Progress goes
//! to stdout as lines of text, or as JSON objects (one per line) with `--json`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use lkr_client::{JoinSettings, Room, RoomEvent, RoomOptions};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::MediaError;
use super::record::{RecordNote, Recorder};
use super::source::{self, FilePublication, MediaFile, PublishSummary};
use crate::admin::command::parse_duration;
use crate::admin::connection::{Credentials, ServerUrl};

/// `room join`: the `lk room join` flags.
#[derive(Debug, Clone, Args)]
pub struct RoomJoinArgs {
    /// Participant identity
    #[arg(long, short = 'i')]
    pub identity: String,
    /// Participant display name
    #[arg(long)]
    pub name: Option<String>,
    /// Publish a file: .ogg (Opus) or .ivf (VP8, VP9 or AV1); repeatable
    #[arg(long = "publish", value_name = "FILE")]
    pub publish: Vec<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
    /// Room to join
    #[arg(value_name = "ROOM_NAME")]
    pub room: String,
}

/// The original `join --token`. It subscribes to every track, as the original did.
#[derive(Debug, Clone, Args)]
pub struct LegacyJoinArgs {
    /// Access token with the roomJoin grant
    #[arg(long, short = 't')]
    pub token: String,
    /// Publish an Ogg/Opus file as the microphone track
    #[arg(long, value_name = "FILE.ogg")]
    pub audio: Option<PathBuf>,
    /// Publish an IVF (VP8, VP9, AV1) file as the camera track
    #[arg(long, value_name = "FILE.ivf")]
    pub video: Option<PathBuf>,
    /// Publish a file (.ogg or .ivf); repeatable
    #[arg(long = "publish", value_name = "FILE")]
    pub publish: Vec<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// Flags both join forms share.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Send this text as a reliable data packet once joined
    #[arg(long, value_name = "TEXT")]
    pub publish_data: Option<String>,
    /// Topic of the data packet
    #[arg(long, value_name = "TOPIC")]
    pub data_topic: Option<String>,
    /// Write every subscribed track into DIR (Opus as .ogg, VP8/VP9/AV1 as .ivf); implies --auto-subscribe
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Subscribe to every track in the room
    #[arg(long)]
    pub auto_subscribe: bool,
    /// Leave once every published file has been sent
    #[arg(long)]
    pub exit_after_publish: bool,
    /// Start published files over when they end
    #[arg(long = "loop")]
    pub looping: bool,
    /// Leave after this long, e.g. 30s or 2m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Use two peer connections over /rtc instead of one over /rtc/v1
    #[arg(long)]
    pub dual_pc: bool,
}

/// Everything a join needs, whichever form it came from.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// Server URL.
    pub url: String,
    /// Access token.
    pub token: String,
    /// Files to publish.
    pub files: Vec<PathBuf>,
    /// Session flags.
    pub session: SessionArgs,
    /// Subscribe to everything.
    pub auto_subscribe: bool,
    /// JSON lines instead of text.
    pub json: bool,
}

impl JoinPlan {
    /// `room join`: a six-hour token for the identity and room, signed with `creds`.
    pub fn for_room(
        args: RoomJoinArgs,
        creds: &Credentials,
        url: &ServerUrl,
        json: bool,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            token: room_token(creds, &args)?,
            url: url.given().to_owned(),
            files: args.publish,
            auto_subscribe: args.session.auto_subscribe,
            session: args.session,
            json,
        })
    }

    /// `join --token`: `--audio`, `--video` and `--publish` files, everything subscribed.
    pub fn for_token(args: LegacyJoinArgs, url: &ServerUrl, json: bool) -> Self {
        let mut files: Vec<PathBuf> = args.audio.into_iter().chain(args.video).collect();
        files.extend(args.publish);
        Self {
            url: url.given().to_owned(),
            token: args.token,
            files,
            auto_subscribe: true,
            session: args.session,
            json,
        }
    }
}

struct Printer {
    json: bool,
}

impl Printer {
    fn event(&self, text: String, value: Value) {
        let mut out = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(out, "{value}")
        } else {
            writeln!(out, "{text}")
        };
        let _ = out.flush();
    }
}

/// Runs a join session until it ends; returns an error when it could not start or the
/// server ended it.
pub async fn run(plan: JoinPlan) -> Result<(), MediaError> {
    let p = Printer { json: plan.json };
    let files = plan
        .files
        .iter()
        .map(|f| MediaFile::probe(f))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RoomOptions {
        settings: JoinSettings {
            single_pc: !plan.session.dual_pc,
            auto_subscribe: plan.auto_subscribe || plan.session.record.is_some(),
        },
        recv_buffer: None,
        publishers_only: false,
        udp_gro: false,
    };
    let (room, mut events) = Room::connect(&plan.url, &plan.token, options).await?;
    let me = room.join_response().participant.clone().unwrap_or_default();
    p.event(
        format!(
            "Connected to room {} as {} ({}) in {} ms",
            room.name(),
            me.identity,
            me.sid,
            room.join_time().as_millis()
        ),
        json!({"event": "connected", "room": room.name(), "identity": me.identity,
               "sid": me.sid, "join_ms": room.join_time().as_millis() as u64}),
    );
    let mut recorder = match &plan.session.record {
        Some(dir) => Some(Recorder::new(dir)?),
        None => None,
    };
    let mut publications: Vec<FilePublication> = Vec::new();
    let mut streams: JoinSet<(usize, Result<PublishSummary, MediaError>)> = JoinSet::new();
    for file in files {
        let publication = source::publish(&room, file).await?;
        let t = &publication.track;
        p.event(
            format!(
                "Published {} as {} ({})",
                publication.file.path().display(),
                t.sid,
                publication.file.codec().mime_type()
            ),
            json!({"event": "published", "file": publication.file.path(), "sid": t.sid,
                   "mime_type": publication.file.codec().mime_type()}),
        );
        let sender = room.media_sender(t.id);
        let (file, flag) = (
            publication.file.clone(),
            publication.keyframe_wanted.clone(),
        );
        let looping = plan.session.looping;
        let index = publications.len();
        streams.spawn(async move { (index, source::stream(sender, file, looping, flag).await) });
        publications.push(publication);
    }
    if let Some(text) = &plan.session.publish_data {
        room.publish_data(
            text.clone().into_bytes(),
            plan.session.data_topic.clone(),
            true,
        )?;
        p.event(
            format!("Sent data: {text}"),
            json!({"event": "data_sent", "text": text}),
        );
    }
    let deadline = plan
        .session
        .duration
        .map(|d| tokio::time::Instant::now() + d);
    // With only data to send, give the data channel a moment to carry it.
    let data_only_exit = (plan.session.exit_after_publish && publications.is_empty())
        .then(|| tokio::time::Instant::now() + Duration::from_secs(1));
    let mut running = publications.len();
    let mut outcome: Result<(), MediaError> = Ok(());
    let mut terminate = terminate_signal();
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    RoomEvent::ParticipantConnected(pi) => p.event(
                        format!("Participant {} ({}) is in the room", pi.identity, pi.sid),
                        json!({"event": "participant_connected", "identity": pi.identity, "sid": pi.sid}),
                    ),
                    RoomEvent::ParticipantDisconnected(pi) => p.event(
                        format!("Participant {} ({}) left", pi.identity, pi.sid),
                        json!({"event": "participant_disconnected", "identity": pi.identity, "sid": pi.sid}),
                    ),
                    RoomEvent::TrackSubscribed(t) => {
                        p.event(
                            format!("Subscribed to {} ({} {:?}) from {}", t.sid, t.kind, t.name, t.participant_identity),
                            json!({"event": "track_subscribed", "sid": t.sid, "kind": t.kind.as_str(),
                                   "name": t.name, "participant": t.participant_identity}),
                        );
                        if let Some(r) = recorder.as_mut() {
                            r.add_track(t);
                        }
                    }
                    RoomEvent::TrackUnsubscribed { sid } => {
                        p.event(format!("Unsubscribed from {sid}"), json!({"event": "track_unsubscribed", "sid": sid}));
                        if let Some(r) = recorder.as_mut()
                            && let Some(f) = r.remove_track(&sid)?
                        {
                            print_recorded(&p, &f);
                        }
                    }
                    RoomEvent::Media { track_sid, codec, packet } => {
                        if let Some(r) = recorder.as_mut() {
                            match r.handle_packet(&track_sid, codec, &packet)? {
                                Some(RecordNote::Started { track_sid, path }) => p.event(
                                    format!("Recording {track_sid} to {}", path.display()),
                                    json!({"event": "recording", "sid": track_sid, "path": path}),
                                ),
                                Some(RecordNote::Unsupported { track_sid, codec }) => p.event(
                                    format!("Not recording {track_sid}: {codec} cannot be written to .ogg or .ivf"),
                                    json!({"event": "record_unsupported", "sid": track_sid, "codec": codec.sdp_name()}),
                                ),
                                Some(RecordNote::NeedKeyframe { track_sid }) => {
                                    let _ = room.request_keyframe(&track_sid);
                                }
                                None => {}
                            }
                        }
                    }
                    RoomEvent::Data { from, topic, payload, reliable } => {
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        p.event(
                            format!("Data from {from}{}: {text}", topic.as_deref().map(|t| format!(" [{t}]")).unwrap_or_default()),
                            json!({"event": "data", "from": from, "topic": topic, "text": text, "reliable": reliable}),
                        );
                    }
                    RoomEvent::KeyframeRequested { track, .. } => {
                        if let Some(pb) = publications.iter().find(|pb| pb.track.id == track) {
                            pb.keyframe_wanted.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    RoomEvent::Disconnected { reason } => {
                        outcome = Err(MediaError::Disconnected(reason));
                        break;
                    }
                }
            }
            done = streams.join_next(), if running > 0 => {
                running -= 1;
                match done {
                    Some(Ok((i, Ok(s)))) => p.event(
                        format!("Finished sending {}: {} frames, {} packets, {:.1} s{}",
                            publications[i].file.path().display(), s.frames, s.packets,
                            s.media_time.as_secs_f64(),
                            if s.keyframe_resends > 0 { format!(", {} keyframe resends", s.keyframe_resends) } else { String::new() }),
                        json!({"event": "publish_done", "sid": publications[i].track.sid, "frames": s.frames,
                               "packets": s.packets, "seconds": s.media_time.as_secs_f64(),
                               "keyframe_resends": s.keyframe_resends}),
                    ),
                    Some(Ok((i, Err(e)))) => {
                        outcome = Err(MediaError::Format(format!("{}: {e}", publications[i].file.path().display())));
                        break;
                    }
                    Some(Err(e)) => {
                        outcome = Err(MediaError::Format(format!("publisher task failed: {e}")));
                        break;
                    }
                    None => {}
                }
                if running == 0 && plan.session.exit_after_publish {
                    // Let the last packets and any retransmissions go out.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
            _ = sleep_opt(data_only_exit) => break,
            _ = sleep_opt(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    streams.abort_all();
    room.close().await;
    if let Some(r) = recorder.as_mut() {
        for f in r.finish()? {
            print_recorded(&p, &f);
        }
    }
    p.event("Left the room".into(), json!({"event": "left"}));
    outcome
}

fn print_recorded(p: &Printer, f: &super::record::RecordedFile) {
    p.event(
        format!(
            "Recorded {} to {}: {} frames, {:.2} s",
            f.track_sid,
            f.path.display(),
            f.frames,
            f.seconds
        ),
        json!({"event": "recorded", "sid": f.track_sid, "path": f.path, "frames": f.frames,
               "seconds": f.seconds}),
    );
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A stream of SIGTERM (Unix); never fires elsewhere or if the handler cannot be installed.
fn terminate_signal() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The token `room join` uses: identity, name, and the roomJoin grant for `room`, valid for
/// six hours (LiveKit's default).
pub fn room_token(creds: &Credentials, args: &RoomJoinArgs) -> Result<String, MediaError> {
    let grant = lkr_proto::token::VideoGrant {
        room_join: true,
        room: args.room.clone(),
        ..Default::default()
    };
    let mut token = lkr_proto::token::AccessToken::new(&creds.api_key, &creds.api_secret)
        .with_identity(args.identity.as_str())
        .with_grant(grant)
        .with_ttl(Duration::from_secs(6 * 3600));
    if let Some(name) = &args.name {
        token = token.with_name(name.as_str());
    }
    token
        .to_jwt()
        .map_err(|e| MediaError::BadArgument(format!("could not sign the token: {e}")))
}
