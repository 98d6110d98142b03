//! Track egress in the machine: start, status changes, stop, the track going, the cap, and
//! what ListEgress and the room events say.

use super::*;
use lkr_sfu::SinkId;

fn start(
    w: &mut World,
    id: &str,
    track: &str,
    sink: u64,
    max: usize,
) -> Result<pb::EgressInfo, RoomError> {
    let r = w.m.api_start_track_egress(
        w.now,
        StartEgress {
            egress_id: id.into(),
            sink: SinkId(sink),
            request: pb::TrackEgressRequest {
                room_name: "r".into(),
                track_id: track.into(),
                ..Default::default()
            },
            filename: format!("{id}.ogg"),
            location: format!("/rec/{id}.ogg"),
            max_active: max,
        },
    );
    w.drain();
    r
}

fn status_of(i: &pb::EgressInfo) -> pb::EgressStatus {
    pb::EgressStatus::try_from(i.status).unwrap()
}

fn egress_events(w: &World) -> Vec<(&'static str, pb::EgressStatus)> {
    w.events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::EgressStarted { info } => Some(("started", status_of(info))),
            RoomEvent::EgressUpdated { info } => Some(("updated", status_of(info))),
            RoomEvent::EgressEnded { info } => Some(("ended", status_of(info))),
            _ => None,
        })
        .collect()
}

#[test]
fn a_track_egress_starts_goes_active_stops_and_completes() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    assert_eq!(w.m.egress_track("r", &track).unwrap().codec, "opus");
    w.clear();

    let info = start(&mut w, "EG_1", &track, 5, 4).unwrap();
    assert_eq!(status_of(&info), pb::EgressStatus::EgressStarting);
    assert_eq!(info.room_name, "r");
    assert!(info.room_id.starts_with("RM_"));
    assert_eq!(info.started_at, 1_700_000_000_000 * 1_000_000);
    assert_eq!(info.file_results[0].filename, "EG_1.ogg");
    assert!(w.media.iter().any(|c| matches!(
        c,
        Command::AddSink {
            sink: SinkId(5),
            ..
        }
    )));

    w.advance(Duration::from_millis(200));
    w.m.handle_egress_active(w.now, "EG_1");
    w.drain();
    let listed = w.m.api_list_egress("r", "", true);
    assert_eq!(listed.len(), 1);
    assert_eq!(status_of(&listed[0]), pb::EgressStatus::EgressActive);

    w.advance(Duration::from_secs(3));
    let stopping = w.m.api_stop_egress(w.now, "EG_1").unwrap();
    w.drain();
    assert_eq!(status_of(&stopping), pb::EgressStatus::EgressEnding);
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::RemoveSink { sink: SinkId(5) }))
    );
    // Stopping again, while the file is being completed, is refused.
    assert!(matches!(
        w.m.api_stop_egress(w.now, "EG_1"),
        Err(RoomError::EgressNotStoppable(_))
    ));

    w.m.handle_egress_ended(
        w.now,
        "EG_1",
        EgressEnd {
            size: 12_345,
            duration_ns: 3_000_000_000,
            error: None,
            dropped: 3,
        },
    );
    w.drain();
    let done = w.m.api_list_egress("", "EG_1", false);
    assert_eq!(
        done[0].details,
        "3 packets dropped: the file writer fell behind"
    );
    assert_eq!(done.len(), 1);
    assert_eq!(status_of(&done[0]), pb::EgressStatus::EgressComplete);
    assert_eq!(done[0].file_results[0].size, 12_345);
    assert_eq!(done[0].file_results[0].duration, 3_000_000_000);
    assert!(done[0].ended_at > done[0].started_at);
    assert!(w.m.api_list_egress("", "", true).is_empty(), "none active");
    assert_eq!(
        w.m.api_stop_egress(w.now, "EG_1").unwrap_err().twirp_code(),
        "failed_precondition"
    );
    assert_eq!(
        egress_events(&w),
        vec![
            ("started", pb::EgressStatus::EgressStarting),
            ("updated", pb::EgressStatus::EgressActive),
            ("updated", pb::EgressStatus::EgressEnding),
            ("ended", pb::EgressStatus::EgressComplete),
        ]
    );
}

#[test]
fn an_egress_ends_with_its_track_and_a_writer_error_fails_it_alone() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    start(&mut w, "EG_1", &track, 1, 4).unwrap();
    start(&mut w, "EG_2", &track, 2, 4).unwrap();
    w.clear();

    // A write error on one: FAILED with the error, the other and the room go on.
    w.m.handle_egress_ended(
        w.now,
        "EG_2",
        EgressEnd {
            size: 4096,
            duration_ns: 1,
            error: Some("No space left on device (os error 28)".into()),
            dropped: 0,
        },
    );
    w.drain();
    let failed = &w.m.api_list_egress("", "EG_2", false)[0];
    assert_eq!(status_of(failed), pb::EgressStatus::EgressFailed);
    assert!(failed.error.contains("No space left"));
    assert_eq!(w.m.api_list_egress("r", "", true).len(), 1);
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
    assert!(w.closes.is_empty());

    // The publisher leaves: its track goes, and the egress ends with it.
    w.clear();
    w.signal(&a, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::RemoveSink { sink: SinkId(1) }))
    );
    assert_eq!(
        egress_events(&w),
        vec![("updated", pb::EgressStatus::EgressEnding)]
    );
}

#[test]
fn bad_egress_requests_are_refused_and_the_cap_holds() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    w.clear();
    assert_eq!(
        start(&mut w, "EG_x", "TR_nope", 1, 4),
        Err(RoomError::TrackNotFound)
    );
    let mut other = pb::TrackEgressRequest {
        room_name: "nope".into(),
        track_id: track.clone(),
        ..Default::default()
    };
    let r = w.m.api_start_track_egress(
        w.now,
        StartEgress {
            egress_id: "EG_y".into(),
            sink: SinkId(1),
            request: other.clone(),
            filename: String::new(),
            location: String::new(),
            max_active: 4,
        },
    );
    assert_eq!(r, Err(RoomError::RoomNotFound));
    other.room_name = "r".into();
    assert_eq!(
        w.m.api_stop_egress(w.now, "EG_zz"),
        Err(RoomError::EgressNotFound)
    );
    for i in 0..2 {
        start(&mut w, &format!("EG_{i}"), &track, i, 2).unwrap();
    }
    let e = start(&mut w, "EG_3", &track, 3, 2).unwrap_err();
    assert_eq!(e.twirp_code(), "resource_exhausted");
    assert!(
        w.events
            .iter()
            .all(|e| !matches!(e, RoomEvent::EgressStarted { info } if info.egress_id == "EG_3"))
    );
}

#[test]
fn ended_egresses_kept_for_listing_are_capped() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    for i in 0..(ENDED_EGRESS_KEPT as u64 + 10) {
        let id = format!("EG_{i}");
        start(&mut w, &id, &track, i, 1).unwrap();
        w.m.handle_egress_ended(
            w.now,
            &id,
            EgressEnd {
                size: 1,
                duration_ns: 1,
                error: None,
                dropped: 0,
            },
        );
        w.clear();
    }
    let all = w.m.api_list_egress("", "", false);
    assert_eq!(all.len(), ENDED_EGRESS_KEPT);
    assert_eq!(
        all[0].egress_id,
        format!("EG_{}", ENDED_EGRESS_KEPT + 9),
        "newest first"
    );
}

#[test]
fn a_recording_asks_the_publisher_for_its_best_layer_until_it_ends() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.answer_subscriber(&a);
    let track = w.publish_simulcast_camera(&a);
    let told = |w: &World| -> Vec<Vec<bool>> {
        w.to(&a)
            .into_iter()
            .filter_map(|m| match m {
                Resp::SubscribedQualityUpdate(u) => Some(
                    u.subscribed_codecs[0]
                        .qualities
                        .iter()
                        .map(|q| q.enabled)
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    };
    w.clear();
    start(&mut w, "EG_v", &track, 1, 4).unwrap();
    assert_eq!(
        told(&w),
        vec![vec![true, true, true]],
        "every layer for the recording"
    );
    w.clear();
    w.m.api_stop_egress(w.now, "EG_v").unwrap();
    w.drain();
    assert_eq!(
        told(&w),
        vec![vec![true, false, false]],
        "back to the lowest once it ends"
    );
}
