//! Shared set-up for the simulation tests: a room with one publisher of video and audio and
//! some subscribers, and the checks that a subscriber got a complete, consistent stream.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use lkr_sfu::TrackId;
use lkr_sim::{ClientId, MediaSource, Sim, SimConfig, VideoConfig};

pub const VIDEO: TrackId = TrackId(1);
pub const AUDIO: TrackId = TrackId(2);

/// One publisher, subscribers to both its tracks.
pub struct Room {
    pub sim: Sim,
    pub publisher: ClientId,
    pub video_ssrc: u32,
    pub audio_ssrc: u32,
    /// Each subscriber with the SSRCs it receives video and audio on.
    pub subscribers: Vec<(ClientId, u32, u32)>,
}

/// Connects `subscribers + 1` clients, publishes video (`video`) and audio from the first and
/// subscribes the others to both.
pub fn room(seed: u64, subscribers: usize, video: VideoConfig) -> Room {
    let mut sim = Sim::new(SimConfig::seeded(seed));
    let publisher = sim.add_client();
    let subs: Vec<ClientId> = (0..subscribers).map(|_| sim.add_client()).collect();
    assert!(sim.connect_all(Duration::from_secs(5)), "peers connect");
    let video_ssrc = sim.publish(publisher, VIDEO, MediaSource::Video(video));
    let audio_ssrc = sim.publish(publisher, AUDIO, MediaSource::audio());
    let subscribers = subs
        .into_iter()
        .map(|c| (c, sim.subscribe(c, VIDEO), sim.subscribe(c, AUDIO)))
        .collect();
    Room {
        sim,
        publisher,
        video_ssrc,
        audio_ssrc,
        subscribers,
    }
}

/// Ends a run: heals every link and lets media flow a little longer (a loss at the very end
/// of a stream shows no gap to anybody, so nothing could repair it), stops the publisher's
/// tracks and lets repairs finish.
pub fn stop_and_drain(sim: &mut Sim, publisher: ClientId, drain: Duration) {
    sim.net.heal();
    sim.run_for(Duration::from_millis(500));
    let now = sim.now();
    for track in [VIDEO, AUDIO] {
        if let Some(p) = sim.client_mut(publisher).publisher_mut(track) {
            p.set_sending(false, now);
        }
    }
    sim.run_for(drain);
}

/// Asserts that the subscriber's stream of `track` holds, without a gap, every packet the
/// publisher sent from the first one forwarded to it on, that video starts on a keyframe,
/// and that sequence numbers and timestamps are the publisher's shifted by constants.
/// Returns how many packets it holds and how many the publisher had sent before the first.
pub fn assert_complete(
    sim: &Sim,
    publisher: ClientId,
    subscriber: ClientId,
    ssrc: u32,
    track: TrackId,
) -> (usize, usize) {
    let s = sim
        .client(subscriber)
        .stream(ssrc)
        .unwrap_or_else(|| panic!("subscriber {subscriber:?} received nothing on {ssrc:#x}"));
    assert!(
        s.gaps().is_empty(),
        "{subscriber:?} {track:?}: gaps {:?}",
        s.gaps()
    );
    if let Err(e) = s.check_consistency() {
        panic!("{subscriber:?} {track:?}: {e}");
    }
    assert_eq!(s.stats.corrupt, 0);
    // The lowest packet forwarded, by its rewritten number.
    let first = s.packets.iter().min_by_key(|p| p.ext).expect("packets");
    let lowest = first.tag.expect("tagged packets").0.seq;
    let source = sim
        .client(publisher)
        .publisher(track)
        .expect("the publisher has the track");
    if source.source.kind() == lkr_sfu::MediaKind::Video {
        assert!(
            first.keyframe,
            "{subscriber:?} {track:?}: video starts on a keyframe"
        );
    }
    let next = source.next_seq();
    let skipped = usize::from(lowest.wrapping_sub(source.first_seq()));
    let expected: BTreeSet<u16> = (0..next.wrapping_sub(lowest))
        .map(|i| lowest.wrapping_add(i))
        .collect();
    let got = s.original_seqs();
    let missing: Vec<u16> = expected.difference(&got).copied().collect();
    assert!(
        missing.is_empty(),
        "{subscriber:?} {track:?}: never got originals {missing:?}"
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "no packet from outside the stream"
    );
    (got.len(), skipped)
}
pub mod vp9;
