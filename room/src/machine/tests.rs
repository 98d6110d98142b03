//! The machine without sockets, in virtual time: every input by hand, every output checked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use lkr_proto::pb;
use lkr_proto::token::{Claims, VideoGrant};
use lkr_sfu::{Command, Event, PeerId};

use super::*;
use crate::{Fault, RoomDefaults, Rooms};

use pb::signal_request::Message as Req;

#[path = "whep_tests.rs"]
mod whep_tests;

const FP: &str = "sha-256 11:17:5E:9E:C8:A8:D7:60:78:46:72:FD:EB:C7:A5:A1:ED:4B:62:44:56:58:22:D8:32:8D:7B:ED:BE:93:D0:44";

fn config() -> Config {
    Config {
        auto_create: true,
        node_ip: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
        udp_port: 7882,
        tcp_port: Some(7881),
        turn: None,
        region: String::new(),
        node_id: "ND_test".into(),
        fingerprint: ("sha-256".into(), "AA:BB".into()),
        max_metadata_size: 64,
        max_attributes_size: 64,
        enable_remote_unmute: false,
        ice_servers: Vec::new(),
        limits: Limits::default(),
    }
}

/// A machine in virtual time, with what it emitted collected per kind.
struct World {
    m: Machine,
    now: Instant,
    signals: Vec<(String, Resp)>,
    closes: Vec<(String, Option<pb::LeaveRequest>)>,
    media: Vec<Command>,
    events: Vec<RoomEvent>,
    /// Ended RPC calls of the server's: (call id, result).
    rpcs: Vec<(String, Result<String, RpcFailure>)>,
}

impl World {
    fn new() -> Self {
        Self::with(config(), RoomDefaults::default())
    }

    fn with(config: Config, defaults: RoomDefaults) -> Self {
        let now = Instant::now();
        Self {
            m: Machine::with_wall_clock(config, Rooms::new(defaults), now, 1_700_000_000_000),
            now,
            signals: Vec::new(),
            closes: Vec::new(),
            media: Vec::new(),
            events: Vec::new(),
            rpcs: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.m.poll_output() {
            match o {
                Output::Signal { to, message } => self
                    .signals
                    .push((to.to_string(), Arc::unwrap_or_clone(message))),
                Output::Join { to, reply } => {
                    // What a client reads: the bytes sent, decoded.
                    self.signals.push((to, Resp::Join(reply.decoded())))
                }
                Output::Close { to, leave } => self.closes.push((to, leave)),
                Output::Media(c) => self.media.push(c),
                Output::Event(e) => self.events.push(*e),
                Output::RpcDone { id, result } => self.rpcs.push((id, result)),
            }
        }
    }

    fn clear(&mut self) {
        self.drain();
        self.signals.clear();
        self.closes.clear();
        self.media.clear();
        self.events.clear();
        self.rpcs.clear();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.m.handle_timeout(self.now);
        self.drain();
    }

    /// Runs the machine's timers up to `now + d`, as a driver would: waking at each deadline.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.m.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.m.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn join_with(&mut self, identity: &str, single_pc: bool, grant: VideoGrant) -> String {
        self.join_full(identity, single_pc, grant, None)
    }

    fn join_full(
        &mut self,
        identity: &str,
        single_pc: bool,
        grant: VideoGrant,
        offer: Option<String>,
    ) -> String {
        self.join_in("r", identity, single_pc, grant, offer)
    }

    /// Joins `identity` to `room` with `grant` (room join added), optionally with an offer.
    fn join_in(
        &mut self,
        room: &str,
        identity: &str,
        single_pc: bool,
        grant: VideoGrant,
        offer: Option<String>,
    ) -> String {
        self.join_shaped(room, identity, grant, |j| Join {
            single_pc,
            publisher_offer: offer.map(|sdp| pb::SessionDescription {
                r#type: "offer".into(),
                sdp,
                id: 1,
                mid_to_track_id: HashMap::new(),
            }),
            ..j
        })
    }

    /// Joins `identity` to `room` with `grant` (room join added), the join shaped by `shape`.
    fn join_shaped(
        &mut self,
        room: &str,
        identity: &str,
        grant: VideoGrant,
        shape: impl FnOnce(Join) -> Join,
    ) -> String {
        let claims = Claims {
            sub: identity.into(),
            video: Some(VideoGrant {
                room_join: true,
                room: room.into(),
                ..grant
            }),
            ..Default::default()
        };
        let psid = self
            .m
            .handle_join(self.now, shape(join_of(room, identity, claims)))
            .expect("join is admitted");
        self.drain();
        psid
    }

    /// Joins `identity` to room `r`, the join shaped by `shape`.
    fn join_as(&mut self, identity: &str, shape: impl FnOnce(Join) -> Join) -> String {
        self.join_shaped("r", identity, VideoGrant::default(), shape)
    }

    /// Alice and Bob joined with two peer connections, both active, the outputs cleared:
    /// their sids and subscriber peers.
    fn connected_pair(&mut self) -> (String, String, PeerId, PeerId) {
        let a = self.join("alice", false);
        let b = self.join("bob", false);
        let pa = self.answer_subscriber(&a);
        let pb = self.answer_subscriber(&b);
        self.clear();
        (a, b, pa, pb)
    }

    fn join(&mut self, identity: &str, single_pc: bool) -> String {
        self.join_with(identity, single_pc, VideoGrant::default())
    }

    fn signal(&mut self, psid: &str, m: Req) -> Result<(), RoomError> {
        let r = self.m.handle_signal(self.now, psid, m);
        self.drain();
        r
    }

    fn media_event(&mut self, ev: Event) {
        self.m.handle_media_event(self.now, ev);
        self.drain();
    }

    /// `pkt` from the client of `peer` on its reliable data channel.
    fn send_data(&mut self, peer: PeerId, pkt: &pb::DataPacket) {
        self.media_event(Event::Data {
            peer,
            label: "_reliable".into(),
            binary: true,
            data: prost::Message::encode_to_vec(pkt),
        });
    }

    /// The peers the media core was told to send data to, in order.
    fn data_sent_to(&self) -> Vec<PeerId> {
        self.media
            .iter()
            .filter_map(|c| match c {
                Command::SendData { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    fn to(&self, psid: &str) -> Vec<&Resp> {
        self.signals
            .iter()
            .filter(|(to, _)| to == psid)
            .map(|(_, m)| m)
            .collect()
    }

    /// The last offer the server sent `psid`.
    fn last_offer(&self, psid: &str) -> pb::SessionDescription {
        self.to(psid)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Resp::Offer(o) => Some(o.clone()),
                _ => None,
            })
            .expect("an offer was sent")
    }

    fn last_answer(&self, psid: &str) -> pb::SessionDescription {
        self.to(psid)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Resp::Answer(a) => Some(a.clone()),
                _ => None,
            })
            .expect("an answer was sent")
    }

    fn added_peers(&self) -> Vec<PeerId> {
        self.media
            .iter()
            .filter_map(|c| match c {
                Command::AddPeer { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    fn participant(&self, identity: &str) -> pb::ParticipantInfo {
        self.m.api_get_participant("r", identity).expect("present")
    }

    /// Asks for `track` to be subscribed or not, as `psid`.
    fn set_subscribed(&mut self, psid: &str, track: &str, subscribe: bool) {
        self.signal(
            psid,
            Req::Subscription(pb::UpdateSubscription {
                track_sids: vec![track.to_owned()],
                subscribe,
                ..Default::default()
            }),
        )
        .unwrap();
    }

    /// Dual PC: answers the server's last subscriber offer as libwebrtc would, and brings
    /// the subscriber transport up.
    fn answer_subscriber(&mut self, psid: &str) -> PeerId {
        let offer = self.last_offer(psid);
        let sdp = answer_for(&offer.sdp);
        let before = self.added_peers().len();
        self.signal(
            psid,
            Req::Answer(pb::SessionDescription {
                r#type: "answer".into(),
                sdp,
                id: offer.id,
                mid_to_track_id: HashMap::new(),
            }),
        )
        .expect("answer accepted");
        let peers = self.added_peers();
        if peers.len() > before {
            let peer = peers[before];
            self.media_event(Event::PeerConnected { peer });
            peer
        } else {
            self.peer_of_subscriber(psid)
        }
    }

    fn peer_of_subscriber(&self, psid: &str) -> PeerId {
        self.m.participants[psid]
            .down_peer()
            .expect("a subscriber peer")
    }

    /// Publishes a three-layer simulcast camera (320, 640, 1280 wide, 16:9): add_track, then
    /// an offer carrying it (rids q, h, f) with a data section; returns the track sid.
    fn publish_simulcast_camera(&mut self, psid: &str) -> String {
        self.signal(
            psid,
            Req::AddTrack(pb::AddTrackRequest {
                cid: "cam".into(),
                r#type: pb::TrackType::Video as i32,
                source: pb::TrackSource::Camera as i32,
                layers: [(0, 320), (1, 640), (2, 1280)]
                    .iter()
                    .map(|(q, wd)| pb::VideoLayer {
                        quality: *q,
                        width: *wd,
                        height: wd * 9 / 16,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        )
        .unwrap();
        self.offer(
            psid,
            client_offer(&[Sec::Data, Sec::SendVideo("cam", &["q", "h", "f"])]),
        )
        .unwrap();
        let record = self.participant(self.m.participants[psid].identity());
        record
            .tracks
            .iter()
            .find(|t| t.r#type == pb::TrackType::Video as i32)
            .expect("video published")
            .sid
            .clone()
    }

    /// Sends add_track for an audio track and an offer carrying it; returns the track sid.
    fn publish_audio(&mut self, psid: &str, cid: &str) -> String {
        self.signal(
            psid,
            Req::AddTrack(pb::AddTrackRequest {
                cid: cid.into(),
                name: "mic".into(),
                r#type: pb::TrackType::Audio as i32,
                source: pb::TrackSource::Microphone as i32,
                ..Default::default()
            }),
        )
        .unwrap();
        self.published_sid(psid, cid)
    }

    /// Sends add_track for a camera (cid `cam`, no layers); returns the track sid.
    fn add_camera(&mut self, psid: &str) -> String {
        self.signal(
            psid,
            Req::AddTrack(pb::AddTrackRequest {
                cid: "cam".into(),
                r#type: pb::TrackType::Video as i32,
                source: pb::TrackSource::Camera as i32,
                ..Default::default()
            }),
        )
        .unwrap();
        self.published_sid(psid, "cam")
    }

    /// The sid the latest track_published answer to `psid` names for `cid`.
    fn published_sid(&self, psid: &str, cid: &str) -> String {
        self.to(psid)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Resp::TrackPublished(t) if t.cid == cid => t.track.as_ref().map(|t| t.sid.clone()),
                _ => None,
            })
            .expect("track_published answered")
    }

    fn offer(&mut self, psid: &str, sdp: String) -> Result<(), RoomError> {
        self.signal(
            psid,
            Req::Offer(pb::SessionDescription {
                r#type: "offer".into(),
                sdp,
                id: 7,
                mid_to_track_id: HashMap::new(),
            }),
        )
    }
}

/// A join of `identity` to `room` with `claims`, dual PC, auto-subscribing.
fn join_of(room: &str, identity: &str, claims: Claims) -> Join {
    Join::new(room, identity, claims)
}

/// One m-section of a client offer.
enum Sec<'a> {
    Data,
    SendAudio(&'a str),
    SendVideo(&'a str, &'a [&'a str]),
    RecvAudio,
    RecvVideo,
}

/// A client offer in libwebrtc's shape.
fn client_offer(secs: &[Sec<'_>]) -> String {
    let mids: Vec<String> = (0..secs.len()).map(|i| i.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\na=msid-semantic: WMS\r\n",
        mids.join(" ")
    );
    let common = |mid: usize| {
        format!(
            "c=IN IP4 0.0.0.0\r\na=ice-ufrag:cliU\r\na=ice-pwd:clientpasswordclientpass\r\na=fingerprint:{FP}\r\na=setup:actpass\r\na=mid:{mid}\r\n"
        )
    };
    for (i, sec) in secs.iter().enumerate() {
        match sec {
            Sec::Data => {
                s += "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
                s += &common(i);
                s += "a=sctp-port:5000\r\n";
            }
            Sec::SendAudio(_) | Sec::RecvAudio => {
                s += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
                s += &common(i);
                s += "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n";
                if let Sec::SendAudio(cid) = sec {
                    s += &format!("a=sendonly\r\na=msid:stream {cid}\r\n");
                } else {
                    s += "a=recvonly\r\n";
                }
                s += "a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";
                if let Sec::SendAudio(_) = sec {
                    s += &format!("a=ssrc:{} cname:c\r\n", 1000 + i);
                }
            }
            Sec::SendVideo(..) | Sec::RecvVideo => {
                s += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
                s += &common(i);
                s += "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n";
                if let Sec::SendVideo(cid, rids) = sec {
                    s += &format!("a=sendonly\r\na=msid:stream {cid}\r\n");
                    s += "a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n";
                    for r in rids.iter() {
                        s += &format!("a=rid:{r} send\r\n");
                    }
                    if !rids.is_empty() {
                        s += &format!("a=simulcast:send {}\r\n", rids.join(";"));
                    }
                } else {
                    s += "a=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n";
                }
            }
        }
    }
    s
}

/// The answer libwebrtc gives a server offer: every section accepted with its codecs,
/// receive-only, DTLS active.
fn answer_for(offer: &str) -> String {
    let sd = lkr_sdp::parse(offer).expect("server offers parse");
    let mids: Vec<String> = sd.media.iter().filter_map(|m| m.mid.clone()).collect();
    let mut s = format!(
        "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n",
        mids.join(" ")
    );
    for m in &sd.media {
        let mid = m.mid.clone().unwrap_or_default();
        let common = format!(
            "c=IN IP4 0.0.0.0\r\na=ice-ufrag:subU\r\na=ice-pwd:subscriberpasswordsubscr\r\na=fingerprint:{FP}\r\na=setup:active\r\na=mid:{mid}\r\n"
        );
        match m.kind {
            lkr_sdp::MediaKind::Application => {
                s += "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
                s += &common;
                s += "a=sctp-port:5000\r\n";
            }
            _ => {
                let kind = if m.kind == lkr_sdp::MediaKind::Audio {
                    "audio"
                } else {
                    "video"
                };
                let pts: Vec<String> = m.codecs.iter().map(|c| c.pt.to_string()).collect();
                if m.is_rejected() || pts.is_empty() {
                    s += &format!("m={kind} 0 UDP/TLS/RTP/SAVPF 0\r\n");
                    s += &common;
                    s += "a=inactive\r\n";
                    continue;
                }
                s += &format!("m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\n", pts.join(" "));
                s += &common;
                s += "a=recvonly\r\na=rtcp-mux\r\n";
                // libwebrtc keeps the extensions it knows, which are all those offered here.
                for e in &m.extmaps {
                    s += &format!("a=extmap:{} {}\r\n", e.id, e.uri);
                }
                for c in &m.codecs {
                    match c.channels {
                        Some(ch) => {
                            s += &format!("a=rtpmap:{} {}/{}/{ch}\r\n", c.pt, c.name, c.clock_rate)
                        }
                        None => s += &format!("a=rtpmap:{} {}/{}\r\n", c.pt, c.name, c.clock_rate),
                    }
                }
            }
        }
    }
    s
}

fn leave_reason(l: &Option<pb::LeaveRequest>) -> Option<pb::DisconnectReason> {
    l.as_ref()
        .and_then(|l| pb::DisconnectReason::try_from(l.reason).ok())
}

fn updates_about<'a>(w: &'a World, to: &str, sid: &str) -> Vec<&'a pb::ParticipantInfo> {
    w.to(to)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Update(u) => Some(u.participants.iter()),
            _ => None,
        })
        .flatten()
        .filter(|p| p.sid == sid)
        .collect()
}

#[test]
fn join_hands_out_time_limited_turn_credentials() {
    let mut keys = std::collections::BTreeMap::new();
    keys.insert("APIk".to_owned(), "secret-s".to_owned());
    let credentials = lkr_turn::Credentials::new(keys);
    let mut c = config();
    c.turn = Some(crate::TurnIce {
        urls: vec!["turn:10.77.0.1:3478?transport=udp".into()],
        credentials: credentials.clone(),
    });
    let mut w = World::with(c, RoomDefaults::default());
    let a = w.join("alice", true);
    let Resp::Join(jr) = w.to(&a)[0] else {
        panic!("JoinResponse first")
    };
    assert_eq!(jr.ice_servers.len(), 1);
    let s = &jr.ice_servers[0];
    assert_eq!(s.urls, ["turn:10.77.0.1:3478?transport=udp"]);
    // `World` sets the wall clock to 1_700_000_000 s: valid for a day from then, for alice.
    assert_eq!(s.username, format!("1700086400:APIk:{a}"));
    assert_eq!(
        credentials.password_for(&s.username, 1_700_000_000),
        Ok(s.credential.clone())
    );
    assert_eq!(
        credentials.password_for(&s.username, 1_700_086_401),
        Err(lkr_turn::CredentialError::Expired)
    );
    // Without TURN configured, no ice_servers.
    let mut plain = World::new();
    let b = plain.join("bob", true);
    let Resp::Join(jr) = plain.to(&b)[0] else {
        panic!("JoinResponse first")
    };
    assert!(jr.ice_servers.is_empty());
    // The configuration's own TURN and STUN servers come after the embedded one's, as given.
    let own = vec![
        pb::IceServer {
            urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            username: "u".into(),
            credential: "p".into(),
        },
        pb::IceServer {
            urls: vec!["stun:stun.example.com:3478".into()],
            ..Default::default()
        },
    ];
    let mut c = config();
    c.turn = Some(crate::TurnIce {
        urls: vec!["turn:10.77.0.1:3478?transport=udp".into()],
        credentials,
    });
    c.ice_servers = own.clone();
    let mut w = World::with(c, RoomDefaults::default());
    let d = w.join("dave", false);
    let Resp::Join(jr) = w.to(&d)[0] else {
        panic!("JoinResponse first")
    };
    assert_eq!(jr.ice_servers.len(), 3);
    assert_eq!(
        jr.ice_servers[0].urls,
        ["turn:10.77.0.1:3478?transport=udp"]
    );
    assert_eq!(jr.ice_servers[1..], own[..]);
    let embedded = jr.ice_servers[0].urls.clone();
    // A resume's ReconnectResponse carries the same list.
    w.m.handle_signal_lost(w.now, &d);
    w.clear();
    assert_eq!(resume_join(&mut w, "dave", &d, false), Ok(d.clone()));
    let Resp::Reconnect(rr) = w.to(&d)[0] else {
        panic!("ReconnectResponse first")
    };
    assert_eq!(rr.ice_servers.len(), 3);
    assert_eq!(rr.ice_servers[0].urls, embedded);
    assert_eq!(rr.ice_servers[1..], own[..]);
}

/// A join response lists the others as they are now: a record changed after it was
/// first encoded (twice here) is listed as changed, a hidden participant not at all, and
/// the list equals what the API returns for the room.
#[test]
fn join_response_lists_the_others_records_as_they_are_now() {
    let mut w = World::new();
    w.join("alice", true);
    for (metadata, name) in [("first", ""), ("after", "Alice")] {
        w.m.api_update_participant(
            w.now,
            &pb::UpdateParticipantRequest {
                room: "r".into(),
                identity: "alice".into(),
                metadata: metadata.into(),
                name: name.into(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    w.join_with(
        "ghost",
        true,
        VideoGrant {
            hidden: true,
            ..Default::default()
        },
    );
    w.clear();
    let b = w.join("bob", true);
    let Resp::Join(jr) = w.to(&b)[0] else {
        panic!("JoinResponse first")
    };
    let alice = w.m.api_get_participant("r", "alice").unwrap();
    assert_eq!(
        (alice.metadata.as_str(), alice.name.as_str()),
        ("after", "Alice")
    );
    assert_eq!(alice.version, 3);
    assert_eq!(jr.other_participants, [alice]);
}

#[test]
fn join_tells_the_others_and_leave_removes() {
    let mut w = World::new();
    let a = w.join("alice", false);
    assert!(matches!(w.to(&a)[0], Resp::Join(_)), "JoinResponse first");
    assert!(
        matches!(&w.events[0], RoomEvent::RoomStarted { room } if room.name == "r"),
        "{:?}",
        w.events
    );
    let b = w.join("bob", false);
    let Resp::Join(jr) = w.to(&b)[0] else {
        panic!("bob's first message is the JoinResponse")
    };
    assert_eq!(jr.other_participants.len(), 1);
    assert_eq!(jr.other_participants[0].identity, "alice");
    assert!(jr.subscriber_primary);
    assert!(
        updates_about(&w, &a, &b).is_empty(),
        "a join waits for the room's batch"
    );
    w.run_for(UPDATE_BATCH);
    assert_eq!(updates_about(&w, &a, &b).len(), 1, "alice hears of bob");
    w.clear();

    w.signal(&b, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    assert_eq!(w.closes.len(), 1);
    assert_eq!(w.closes[0].0, b);
    assert!(
        updates_about(&w, &a, &b).is_empty(),
        "a departure waits for the room's batch"
    );
    w.run_for(UPDATE_BATCH);
    let gone = updates_about(&w, &a, &b);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        gone[0].state,
        pb::participant_info::State::Disconnected as i32
    );
    assert!(w.events.iter().any(|e| matches!(e,
        RoomEvent::ParticipantLeft { participant, reason, .. }
            if participant.identity == "bob" && *reason == pb::DisconnectReason::ClientInitiated)));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
    // A request from a participant that left is refused without effect.
    assert_eq!(
        w.signal(&b, Req::Ping(1)),
        Err(RoomError::ParticipantNotFound)
    );
}

#[test]
fn room_closes_after_the_departure_timeout() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.signal(&a, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    w.clear();
    w.run_for(Duration::from_secs(19));
    assert!(w.m.room_exists("r"), "kept for the departure timeout");
    w.run_for(Duration::from_secs(2));
    assert!(!w.m.room_exists("r"));
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, RoomEvent::RoomFinished { room } if room.name == "r"))
    );
}

#[test]
fn empty_room_closes_after_the_empty_timeout() {
    let mut w = World::new();
    w.m.api_create_room(
        w.now,
        &CreateRoom {
            name: "e".into(),
            empty_timeout: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(w.m.poll_timeout(), Some(w.now + Duration::from_secs(10)));
    w.run_for(Duration::from_secs(9));
    assert!(w.m.room_exists("e"));
    w.run_for(Duration::from_secs(2));
    assert!(!w.m.room_exists("e"));
}

#[test]
fn duplicate_identity_replaces_the_earlier_session() {
    let mut w = World::new();
    let a1 = w.join("alice", false);
    w.answer_subscriber(&a1);
    let old_peers = w.added_peers();
    assert_eq!(old_peers.len(), 1);
    w.clear();
    let a2 = w.join("alice", false);
    assert_ne!(a1, a2);
    assert_eq!(w.closes.len(), 1);
    assert_eq!(w.closes[0].0, a1);
    assert_eq!(
        leave_reason(&w.closes[0].1),
        Some(pb::DisconnectReason::DuplicateIdentity)
    );
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::RemovePeer { peer } if *peer == old_peers[0]))
    );
    let list = w.m.api_list_participants("r").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].sid, a2);
    // The old participant's requests no longer reach anything.
    assert!(w.signal(&a1, Req::Ping(1)).is_err());
}

#[test]
fn dual_pc_publish_reaches_a_subscriber() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    // The server offers first on the subscriber PC: data section, candidates trickled.
    let first = w.last_offer(&b);
    assert!(first.sdp.contains("m=application"));
    assert!(w.to(&b).iter().any(|m| matches!(m, Resp::Trickle(t)
        if t.target == pb::SignalTarget::Subscriber as i32 && t.candidate_init.contains("10.77.0.1 7882"))));
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    assert_eq!(
        w.participant("bob").state,
        pb::participant_info::State::Active as i32
    );
    w.clear();

    let track = w.publish_audio(&a, "mic-cid");
    w.offer(&a, client_offer(&[Sec::SendAudio("mic-cid")]))
        .unwrap();
    let ans = w.last_answer(&a);
    assert_eq!(ans.id, 7);
    assert!(
        ans.sdp
            .contains("a=candidate:1 1 udp 2130706431 10.77.0.1 7882 typ host"),
        "{}",
        ans.sdp
    );
    assert!(!ans.sdp.contains("candidate:candidate"));
    // ICE-TCP: a passive TCP host candidate, after the UDP one and with a lower priority.
    let udp_at = ans.sdp.find("a=candidate:1 1 udp").unwrap();
    let tcp_at = ans
        .sdp
        .find("a=candidate:2 1 tcp 2124414975 10.77.0.1 7881 typ host tcptype passive")
        .unwrap_or_else(|| panic!("no passive TCP candidate: {}", ans.sdp));
    assert!(udp_at < tcp_at);
    assert!(ans.sdp.contains("a=recvonly") && ans.sdp.contains("opus/48000/2"));
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Publish(p) if p.mid == "0"))
    );
    let rec = w.participant("alice");
    assert_eq!(rec.tracks.len(), 1);
    assert_eq!(rec.tracks[0].sid, track);
    assert_eq!(rec.tracks[0].mime_type, "audio/opus");
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, RoomEvent::TrackPublished { track: t, .. } if t.sid == track))
    );
    // Bob (auto-subscribe) is offered the track on his subscriber PC.
    let offer = w.last_offer(&b);
    assert!(offer.sdp.contains("m=audio") && offer.sdp.contains(&track));
    let bob_peer = w.answer_subscriber(&b);
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Subscribe(s) if s.peer == bob_peer))
    );
    assert!(
        w.to(&a)
            .iter()
            .any(|m| matches!(m, Resp::TrackSubscribed(t) if t.track_sid == track)),
        "the publisher hears of its first subscriber"
    );

    // Unsubscribing stops forwarding and renegotiates without the track.
    w.clear();
    w.signal(
        &b,
        Req::Subscription(pb::UpdateSubscription {
            track_sids: vec![track.clone()],
            subscribe: false,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Unsubscribe { peer, .. } if *peer == bob_peer))
    );
    assert!(!w.last_offer(&b).sdp.contains(&track));
    // Subscribing to a track that does not exist answers not-found.
    w.signal(
        &b,
        Req::Subscription(pb::UpdateSubscription {
            track_sids: vec!["TR_nope".into()],
            subscribe: true,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(
        w.to(&b)
            .iter()
            .any(|m| matches!(m, Resp::SubscriptionResponse(r)
        if r.track_sid == "TR_nope" && r.err == pb::SubscriptionError::SeTrackNotfound as i32))
    );
}

/// Publishes a camera (simulcast q, h, f) and a microphone in one offer; returns their sids.
fn publish_camera_and_microphone(w: &mut World, psid: &str) -> (String, String) {
    let mic = w.publish_audio(psid, "mic-cid");
    let cam = w.add_camera(psid);
    w.offer(
        psid,
        client_offer(&[
            Sec::Data,
            Sec::SendAudio("mic-cid"),
            Sec::SendVideo("cam", &["q", "h", "f"]),
        ]),
    )
    .unwrap();
    (cam, mic)
}

/// Dual PC: answers the subscriber offers of `psid` until none is left; the last offer.
fn settle_subscriber(w: &mut World, psid: &str) -> String {
    loop {
        let offer = w.last_offer(psid);
        w.answer_subscriber(psid);
        if w.last_offer(psid).id == offer.id {
            return offer.sdp;
        }
    }
}

#[test]
fn synced_streams_give_a_publishers_camera_and_microphone_one_stream_id() {
    let mut w = World::with(
        config(),
        RoomDefaults {
            sync_streams: true,
            ..RoomDefaults::default()
        },
    );
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    // Carol's client takes no such stream ids (Firefox, or protocol 9 and before).
    let c = w.join_as("carol", |j| Join {
        sync_stream_id: false,
        ..j
    });
    for p in [&a, &b, &c] {
        w.answer_subscriber(p);
    }
    let (cam, mic) = publish_camera_and_microphone(&mut w, &a);
    let bob = settle_subscriber(&mut w, &b);
    assert!(bob.contains(&format!("a=msid:{a}|camera {cam}")), "{bob}");
    assert!(bob.contains(&format!("a=msid:{a}|camera {mic}")), "{bob}");
    let carol = settle_subscriber(&mut w, &c);
    assert!(
        carol.contains(&format!("a=msid:{a}|{cam} {cam}")),
        "{carol}"
    );
    assert!(
        carol.contains(&format!("a=msid:{a}|{mic} {mic}")),
        "{carol}"
    );

    // Dual PC: a section that carried a track is not reused with synced stream ids (the
    // client would name the new track by the old one's id), as it is without them: a track
    // toggled off and on twice takes turns between two sections, or takes a third.
    let audio_sections = |sdp: &str| sdp.matches("m=audio").count();
    for _ in 0..2 {
        for p in [&b, &c] {
            w.set_subscribed(p, &mic, false);
            settle_subscriber(&mut w, p);
            w.set_subscribed(p, &mic, true);
            settle_subscriber(&mut w, p);
        }
    }
    let bob = w.last_offer(&b).sdp;
    assert_eq!(audio_sections(&bob), 3, "{bob}");
    assert!(bob.contains(&format!("a=msid:{a}|camera {mic}")), "{bob}");
    let carol = w.last_offer(&c).sdp;
    assert_eq!(audio_sections(&carol), 2, "{carol}");
}

#[test]
fn a_playout_delay_goes_on_the_video_of_rooms_that_set_one() {
    let mut w = World::with(
        config(),
        RoomDefaults {
            playout_delay: Some((400, 2000)),
            ..RoomDefaults::default()
        },
    );
    w.m.api_create_room(
        w.now,
        &CreateRoom {
            name: "own".into(),
            min_playout_delay: 150,
            ..Default::default()
        },
    )
    .unwrap();
    for room in ["r", "own"] {
        let a = w.join_in(room, "alice", false, VideoGrant::default(), None);
        let b = w.join_in(room, "bob", false, VideoGrant::default(), None);
        for p in [&a, &b] {
            w.answer_subscriber(p);
        }
        let (cam, mic) = publish_camera_and_microphone(&mut w, &a);
        w.media.clear();
        let offer = settle_subscriber(&mut w, &b);
        assert!(
            offer.contains("a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"),
            "{offer}"
        );
        let (min, max) = if room == "r" {
            (400, 2000)
        } else {
            (150, 10_000)
        };
        let spec = |sid: &str| {
            let id = w.m.tracks.get(sid).expect("track").offer.track_id;
            w.media
                .iter()
                .find_map(|c| match c {
                    Command::Subscribe(s) if s.track == id => Some(s.playout_delay),
                    _ => None,
                })
                .expect("subscribed")
        };
        assert_eq!(
            spec(&cam),
            Some((5, lkr_sfu::playout_delay(min, max))),
            "{room}"
        );
        assert_eq!(spec(&mic), None, "{room}: audio carries none");
    }
}

#[test]
fn a_room_created_with_sync_streams_has_them_and_others_do_not() {
    let mut w = World::new();
    w.m.api_create_room(
        w.now,
        &CreateRoom {
            name: "synced".into(),
            sync_streams: true,
            ..Default::default()
        },
    )
    .unwrap();
    let a = w.join_in("synced", "alice", false, VideoGrant::default(), None);
    let b = w.join_in("synced", "bob", false, VideoGrant::default(), None);
    let x = w.join("xavier", false);
    let y = w.join("yvonne", false);
    for p in [&a, &b, &x, &y] {
        w.answer_subscriber(p);
    }
    let (_, mic) = publish_camera_and_microphone(&mut w, &a);
    let bob = settle_subscriber(&mut w, &b);
    assert!(bob.contains(&format!("a=msid:{a}|camera {mic}")), "{bob}");
    let (_, mic) = publish_camera_and_microphone(&mut w, &x);
    let yvonne = settle_subscriber(&mut w, &y);
    assert!(
        yvonne.contains(&format!("a=msid:{x}|{mic} {mic}")),
        "{yvonne}"
    );
}

#[test]
fn subscription_permissions_decide_who_receives_a_publishers_tracks() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let c = w.join("carol", false);
    for p in [&a, &b, &c] {
        w.answer_subscriber(p);
    }
    let perm = |w: &mut World, all: bool, tps: Vec<pb::TrackPermission>| {
        w.signal(
            &a,
            Req::SubscriptionPermission(pb::SubscriptionPermission {
                all_participants: all,
                track_permissions: tps,
            }),
        )
        .unwrap();
    };
    let told = |w: &World, to: &str, track: &str| -> Vec<bool> {
        w.to(to)
            .iter()
            .filter_map(|m| match m {
                Resp::SubscriptionPermissionUpdate(u) if u.track_sid == track => {
                    assert_eq!(u.participant_sid, a);
                    Some(u.allowed)
                }
                _ => None,
            })
            .collect()
    };
    // Only bob, by identity, before anything is published.
    perm(
        &mut w,
        false,
        vec![pb::TrackPermission {
            participant_identity: "bob".into(),
            all_tracks: true,
            ..Default::default()
        }],
    );
    let mic = w.publish_audio(&a, "mic-cid");
    w.offer(&a, client_offer(&[Sec::SendAudio("mic-cid")]))
        .unwrap();
    assert!(settle_subscriber(&mut w, &b).contains(&mic));
    assert!(!w.last_offer(&c).sdp.contains(&mic));
    assert_eq!(told(&w, &c, &mic), [false]);
    assert!(told(&w, &b, &mic).is_empty());

    // Only carol, by sid and track: bob loses it, carol (who asked) gets it.
    w.clear();
    perm(
        &mut w,
        false,
        vec![pb::TrackPermission {
            participant_sid: c.clone(),
            track_sids: vec![mic.clone()],
            ..Default::default()
        }],
    );
    let bob_peer = w.peer_of_subscriber(&b);
    assert!(
        w.media
            .iter()
            .any(|m| matches!(m, Command::Unsubscribe { peer, .. } if *peer == bob_peer))
    );
    assert_eq!(told(&w, &b, &mic), [false]);
    assert_eq!(told(&w, &c, &mic), [true]);
    assert!(settle_subscriber(&mut w, &c).contains(&mic));
    assert!(!settle_subscriber(&mut w, &b).contains(&mic));

    // Everyone again: bob, who had it taken away, gets it back.
    w.clear();
    perm(&mut w, true, Vec::new());
    assert_eq!(told(&w, &b, &mic), [true]);
    assert!(settle_subscriber(&mut w, &b).contains(&mic));

    // A permission past the caps is refused whole.
    w.clear();
    perm(
        &mut w,
        false,
        vec![pb::TrackPermission::default(); MAX_SUBSCRIPTION_PARTICIPANTS + 1],
    );
    assert!(w.to(&a).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.reason == pb::request_response::Reason::LimitExceeded as i32)));
    assert!(told(&w, &b, &mic).is_empty(), "nothing changed");
}

#[test]
fn single_pc_places_tracks_on_receive_sections() {
    let mut w = World::new();
    let a = w.join("alice", true);
    let b = w.join_full(
        "bob",
        true,
        VideoGrant::default(),
        Some(client_offer(&[Sec::Data])),
    );
    // Single PC: the join request's offer is answered; no server offer.
    let Resp::Join(jr) = w.to(&b)[0] else {
        panic!()
    };
    assert!(!jr.subscriber_primary);
    assert_eq!(w.last_answer(&b).id, 1);
    assert!(!w.to(&b).iter().any(|m| matches!(m, Resp::Offer(_))));
    let bob_peer = w.added_peers()[0];
    w.media_event(Event::PeerConnected { peer: bob_peer });
    w.offer(&a, client_offer(&[Sec::Data])).unwrap();
    w.clear();

    let track = w.publish_audio(&a, "c1");
    w.offer(&a, client_offer(&[Sec::Data, Sec::SendAudio("c1")]))
        .unwrap();
    // Bob has no receive section yet: he is asked for one.
    assert!(w.to(&b).iter().any(|m| matches!(m,
        Resp::MediaSectionsRequirement(r) if r.num_audios == 1 && r.num_videos == 0)));
    w.clear();
    w.offer(
        &b,
        client_offer(&[Sec::Data, Sec::RecvAudio, Sec::RecvVideo]),
    )
    .unwrap();
    let ans = w.last_answer(&b);
    assert_eq!(ans.mid_to_track_id.get("1"), Some(&track));
    assert!(ans.sdp.contains("a=sendonly"));
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Subscribe(s) if s.peer == bob_peer))
    );

    // An offer without the receive sections frees the track: the core stops sending it.
    w.clear();
    w.offer(&b, client_offer(&[Sec::Data])).unwrap();
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Unsubscribe { peer, .. } if *peer == bob_peer)),
        "{:?}",
        w.media
    );
    // Placed again on a new section, it is sent again.
    w.clear();
    w.offer(
        &b,
        client_offer(&[Sec::Data, Sec::RecvAudio, Sec::RecvVideo]),
    )
    .unwrap();
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Subscribe(s) if s.peer == bob_peer)),
        "{:?}",
        w.media
    );
}

#[test]
fn mute_updates_the_record_and_unknown_tracks_change_nothing() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    let version = w.participant("alice").version;
    w.clear();
    w.signal(
        &a,
        Req::Mute(pb::MuteTrackRequest {
            sid: track.clone(),
            muted: true,
        }),
    )
    .unwrap();
    let seen = updates_about(&w, &b, &a);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].tracks[0].muted);
    assert!(w.participant("alice").version > version);
    w.clear();
    let version = w.participant("alice").version;
    w.signal(
        &a,
        Req::Mute(pb::MuteTrackRequest {
            sid: "TR_unknown".into(),
            muted: true,
        }),
    )
    .unwrap();
    assert!(
        w.signals.is_empty(),
        "nothing is broadcast: {:?}",
        w.signals
    );
    assert_eq!(w.participant("alice").version, version);

    // MutePublishedTrack from the API tells the publisher and everyone (unmuting it this way
    // is in `remote_unmute_is_refused_unless_the_configuration_allows_it`).
    w.clear();
    let t =
        w.m.api_mute_published_track("r", "alice", &track, true)
            .unwrap();
    w.drain();
    assert!(t.muted);
    assert!(
        w.to(&a)
            .iter()
            .any(|m| matches!(m, Resp::Mute(x) if x.sid == track && x.muted))
    );
    assert_eq!(
        w.m.api_mute_published_track("r", "alice", "TR_x", true),
        Err(RoomError::TrackNotFound)
    );
}

#[test]
fn a_publishers_track_updates_reach_the_record_and_everyone() {
    use pb::AudioTrackFeature as F;
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let (cam, mic) = publish_camera_and_microphone(&mut w, &a);
    // A track still pending takes the update and publishes with it.
    let screen = {
        w.signal(
            &a,
            Req::AddTrack(pb::AddTrackRequest {
                cid: "screen".into(),
                r#type: pb::TrackType::Video as i32,
                source: pb::TrackSource::ScreenShare as i32,
                width: 1920,
                height: 1080,
                ..Default::default()
            }),
        )
        .unwrap();
        w.published_sid(&a, "screen")
    };
    w.clear();
    let version = w.participant("alice").version;
    w.signal(
        &a,
        Req::UpdateVideoTrack(pb::UpdateLocalVideoTrack {
            track_sid: screen.clone(),
            width: 1280,
            height: 720,
        }),
    )
    .unwrap();
    assert!(
        updates_about(&w, &b, &a).is_empty(),
        "pending: nothing to tell"
    );
    assert_eq!(w.participant("alice").version, version);

    // Audio features: unknown values dropped, each once; stereo and DTX follow them.
    w.signal(
        &a,
        Req::UpdateAudioTrack(pb::UpdateLocalAudioTrack {
            track_sid: mic.clone(),
            features: vec![
                F::TfStereo as i32,
                F::TfEnhancedNoiseCancellation as i32,
                9999,
                F::TfStereo as i32,
                F::TfNoDtx as i32,
            ],
        }),
    )
    .unwrap();
    let seen = updates_about(&w, &b, &a);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let t = seen[0].tracks.iter().find(|t| t.sid == mic).unwrap();
    assert_eq!(
        t.audio_features,
        [
            F::TfStereo as i32,
            F::TfEnhancedNoiseCancellation as i32,
            F::TfNoDtx as i32
        ]
    );
    #[allow(deprecated)]
    {
        assert!(t.stereo && t.disable_dtx);
    }
    assert!(w.participant("alice").version > version);

    // Dimensions of a published video.
    w.clear();
    w.signal(
        &a,
        Req::UpdateVideoTrack(pb::UpdateLocalVideoTrack {
            track_sid: cam.clone(),
            width: 640,
            height: 360,
        }),
    )
    .unwrap();
    let seen = updates_about(&w, &b, &a);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let t = seen[0].tracks.iter().find(|t| t.sid == cam).unwrap();
    assert_eq!((t.width, t.height), (640, 360));
    let rec = w.participant("alice");
    let t = rec.tracks.iter().find(|t| t.sid == cam).unwrap();
    assert_eq!((t.width, t.height), (640, 360));

    // The same update again, one for a track of the other kind, and one for a track it does
    // not publish change nothing and tell no one.
    w.clear();
    let version = w.participant("alice").version;
    for req in [
        Req::UpdateVideoTrack(pb::UpdateLocalVideoTrack {
            track_sid: cam.clone(),
            width: 640,
            height: 360,
        }),
        Req::UpdateVideoTrack(pb::UpdateLocalVideoTrack {
            track_sid: mic.clone(),
            width: 1,
            height: 1,
        }),
        Req::UpdateAudioTrack(pb::UpdateLocalAudioTrack {
            track_sid: cam.clone(),
            features: vec![F::TfStereo as i32],
        }),
        Req::UpdateAudioTrack(pb::UpdateLocalAudioTrack {
            track_sid: "TR_unknown".into(),
            features: vec![F::TfStereo as i32],
        }),
    ] {
        w.signal(&a, req).unwrap();
    }
    assert!(w.signals.is_empty(), "nothing is told: {:?}", w.signals);
    assert_eq!(w.participant("alice").version, version);
    // Bob's update of Alice's track is not his to make.
    w.signal(
        &b,
        Req::UpdateVideoTrack(pb::UpdateLocalVideoTrack {
            track_sid: cam.clone(),
            width: 320,
            height: 180,
        }),
    )
    .unwrap();
    assert_eq!(w.participant("alice").version, version);

    // The pending screen share publishes with the size its update gave it.
    w.offer(
        &a,
        client_offer(&[
            Sec::Data,
            Sec::SendAudio("mic-cid"),
            Sec::SendVideo("cam", &["q", "h", "f"]),
            Sec::SendVideo("screen", &[]),
        ]),
    )
    .unwrap();
    let rec = w.participant("alice");
    let t = rec
        .tracks
        .iter()
        .find(|t| t.sid == screen)
        .expect("published");
    assert_eq!((t.width, t.height), (1280, 720));
}

#[test]
fn losing_can_publish_unpublishes() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.answer_subscriber(&b);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    w.answer_subscriber(&b);
    w.clear();
    let info =
        w.m.api_update_participant(
            w.now,
            &pb::UpdateParticipantRequest {
                room: "r".into(),
                identity: "alice".into(),
                permission: Some(pb::ParticipantPermission {
                    can_subscribe: true,
                    can_publish: false,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    w.drain();
    assert!(info.tracks.is_empty());
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Unpublish { .. }))
    );
    assert!(!w.last_offer(&b).sdp.contains(&track), "bob's PC drops it");
    // Her next add_track is refused.
    w.clear();
    w.signal(
        &a,
        Req::AddTrack(pb::AddTrackRequest {
            cid: "c2".into(),
            r#type: pb::TrackType::Audio as i32,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(w.to(&a).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.reason == pb::request_response::Reason::NotAllowed as i32)));
}

#[test]
fn a_lost_connection_keeps_the_place_for_the_departure_timeout() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.run_for(UPDATE_BATCH);
    w.clear();
    w.m.handle_signal_lost(w.now, &b);
    w.drain();
    assert!(
        updates_about(&w, &a, &b).is_empty(),
        "nobody sees bob go yet"
    );
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    // Alice keeps pinging; bob's place is kept for the 20 s departure timeout.
    for _ in 0..4 {
        w.run_for(Duration::from_secs(4));
        w.signal(&a, Req::Ping(1)).unwrap();
    }
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    w.signal(&a, Req::Ping(1)).unwrap();
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
    assert_eq!(updates_about(&w, &a, &b).len(), 1);
    assert!(
        w.closes.is_empty(),
        "nothing is written to a lost connection"
    );
}

fn ice_ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("an ice-ufrag line")
        .trim()
        .to_string()
}

fn resume_join(
    w: &mut World,
    identity: &str,
    sid: &str,
    single_pc: bool,
) -> Result<String, RoomError> {
    let claims = Claims {
        sub: identity.into(),
        ..Default::default()
    };
    let r = w.m.handle_join(
        w.now,
        Join {
            single_pc,
            metadata: None,
            resume: Some(sid.into()),
            ..join_of("r", identity, claims)
        },
    );
    w.drain();
    r
}

#[test]
fn simulated_scenarios_are_played_as_livekit_plays_them() {
    use pb::simulate_scenario::Scenario as S;
    fn simulate(w: &mut World, psid: &str, s: S) {
        w.signal(
            psid,
            Req::Simulate(pb::SimulateScenario { scenario: Some(s) }),
        )
        .unwrap();
    }
    fn speakers(w: &World, to: &str) -> Vec<(String, bool)> {
        w.to(to)
            .into_iter()
            .filter_map(|m| match m {
                Resp::SpeakersChanged(s) => Some(s.speakers.iter()),
                _ => None,
            })
            .flatten()
            .map(|s| (s.sid.clone(), s.active))
            .collect()
    }
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);

    // A speaker update: everyone is told at once that alice speaks, and 3 s later that she
    // stopped.
    w.clear();
    simulate(&mut w, &a, S::SpeakerUpdate(3));
    for who in [&a, &b] {
        assert_eq!(speakers(&w, who), [(a.clone(), true)]);
    }
    w.clear();
    w.run_for(Duration::from_millis(2900));
    assert!(speakers(&w, &b).is_empty());
    w.run_for(Duration::from_millis(200));
    for who in [&a, &b] {
        assert_eq!(speakers(&w, who), [(a.clone(), false)]);
    }

    // A node failure: the signal connection closes without a leave, alice keeps her place,
    // bob is told nothing, and she resumes.
    w.clear();
    simulate(&mut w, &a, S::NodeFailure(true));
    assert_eq!(w.closes, [(a.clone(), None)]);
    assert!(updates_about(&w, &b, &a).is_empty());
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
    // A migration is played the same way.
    w.clear();
    simulate(&mut w, &a, S::Migration(true));
    assert_eq!(w.closes, [(a.clone(), None)]);
    assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));

    // disconnect-signal-on-resume: the next resume (within 5 s) has its connection closed
    // once its messages are out, the one after it stands; the no-messages twin closes it
    // before any message; a request older than 5 s has lapsed.
    for no_messages in [false, true] {
        let s = if no_messages {
            S::DisconnectSignalOnResumeNoMessages(true)
        } else {
            S::DisconnectSignalOnResume(true)
        };
        simulate(&mut w, &a, s);
        // livekit-client drops its connection to resume at once
        w.m.handle_signal_lost(w.now, &a);
        w.clear();
        assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
        assert_eq!(w.closes, [(a.clone(), None)]);
        let first = w.to(&a).first().map(|m| matches!(m, Resp::Reconnect(_)));
        assert_eq!(first, if no_messages { None } else { Some(true) });
        w.clear();
        assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
        assert!(w.closes.is_empty());
        assert!(matches!(w.to(&a)[0], Resp::Reconnect(_)));
    }
    simulate(&mut w, &a, S::DisconnectSignalOnResume(true));
    w.m.handle_signal_lost(w.now, &a);
    w.run_for(Duration::from_secs(6));
    w.clear();
    assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
    assert!(w.closes.is_empty());
    assert!(updates_about(&w, &b, &a).is_empty(), "bob saw none of it");

    // Asked for a full reconnection: sent away with leave RECONNECT.
    w.clear();
    simulate(&mut w, &a, S::LeaveRequestFullReconnect(true));
    assert_eq!(w.closes.len(), 1);
    let leave = w.closes[0].1.clone().expect("a leave");
    assert_eq!(leave.action, pb::leave_request::Action::Reconnect as i32);
    w.run_for(UPDATE_BATCH);
    assert!(
        updates_about(&w, &b, &a)
            .iter()
            .any(|p| p.state == pb::participant_info::State::Disconnected as i32)
    );
    let a2 = w.join("alice", false);

    // A server leave: sent away with SERVER_SHUTDOWN, not to come back.
    w.clear();
    simulate(&mut w, &a2, S::ServerLeave(true));
    assert_eq!(w.closes.len(), 1);
    let leave = w.closes[0].1.clone().expect("a leave");
    assert_eq!(
        leave_reason(&Some(leave.clone())),
        Some(pb::DisconnectReason::ServerShutdown)
    );
    assert_eq!(leave.action, pb::leave_request::Action::Disconnect as i32);
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);

    // A subscriber bandwidth: a cap on what congestion control sends its downstream peer.
    w.clear();
    let b_peer = w.peer_of_subscriber(&b);
    simulate(&mut w, &b, S::SubscriberBandwidth(100_000));
    assert!(w.media.iter().any(|c| matches!(c,
        Command::SetChannelCapacity { peer, bps: 100_000 } if *peer == b_peer)));

    // Scenarios not played change nothing.
    w.clear();
    simulate(&mut w, &b, S::NodeFailure(false));
    simulate(
        &mut w,
        &b,
        S::SwitchCandidateProtocol(pb::CandidateProtocol::Tls as i32),
    );
    assert!(w.closes.is_empty() && w.signals.is_empty() && w.media.is_empty());

    // force-tcp: bob's next join is offered only the ICE-TCP candidate; the one after, both.
    fn candidates(w: &World, to: &str) -> Vec<String> {
        let mut c: Vec<String> = w
            .to(to)
            .into_iter()
            .filter_map(|m| match m {
                Resp::Trickle(t) => Some(t.candidate_init.clone()),
                _ => None,
            })
            .collect();
        c.extend(
            w.last_offer(to)
                .sdp
                .lines()
                .filter(|l| l.starts_with("a=candidate"))
                .map(String::from),
        );
        c
    }
    simulate(
        &mut w,
        &b,
        S::SwitchCandidateProtocol(pb::CandidateProtocol::Tcp as i32),
    );
    w.clear();
    let b2 = w.join("bob", false);
    let c = candidates(&w, &b2);
    assert!(
        !c.is_empty()
            && c.iter()
                .all(|c| c.contains(" tcp ") && !c.contains(" udp ")),
        "{c:?}"
    );
    w.clear();
    let b3 = w.join("bob", false);
    let c = candidates(&w, &b3);
    assert!(c.iter().any(|c| c.contains(" udp ")), "{c:?}");

    // The identities waiting for a TCP-only join are capped: a full list forgets the one due
    // first.
    for i in 0..MAX_FORCED_PATHS {
        let until = w.now + Duration::from_secs(60 + i as u64);
        w.m.forced_paths
            .insert(("r".into(), format!("id{i}")), (until, ForcedPath::Tcp));
    }
    simulate(
        &mut w,
        &b3,
        S::SwitchCandidateProtocol(pb::CandidateProtocol::Tcp as i32),
    );
    assert_eq!(w.m.forced_paths.len(), MAX_FORCED_PATHS);
    assert!(
        w.m.forced_paths
            .contains_key(&("r".to_string(), "bob".to_string()))
    );
    assert!(
        !w.m.forced_paths
            .contains_key(&("r".to_string(), "id0".to_string()))
    );
}

#[test]
fn a_dual_pc_resume_keeps_the_participant_and_restarts_ice() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let a_peer = w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    let track = w.publish_audio(&b, "c");
    w.offer(&b, client_offer(&[Sec::SendAudio("c")])).unwrap();
    w.answer_subscriber(&a);
    let old_ufrag = ice_ufrag(&w.last_offer(&a).sdp);
    w.m.handle_signal_lost(w.now, &a);
    w.run_for(Duration::from_secs(5));
    w.clear();

    assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
    let to_a = w.to(&a);
    assert!(matches!(to_a[0], Resp::Reconnect(_)), "{to_a:?}");
    assert!(to_a.iter().any(
        |m| matches!(m, Resp::Update(u) if u.participants.iter().any(|p| p.identity == "bob"))
    ));
    // A new subscriber offer restarting ICE, still carrying bob's track.
    let offer = w.last_offer(&a);
    assert_ne!(ice_ufrag(&offer.sdp), old_ufrag);
    assert!(offer.sdp.contains(&track));
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::RestartIce { peer, .. } if *peer == a_peer))
    );
    assert!(
        !w.media
            .iter()
            .any(|c| matches!(c, Command::RemovePeer { .. } | Command::AddPeer { .. }))
    );
    // Bob saw nothing: no update about alice leaving or joining.
    assert!(updates_about(&w, &b, &a).is_empty());
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    // The client's answer with its new credentials completes the restart in the core.
    w.clear();
    let sdp = answer_for(&offer.sdp).replace("subU", "subV");
    w.signal(
        &a,
        Req::Answer(pb::SessionDescription {
            r#type: "answer".into(),
            sdp,
            id: offer.id,
            mid_to_track_id: HashMap::new(),
        }),
    )
    .unwrap();
    assert!(w.media.iter().any(|c| matches!(c,
        Command::RestartIce { peer, remote_ufrag, .. } if *peer == a_peer && remote_ufrag == "subV")));
    // Messages reach the resumed connection again.
    w.signal(
        &b,
        Req::Mute(pb::MuteTrackRequest {
            sid: track.clone(),
            muted: true,
        }),
    )
    .unwrap();
    assert_eq!(updates_about(&w, &a, &b).len(), 1);
}

#[test]
fn a_single_pc_resume_answers_the_ice_restart_offer_with_new_credentials() {
    let mut w = World::new();
    let a = w.join_full(
        "alice",
        true,
        VideoGrant::default(),
        Some(client_offer(&[Sec::Data])),
    );
    let first = w.last_answer(&a);
    w.m.handle_signal_lost(w.now, &a);
    w.clear();
    assert_eq!(resume_join(&mut w, "alice", &a, true), Ok(a.clone()));
    assert!(matches!(w.to(&a)[0], Resp::Reconnect(_)));
    w.clear();
    let restart = client_offer(&[Sec::Data]).replace("cliU", "cliV");
    w.offer(&a, restart).unwrap();
    let ans = w.last_answer(&a);
    assert_ne!(
        ice_ufrag(&ans.sdp),
        ice_ufrag(&first.sdp),
        "an ICE restart is answered with new credentials"
    );
    assert!(
        w.media.iter().any(
            |c| matches!(c, Command::RestartIce { remote_ufrag, .. } if remote_ufrag == "cliV")
        )
    );
    // The same offer again is no restart.
    w.clear();
    w.offer(&a, client_offer(&[Sec::Data]).replace("cliU", "cliV"))
        .unwrap();
    assert!(
        !w.media
            .iter()
            .any(|c| matches!(c, Command::RestartIce { .. }))
    );
    assert_eq!(ice_ufrag(&w.last_answer(&a).sdp), ice_ufrag(&ans.sdp));
}

#[test]
fn a_resume_for_someone_else_or_no_one_is_refused() {
    let mut w = World::new();
    let a = w.join("alice", false);
    assert_eq!(
        resume_join(&mut w, "mallory", &a, false),
        Err(RoomError::ParticipantNotFound)
    );
    assert_eq!(
        resume_join(&mut w, "alice", "PA_gone", false),
        Err(RoomError::ParticipantNotFound)
    );
    // After the departure timeout the participant is gone and cannot be resumed.
    w.m.handle_signal_lost(w.now, &a);
    w.run_for(Duration::from_secs(21));
    assert_eq!(
        resume_join(&mut w, "alice", &a, false),
        Err(RoomError::ParticipantNotFound)
    );
}

#[test]
fn api_operations_on_live_participants() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    w.clear();

    // SendData goes to every data channel of the room, or to the named identities.
    w.m.api_send_data(&pb::SendDataRequest {
        room: "r".into(),
        data: b"hi".to_vec(),
        destination_identities: vec!["bob".into()],
        ..Default::default()
    })
    .unwrap();
    w.drain();
    let sent = w.data_sent_to();
    assert_eq!(sent, vec![w.peer_of_subscriber(&b)]);

    // Room metadata reaches everyone.
    w.clear();
    w.m.api_update_room_metadata("r", "topic").unwrap();
    w.drain();
    for p in [&a, &b] {
        assert!(w.to(p).iter().any(|m| matches!(m, Resp::RoomUpdate(u)
            if u.room.as_ref().is_some_and(|r| r.metadata == "topic"))));
    }

    // UpdateParticipant: metadata over the limit is refused.
    let big = pb::UpdateParticipantRequest {
        room: "r".into(),
        identity: "bob".into(),
        metadata: "x".repeat(65),
        ..Default::default()
    };
    assert!(matches!(
        w.m.api_update_participant(w.now, &big),
        Err(RoomError::InvalidArgument(_))
    ));

    // RemoveParticipant sends the participant away with its reason.
    w.clear();
    w.m.api_remove_participant(w.now, "r", "bob").unwrap();
    w.drain();
    assert_eq!(w.closes.len(), 1);
    assert_eq!(
        leave_reason(&w.closes[0].1),
        Some(pb::DisconnectReason::ParticipantRemoved)
    );
    assert_eq!(
        w.m.api_remove_participant(w.now, "r", "bob"),
        Err(RoomError::ParticipantNotFound)
    );

    // DeleteRoom sends everyone away and the room is gone.
    w.clear();
    w.m.api_delete_room(w.now, "r").unwrap();
    w.drain();
    assert_eq!(
        leave_reason(&w.closes[0].1),
        Some(pb::DisconnectReason::RoomDeleted)
    );
    assert!(!w.m.room_exists("r"));
    assert_eq!(w.m.participant_count(), 0);
    assert_eq!(
        w.m.api_delete_room(w.now, "r"),
        Err(RoomError::RoomNotFound)
    );
}

#[test]
fn malformed_requests_are_refused_without_effect() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.clear();
    let e = w.offer(&a, "not sdp".into()).unwrap_err();
    assert_eq!(e.fault(), Fault::Invalid);
    assert!(e.to_string().starts_with("bad offer"));
    // An offer without ICE credentials adds no peer.
    let no_ice = client_offer(&[Sec::Data]).replace("a=ice-ufrag:cliU\r\n", "");
    assert!(w.offer(&a, no_ice).is_err());
    assert!(w.media.is_empty(), "{:?}", w.media);
    // An answer that does not parse.
    let e = w
        .signal(
            &a,
            Req::Answer(pb::SessionDescription {
                sdp: "v=1".into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
    assert_eq!(e.fault(), Fault::Invalid);
    assert!(w.signals.iter().all(|(_, m)| !matches!(m, Resp::Answer(_))));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
    // Joining a room that does not exist when rooms are not auto-created.
    let mut strict = World::with(
        Config {
            auto_create: false,
            ..config()
        },
        RoomDefaults::default(),
    );
    let j = Join {
        single_pc: false,
        metadata: None,
        resume: None,
        ..join_of("nope", "x", Claims::default())
    };
    let e = strict.m.handle_join(strict.now, j).unwrap_err();
    assert_eq!((e.join_status(), e.fault()), (404, Fault::NotFound));
}

#[test]
fn a_full_room_refuses_joins() {
    let mut w = World::with(
        config(),
        RoomDefaults {
            max_participants: 1,
            ..Default::default()
        },
    );
    w.join("alice", false);
    let claims = Claims {
        sub: "bob".into(),
        ..Default::default()
    };
    let e =
        w.m.handle_join(
            w.now,
            Join {
                single_pc: false,
                metadata: None,
                resume: None,
                ..join_of("r", "bob", claims)
            },
        )
        .unwrap_err();
    assert_eq!(e, RoomError::RoomFull(1));
    assert_eq!(
        (e.join_status(), e.twirp_code()),
        (403, "resource_exhausted")
    );
}

#[test]
fn update_metadata_answers_after_the_update() {
    let mut w = World::new();
    let a = join_updating(&mut w, "alice");
    let b = w.join("bob", false);
    w.clear();
    w.signal(
        &a,
        Req::UpdateMetadata(pb::UpdateParticipantMetadata {
            metadata: "m1".into(),
            request_id: 5,
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(updates_about(&w, &b, &a)[0].metadata, "m1");
    assert!(
        !w.to(&a)
            .iter()
            .any(|m| matches!(m, Resp::RequestResponse(_)))
    );
    let due = w.m.poll_timeout().unwrap();
    assert_eq!(due, w.now + Duration::from_millis(30));
    w.advance(Duration::from_millis(30));
    assert!(w.to(&a).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.request_id == 5 && r.reason == pb::request_response::Reason::Ok as i32)));

    // Without the grant: refused at once, nothing changes.
    w.clear();
    w.signal(
        &b,
        Req::UpdateMetadata(pb::UpdateParticipantMetadata {
            metadata: "m2".into(),
            request_id: 6,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(w.to(&b).iter().any(|m| matches!(m, Resp::RequestResponse(r)
        if r.request_id == 6 && r.reason == pb::request_response::Reason::NotAllowed as i32)));
    assert_eq!(w.participant("bob").metadata, "");
}

#[test]
fn data_is_stamped_and_forwarded_to_the_others() {
    let mut w = World::new();
    let (a, b, pa, pb_) = w.connected_pair();
    #[allow(deprecated)]
    let pkt = pb::DataPacket {
        value: Some(pb::data_packet::Value::User(pb::UserPacket {
            payload: b"hello".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    };
    w.media_event(Event::Data {
        peer: pa,
        label: "_reliable".into(),
        binary: true,
        data: prost::Message::encode_to_vec(&pkt),
    });
    let sent: Vec<(PeerId, Vec<u8>)> = w
        .media
        .iter()
        .filter_map(|c| match c {
            Command::SendData { peer, data, .. } => Some((*peer, data.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "only to bob, never back to alice");
    assert_eq!(sent[0].0, pb_);
    let got: pb::DataPacket = prost::Message::decode(sent[0].1.as_slice()).unwrap();
    assert_eq!(got.participant_identity, "alice");
    assert_eq!(got.participant_sid, a);
    // The primary transport failing sends the participant away to reconnect.
    w.clear();
    w.media_event(Event::PeerDisconnected {
        peer: pb_,
        reason: "consent expired".into(),
    });
    assert_eq!(w.closes.len(), 1);
    assert_eq!(w.closes[0].0, b);
    assert_eq!(
        leave_reason(&w.closes[0].1),
        Some(pb::DisconnectReason::ConnectionTimeout)
    );
}

#[test]
fn poll_timeout_is_the_earliest_real_deadline() {
    let mut w = World::new();
    assert_eq!(w.m.poll_timeout(), None, "nothing to wait for");
    let a = w.join("alice", false);
    // A connected participant has no deadline here (its connection's silence is its
    // session's to notice); the update about its join is due within the batch.
    assert!(w.m.poll_timeout().is_none_or(|t| t <= w.now + UPDATE_BATCH));
    w.run_for(UPDATE_BATCH);
    assert_eq!(w.m.poll_timeout(), None, "a quiet room waits for nothing");
    // Its connection drops: the only deadline is the 20 s departure timeout.
    let lost = w.now;
    w.m.handle_signal_lost(lost, &a);
    assert_eq!(w.m.poll_timeout(), Some(lost + Duration::from_secs(20)));
}

/// `who` asks for its metadata to become `m{request}`.
fn update_metadata(w: &mut World, who: &str, request: u32) {
    w.signal(
        who,
        Req::UpdateMetadata(pb::UpdateParticipantMetadata {
            metadata: format!("m{request}"),
            request_id: request,
            ..Default::default()
        }),
    )
    .unwrap();
}

/// The request ids `who` has had answers for, in order.
fn answered(w: &World, who: &str) -> Vec<u32> {
    w.to(who)
        .iter()
        .filter_map(|m| match m {
            Resp::RequestResponse(r) => Some(r.request_id),
            _ => None,
        })
        .collect()
}

#[test]
fn deadlines_moved_or_withdrawn_end_no_one_early_and_queued_answers_keep_their_delay() {
    let mut w = World::with(
        config(),
        RoomDefaults {
            departure_timeout: 20,
            ..RoomDefaults::default()
        },
    );
    let grant = VideoGrant {
        can_update_own_metadata: Some(true),
        ..Default::default()
    };
    let a = w.join("alice", false);
    let b = w.join_with("bob", false, grant);
    w.run_for(UPDATE_BATCH);
    // Alice's link drops and comes back within her grace, then drops again 10 s later:
    // the first grace's deadline must not end her, the second one does.
    w.m.handle_signal_lost(w.now, &a);
    w.run_for(Duration::from_secs(5));
    assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
    w.run_for(Duration::from_secs(5));
    w.m.handle_signal_lost(w.now, &a);
    let second = w.now + Duration::from_secs(20);
    w.run_for(Duration::from_secs(15));
    assert_eq!(
        w.m.api_list_participants("r").unwrap().len(),
        2,
        "alice is still within her second grace"
    );
    // Bob asks for two updates 10 ms apart: each answer 30 ms after its request.
    w.clear();
    let start = w.now;
    for (i, gap) in [(1u32, 0u64), (2, 10)] {
        w.run_for(Duration::from_millis(gap));
        update_metadata(&mut w, &b, i);
    }
    w.run_for(start + Duration::from_millis(29) - w.now);
    assert!(answered(&w, &b).is_empty());
    w.run_for(Duration::from_millis(1));
    assert_eq!(answered(&w, &b), [1]);
    w.run_for(Duration::from_millis(9));
    assert_eq!(answered(&w, &b), [1]);
    w.run_for(Duration::from_millis(1));
    assert_eq!(answered(&w, &b), [1, 2]);
    // Alice goes at the end of her second grace, not before.
    w.run_for(second - Duration::from_millis(1) - w.now);
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
    assert_eq!(w.m.poll_timeout().filter(|t| *t <= w.now), None);
}

#[test]
fn links_dropped_and_resumed_without_end_keep_the_timer_queue_bounded() {
    let mut w = World::with(
        config(),
        RoomDefaults {
            departure_timeout: 20,
            ..RoomDefaults::default()
        },
    );
    let a = w.join("alice", false);
    let _b = w.join("bob", false);
    w.run_for(UPDATE_BATCH);
    // Every drop queues a grace of 20 s that the resume withdraws: without a sweep each
    // would stay queued for its 20 s.
    let cap = super::timer_cap(2);
    let mut most = 0;
    for _ in 0..500 {
        w.m.handle_signal_lost(w.now, &a);
        most = most.max(w.m.timers.len());
        w.run_for(Duration::from_millis(1));
        assert_eq!(resume_join(&mut w, "alice", &a, false), Ok(a.clone()));
        most = most.max(w.m.timers.len());
    }
    assert!(most <= cap, "{most} entries queued, more than {cap}");
    // The last drop still ends her at the end of its grace, not before.
    w.m.handle_signal_lost(w.now, &a);
    let end = w.now + Duration::from_secs(20);
    w.run_for(end - Duration::from_millis(1) - w.now);
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 2);
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.m.api_list_participants("r").unwrap().len(), 1);
}

#[test]
fn a_flood_of_metadata_updates_is_answered_whole_and_in_order_with_a_bounded_wait() {
    let mut w = World::new();
    let grant = VideoGrant {
        can_update_own_metadata: Some(true),
        ..Default::default()
    };
    let b = w.join_with("bob", false, grant);
    w.run_for(UPDATE_BATCH);
    w.clear();
    let n = 3 * super::MAX_DEFERRED as u32 + 5;
    for i in 1..=n {
        update_metadata(&mut w, &b, i);
    }
    // At most MAX_DEFERRED wait at once: the first three full queues went out when the next
    // request came, the last five wait their delay.
    assert_eq!(answered(&w, &b), (1..=n - 5).collect::<Vec<_>>());
    w.run_for(ANSWER_DELAY);
    assert_eq!(answered(&w, &b), (1..=n).collect::<Vec<_>>());
}

#[test]
fn simulcast_layers_follow_track_settings_and_dynacast() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    let track = w.publish_simulcast_camera(&a);
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Publish(p) if p.rids == ["q", "h", "f"]))
    );
    let bob_peer = w.answer_subscriber(&b);
    #[allow(deprecated)] // clients still read TrackInfo.simulcast
    let simulcast = w.participant("alice").tracks[0].simulcast;
    assert!(simulcast);
    w.clear();
    // Bob's video element is small: the low layer, and the publisher may stop the others.
    w.signal(
        &b,
        Req::TrackSetting(pb::UpdateTrackSettings {
            track_sids: vec![track.clone()],
            width: 300,
            height: 160,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(w.media.iter().any(|c| matches!(c,
        Command::SetMaxLayer { peer, max_layer: 0, .. } if *peer == bob_peer)));
    let told = w.to(&a).into_iter().find_map(|m| match m {
        Resp::SubscribedQualityUpdate(u) => Some(u.clone()),
        _ => None,
    });
    let told = told.expect("dynacast tells the publisher");
    let enabled: Vec<bool> = told.subscribed_codecs[0]
        .qualities
        .iter()
        .map(|q| q.enabled)
        .collect();
    assert_eq!(enabled, [true, false, false]);
}

#[test]
fn an_offer_with_more_rids_than_layers_publishes_three() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.add_camera(&a);
    let offer = |n: usize| {
        let rids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let rid_refs: Vec<&str> = rids.iter().map(String::as_str).collect();
        client_offer(&[Sec::SendVideo("cam", &rid_refs)])
    };
    w.clear();
    // Thousands of rids are past the parser's cap.
    let e = w.offer(&a, offer(5000)).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("a media section has more than 16 rid lines"),
        "{e}"
    );
    assert!(w.media.is_empty(), "{:?}", w.media);
    // As many as the parser takes: three are published.
    w.offer(&a, offer(lkr_sdp::Limit::Rids.max())).unwrap();
    let published: Vec<usize> = w
        .media
        .iter()
        .filter_map(|c| match c {
            Command::Publish(p) => Some(p.rids.len()),
            _ => None,
        })
        .collect();
    assert_eq!(published, [3]);
    let answer = w.last_answer(&a);
    assert_eq!(answer.sdp.matches("a=rid:").count(), 3);
}

/// `limit.max_rids_per_track` below three: a three-layer offer is answered with the lowest
/// layers only, and those are published.
#[test]
fn the_rids_per_track_limit_answers_the_lowest_layers() {
    let mut c = config();
    c.limits.max_rids_per_track = 2;
    let mut w = World::with(c, RoomDefaults::default());
    let a = w.join("alice", false);
    w.add_camera(&a);
    w.clear();
    w.offer(&a, client_offer(&[Sec::SendVideo("cam", &["f", "q", "h"])]))
        .unwrap();
    let published: Vec<Vec<String>> = w
        .media
        .iter()
        .filter_map(|c| match c {
            Command::Publish(p) => Some(p.rids.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(published, [["q", "h"]]);
    let answer = w.last_answer(&a);
    assert_eq!(answer.sdp.matches("a=rid:").count(), 2);
    assert!(
        answer.sdp.contains("a=simulcast:recv q;h"),
        "{}",
        answer.sdp
    );
}

/// The 1-based number of the first line of `sdp` that starts with `prefix`, counted from
/// the `skip`-th such line.
fn line_of(sdp: &str, prefix: &str, skip: usize) -> usize {
    sdp.split('\n')
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .nth(skip)
        .map(|(i, _)| i + 1)
        .expect("the line is there")
}

/// Offers past the SDP parser's caps (the shapes that cost the control task memory or time
/// before the caps) get an invalid-argument error naming the cap and the line; nothing is
/// answered or published, and the participant's next, ordinary offer is answered.
#[test]
fn an_offer_past_an_sdp_cap_is_refused_with_the_cap() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.publish_audio(&a, "mic");
    w.clear();
    let ok = client_offer(&[Sec::SendAudio("mic")]);
    let with = |extra: &str| {
        ok.replace(
            "a=rtpmap:111 opus/48000/2\r\n",
            &format!("a=rtpmap:111 opus/48000/2\r\n{extra}"),
        )
    };

    let members: Vec<String> = (0..300_000).map(|i| i.to_string()).collect();
    let sim = with(&format!("a=ssrc-group:SIM {}\r\n", members.join(" ")));
    let flood = with(
        &(0..140_000)
            .map(|i| format!("a=rtcp-fb:* x{i}\r\n"))
            .collect::<String>(),
    );
    let sections = ok.clone() + &"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(4096);
    let cases = [
        (
            &sim,
            line_of(&sim, "a=ssrc-group", 0),
            "an ssrc-group has more than 16 SSRCs",
        ),
        (
            &flood,
            line_of(&flood, "a=rtcp-fb", 32),
            "a payload type has more than 32 distinct rtcp-fb values",
        ),
        (
            &sections,
            line_of(&sections, "m=", 4096),
            "the description has more than 4096 media sections",
        ),
    ];
    for (sdp, line, cap) in cases {
        let e = w.offer(&a, sdp.clone()).unwrap_err();
        assert_eq!(e.to_string(), format!("bad offer: line {line}: {cap}"));
        assert_eq!(e.fault(), Fault::Invalid);
        assert_eq!(
            e.request_reason(),
            pb::request_response::Reason::InvalidRequest
        );
    }
    assert!(w.media.is_empty(), "{:?}", w.media);
    assert!(!w.to(&a).iter().any(|m| matches!(m, Resp::Answer(_))));

    w.offer(&a, ok).unwrap();
    assert!(w.to(&a).iter().any(|m| matches!(m, Resp::Answer(_))));
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Publish(p) if p.ssrcs == [1000]))
    );
}

#[test]
fn add_track_is_capped_and_checked() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.clear();
    let add = |cid: String, name: String, ty: pb::TrackType, src: pb::TrackSource| {
        Req::AddTrack(pb::AddTrackRequest {
            cid,
            name,
            r#type: ty as i32,
            source: src as i32,
            ..Default::default()
        })
    };
    for i in 0..100 {
        w.signal(
            &a,
            add(
                format!("c{i}"),
                "mic".into(),
                pb::TrackType::Audio,
                pb::TrackSource::Microphone,
            ),
        )
        .unwrap();
    }
    let accepted = w
        .to(&a)
        .iter()
        .filter(|m| matches!(m, Resp::TrackPublished(_)))
        .count();
    let refused: Vec<&pb::RequestResponse> = w
        .to(&a)
        .into_iter()
        .filter_map(|m| match m {
            Resp::RequestResponse(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, Limits::default().max_pending_tracks);
    assert_eq!(refused.len(), 100 - accepted);
    assert!(refused.iter().all(
        |r| r.reason == pb::request_response::Reason::LimitExceeded as i32
            && r.message.contains("waiting for an offer")
    ));

    let mut w = World::new();
    let a = w.join("alice", false);
    w.clear();
    w.signal(
        &a,
        add(
            "c".into(),
            "n".repeat(100_000),
            pb::TrackType::Audio,
            pb::TrackSource::Microphone,
        ),
    )
    .unwrap();
    w.signal(
        &a,
        add(
            "v".into(),
            "cam".into(),
            pb::TrackType::Video,
            pb::TrackSource::Microphone,
        ),
    )
    .unwrap();
    let reasons: Vec<String> = w
        .to(&a)
        .into_iter()
        .filter_map(|m| match m {
            Resp::RequestResponse(r) => Some(r.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("longer than 256"));
    assert!(reasons[1].contains("does not match its source"));
    assert!(
        !w.to(&a)
            .iter()
            .any(|m| matches!(m, Resp::TrackPublished(_)))
    );
}

#[test]
fn a_microphone_only_token_cannot_publish_video() {
    let mut w = World::new();
    let a = w.join_with(
        "alice",
        false,
        VideoGrant {
            can_publish_sources: vec!["microphone".into()],
            ..Default::default()
        },
    );
    // Announce a microphone, then offer a video section carrying its cid.
    w.signal(
        &a,
        Req::AddTrack(pb::AddTrackRequest {
            cid: "c".into(),
            r#type: pb::TrackType::Audio as i32,
            source: pb::TrackSource::Microphone as i32,
            ..Default::default()
        }),
    )
    .unwrap();
    w.clear();
    w.offer(&a, client_offer(&[Sec::SendVideo("c", &[])]))
        .unwrap();
    assert!(
        !w.media.iter().any(|c| matches!(c, Command::Publish(_))),
        "{:?}",
        w.media
    );
    assert!(w.participant("alice").tracks.is_empty());
    // The audio section it announced still publishes.
    w.offer(
        &a,
        client_offer(&[Sec::SendVideo("c", &[]), Sec::SendAudio("c")]),
    )
    .unwrap();
    let kinds: Vec<lkr_sfu::MediaKind> = w
        .media
        .iter()
        .filter_map(|c| match c {
            Command::Publish(p) => Some(p.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [lkr_sfu::MediaKind::Audio]);
}

/// Dual PC: alice publishes an audio track that bob, subscribed, has answered; bob's
/// participant sid and the track's.
fn bob_receives_alices_audio(w: &mut World) -> (String, String) {
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    let track = w.publish_audio(&a, "c");
    w.offer(&a, client_offer(&[Sec::SendAudio("c")])).unwrap();
    w.answer_subscriber(&b);
    (b, track)
}

#[test]
fn the_subscriber_offer_reuses_sections() {
    let mut w = World::new();
    let (b, track) = bob_receives_alices_audio(&mut w);
    for _ in 0..500 {
        w.set_subscribed(&b, &track, false);
        w.answer_subscriber(&b);
        w.set_subscribed(&b, &track, true);
        w.answer_subscriber(&b);
        w.signals.clear();
        w.media.clear();
    }
    w.set_subscribed(&b, &track, false);
    let offer = w.last_offer(&b);
    let sections = offer.sdp.matches("\r\nm=").count();
    assert!(sections <= 3, "{sections} sections after 500 cycles");
    assert!(offer.sdp.len() < 4000, "{} bytes", offer.sdp.len());
    w.answer_subscriber(&b);
    w.set_subscribed(&b, &track, true);
    let offer = w.last_offer(&b);
    assert!(offer.sdp.contains(&track));
}

#[test]
fn a_join_over_the_size_limits_is_refused() {
    let mut w = World::new();
    let mut j = |claims: Claims, metadata: Option<String>| {
        w.m.handle_join(
            w.now,
            Join {
                single_pc: false,
                metadata,
                resume: None,
                ..join_of("r", "x", claims)
            },
        )
    };
    let long_name = Claims {
        sub: "x".into(),
        name: "n".repeat(300),
        ..Default::default()
    };
    let e = j(long_name, None).unwrap_err();
    assert_eq!(e.fault(), Fault::Limit);
    let big = Claims {
        sub: "x".into(),
        metadata: "m".repeat(65),
        ..Default::default()
    };
    assert_eq!(j(big, None).unwrap_err().fault(), Fault::Limit);
    let ok = Claims {
        sub: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        j(ok.clone(), Some("m".repeat(65))).unwrap_err().fault(),
        Fault::Limit
    );
    // The token's attributes and the request's fit alone, not together (64 bytes allowed).
    let from_token = Claims {
        sub: "x".into(),
        attributes: [("t".to_string(), "v".repeat(39))].into_iter().collect(),
        video: Some(VideoGrant {
            can_update_own_metadata: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e =
        w.m.handle_join(
            w.now,
            Join {
                attributes: [("j".to_string(), "v".repeat(39))].into_iter().collect(),
                ..join_of("r", "x", from_token)
            },
        )
        .unwrap_err();
    assert_eq!(
        e,
        RoomError::LimitExceeded("attributes are 80 bytes, larger than the limit of 64".into())
    );
    let mut j = |claims: Claims, metadata: Option<String>| {
        w.m.handle_join(
            w.now,
            Join {
                metadata,
                ..join_of("r", "x", claims)
            },
        )
    };
    assert!(j(ok, None).is_ok());
}

#[test]
fn shutdown_sends_everyone_away_and_finishes_every_room() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", true);
    w.m.api_create_room(
        w.now,
        &CreateRoom {
            name: "empty".into(),
            ..Default::default()
        },
    )
    .unwrap();
    w.clear();
    w.m.handle_shutdown(w.now);
    w.drain();
    let mut sent_away: Vec<&str> = w.closes.iter().map(|(to, _)| to.as_str()).collect();
    sent_away.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(sent_away, want);
    assert!(
        w.closes
            .iter()
            .all(|(_, l)| leave_reason(l) == Some(pb::DisconnectReason::ServerShutdown))
    );
    let finished: Vec<String> = w
        .events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::RoomFinished { room } => Some(room.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["empty", "r"]);
    assert_eq!(w.m.participant_count(), 0);
    assert!(w.m.draining());
    let claims = Claims {
        sub: "late".into(),
        ..Default::default()
    };
    let e =
        w.m.handle_join(
            w.now,
            Join {
                single_pc: false,
                metadata: None,
                resume: None,
                ..join_of("r", "late", claims)
            },
        )
        .unwrap_err();
    assert_eq!((e.join_status(), e.twirp_code()), (503, "unavailable"));
    assert!(
        w.m.api_create_room(
            w.now,
            &CreateRoom {
                name: "x".into(),
                ..Default::default()
            }
        )
        .is_err()
    );
}

mod data_track_tests;
mod egress_tests;
mod rpc_tests;

/// The quality entries `to` was sent since the last clear: (participant sid, level).
fn quality_to(w: &World, to: &str) -> Vec<(String, i32)> {
    w.to(to)
        .into_iter()
        .filter_map(|m| match m {
            Resp::ConnectionQuality(u) => Some(u.updates.clone()),
            _ => None,
        })
        .flatten()
        .map(|i| (i.participant_sid, i.quality))
        .collect()
}

#[test]
fn connection_quality_is_told_when_it_changes_and_only_to_whom_it_concerns() {
    use pb::ConnectionQuality as Q;
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let c = w.join("carol", false);
    for p in [&a, &b, &c] {
        w.answer_subscriber(p);
    }
    w.publish_audio(&a, "mic-cid");
    w.offer(&a, client_offer(&[Sec::SendAudio("mic-cid")]))
        .unwrap();
    let up = *w.added_peers().last().expect("alice's publisher peer");
    w.media_event(Event::PeerConnected { peer: up });
    w.answer_subscriber(&b);
    w.answer_subscriber(&c);
    w.clear();

    // First rating: everyone hears its own, and the subscribers hear alice's; nobody hears
    // about a participant it does not subscribe to (bob and carol publish nothing).
    w.media_event(Event::Loss {
        peers: vec![(up, 0.0)],
    });
    let mut to_b = quality_to(&w, &b);
    to_b.sort();
    let mut want = vec![
        (a.clone(), Q::Excellent as i32),
        (b.clone(), Q::Excellent as i32),
    ];
    want.sort();
    assert_eq!(to_b, want);
    assert_eq!(quality_to(&w, &a), [(a.clone(), Q::Excellent as i32)]);
    w.clear();

    // Nothing changed: nothing is sent, whatever the room's size.
    w.media_event(Event::Loss {
        peers: vec![(up, 0.001)],
    });
    assert!(
        [&a, &b, &c].iter().all(|p| quality_to(&w, p).is_empty()),
        "a steady room was sent quality updates"
    );

    // Alice's uplink loses 5%: alice and her subscribers hear it, and only that.
    w.media_event(Event::Loss {
        peers: vec![(up, 0.05)],
    });
    for p in [&a, &b, &c] {
        assert_eq!(quality_to(&w, p), [(a.clone(), Q::Good as i32)], "to {p}");
    }
}

/// The participant updates `to` was sent since the last clear: each message's identities.
fn update_messages(w: &World, to: &str) -> Vec<Vec<String>> {
    w.to(to)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Update(u) => Some(u.participants.iter().map(|p| p.identity.clone()).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_of_joins_is_told_in_one_update_per_participant() {
    let mut w = World::new();
    let first = w.join("p0", false);
    w.clear();
    let sids: Vec<String> = (1..30).map(|i| w.join(&format!("p{i}"), false)).collect();
    assert!(update_messages(&w, &first).is_empty(), "held for the batch");
    w.run_for(UPDATE_BATCH);
    let to_first = update_messages(&w, &first);
    assert_eq!(to_first.len(), 1, "{to_first:?}");
    assert_eq!(to_first[0].len(), 29);
    // Each joiner hears of the others of the burst, never of itself, in one message.
    let mid = &sids[10];
    let to_mid = update_messages(&w, mid);
    assert_eq!(to_mid.len(), 1);
    assert!(!to_mid[0].contains(&"p11".to_string()));
    let all: usize = std::iter::once(&first)
        .chain(&sids)
        .map(|s| update_messages(&w, s).len())
        .sum();
    assert!(
        all <= 30,
        "{all} update messages for 30 joins (435 one by one)"
    );
    w.clear();
    // Departures of participants who never published are batched the same way.
    for s in &sids[..20] {
        w.signal(s, Req::Leave(pb::LeaveRequest::default()))
            .unwrap();
    }
    assert!(update_messages(&w, &first).is_empty(), "held for the batch");
    w.run_for(UPDATE_BATCH);
    let to_first = update_messages(&w, &first);
    assert_eq!(to_first.len(), 1, "{to_first:?}");
    assert_eq!(to_first[0].len(), 20);
    let all: usize = std::iter::once(&first)
        .chain(&sids[20..])
        .map(|s| update_messages(&w, s).len())
        .sum();
    assert_eq!(
        all, 10,
        "one update each for 20 departures (200 one by one)"
    );
}

/// A large room holds its batches longer, as each goes to every member: a room of 300
/// hears of a join after 600 ms, not 200.
#[test]
fn a_large_room_batches_for_longer() {
    assert_eq!(update_batch(2), UPDATE_BATCH);
    assert_eq!(update_batch(100), UPDATE_BATCH);
    assert_eq!(update_batch(500), Duration::from_secs(1));
    assert_eq!(update_batch(1_000_000), UPDATE_BATCH_MAX);
    let mut w = World::new();
    let sids: Vec<String> = (0..300).map(|i| w.join(&format!("p{i}"), false)).collect();
    w.run_for(UPDATE_BATCH_MAX);
    let a = w.join_in("small", "a", false, VideoGrant::default(), None);
    w.run_for(UPDATE_BATCH);
    w.clear();
    w.join("late", false);
    w.join_in("small", "b", false, VideoGrant::default(), None);
    // A small room beside it keeps its own, shorter batch.
    w.run_for(UPDATE_BATCH);
    assert_eq!(update_messages(&w, &a), [vec!["b".to_string()]]);
    w.run_for(Duration::from_millis(390));
    assert!(update_messages(&w, &sids[0]).is_empty(), "held for 600 ms");
    w.run_for(Duration::from_millis(20));
    assert_eq!(update_messages(&w, &sids[0]), [vec!["late".to_string()]]);
}

/// A publisher's departure is told at once; an identity that leaves and joins again within
/// one batch is told gone before it is told back (clients key participants by identity).
#[test]
fn a_publishers_departure_is_told_at_once_and_a_replaced_session_leaves_first() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.publish_simulcast_camera(&b);
    w.run_for(UPDATE_BATCH);
    w.clear();
    w.signal(&b, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let gone = updates_about(&w, &a, &b);
    assert_eq!(gone.len(), 1, "told without waiting for the batch");
    assert_eq!(
        gone[0].state,
        pb::participant_info::State::Disconnected as i32
    );

    let c1 = w.join("carol", false);
    w.run_for(UPDATE_BATCH);
    w.clear();
    w.signal(&c1, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let c2 = w.join("carol", false);
    assert_ne!(c1, c2);
    w.run_for(UPDATE_BATCH);
    let carol: Vec<(String, i32)> = w
        .to(&a)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Update(u) => Some(u.participants.clone()),
            _ => None,
        })
        .flatten()
        .filter(|p| p.identity == "carol")
        .map(|p| (p.sid, p.state))
        .collect();
    let disconnected = pb::participant_info::State::Disconnected as i32;
    assert_eq!(carol.len(), 2, "{carol:?}");
    assert_eq!(carol[0], (c1, disconnected), "{carol:?}");
    assert_eq!(carol[1].0, c2);
    assert_ne!(carol[1].1, disconnected);
}

/// A batch of updates is one shared message for everyone it is the same for: those who
/// were in the room before the burst get the very same allocation, back to back (so that the
/// signal layer encodes it once); each joiner of the burst gets its own, without itself.
#[test]
fn a_batched_update_is_one_message_shared_by_its_recipients() {
    let mut w = World::new();
    let before: Vec<String> = (0..5).map(|i| w.join(&format!("old{i}"), false)).collect();
    w.run_for(UPDATE_BATCH);
    w.clear();
    let joiners: Vec<String> = (0..3).map(|i| w.join(&format!("new{i}"), false)).collect();
    w.clear();
    let due = w.m.poll_timeout().unwrap();
    w.m.handle_timeout(due.max(w.now + UPDATE_BATCH));
    let mut updates = Vec::new();
    while let Some(o) = w.m.poll_output() {
        if let Output::Signal { to, message } = o
            && matches!(*message, Resp::Update(_))
        {
            updates.push((to.to_string(), message));
        }
    }
    let to_old: Vec<&Arc<Resp>> = updates
        .iter()
        .filter(|(to, _)| before.contains(to))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(to_old.len(), 5);
    assert!(
        to_old.iter().all(|m| Arc::ptr_eq(m, to_old[0])),
        "one shared message"
    );
    let Resp::Update(u) = &**to_old[0] else {
        unreachable!()
    };
    assert_eq!(u.participants.len(), 3);
    let positions: Vec<usize> = updates
        .iter()
        .enumerate()
        .filter(|(_, (to, _))| before.contains(to))
        .map(|(i, _)| i)
        .collect();
    assert!(
        positions.windows(2).all(|p| p[1] == p[0] + 1),
        "the shared copies come one after another: {positions:?}"
    );
    for j in &joiners {
        let (_, m) = updates.iter().find(|(to, _)| to == j).unwrap();
        assert!(!Arc::ptr_eq(m, to_old[0]));
        let Resp::Update(u) = &**m else {
            unreachable!()
        };
        assert_eq!(
            u.participants.len(),
            2,
            "the others of the burst, not itself"
        );
    }
}

/// Room-wide messages go to the room's participants only, as they come and go: a departed
/// participant hears nothing more, a later joiner hears the next one, another room nothing;
/// a room emptied and joined again starts afresh.
#[test]
fn room_messages_reach_exactly_the_rooms_participants() {
    let mut w = World::new();
    let join = |w: &mut World, room: &str, identity: &str| {
        let claims = Claims {
            sub: identity.into(),
            video: Some(VideoGrant {
                room_join: true,
                room: room.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let psid =
            w.m.handle_join(w.now, join_of(room, identity, claims))
                .unwrap();
        w.drain();
        psid
    };
    let a1 = join(&mut w, "a", "a1");
    let a2 = join(&mut w, "a", "a2");
    let b1 = join(&mut w, "b", "b1");
    w.signal(&a1, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let a3 = join(&mut w, "a", "a3");
    w.run_for(UPDATE_BATCH);
    let told = |w: &mut World, room: &str| {
        w.clear();
        w.m.api_update_room_metadata(room, "m").unwrap();
        w.drain();
        let mut to: Vec<String> = w
            .signals
            .iter()
            .filter(|(_, m)| matches!(m, Resp::RoomUpdate(_)))
            .map(|(to, _)| to.clone())
            .collect();
        to.sort();
        to
    };
    let mut want = vec![a2.clone(), a3.clone()];
    want.sort();
    assert_eq!(told(&mut w, "a"), want);
    assert_eq!(told(&mut w, "b"), vec![b1.clone()]);
    w.signal(&b1, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let b2 = join(&mut w, "b", "b2");
    assert_eq!(told(&mut w, "b"), vec![b2]);
    assert_eq!(told(&mut w, "a"), want);
}

/// Track settings that arrive before the subscriber's answer (the client knows the track
/// from the offer) are not lost: the core gets them right after the subscription itself.
#[test]
fn track_settings_sent_before_the_answer_apply_when_forwarding_starts() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let c = w.join("carol", false);
    w.answer_subscriber(&a);
    let bob_peer = w.answer_subscriber(&b);
    let carol_peer = w.answer_subscriber(&c);
    let track = w.publish_simulcast_camera(&a);
    let mark = w.media.len();
    // Bob's element is small, carol's is hidden; both say so before answering.
    w.signal(
        &b,
        Req::TrackSetting(pb::UpdateTrackSettings {
            track_sids: vec![track.clone()],
            width: 300,
            height: 160,
            ..Default::default()
        }),
    )
    .unwrap();
    w.signal(
        &c,
        Req::TrackSetting(pb::UpdateTrackSettings {
            track_sids: vec![track.clone()],
            disabled: true,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(
        !w.media[mark..]
            .iter()
            .any(|c| matches!(c, Command::SetMaxLayer { .. } | Command::SetPaused { .. })),
        "settings for a subscription the core does not have yet: {:?}",
        &w.media[mark..]
    );
    w.answer_subscriber(&b);
    w.answer_subscriber(&c);
    let at = |f: &dyn Fn(&Command) -> bool| w.media[mark..].iter().position(f);
    let sub_b = at(&|c| matches!(c, Command::Subscribe(s) if s.peer == bob_peer)).unwrap();
    let max_b =
        at(&|c| matches!(c, Command::SetMaxLayer { peer, max_layer: 0, .. } if *peer == bob_peer))
            .expect("bob's layer cap reaches the core");
    assert!(max_b > sub_b);
    let sub_c = at(&|c| matches!(c, Command::Subscribe(s) if s.peer == carol_peer)).unwrap();
    let paused_c =
        at(&|c| matches!(c, Command::SetPaused { peer, paused: true, .. } if *peer == carol_peer))
            .expect("carol's pause reaches the core");
    assert!(paused_c > sub_c);
}

/// Single PC: a track unsubscribed and subscribed again before the client offers anew does
/// not go straight back onto its old section (the client would see no new remote track): the
/// next answer marks that section inactive and asks for another offer, which places it.
#[test]
fn single_pc_resubscription_passes_through_an_inactive_section() {
    let mut w = World::new();
    let a = w.join("alice", true);
    let b = w.join_full(
        "bob",
        true,
        VideoGrant::default(),
        Some(client_offer(&[Sec::Data])),
    );
    let bob_peer = w.added_peers()[0];
    w.media_event(Event::PeerConnected { peer: bob_peer });
    w.offer(&a, client_offer(&[Sec::Data])).unwrap();
    let track = w.publish_audio(&a, "c1");
    w.offer(&a, client_offer(&[Sec::Data, Sec::SendAudio("c1")]))
        .unwrap();
    let bob_sections = || client_offer(&[Sec::Data, Sec::RecvAudio]);
    w.offer(&b, bob_sections()).unwrap();
    assert_eq!(w.last_answer(&b).mid_to_track_id.get("1"), Some(&track));

    w.clear();
    for subscribe in [false, true] {
        w.set_subscribed(&b, &track, subscribe);
    }
    let nudges = |w: &World| {
        w.to(&b)
            .iter()
            .filter(|m| matches!(m, Resp::MediaSectionsRequirement(_)))
            .count()
    };
    assert!(nudges(&w) >= 1, "asked for a new offer");
    // The first offer after it: the old section is answered inactive, the track waits.
    w.clear();
    w.offer(&b, bob_sections()).unwrap();
    let ans = w.last_answer(&b);
    assert_eq!(
        ans.mid_to_track_id.get("1"),
        None,
        "{:?}",
        ans.mid_to_track_id
    );
    assert!(ans.sdp.contains("a=inactive"), "{}", ans.sdp);
    assert!(nudges(&w) >= 1, "asked for one more offer");
    assert!(!w.media.iter().any(|c| matches!(c, Command::Subscribe(_))));
    // The next one places it on the section again, and forwarding starts.
    w.clear();
    w.offer(&b, bob_sections()).unwrap();
    assert_eq!(w.last_answer(&b).mid_to_track_id.get("1"), Some(&track));
    assert!(
        w.media
            .iter()
            .any(|c| matches!(c, Command::Subscribe(s) if s.peer == bob_peer))
    );
}

/// Dual PC: a track unsubscribed and subscribed again after the client answered its section
/// inactive is not put back on that section (the Python SDK then reported no track), but on
/// another one; toggled again, it takes turns between the two, so the offer stays small.
#[test]
fn dual_pc_resubscription_takes_another_section() {
    let mut w = World::new();
    let (b, track) = bob_receives_alices_audio(&mut w);
    // The mids of the offer's sections that carry the track, and how many sections it has.
    let mid_of = |w: &World| {
        let sdp = w.last_offer(&b).sdp;
        let sections: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
        let with_track: Vec<String> = sections
            .iter()
            .filter(|m| m.contains(track.as_str()))
            .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("a=mid:")))
            .map(str::to_owned)
            .collect();
        (with_track, sections.len())
    };
    let (first, _) = mid_of(&w);
    assert_eq!(first.len(), 1, "the track has one section");
    let mut mids = vec![first[0].clone()];
    for _ in 0..3 {
        for subscribe in [false, true] {
            w.set_subscribed(&b, &track, subscribe);
            // The client answers each offer before the next request.
            w.answer_subscriber(&b);
        }
        let (now, sections) = mid_of(&w);
        assert_eq!(now.len(), 1, "the track has one section");
        assert_ne!(Some(&now[0]), mids.last(), "not the section it just left");
        assert!(
            sections <= 3,
            "data and two audio sections at most: {sections}"
        );
        mids.push(now[0].clone());
    }
    assert_eq!(mids[0], mids[2], "two sections taken in turn: {mids:?}");
}

/// The RequestResponses `who` got: (request id, reason, message).
fn request_responses(w: &World, who: &str) -> Vec<(u32, i32, String)> {
    w.to(who)
        .iter()
        .filter_map(|m| match m {
            Resp::RequestResponse(r) => Some((r.request_id, r.reason, r.message.clone())),
            _ => None,
        })
        .collect()
}

/// An update of `who`'s own attributes, as request `request`.
fn update_attributes(w: &mut World, who: &str, request: u32, attributes: &[(&str, &str)]) {
    w.signal(
        who,
        Req::UpdateMetadata(pb::UpdateParticipantMetadata {
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            request_id: request,
            ..Default::default()
        }),
    )
    .unwrap();
    w.advance(ANSWER_DELAY);
}

/// Joins `identity` with the grant to update its own metadata, name and attributes.
fn join_updating(w: &mut World, identity: &str) -> String {
    w.join_with(
        identity,
        false,
        VideoGrant {
            can_update_own_metadata: Some(true),
            ..Default::default()
        },
    )
}

fn attribute_bytes(info: &pb::ParticipantInfo) -> usize {
    info.attributes.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[test]
fn attribute_updates_cannot_add_up_past_the_limit() {
    // The test config allows 64 bytes of attributes.
    let mut w = World::new();
    let a = join_updating(&mut w, "alice");
    w.clear();
    let thirty = "x".repeat(30);
    update_attributes(&mut w, &a, 1, &[("a", &thirty)]);
    update_attributes(&mut w, &a, 2, &[("b", &thirty)]);
    assert_eq!(attribute_bytes(&w.participant("alice")), 62);
    // A third key of the same size is small on its own, but the total would be 93 bytes.
    update_attributes(&mut w, &a, 3, &[("c", &thirty)]);
    let ok = pb::request_response::Reason::Ok as i32;
    let limit = pb::request_response::Reason::LimitExceeded as i32;
    assert_eq!(
        request_responses(&w, &a),
        [
            (1, ok, String::new()),
            (2, ok, String::new()),
            (
                3,
                limit,
                "attributes are 93 bytes, larger than the limit of 64".into()
            ),
        ]
    );
    let record = w.participant("alice");
    assert_eq!(attribute_bytes(&record), 62);
    assert!(!record.attributes.contains_key("c"));
    // An empty value deletes its key (LiveKit's rule): replacing one key with another fits.
    w.clear();
    update_attributes(&mut w, &a, 4, &[("a", ""), ("c", &thirty)]);
    assert_eq!(request_responses(&w, &a), [(4, ok, String::new())]);
    let mut keys: Vec<String> = w.participant("alice").attributes.into_keys().collect();
    keys.sort();
    assert_eq!(keys, ["b", "c"]);

    // UpdateParticipant (Twirp) merges the same way and refuses with the same text.
    let add = |key: &str| pb::UpdateParticipantRequest {
        room: "r".into(),
        identity: "alice".into(),
        attributes: [(key.to_string(), thirty.clone())].into_iter().collect(),
        ..Default::default()
    };
    let e = w.m.api_update_participant(w.now, &add("d")).unwrap_err();
    assert_eq!(
        e,
        RoomError::InvalidArgument("attributes are 93 bytes, larger than the limit of 64".into())
    );
    assert_eq!(e.twirp_code(), "invalid_argument");
    assert_eq!(attribute_bytes(&w.participant("alice")), 62);
    let mut replace = add("d");
    replace.attributes.insert("b".into(), String::new());
    let info = w.m.api_update_participant(w.now, &replace).unwrap();
    assert_eq!(attribute_bytes(&info), 62);
}

#[test]
fn a_name_update_is_held_to_the_name_limit() {
    let mut w = World::new();
    let a = join_updating(&mut w, "alice");
    w.clear();
    let rename = |name: String, request_id| {
        Req::UpdateMetadata(pb::UpdateParticipantMetadata {
            name,
            request_id,
            ..Default::default()
        })
    };
    w.signal(&a, rename("n".repeat(257), 1)).unwrap();
    w.signal(&a, rename("n".repeat(256), 2)).unwrap();
    w.advance(ANSWER_DELAY);
    assert_eq!(
        request_responses(&w, &a),
        [
            (
                1,
                pb::request_response::Reason::LimitExceeded as i32,
                "participant name is longer than 256 bytes".into()
            ),
            (2, pb::request_response::Reason::Ok as i32, String::new()),
        ]
    );
    assert_eq!(w.participant("alice").name, "n".repeat(256));

    let rename = pb::UpdateParticipantRequest {
        room: "r".into(),
        identity: "alice".into(),
        name: "m".repeat(100_000),
        ..Default::default()
    };
    assert_eq!(
        w.m.api_update_participant(w.now, &rename),
        Err(RoomError::InvalidArgument(
            "participant name is longer than 256 bytes".into()
        ))
    );
    assert_eq!(w.participant("alice").name, "n".repeat(256));
}

#[test]
fn add_track_bounds_the_layers_rids_and_audio_features_it_keeps() {
    let mut w = World::new();
    let a = w.join("alice", false);
    w.clear();
    let layer = |rid: &str| pb::VideoLayer {
        quality: 2,
        width: 1280,
        height: 720,
        rid: rid.into(),
        ..Default::default()
    };
    let video = |cid: &str, layers: Vec<pb::VideoLayer>| pb::AddTrackRequest {
        cid: cid.into(),
        r#type: pb::TrackType::Video as i32,
        source: pb::TrackSource::Camera as i32,
        layers,
        ..Default::default()
    };
    let long_rid = "r".repeat(100_000);
    let requests = [
        video("v1", vec![layer(&long_rid)]),
        pb::AddTrackRequest {
            simulcast_codecs: vec![pb::SimulcastCodec {
                codec: "vp8".into(),
                cid: "v2".into(),
                layers: vec![layer("q"), layer(&"r".repeat(17))],
                ..Default::default()
            }],
            ..video("v2", Vec::new())
        },
        pb::AddTrackRequest {
            cid: "mic".into(),
            r#type: pb::TrackType::Audio as i32,
            source: pb::TrackSource::Microphone as i32,
            audio_features: vec![pb::AudioTrackFeature::TfStereo as i32; 100_000],
            ..Default::default()
        },
        // What the SDKs send: short rids, a few features.
        video("v3", vec![layer("q"), layer("h"), layer(&"f".repeat(16))]),
        pb::AddTrackRequest {
            cid: "mic2".into(),
            r#type: pb::TrackType::Audio as i32,
            source: pb::TrackSource::Microphone as i32,
            audio_features: vec![
                pb::AudioTrackFeature::TfEchoCancellation as i32,
                pb::AudioTrackFeature::TfNoiseSuppression as i32,
                pb::AudioTrackFeature::TfAutoGainControl as i32,
            ],
            ..Default::default()
        },
    ];
    for r in requests {
        w.signal(&a, Req::AddTrack(r)).unwrap();
    }
    assert_eq!(
        request_responses(&w, &a),
        [
            "a simulcast layer's rid is longer than 16 bytes",
            "a simulcast layer's rid is longer than 16 bytes",
            "more than 16 audio features",
        ]
        .map(|m| (
            0,
            pb::request_response::Reason::LimitExceeded as i32,
            m.to_string()
        ))
    );
    let published: Vec<&str> = w
        .to(&a)
        .into_iter()
        .filter_map(|m| match m {
            Resp::TrackPublished(t) => Some(t.cid.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(published, ["v3", "mic2"]);
}

#[test]
fn an_offer_with_a_long_mid_is_refused_whole() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let track = w.publish_audio(&a, "c");
    w.clear();
    let with_mid = |mid: &str| {
        client_offer(&[Sec::Data, Sec::SendAudio("c")])
            .replace("BUNDLE 0 1", &format!("BUNDLE 0 {mid}"))
            .replace("a=mid:1\r\n", &format!("a=mid:{mid}\r\n"))
    };
    let long = "m".repeat(100_000);
    let e = w.offer(&a, with_mid(&long)).unwrap_err();
    assert_eq!(
        e,
        RoomError::InvalidArgument("bad offer: a mid is longer than 32 bytes".into())
    );
    assert_eq!(e.fault(), Fault::Invalid);
    assert!(w.media.is_empty(), "{:?}", w.media);
    assert!(w.signals.is_empty());
    assert!(w.participant("alice").tracks.is_empty());
    // A mid of 32 bytes publishes the track under it.
    let mid = "m".repeat(32);
    w.offer(&a, with_mid(&mid)).unwrap();
    let record = w.participant("alice");
    assert_eq!(record.tracks.len(), 1);
    assert_eq!(
        (record.tracks[0].sid.as_str(), &record.tracks[0].mid),
        (track.as_str(), &mid)
    );
}

fn subscription_responses(w: &World, who: &str) -> Vec<String> {
    w.to(who)
        .iter()
        .filter_map(|m| match m {
            Resp::SubscriptionResponse(r) => Some(r.track_sid.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_subscription_update_names_a_bounded_number_of_tracks_each_once() {
    let mut w = World::new();
    let (b, track) = bob_receives_alices_audio(&mut w);
    let alice = w.participant("alice").sid;
    w.clear();
    let update = |track_sids: Vec<String>, participant_tracks: Vec<pb::ParticipantTracks>| {
        Req::Subscription(pb::UpdateSubscription {
            track_sids,
            participant_tracks,
            subscribe: true,
        })
    };
    // The same unknown sid named as often as allowed is answered once.
    w.signal(
        &b,
        update(vec!["TR_nope".into(); MAX_SUBSCRIPTION_TRACKS], Vec::new()),
    )
    .unwrap();
    assert_eq!(subscription_responses(&w, &b), ["TR_nope"]);

    // Past the cap, in either list, the update is refused whole: no answer per name.
    let limit = MAX_SUBSCRIPTION_TRACKS;
    let unknown: Vec<String> = (0..=limit).map(|i| format!("TR_{i}")).collect();
    let by_participant = vec![pb::ParticipantTracks {
        participant_sid: alice.clone(),
        track_sids: unknown.clone(),
    }];
    let empty_entries = vec![
        pb::ParticipantTracks {
            participant_sid: alice.clone(),
            track_sids: Vec::new(),
        };
        MAX_SUBSCRIPTION_PARTICIPANTS + 1
    ];
    w.clear();
    for (sids, pts) in [
        (vec![String::new(); 1_000_000], Vec::new()),
        (unknown, Vec::new()),
        (Vec::new(), by_participant),
        (Vec::new(), empty_entries),
    ] {
        w.signal(&b, update(sids, pts)).unwrap();
    }
    assert!(subscription_responses(&w, &b).is_empty());
    let message = format!(
        "a subscription update may name at most {MAX_SUBSCRIPTION_TRACKS} tracks and \
         {MAX_SUBSCRIPTION_PARTICIPANTS} participants"
    );
    let limit_exceeded = pb::request_response::Reason::LimitExceeded as i32;
    assert_eq!(
        request_responses(&w, &b),
        vec![(0, limit_exceeded, message.clone()); 4]
    );
    assert_eq!(
        w.m.participants[&b].downstream(&track).map(|_| ()),
        Some(())
    );

    // At the cap it goes through: an unsubscription by participant, many times over.
    w.clear();
    let entries = vec![
        pb::ParticipantTracks {
            participant_sid: alice.clone(),
            track_sids: Vec::new(),
        };
        MAX_SUBSCRIPTION_PARTICIPANTS
    ];
    w.signal(
        &b,
        Req::Subscription(pb::UpdateSubscription {
            participant_tracks: entries,
            subscribe: false,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(w.m.participants[&b].downstream(&track).is_none());
    assert!(request_responses(&w, &b).is_empty());

    // UpdateSubscriptions (Twirp) is held to the same caps.
    let req = pb::UpdateSubscriptionsRequest {
        room: "r".into(),
        identity: "bob".into(),
        track_sids: vec![track.clone(); limit + 1],
        subscribe: true,
        ..Default::default()
    };
    assert_eq!(
        w.m.api_update_subscriptions(w.now, &req),
        Err(RoomError::LimitExceeded(message))
    );
    assert!(w.m.participants[&b].downstream(&track).is_none());
    let req = pb::UpdateSubscriptionsRequest {
        track_sids: vec![track.clone(); limit],
        ..req
    };
    w.m.api_update_subscriptions(w.now, &req).unwrap();
    assert!(w.m.participants[&b].downstream(&track).is_some());
}

#[test]
fn data_packets_reach_participants_named_by_sid() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let c = w.join("carol", false);
    let pa = w.answer_subscriber(&a);
    let pb_ = w.answer_subscriber(&b);
    let pc = w.answer_subscriber(&c);
    #[allow(deprecated)]
    let mut send = |identities: Vec<String>, sids: Vec<String>| {
        w.clear();
        let pkt = pb::DataPacket {
            value: Some(pb::data_packet::Value::User(pb::UserPacket {
                payload: b"hi".to_vec(),
                destination_identities: identities,
                destination_sids: sids,
                ..Default::default()
            })),
            ..Default::default()
        };
        w.send_data(pa, &pkt);
        let mut to = w.data_sent_to();
        to.sort();
        to
    };
    // The deprecated sid list routes as identities do; either list names a participant.
    assert_eq!(send(Vec::new(), vec![c.to_string()]), [pc]);
    let mut both = vec![pb_, pc];
    both.sort();
    assert_eq!(send(vec!["bob".into()], vec![c.to_string()]), both);
    // A sid of nobody in the room reaches nobody; the sender is never sent its own packet.
    assert!(send(Vec::new(), vec!["PA_nobody".into()]).is_empty());
    assert!(send(Vec::new(), vec![a.to_string()]).is_empty());
    // Over the cap of destinations in the sid list: dropped.
    let many: Vec<String> = (0..=MAX_DATA_DESTINATIONS)
        .map(|i| format!("PA_{i}"))
        .collect();
    assert!(send(Vec::new(), many.clone()).is_empty());

    // SendData (Twirp) routes on destination_sids too, and caps them.
    #[allow(deprecated)]
    let req = |sids: Vec<String>| pb::SendDataRequest {
        room: "r".into(),
        data: b"hi".to_vec(),
        destination_sids: sids,
        ..Default::default()
    };
    w.clear();
    w.m.api_send_data(&req(vec![b.to_string()])).unwrap();
    w.drain();
    let sent = w.data_sent_to();
    assert_eq!(sent, [pb_]);
    assert_eq!(
        w.m.api_send_data(&req(many)),
        Err(RoomError::LimitExceeded(format!(
            "a data packet may name at most {MAX_DATA_DESTINATIONS} destinations"
        )))
    );
}

#[test]
fn data_packets_name_a_bounded_number_of_destinations_and_short_nonces() {
    let mut w = World::new();
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    let c = w.join("carol", false);
    let pa = w.answer_subscriber(&a);
    let pb_ = w.answer_subscriber(&b);
    w.answer_subscriber(&c);
    #[allow(deprecated)]
    let mut send = |outer: Vec<String>, inner: Vec<String>, nonce: Vec<u8>| {
        w.clear();
        let pkt = pb::DataPacket {
            destination_identities: outer,
            value: Some(pb::data_packet::Value::User(pb::UserPacket {
                payload: b"hi".to_vec(),
                destination_identities: inner,
                nonce,
                ..Default::default()
            })),
            ..Default::default()
        };
        w.send_data(pa, &pkt);
        w.data_sent_to()
    };
    // Bob among as many destinations as allowed: to bob alone.
    let mut names: Vec<String> = (1..MAX_DATA_DESTINATIONS)
        .map(|i| format!("x{i}"))
        .collect();
    names.push("bob".into());
    assert_eq!(send(names.clone(), Vec::new(), Vec::new()), [pb_]);
    assert_eq!(send(Vec::new(), names.clone(), Vec::new()), [pb_]);
    // One more, in either list, and the packet goes nowhere.
    names.push("x0".into());
    assert!(send(names.clone(), Vec::new(), Vec::new()).is_empty());
    assert!(send(Vec::new(), names.clone(), Vec::new()).is_empty());

    // A 16-byte nonce (LiveKit's) is forwarded once; a longer one is not kept or forwarded.
    let nonce = vec![7u8; 16];
    assert_eq!(send(Vec::new(), Vec::new(), nonce.clone()).len(), 2);
    assert!(send(Vec::new(), Vec::new(), nonce).is_empty());
    for i in 0..100u8 {
        assert!(send(Vec::new(), Vec::new(), vec![i; 17]).is_empty());
    }
    assert_eq!(send(Vec::new(), Vec::new(), Vec::new()).len(), 2);

    // SendData (Twirp) is held to the same number of destinations.
    let req = pb::SendDataRequest {
        room: "r".into(),
        data: b"hi".to_vec(),
        destination_identities: names,
        ..Default::default()
    };
    assert_eq!(
        w.m.api_send_data(&req),
        Err(RoomError::LimitExceeded(format!(
            "a data packet may name at most {MAX_DATA_DESTINATIONS} destinations"
        )))
    );
}

/// A join reply's participants: those in the response itself, then the encoded records, in
/// that order, and nothing else changed.
#[test]
fn a_join_reply_lists_the_responses_own_participants_then_the_encoded_ones() {
    use prost::Message as _;
    let info = |identity: &str| pb::ParticipantInfo {
        identity: identity.into(),
        ..Default::default()
    };
    let response = pb::JoinResponse {
        other_participants: vec![info("a")],
        server_version: "v".into(),
        ..Default::default()
    };
    let encoded = [info("b").encode_to_vec(), info("c").encode_to_vec()];
    let back = JoinReply::new(&response, &encoded).decoded();
    let names: Vec<&str> = back
        .other_participants
        .iter()
        .map(|p| p.identity.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(back.server_version, "v");
}

/// Publishes `n` audio tracks of `psid` (add_track, then one offer carrying them); returns
/// their sids.
fn publish_audios(w: &mut World, psid: &str, n: usize) -> Vec<String> {
    let cids: Vec<String> = (0..n).map(|i| format!("mic{i}")).collect();
    let sids = cids.iter().map(|c| w.publish_audio(psid, c)).collect();
    let secs: Vec<Sec> = cids.iter().map(|c| Sec::SendAudio(c.as_str())).collect();
    w.offer(psid, client_offer(&secs)).unwrap();
    sids
}

fn refused_subscriptions(w: &World, psid: &str) -> Vec<String> {
    w.to(psid)
        .iter()
        .filter_map(|m| match m {
            Resp::SubscriptionResponse(r) if r.err == pb::SubscriptionError::SeUnknown as i32 => {
                Some(r.track_sid.clone())
            }
            _ => None,
        })
        .collect()
}

/// A peer connection holds at most `max_media_sections` sections (the most a description
/// may hold): a subscriber whose connection is full is refused further tracks, with one PC
/// (its own publications counted) and with two; and LiveKit's per-kind subscription limit.
#[test]
fn subscriptions_stop_at_the_section_cap_and_the_subscription_limit() {
    for single_pc in [false, true] {
        let mut c = config();
        c.limits.max_media_sections = 3;
        let mut w = World::with(c, RoomDefaults::default());
        let a = w.join("alice", false);
        let b = w.join("bob", single_pc);
        w.answer_subscriber(&a);
        if !single_pc {
            w.answer_subscriber(&b);
        }
        w.clear();
        let sids = publish_audios(&mut w, &a, 4);
        let received: Vec<&String> = sids
            .iter()
            .filter(|s| w.m.participants[&b].downstream(s).is_some())
            .collect();
        // Dual PC: data + 2 tracks; single PC: data + 2 tracks as well (nothing published).
        assert_eq!(received.len(), 2, "single_pc {single_pc}: {received:?}");
        let refused = refused_subscriptions(&w, &b);
        assert_eq!(refused.len(), 2, "single_pc {single_pc}: {refused:?}");
        assert!(refused.iter().all(|s| !received.contains(&s)));
    }

    let mut c = config();
    c.limits.subscription_limit_audio = 1;
    let mut w = World::with(c, RoomDefaults::default());
    let a = w.join("alice", false);
    let b = w.join("bob", false);
    w.answer_subscriber(&a);
    w.answer_subscriber(&b);
    w.clear();
    let sids = publish_audios(&mut w, &a, 3);
    let received = sids
        .iter()
        .filter(|s| w.m.participants[&b].downstream(s).is_some())
        .count();
    assert_eq!(received, 1);
    assert_eq!(refused_subscriptions(&w, &b).len(), 2);
}

/// Who was sent a `speakers_changed` on audio `levels` from the media core, and the speaker
/// each message named (one each here), in order.
fn speakers_told_after(w: &mut World, levels: Vec<(TrackId, f32, bool)>) -> Vec<(String, String)> {
    w.clear();
    w.media_event(Event::AudioLevels { levels });
    let mut told: Vec<(String, String)> = w
        .signals
        .iter()
        .filter_map(|(to, m)| match m {
            Resp::SpeakersChanged(s) => {
                let named: Vec<&str> = s.speakers.iter().map(|i| i.sid.as_str()).collect();
                Some((to.clone(), named.join(",")))
            }
            _ => None,
        })
        .collect();
    told.sort();
    told
}

fn sorted(pairs: Vec<(&String, &String)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn audio_levels_and_departures_concern_only_their_own_room() {
    let mut w = World::new();
    // Room "r": alice publishes audio to bob; room "s": carol publishes audio to dave.
    let (bob, alice_track) = bob_receives_alices_audio(&mut w);
    let alice = w.participant("alice").sid;
    let carol = w.join_in("s", "carol", false, VideoGrant::default(), None);
    let dave = w.join_in("s", "dave", false, VideoGrant::default(), None);
    w.answer_subscriber(&carol);
    w.answer_subscriber(&dave);
    let carol_track = w.publish_audio(&carol, "c");
    w.offer(&carol, client_offer(&[Sec::SendAudio("c")]))
        .unwrap();
    w.answer_subscriber(&dave);
    assert!(w.m.participants[&dave].downstream(&carol_track).is_some());
    assert!(w.m.participants[&dave].downstream(&alice_track).is_none());
    let id_of = |w: &World, sid: &str| {
        w.m.published_tracks()
            .into_iter()
            .find(|t| t.sid == sid)
            .expect("published")
            .track_id
    };
    let (alice_id, carol_id) = (id_of(&w, &alice_track), id_of(&w, &carol_track));

    // Alice speaks, carol is silent: only room "r" hears of a speaker, and it is alice.
    let told = speakers_told_after(&mut w, vec![(carol_id, 0.0, false), (alice_id, 0.5, true)]);
    assert_eq!(told, sorted(vec![(&alice, &alice), (&bob, &alice)]));

    // Bob leaves room "r": dave still receives carol, who still has her subscriber.
    w.signal(&bob, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    assert!(w.m.participants[&dave].downstream(&carol_track).is_some());
    assert_eq!(w.m.participant_subscriptions(&dave), 1);
    assert_eq!(w.m.tracks.get(&carol_track).unwrap().subscribers.len(), 1);

    // Alice leaves: her track goes, carol's stays and dave keeps it.
    w.signal(&alice, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let left: Vec<String> = w.m.published_tracks().into_iter().map(|t| t.sid).collect();
    assert_eq!(left, [carol_track.as_str()]);
    assert!(w.m.participants[&dave].downstream(&carol_track).is_some());

    // Now carol speaks: only room "s".
    let told = speakers_told_after(&mut w, vec![(alice_id, 0.5, true), (carol_id, 0.4, true)]);
    assert_eq!(told, sorted(vec![(&carol, &carol), (&dave, &carol)]));
}

/// The `mute` requests participant `psid` was sent: (track sid, muted).
fn mutes_told(w: &World, psid: &str) -> Vec<(String, bool)> {
    w.to(psid)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Mute(r) => Some((r.sid.clone(), r.muted)),
            _ => None,
        })
        .collect()
}

#[test]
fn remote_unmute_is_refused_unless_the_configuration_allows_it() {
    for enabled in [false, true] {
        let config = Config {
            enable_remote_unmute: enabled,
            ..config()
        };
        let mut w = World::with(config, RoomDefaults::default());
        let (bob, track) = bob_receives_alices_audio(&mut w);
        let alice = w.participant("alice").sid;
        let muted_in_record = |w: &World| {
            w.participant("alice")
                .tracks
                .iter()
                .find(|t| t.sid == track)
                .map(|t| t.muted)
        };

        // Muting is always allowed: alice is told to mute and the record says so.
        w.clear();
        let t = w.m.api_mute_published_track("r", "alice", &track, true);
        w.drain();
        assert!(t.expect("a mute is allowed").muted);
        assert_eq!(mutes_told(&w, &alice), [(track.clone(), true)]);
        assert_eq!(muted_in_record(&w), Some(true));

        w.clear();
        let t = w.m.api_mute_published_track("r", "alice", &track, false);
        w.drain();
        if enabled {
            assert!(!t.expect("unmute allowed by the configuration").muted);
            assert_eq!(mutes_told(&w, &alice), [(track.clone(), false)]);
            assert_eq!(muted_in_record(&w), Some(false));
        } else {
            let e = t.expect_err("unmute refused by default, as LiveKit does");
            assert_eq!(e, RoomError::RemoteUnmuteDisabled);
            assert_eq!(e.to_string(), "remote unmute not enabled");
            assert_eq!(e.twirp_code(), "failed_precondition");
            // Nothing reached alice or bob, and the track stays muted.
            assert!(mutes_told(&w, &alice).is_empty());
            assert!(w.to(&bob).is_empty(), "{:?}", w.to(&bob));
            assert_eq!(muted_in_record(&w), Some(true));
        }
    }
}

/// Tokens handed to participants (`refresh_token`): one right after the join response,
/// one every five minutes, and one at once when the API changes the participant's
/// permission or metadata, each verifying under the node's key with the participant's
/// current grants; valid ten minutes, or as long as the token it joined with if that is
/// longer.
#[test]
fn participants_are_handed_tokens_of_their_current_grants() {
    let mut w = World::new();
    // The machine's wall clock six minutes behind the system's, so that its tokens verify
    // (against the system clock) also after five minutes of virtual time.
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 6 * 60_000;
    w.m = Machine::with_wall_clock(
        config(),
        Rooms::new(RoomDefaults::default()),
        w.now,
        unix_ms,
    );
    w.m.set_token_signer(TokenSigner::new("devkey", "secret"));
    let keys = HashMap::from([("devkey".to_string(), "secret".to_string())]);
    let tokens = |w: &World, who: &str| -> Vec<Claims> {
        w.signals
            .iter()
            .filter(|(to, _)| to == who)
            .filter_map(|(_, m)| match m {
                Resp::RefreshToken(t) => {
                    Some(lkr_proto::token::verify(t, &keys).expect("verifies"))
                }
                _ => None,
            })
            .collect()
    };
    let a = w.join("alice", true);
    let order: Vec<bool> = w
        .signals
        .iter()
        .filter(|(to, _)| *to == a)
        .map(|(_, m)| matches!(m, Resp::RefreshToken(_)))
        .collect();
    assert_eq!(
        order.iter().position(|t| *t),
        Some(1),
        "after the join response"
    );
    let first = tokens(&w, &a);
    assert_eq!(first.len(), 1);
    let c = &first[0];
    let v = c.video.as_ref().unwrap();
    assert_eq!(
        (c.sub.as_str(), v.room.as_str(), v.room_join),
        ("alice", "r", true)
    );
    assert_eq!((v.can_publish, v.can_subscribe), (Some(true), Some(true)));
    assert_eq!(
        c.exp.unwrap() - c.nbf.unwrap(),
        REFRESHED_TOKEN_TTL.as_secs()
    );

    w.clear();
    w.run_for(TOKEN_REFRESH_INTERVAL - Duration::from_secs(1));
    assert!(tokens(&w, &a).is_empty());
    w.run_for(Duration::from_secs(2));
    assert_eq!(tokens(&w, &a).len(), 1, "five minutes on");

    w.clear();
    w.m.api_update_participant(
        w.now,
        &pb::UpdateParticipantRequest {
            room: "r".into(),
            identity: "alice".into(),
            metadata: "m2".into(),
            permission: Some(pb::ParticipantPermission {
                can_subscribe: true,
                can_publish: false,
                can_publish_data: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    w.drain();
    let after = tokens(&w, &a);
    assert_eq!(after.len(), 1);
    let v = after[0].video.as_ref().unwrap();
    assert_eq!(
        (v.can_publish, after[0].metadata.as_str()),
        (Some(false), "m2")
    );

    // A participant whose own token had an hour left keeps that expiry.
    let exp = (unix_ms / 1000) as u64 + 3600;
    let claims = Claims {
        sub: "bob".into(),
        exp: Some(exp),
        video: Some(VideoGrant {
            room_join: true,
            room: "r".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let b = w.m.handle_join(w.now, join_of("r", "bob", claims)).unwrap();
    w.drain();
    assert_eq!(tokens(&w, &b)[0].exp, Some(exp));
}

#[test]
#[allow(deprecated)] // TrackInfo.simulcast is what clients read
fn vp9_and_av1_carry_their_spatial_layers_in_one_stream_as_livekit_announces_them() {
    use pb::video_layer::Mode;
    let mut w = World::new();
    let a = w.join("alice", false);
    w.clear();
    let layers: Vec<pb::VideoLayer> = [(0, 320), (1, 640), (2, 1280)]
        .iter()
        .map(|&(quality, width)| pb::VideoLayer {
            quality,
            width,
            height: width * 9 / 16,
            ..Default::default()
        })
        .collect();
    let video = |cid: &str, codec: &str, mode: Mode| pb::AddTrackRequest {
        cid: cid.into(),
        r#type: pb::TrackType::Video as i32,
        source: pb::TrackSource::Camera as i32,
        layers: layers.clone(),
        simulcast_codecs: vec![pb::SimulcastCodec {
            codec: codec.into(),
            cid: cid.into(),
            video_layer_mode: mode as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    for r in [
        video("vp9", "vp9", Mode::Unused),
        video("av1", "av1", Mode::Unused),
        video("vp8", "vp8", Mode::Unused),
        // livekit-client's VP9 "SVC simulcast": one spatial layer per stream, as it says.
        video("vp9s", "vp9", Mode::OneSpatialLayerPerStream),
    ] {
        w.signal(&a, Req::AddTrack(r)).unwrap();
    }
    let announced: Vec<(String, bool, i32)> = w
        .to(&a)
        .into_iter()
        .filter_map(|m| match m {
            Resp::TrackPublished(t) => t.track.as_ref().map(|i| {
                (
                    t.cid.clone(),
                    i.simulcast,
                    i.codecs.first().map_or(-1, |c| c.video_layer_mode),
                )
            }),
            _ => None,
        })
        .collect();
    let multi = Mode::MultipleSpatialLayersPerStream as i32;
    let one = Mode::OneSpatialLayerPerStream as i32;
    assert_eq!(
        announced,
        [
            ("vp9".to_string(), false, multi),
            ("av1".to_string(), false, multi),
            ("vp8".to_string(), true, one),
            ("vp9s".to_string(), true, one),
        ]
    );
}

/// A simulated `force-tls` (livekit-client's `simulateScenario('force-tls')`): the identity's
/// next join in the room gets `force_relay` and only the TURN server's `turns:` URLs, and so
/// does its resume; the join after that, everything again. Without TURN over TLS nothing
/// changes.
#[test]
fn force_tls_sends_the_next_join_through_turn_over_tls_alone() {
    use pb::simulate_scenario::Scenario as S;
    let mut keys = std::collections::BTreeMap::new();
    keys.insert("APIk".to_owned(), "secret-s".to_owned());
    let turn = |urls: &[&str]| {
        Some(crate::TurnIce {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            credentials: lkr_turn::Credentials::new(keys.clone()),
        })
    };
    let relay = pb::ClientConfigSetting::Enabled as i32;
    let join_config = |w: &World, p: &str| match w.to(p)[0] {
        Resp::Join(jr) => (
            jr.ice_servers
                .iter()
                .flat_map(|s| s.urls.clone())
                .collect::<Vec<_>>(),
            jr.client_configuration.as_ref().map(|c| c.force_relay),
        ),
        _ => panic!("JoinResponse first"),
    };
    let force_tls = |w: &mut World, p: &str| {
        w.signal(
            p,
            Req::Simulate(pb::SimulateScenario {
                scenario: Some(S::SwitchCandidateProtocol(
                    pb::CandidateProtocol::Tls as i32,
                )),
            }),
        )
        .unwrap();
    };
    let both = [
        "turn:10.77.0.1:3478?transport=udp",
        "turns:10.77.0.1:5349?transport=tcp",
    ];
    let mut c = config();
    c.turn = turn(&both);
    let mut w = World::with(c, RoomDefaults::default());
    let b = w.join("bob", true);
    assert_eq!(join_config(&w, &b), (both.map(String::from).to_vec(), None));
    force_tls(&mut w, &b);
    w.m.handle_signal_lost(w.now, &b);
    w.clear();
    let b2 = w.join("bob", true);
    assert_eq!(
        join_config(&w, &b2),
        (vec![both[1].to_string()], Some(relay)),
        "the next join: TURN over TLS alone"
    );
    // Its resume keeps it so.
    w.m.handle_signal_lost(w.now, &b2);
    w.clear();
    assert_eq!(resume_join(&mut w, "bob", &b2, true), Ok(b2.clone()));
    let Resp::Reconnect(rr) = w.to(&b2)[0] else {
        panic!("ReconnectResponse first")
    };
    assert_eq!(
        rr.ice_servers
            .iter()
            .flat_map(|s| s.urls.clone())
            .collect::<Vec<_>>(),
        [both[1]]
    );
    assert_eq!(
        rr.client_configuration.as_ref().map(|c| c.force_relay),
        Some(relay)
    );
    // The join after that is a plain one.
    w.clear();
    let b3 = w.join("bob", true);
    assert_eq!(
        join_config(&w, &b3),
        (both.map(String::from).to_vec(), None)
    );

    // TURN without TLS: nothing to force, nothing remembered.
    let mut c = config();
    c.turn = turn(&both[..1]);
    let mut w = World::with(c, RoomDefaults::default());
    let d = w.join("dave", true);
    force_tls(&mut w, &d);
    assert!(w.m.forced_paths.is_empty());
}
