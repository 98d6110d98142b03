//! WHEP playback in the machine: a player's offer is answered with the publisher's tracks.

use super::*;

/// Alice publishes a microphone and a three-layer camera; returns (audio sid, video sid).
fn alice_publishes(w: &mut World, a: &str) -> (String, String) {
    let audio = w.publish_audio(a, "mic");
    w.signal(
        a,
        Req::AddTrack(pb::AddTrackRequest {
            cid: "cam".into(),
            r#type: pb::TrackType::Video as i32,
            source: pb::TrackSource::Camera as i32,
            layers: [(0, 320), (1, 640), (2, 1280)]
                .iter()
                .map(|(q, wd)| pb::VideoLayer {
                    quality: *q,
                    width: *wd,
                    height: wd * 3 / 4,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    )
    .unwrap();
    w.offer(
        a,
        client_offer(&[
            Sec::Data,
            Sec::SendAudio("mic"),
            Sec::SendVideo("cam", &["q", "h", "f"]),
        ]),
    )
    .unwrap();
    let tracks = w.participant("alice").tracks;
    let video = tracks
        .iter()
        .find(|t| t.r#type == pb::TrackType::Video as i32)
        .expect("video published")
        .sid
        .clone();
    (audio, video)
}

/// A player: single PC, no auto-subscription (as the WHEP front door joins it).
fn join_player(w: &mut World, identity: &str, grant: VideoGrant) -> String {
    let claims = Claims {
        sub: identity.into(),
        video: Some(VideoGrant {
            room_join: true,
            room: "r".into(),
            ..grant
        }),
        ..Default::default()
    };
    let mut j = join_of("r", identity, claims);
    j.single_pc = true;
    j.auto_subscribe = false;
    let psid = w.m.handle_join(w.now, j).expect("player admitted");
    w.drain();
    psid
}

fn play(
    w: &mut World,
    psid: &str,
    track: Option<&str>,
    quality: Option<i32>,
) -> Result<(), RoomError> {
    let r = w.m.handle_play_offer(
        w.now,
        psid,
        PlayOffer {
            publisher: "alice".into(),
            track_sid: track.map(str::to_string),
            quality,
            offer: pb::SessionDescription {
                r#type: "offer".into(),
                sdp: client_offer(&[Sec::RecvAudio, Sec::RecvVideo]),
                id: 0,
                mid_to_track_id: HashMap::new(),
            },
        },
    );
    w.drain();
    r
}

#[test]
fn a_player_offer_is_answered_with_the_publishers_tracks() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let (audio, video) = alice_publishes(&mut w, &a);
    let v = join_player(&mut w, "viewer", VideoGrant::default());
    w.clear();
    play(&mut w, &v, None, None).expect("played");
    let ans = w.last_answer(&v);
    // Both receive-only sections carry a track: audio on mid 0, video on mid 1.
    assert_eq!(ans.mid_to_track_id.get("0"), Some(&audio));
    assert_eq!(ans.mid_to_track_id.get("1"), Some(&video));
    let sd = lkr_sdp::parse(&ans.sdp).unwrap();
    assert!(
        sd.media
            .iter()
            .all(|m| m.direction == Some(lkr_sdp::Direction::SendOnly))
    );
    let peer = w.added_peers()[0];
    let subscribed: Vec<_> = w
        .media
        .iter()
        .filter(|c| matches!(c, Command::Subscribe(s) if s.peer == peer))
        .collect();
    assert_eq!(subscribed.len(), 2, "{:?}", w.media);
    // No layer was asked for: nothing caps it (congestion control chooses).
    assert!(
        !w.media
            .iter()
            .any(|c| matches!(c, Command::SetMaxLayer { .. }))
    );
    // The player is a subscriber of both tracks in the room's records.
    assert_eq!(w.m.stats().subscribed_audio, 1);
    assert_eq!(w.m.stats().subscribed_video, 1);
    assert_eq!(w.m.participant_subscriptions(&v), 2);
    // The publisher leaves: nothing is left to play.
    w.signal(&a, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    assert_eq!(w.m.participant_subscriptions(&v), 0);
    assert_eq!(w.m.participant_media_up(&v), Some(false));
}

#[test]
fn a_player_can_ask_for_one_track_and_a_layer() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let (_audio, video) = alice_publishes(&mut w, &a);
    let v = join_player(&mut w, "viewer", VideoGrant::default());
    w.clear();
    play(&mut w, &v, Some(&video), Some(pb::VideoQuality::Low as i32)).expect("played");
    let ans = w.last_answer(&v);
    // Only the video is played; the audio section stays inactive.
    assert_eq!(ans.mid_to_track_id.len(), 1);
    assert_eq!(ans.mid_to_track_id.get("1"), Some(&video));
    let peer = w.added_peers()[0];
    assert!(w.media.iter().any(|c| matches!(c,
        Command::SetMaxLayer { peer: p, max_layer: 0, .. } if *p == peer)));
    // Dynacast hears the player's wish.
    assert!(
        w.to(&a)
            .iter()
            .any(|m| matches!(m, Resp::SubscribedQualityUpdate(_)))
    );
}

#[test]
fn a_player_offer_is_refused_without_effect() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let v = join_player(&mut w, "viewer", VideoGrant::default());
    w.clear();
    // Alice has published nothing yet.
    assert_eq!(play(&mut w, &v, None, None), Err(RoomError::TrackNotFound));
    let (audio, _) = alice_publishes(&mut w, &a);
    w.clear();
    // No such track of hers.
    assert_eq!(
        play(&mut w, &v, Some("TR_nope"), None),
        Err(RoomError::TrackNotFound)
    );
    // A player whose token may not subscribe.
    let mute = join_player(
        &mut w,
        "deaf",
        VideoGrant {
            can_subscribe: Some(false),
            ..Default::default()
        },
    );
    w.clear();
    assert!(matches!(
        play(&mut w, &mute, None, None),
        Err(RoomError::NotAllowed(_))
    ));
    // A publisher that is not in the room.
    let r = w.m.handle_play_offer(
        w.now,
        &v,
        PlayOffer {
            publisher: "nobody".into(),
            track_sid: Some(audio),
            quality: None,
            offer: pb::SessionDescription {
                r#type: "offer".into(),
                sdp: client_offer(&[Sec::RecvAudio]),
                id: 0,
                mid_to_track_id: HashMap::new(),
            },
        },
    );
    assert_eq!(r, Err(RoomError::ParticipantNotFound));
    // Malformed SDP.
    let r = w.m.handle_play_offer(
        w.now,
        &v,
        PlayOffer {
            publisher: "alice".into(),
            track_sid: None,
            quality: None,
            offer: pb::SessionDescription {
                r#type: "offer".into(),
                sdp: "not sdp".into(),
                id: 0,
                mid_to_track_id: HashMap::new(),
            },
        },
    );
    assert!(matches!(r, Err(RoomError::InvalidArgument(_))), "{r:?}");
    w.drain();
    assert!(w.media.is_empty(), "{:?}", w.media);
    assert!(!w.signals.iter().any(|(_, m)| matches!(m, Resp::Answer(_))));
    assert_eq!(w.m.stats().subscribed_audio, 0);
}
