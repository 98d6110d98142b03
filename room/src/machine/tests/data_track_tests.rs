//! Data tracks in the machine: publishing by LiveKit's rules, subscriber handles, packets
//! forwarded under each subscriber's handle, and what ends a subscription (unsubscribing,
//! the publisher's permission, the track or its publisher going).

use super::*;

fn publish(w: &mut World, psid: &str, handle: u32, name: &str) {
    w.signal(
        psid,
        Req::PublishDataTrackRequest(pb::PublishDataTrackRequest {
            pub_handle: handle,
            name: name.into(),
            ..Default::default()
        }),
    )
    .unwrap();
}

/// The data track records `psid` was answered with since the last clear.
fn published_to(w: &World, psid: &str) -> Vec<pb::DataTrackInfo> {
    w.to(psid)
        .into_iter()
        .filter_map(|m| match m {
            Resp::PublishDataTrackResponse(r) => r.info.clone(),
            _ => None,
        })
        .collect()
}

/// The refusals of data track publications `psid` was sent since the last clear.
fn refusals_to(w: &World, psid: &str) -> Vec<(i32, u32)> {
    w.to(psid)
        .into_iter()
        .filter_map(|m| match m {
            Resp::RequestResponse(pb::RequestResponse {
                reason,
                request: Some(pb::request_response::Request::PublishDataTrack(r)),
                ..
            }) => Some((*reason, r.pub_handle)),
            _ => None,
        })
        .collect()
}

/// The last handle map `psid` was sent since the last clear: handle → (track, publisher).
fn handles_to(w: &World, psid: &str) -> Option<Vec<(u32, String, String)>> {
    w.to(psid).into_iter().rev().find_map(|m| match m {
        Resp::DataTrackSubscriberHandles(h) => {
            let mut v: Vec<_> = h
                .sub_handles
                .iter()
                .map(|(k, t)| (*k, t.track_sid.clone(), t.publisher_identity.clone()))
                .collect();
            v.sort();
            Some(v)
        }
        _ => None,
    })
}

/// A data track packet of `handle` with `payload`.
fn packet(handle: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x18, 0];
    p.extend_from_slice(&handle.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 9]);
    p.extend_from_slice(payload);
    p
}

/// What was sent on `_data_track` channels since the last clear: (peer, packet).
fn forwarded(w: &World) -> Vec<(PeerId, Vec<u8>)> {
    w.media
        .iter()
        .filter_map(|c| match c {
            Command::SendDataTrack { peer, data } => Some((*peer, data.to_vec())),
            _ => None,
        })
        .collect()
}

/// An update subscribing to (or unsubscribing from) one data track.
fn data_subscription(sid: &str, subscribe: bool) -> Req {
    Req::UpdateDataSubscription(pb::UpdateDataSubscription {
        updates: vec![pb::update_data_subscription::Update {
            track_sid: sid.into(),
            subscribe,
            options: None,
        }],
    })
}

fn send_packet(w: &mut World, peer: PeerId, data: Vec<u8>) {
    w.media_event(Event::Data {
        peer,
        label: "_data_track".into(),
        binary: true,
        data,
    });
}

#[test]
fn a_data_track_reaches_its_subscribers_under_their_own_handles() {
    let mut w = World::new();
    let (a, b, pa, pb_) = w.connected_pair();

    publish(&mut w, &a, 7, "sensor");
    let info = published_to(&w, &a)
        .pop()
        .expect("answered with the track's record");
    assert!(info.sid.starts_with("DTR_") && info.pub_handle == 7 && info.name == "sensor");
    w.run_for(UPDATE_BATCH);
    assert_eq!(w.participant("alice").data_tracks, vec![info.clone()]);
    // Bob takes new data tracks (a URL join's default): he is told his handle for it.
    let handles = handles_to(&w, &b).expect("bob is told his handles");
    assert_eq!(handles.len(), 1);
    let (bh, track, publisher) = handles[0].clone();
    assert_eq!(
        (track.as_str(), publisher.as_str()),
        (info.sid.as_str(), "alice")
    );
    assert!(handles_to(&w, &a).is_none(), "never its own track");
    // livekit-client still asks for the track, and waits for the map: it is sent again, with
    // the same handle.
    w.clear();
    w.signal(&b, data_subscription(&info.sid, true)).unwrap();
    assert_eq!(handles_to(&w, &b), Some(handles.clone()));

    // A packet goes to bob with his handle, the rest of it unchanged; never back to alice.
    w.clear();
    send_packet(&mut w, pa, packet(7, b"reading 1"));
    let sent = forwarded(&w);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, pb_);
    assert_eq!(sent[0].1, packet(bh as u16, b"reading 1"));
    // An unknown handle, or too short a packet, goes nowhere.
    w.clear();
    send_packet(&mut w, pa, packet(8, b"x"));
    send_packet(&mut w, pa, packet(7, b"")[..11].to_vec());
    assert!(forwarded(&w).is_empty());

    // A second track of the same name, or under the same handle, is refused with LiveKit's
    // reasons; the first keeps working.
    w.clear();
    publish(&mut w, &a, 8, "sensor");
    publish(&mut w, &a, 7, "other");
    publish(&mut w, &a, 0, "zero");
    publish(&mut w, &a, 9, "");
    use pb::request_response::Reason;
    assert_eq!(
        refusals_to(&w, &a),
        vec![
            (Reason::DuplicateName as i32, 8),
            (Reason::DuplicateHandle as i32, 7),
            (Reason::InvalidHandle as i32, 0),
            (Reason::InvalidName as i32, 9),
        ]
    );
    send_packet(&mut w, pa, packet(7, b"reading 2"));
    assert_eq!(forwarded(&w).len(), 1);

    // Bob unsubscribes: his map empties and nothing more comes; subscribing again brings
    // the track back under a handle he is told.
    let update = |subscribe| data_subscription(&info.sid, subscribe);
    w.clear();
    w.signal(&b, update(false)).unwrap();
    assert_eq!(handles_to(&w, &b), Some(vec![]));
    send_packet(&mut w, pa, packet(7, b"reading 3"));
    assert!(forwarded(&w).is_empty());
    w.clear();
    w.signal(&b, update(true)).unwrap();
    let again = handles_to(&w, &b).unwrap();
    assert_eq!(again.len(), 1);
    send_packet(&mut w, pa, packet(7, b"reading 4"));
    assert_eq!(forwarded(&w)[0].1, packet(again[0].0 as u16, b"reading 4"));

    // Alice's permission leaving bob out ends his subscription.
    w.clear();
    w.signal(
        &a,
        Req::SubscriptionPermission(pb::SubscriptionPermission {
            all_participants: false,
            track_permissions: vec![],
        }),
    )
    .unwrap();
    assert_eq!(handles_to(&w, &b), Some(vec![]));
    w.clear();
    w.signal(&b, update(true)).unwrap();
    assert!(handles_to(&w, &b).is_none(), "not allowed: nothing changes");
    w.signal(
        &a,
        Req::SubscriptionPermission(pb::SubscriptionPermission {
            all_participants: true,
            track_permissions: vec![],
        }),
    )
    .unwrap();
    w.signal(&b, update(true)).unwrap();
    assert_eq!(handles_to(&w, &b).map(|h| h.len()), Some(1));

    // Once alice may no longer publish data, her packets go nowhere; given back, they flow.
    let data_grant = |w: &mut World, can_publish_data: bool| {
        w.m.api_update_participant(
            w.now,
            &pb::UpdateParticipantRequest {
                room: "r".into(),
                identity: "alice".into(),
                permission: Some(pb::ParticipantPermission {
                    can_subscribe: true,
                    can_publish: true,
                    can_publish_data,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
        w.clear();
    };
    data_grant(&mut w, false);
    send_packet(&mut w, pa, packet(7, b"revoked"));
    assert!(forwarded(&w).is_empty());
    data_grant(&mut w, true);
    send_packet(&mut w, pa, packet(7, b"granted"));
    assert_eq!(forwarded(&w).len(), 1);

    // Unpublishing answers with the record; the room's record and bob's map lose it.
    w.clear();
    w.signal(
        &a,
        Req::UnpublishDataTrackRequest(pb::UnpublishDataTrackRequest { pub_handle: 7 }),
    )
    .unwrap();
    assert!(w.to(&a).iter().any(|m| matches!(m,
        Resp::UnpublishDataTrackResponse(r) if r.info.as_ref() == Some(&info))));
    assert_eq!(handles_to(&w, &b), Some(vec![]));
    w.run_for(UPDATE_BATCH);
    assert!(w.participant("alice").data_tracks.is_empty());
    w.clear();
    w.signal(
        &a,
        Req::UnpublishDataTrackRequest(pb::UnpublishDataTrackRequest { pub_handle: 7 }),
    )
    .unwrap();
    assert!(w.to(&a).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.reason == Reason::NotFound as i32)));

    // A publisher that leaves takes its tracks from its subscribers.
    publish(&mut w, &a, 3, "gps");
    assert_eq!(handles_to(&w, &b).map(|h| h.len()), Some(1));
    w.clear();
    w.signal(&a, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    assert_eq!(handles_to(&w, &b), Some(vec![]));
}

#[test]
fn data_tracks_need_the_data_grant_and_a_join_may_decline_new_ones() {
    let mut w = World::new();
    let grant = VideoGrant {
        can_publish_data: Some(false),
        ..Default::default()
    };
    let a = w.join_with("alice", false, grant);
    let b = w.join("bob", false);
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    w.clear();
    publish(&mut w, &a, 1, "sensor");
    assert_eq!(
        refusals_to(&w, &a),
        vec![(pb::request_response::Reason::NotAllowed as i32, 1)]
    );
    w.run_for(UPDATE_BATCH);
    assert!(w.participant("alice").data_tracks.is_empty());

    // Carol's join asks for no new data tracks: bob's track is hers only when she asks.
    let c = w.join_as("carol", |j| Join {
        auto_subscribe_data: false,
        ..j
    });
    w.answer_subscriber(&c);
    w.clear();
    publish(&mut w, &b, 1, "sensor");
    let info = published_to(&w, &b).pop().unwrap();
    assert!(handles_to(&w, &c).is_none());
    w.signal(&c, data_subscription(&info.sid, true)).unwrap();
    assert_eq!(
        handles_to(&w, &c).map(|h| h[0].1.clone()),
        Some(info.sid.clone())
    );
    // Someone in another room may not have it, whatever sid it names.
    let d = w.join_shaped("r2", "dave", VideoGrant::default(), |j| j);
    w.answer_subscriber(&d);
    w.clear();
    w.signal(&d, data_subscription(&info.sid, true)).unwrap();
    assert!(handles_to(&w, &d).is_none());
    // One update may name at most MAX_SUBSCRIPTION_TRACKS tracks.
    w.clear();
    let many = (0..=MAX_SUBSCRIPTION_TRACKS)
        .map(|i| pb::update_data_subscription::Update {
            track_sid: format!("DTR_{i}"),
            subscribe: true,
            options: None,
        })
        .collect();
    w.signal(
        &c,
        Req::UpdateDataSubscription(pb::UpdateDataSubscription { updates: many }),
    )
    .unwrap();
    assert!(w.to(&c).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.reason == pb::request_response::Reason::LimitExceeded as i32)));
}
