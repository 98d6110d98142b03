//! One track egress's writer: a thread that takes the track's packets from its local sink,
//! writes them into the file with `lkr_media_file`'s track writer, and tells the room
//! machine when media first reached the file and how the egress ended.
//!
//! The file is flushed once a second, so that it grows on disk while recording. It ends
//! when the media core lets go of the sink (the egress was stopped, or its track went):
//! the file is completed and the egress is COMPLETE with its size and duration. A write
//! error ends it at once: the sink is dropped (the shard then stops feeding it) and the
//! egress is FAILED with the error. Neither touches anything else.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use lkr_driver::{MediaHandle, SinkReceiver};
use lkr_media_file::track::{Packet, Pushed, SeqGate, TrackWriter};
use lkr_media_file::{Codec, Container, FileError};
use lkr_room::EgressEnd;
use lkr_rtp::RtpView;
use lkr_sfu::{CodecKind, Command, TrackId};
use lkr_signal::Control;

/// How often what was written is flushed to the file.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the writer waits for a packet before it looks at the clock again.
const POLL: Duration = Duration::from_millis(200);

/// An egress to write.
pub struct Job {
    pub egress_id: String,
    pub rx: SinkReceiver,
    pub codec: Codec,
    pub container: Container,
    pub path: PathBuf,
    /// The media core's track, for keyframe requests.
    pub track: TrackId,
    pub media: MediaHandle,
    pub control: Control,
    pub runtime: tokio::runtime::Handle,
}

/// Starts the writer thread of `job`.
pub fn spawn(job: Job) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("egress-{}", job.egress_id))
        .spawn(move || run(job))
        .map(|_| ())
}

fn run(job: Job) {
    let Job {
        egress_id,
        rx,
        codec,
        container,
        path,
        track,
        media,
        control,
        runtime,
    } = job;
    let id = egress_id.clone();
    let (c, rt) = (control.clone(), runtime.clone());
    let on_active = move || {
        let id = id.clone();
        let _ = rt.block_on(c.call(move |m, now| m.handle_egress_active(now, &id)));
    };
    let keyframe = || {
        let _ = media.send(Command::RequestKeyframe { track });
    };
    let (written, error) = match write(&rx, codec, container, &path, on_active, keyframe) {
        Ok(w) => (w, None),
        Err((w, e)) => (w, Some(e.to_string())),
    };
    // Dropping the receiver lets the shard drop the sink at its next packet.
    let dropped = rx.dropped();
    drop(rx);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    tracing::debug!(egress = %egress_id, size, dropped, "egress writer done");
    let end = EgressEnd {
        size: size as i64,
        duration_ns: written.as_nanos() as i64,
        error,
        dropped,
    };
    let _ =
        runtime.block_on(control.call(move |m, now| m.handle_egress_ended(now, &egress_id, end)));
}

/// Writes until the sink closes; the media time written, and the error that stopped it.
fn write(
    rx: &SinkReceiver,
    codec: Codec,
    container: Container,
    path: &PathBuf,
    mut on_active: impl FnMut(),
    keyframe: impl Fn(),
) -> Result<Duration, (Duration, FileError)> {
    let fail = |e: FileError| (Duration::ZERO, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.into()))?;
    }
    let file = File::create(path).map_err(|e| fail(e.into()))?;
    let out = BufWriter::with_capacity(64 * 1024, file);
    let mut w = TrackWriter::with_container(out, codec, container).map_err(fail)?;
    let mut gate = SeqGate::default();
    let mut active = false;
    let mut next_flush = Instant::now() + FLUSH_INTERVAL;
    let result = loop {
        match rx.recv_timeout(POLL) {
            Ok(pkt) => {
                let pushed = push(&mut w, &mut gate, pkt.codec, &pkt.data);
                rx.recycle(pkt.data);
                match pushed {
                    Ok(Pushed::Written) if !active => {
                        active = true;
                        on_active();
                    }
                    Ok(Pushed::NeedKeyframe) => keyframe(),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break w.finish(),
        }
        let now = Instant::now();
        if now >= next_flush {
            next_flush = now + FLUSH_INTERVAL;
            if let Err(e) = w.flush() {
                break Err(e);
            }
        }
    };
    let d = w.duration();
    result.map(|()| d).map_err(|e| (d, e))
}

fn push(
    w: &mut TrackWriter<BufWriter<File>>,
    gate: &mut SeqGate,
    codec: CodecKind,
    data: &[u8],
) -> Result<Pushed, FileError> {
    let Ok(view) = RtpView::parse(data) else {
        return Ok(Pushed::Nothing);
    };
    let Some(lost_before) = gate.accept(view.sequence()) else {
        return Ok(Pushed::Nothing);
    };
    let payload = match codec {
        // RED-wrapped Opus: its primary encoding.
        CodecKind::Red => match lkr_sfu::forward::red_primary(view.payload()) {
            Some(p) => p,
            None => return Ok(Pushed::Nothing),
        },
        _ => view.payload(),
    };
    w.push(
        &Packet {
            timestamp: view.timestamp(),
            marker: view.marker(),
            payload,
            lost_before,
        },
        Instant::now(),
    )
}
