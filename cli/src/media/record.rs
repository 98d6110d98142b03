//! `--record DIR`: every subscribed track written to a file as it arrives.
//!
//! Opus goes to `<identity>-<track sid>.ogg` (granule positions from the RTP timestamps,
//! so gaps keep their length); VP8, VP9 and AV1 go to `<identity>-<track sid>.ivf` with a
//! 1/90000 time base and the RTP timestamp (from the first frame) as presentation time.
//! Video starts at a keyframe; after loss the damaged frames are skipped up to the next
//! keyframe, which is requested from the publisher (again every second while frames are
//! being skipped). Other codecs are reported and skipped. The writing itself is
//! `lkr_media_file::track::TrackWriter`, which the server's track egress uses too.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lkr_client::{Codec, MediaPacket, RemoteTrack};
use lkr_media_file::track::{Packet, Pushed, TrackWriter, extension};

use super::{MediaError, file_codec};

struct TrackRecording {
    track: RemoteTrack,
    path: Option<PathBuf>,
    writer: Option<TrackWriter<BufWriter<File>>>,
    /// The unsupported codec, once reported.
    skipped: Option<Codec>,
}

/// What the recorder tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordNote {
    /// A file was started.
    Started {
        /// Track sid.
        track_sid: String,
        /// The file.
        path: PathBuf,
    },
    /// The track's codec cannot be recorded.
    Unsupported {
        /// Track sid.
        track_sid: String,
        /// The codec.
        codec: Codec,
    },
    /// Frames were lost: ask the publisher for a keyframe.
    NeedKeyframe {
        /// Track sid.
        track_sid: String,
    },
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFile {
    /// Track sid.
    pub track_sid: String,
    /// The file.
    pub path: PathBuf,
    /// Frames (Opus packets or video frames) written.
    pub frames: u64,
    /// Media time covered, seconds.
    pub seconds: f64,
}

/// Writes every subscribed track into a directory.
pub struct Recorder {
    dir: PathBuf,
    tracks: HashMap<Arc<str>, TrackRecording>,
}

fn file_stem(track: &RemoteTrack) -> String {
    let who = if track.participant_identity.is_empty() {
        track.participant_sid.as_str()
    } else {
        track.participant_identity.as_str()
    };
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}", clean(who), clean(&track.sid))
}

impl Recorder {
    /// A recorder writing into `dir`, which is created if needed.
    pub fn new(dir: &Path) -> Result<Self, MediaError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            tracks: HashMap::new(),
        })
    }

    /// Notes a subscribed track; its file starts with its first packet.
    pub fn add_track(&mut self, track: RemoteTrack) {
        self.tracks.insert(
            Arc::from(track.sid.as_str()),
            TrackRecording {
                track,
                path: None,
                writer: None,
                skipped: None,
            },
        );
    }

    /// Writes one packet of `track_sid`.
    pub fn handle_packet(
        &mut self,
        track_sid: &str,
        codec: Option<Codec>,
        packet: &MediaPacket,
    ) -> Result<Option<RecordNote>, MediaError> {
        let Some(rec) = self.tracks.get_mut(track_sid) else {
            return Ok(None);
        };
        let Some(codec) = codec else {
            return Ok(None);
        };
        if packet.payload.is_empty() {
            return Ok(None);
        }
        let mut note = None;
        if rec.writer.is_none() {
            if rec.skipped.is_some() {
                return Ok(None);
            }
            let Some(ext) = extension(file_codec(codec)) else {
                rec.skipped = Some(codec);
                return Ok(Some(RecordNote::Unsupported {
                    track_sid: track_sid.to_owned(),
                    codec,
                }));
            };
            let path = self.dir.join(format!("{}.{ext}", file_stem(&rec.track)));
            let file = BufWriter::new(File::create(&path)?);
            rec.writer = Some(TrackWriter::new(file, file_codec(codec))?);
            rec.path = Some(path.clone());
            note = Some(RecordNote::Started {
                track_sid: track_sid.to_owned(),
                path,
            });
        }
        let Some(writer) = rec.writer.as_mut() else {
            return Ok(note);
        };
        let p = Packet {
            timestamp: packet.timestamp,
            marker: packet.marker,
            payload: &packet.payload,
            lost_before: packet.lost_before,
        };
        if writer.push(&p, std::time::Instant::now())? == Pushed::NeedKeyframe {
            note = note.or(Some(RecordNote::NeedKeyframe {
                track_sid: track_sid.to_owned(),
            }));
        }
        Ok(note)
    }

    /// Closes the file of a track that stopped.
    pub fn remove_track(&mut self, track_sid: &str) -> Result<Option<RecordedFile>, MediaError> {
        match self.tracks.remove(track_sid) {
            Some(rec) => finish(rec),
            None => Ok(None),
        }
    }

    /// Closes every file.
    pub fn finish(&mut self) -> Result<Vec<RecordedFile>, MediaError> {
        let mut out = Vec::new();
        for (_, rec) in self.tracks.drain() {
            if let Some(f) = finish(rec)? {
                out.push(f);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn finish(mut rec: TrackRecording) -> Result<Option<RecordedFile>, MediaError> {
    let Some(writer) = rec.writer.as_mut() else {
        return Ok(None);
    };
    writer.finish()?;
    let (frames, seconds) = (writer.frames(), writer.duration().as_secs_f64());
    let Some(path) = rec.path else {
        return Ok(None);
    };
    Ok(Some(RecordedFile {
        track_sid: rec.track.sid,
        path,
        frames,
        seconds,
    }))
}
