//! `livekit-cli`'s admin commands, run as a process: tokens checked with the verifier, and
//! room commands against a fake Twirp endpoint on 127.0.0.1 that records what it receives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lkr_proto::pb;
use lkr_proto::token::{Claims, verify};
use prost::Message;

const CREDENTIAL_VARS: [&str; 5] = [
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LK_API_KEY",
    "LK_API_SECRET",
];

/// Runs `livekit-cli` with `args` and `env`, with no credentials inherited.
fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livekit-cli"));
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.args(args).output().expect("livekit-cli runs")
}

fn cli(args: &[&str]) -> Output {
    cli_env(args, &[])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "livekit-cli failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn assert_failed(out: &Output) {
    assert!(
        !out.status.success(),
        "livekit-cli should have failed\nstdout: {}",
        stdout(out)
    );
}

fn keys(key: &str, secret: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_string(), secret.to_string())])
}

/// The token on the last line, `Access token: <jwt>`.
fn printed_token(out: &Output) -> String {
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("Access token: ")
        .unwrap_or_else(|| panic!("last line is not the token: {text}"))
        .trim()
        .to_owned()
}

fn lifetime(claims: &Claims) -> u64 {
    claims.exp.unwrap() - claims.nbf.unwrap()
}

#[test]
fn token_create_signs_identity_room_and_grants() {
    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--room",
        "r1",
        "--identity",
        "alice",
        "--join",
        "--name",
        "Alice",
        "--metadata",
        r#"{"role":"host"}"#,
        "--attribute",
        "team=blue",
        "--attribute",
        "eq=a=b",
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("\"roomJoin\": true"), "{text}");
    let claims = verify(&printed_token(&out), &keys("devkey", "secret")).unwrap();
    assert_eq!(claims.identity(), "alice");
    assert_eq!(claims.name, "Alice");
    assert_eq!(claims.metadata, r#"{"role":"host"}"#);
    assert_eq!(claims.attributes["team"], "blue");
    assert_eq!(claims.attributes["eq"], "a=b");
    let video = claims.video();
    assert!(video.room_join && !video.room_admin && !video.room_create);
    assert_eq!(video.room, "r1");
    assert!(video.can_publish() && video.can_subscribe());
    assert_eq!(lifetime(&claims), 300, "--valid-for defaults to 5m");
}

#[test]
fn token_create_json_valid_for_and_keys_from_flags() {
    let out = cli(&[
        "token",
        "create",
        "--api-key",
        "APIxyz",
        "--api-secret",
        "s3cret",
        "--room",
        "r",
        "--identity",
        "bob",
        "--join",
        "--valid-for",
        "1h30m",
        "--url",
        "ws://media.example:7880",
        "--json",
    ]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["identity"], "bob");
    assert_eq!(v["room"], "r");
    assert_eq!(v["url"], "ws://media.example:7880");
    let claims = verify(
        v["access_token"].as_str().unwrap(),
        &keys("APIxyz", "s3cret"),
    )
    .unwrap();
    assert_eq!(lifetime(&claims), 5400);
    assert!(
        verify(
            v["access_token"].as_str().unwrap(),
            &keys("APIxyz", "other")
        )
        .is_err()
    );

    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--room",
        "r",
        "--identity",
        "b",
        "--join",
        "--valid-for",
        "2d",
    ]);
    let claims = verify(&printed_token(&out), &keys("devkey", "secret")).unwrap();
    assert_eq!(lifetime(&claims), 2 * 86_400);
}

#[test]
fn token_grant_json_is_merged_over_the_flags() {
    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--room",
        "r",
        "--identity",
        "viewer",
        "--join",
        "--allow-source",
        "camera,microphone",
        "--grant",
        r#"{"canPublish":false,"canPublishData":true,"hidden":true}"#,
    ]);
    assert_ok(&out);
    let video = verify(&printed_token(&out), &keys("devkey", "secret"))
        .unwrap()
        .video();
    assert!(video.room_join, "flags' grant kept");
    assert_eq!(video.room, "r");
    assert_eq!(video.can_publish, Some(false));
    assert!(video.can_publish_data() && video.hidden && video.can_subscribe());
    assert_eq!(video.can_publish_sources, ["camera", "microphone"]);

    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--room",
        "r",
        "--identity",
        "v",
        "--join",
        "--grant",
        r#"{"canPublsh":false}"#,
    ]);
    assert_failed(&out);
    assert!(stderr(&out).contains("canPublsh"), "{}", stderr(&out));
}

#[test]
fn token_admin_grants_without_identity() {
    let out = cli(&[
        "token",
        "create",
        "--create",
        "--list",
        "--admin",
        "--allow-update-metadata",
        "--room",
        "ops",
        "--dev",
    ]);
    assert_ok(&out);
    let claims = verify(&printed_token(&out), &keys("devkey", "secret")).unwrap();
    let video = claims.video();
    assert!(video.room_create && video.room_list && video.room_admin && !video.room_join);
    assert!(video.can_update_own_metadata());
    assert_eq!(video.room, "ops");
    assert_eq!(claims.identity(), "");
}

#[test]
fn legacy_create_token_and_environment_keys() {
    let env = [
        ("LIVEKIT_API_KEY", "envkey"),
        ("LIVEKIT_API_SECRET", "envsecret"),
    ];
    let out = cli_env(
        &["create-token", "--join", "--r", "lobby", "--p", "carol"],
        &env,
    );
    assert_ok(&out);
    let claims = verify(&printed_token(&out), &keys("envkey", "envsecret")).unwrap();
    assert_eq!(claims.identity(), "carol");
    assert!(claims.video().room_join);
    assert_eq!(claims.video().room, "lobby");

    let env = [("LK_API_KEY", "lkkey"), ("LK_API_SECRET", "lksecret")];
    let out = cli_env(
        &[
            "create-token",
            "--join",
            "--room",
            "lobby",
            "--identity",
            "dave",
            "--valid-for",
            "10m",
            "--name",
            "Dave",
        ],
        &env,
    );
    assert_ok(&out);
    let claims = verify(&printed_token(&out), &keys("lkkey", "lksecret")).unwrap();
    assert_eq!((claims.identity(), claims.name.as_str()), ("dave", "Dave"));
    assert_eq!(lifetime(&claims), 600);
}

#[test]
fn token_argument_errors() {
    let out = cli(&["--dev", "--api-key", "k", "token", "create", "--list"]);
    assert_failed(&out);
    assert!(
        stderr(&out).contains("--dev cannot be combined"),
        "{}",
        stderr(&out)
    );

    let out = cli(&["token", "create", "--list"]);
    assert_failed(&out);
    assert!(
        stderr(&out).contains("no API credentials"),
        "{}",
        stderr(&out)
    );

    let out = cli(&["--dev", "token", "create", "--join", "--room", "r"]);
    assert_failed(&out);
    assert!(stderr(&out).contains("--identity"), "{}", stderr(&out));

    let out = cli(&["--dev", "token", "create", "--room", "r", "--identity", "i"]);
    assert_failed(&out);
    assert!(stderr(&out).contains("grant nothing"), "{}", stderr(&out));

    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--list",
        "--valid-for",
        "5 parsecs",
    ]);
    assert_failed(&out);
    assert!(stderr(&out).contains("valid-for"), "{}", stderr(&out));

    let out = cli(&[
        "--dev",
        "token",
        "create",
        "--join",
        "--allow-source",
        "nose",
    ]);
    assert_failed(&out);
}

/// One request the fake endpoint received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    authorization: String,
    body: Vec<u8>,
}

impl Received {
    fn claims(&self) -> Claims {
        let jwt = self
            .authorization
            .strip_prefix("Bearer ")
            .expect("bearer token");
        verify(jwt, &keys("devkey", "secret")).expect("call token verifies")
    }

    fn decode<M: Message + Default>(&self) -> M {
        M::decode(self.body.as_slice()).expect("request body is the expected protobuf")
    }
}

type Answer = (StatusCode, &'static str, Vec<u8>);
type Responder = Arc<dyn Fn(&str, &[u8]) -> Answer + Send + Sync>;

/// A Twirp endpoint on 127.0.0.1 that records each request and answers with `responder`.
struct FakeTwirp {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeTwirp {
    fn start(responder: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let responder: Responder = Arc::new(responder);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let log = log.clone();
                    let responder = responder.clone();
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        let responder = responder.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let mut rec = Received {
                                method: req.method().to_string(),
                                path: req.uri().path().to_owned(),
                                content_type: header("content-type"),
                                authorization: header("authorization"),
                                body: Vec::new(),
                            };
                            rec.body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let (status, content_type, body) = responder(&rec.path, &rec.body);
                            log.lock().unwrap().push(rec);
                            let resp = Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self { url, received }
    }

    /// Runs `livekit-cli --dev --url <this endpoint> args…`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--dev", "--url", self.url.as_str()];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// The last request, which must be a protobuf POST to `method`.
    fn last(&self, method: &str) -> Received {
        let rec = self
            .received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request arrived");
        assert_eq!(rec.method, "POST");
        assert_eq!(rec.path, format!("/twirp/livekit.RoomService/{method}"));
        assert_eq!(rec.content_type, "application/protobuf");
        rec
    }
}

fn protobuf(msg: &impl Message) -> Answer {
    (StatusCode::OK, "application/protobuf", msg.encode_to_vec())
}

fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Answer {
    let body = serde_json::json!({ "code": code, "msg": msg }).to_string();
    (status, "application/json", body.into_bytes())
}

fn alice() -> pb::ParticipantInfo {
    pb::ParticipantInfo {
        sid: "PA_alice".into(),
        identity: "alice".into(),
        name: "Alice".into(),
        state: pb::participant_info::State::Active as i32,
        joined_at: 1_700_000_000,
        tracks: vec![pb::TrackInfo {
            sid: "TR_cam".into(),
            r#type: pb::TrackType::Video as i32,
            source: pb::TrackSource::Camera as i32,
            mime_type: "video/VP8".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A RoomService with rooms `r1` and `r2`; any other room does not exist.
fn room_service(path: &str, body: &[u8]) -> Answer {
    let method = path.rsplit('/').next().unwrap_or_default();
    let missing = || {
        twirp_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "requested room does not exist",
        )
    };
    let room = |name: &str| pb::Room {
        sid: format!("RM_{name}"),
        name: name.into(),
        num_participants: 1,
        creation_time: 1_700_000_000,
        ..Default::default()
    };
    let known = |name: &str| name == "r1" || name == "r2";
    match method {
        "CreateRoom" => {
            let req = pb::CreateRoomRequest::decode(body).unwrap();
            protobuf(&pb::Room {
                metadata: req.metadata,
                empty_timeout: req.empty_timeout,
                ..room(&req.name)
            })
        }
        "ListRooms" => protobuf(&pb::ListRoomsResponse {
            rooms: vec![room("r1"), room("r2")],
        }),
        "DeleteRoom" => match pb::DeleteRoomRequest::decode(body).unwrap().room {
            r if known(&r) => protobuf(&pb::DeleteRoomResponse {}),
            _ => missing(),
        },
        "UpdateRoomMetadata" => {
            let req = pb::UpdateRoomMetadataRequest::decode(body).unwrap();
            protobuf(&pb::Room {
                metadata: req.metadata,
                ..room(&req.room)
            })
        }
        "ListParticipants" => protobuf(&pb::ListParticipantsResponse {
            participants: vec![alice()],
        }),
        "GetParticipant" => match pb::RoomParticipantIdentity::decode(body).unwrap().identity {
            i if i == "alice" => protobuf(&alice()),
            _ => twirp_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "participant does not exist",
            ),
        },
        "RemoveParticipant" => protobuf(&pb::RemoveParticipantResponse {}),
        "UpdateParticipant" => {
            let req = pb::UpdateParticipantRequest::decode(body).unwrap();
            protobuf(&pb::ParticipantInfo {
                metadata: req.metadata,
                permission: req.permission,
                attributes: req.attributes,
                ..alice()
            })
        }
        "MutePublishedTrack" => {
            let req = pb::MuteRoomTrackRequest::decode(body).unwrap();
            protobuf(&pb::MuteRoomTrackResponse {
                track: Some(pb::TrackInfo {
                    sid: req.track_sid,
                    muted: req.muted,
                    ..Default::default()
                }),
            })
        }
        "UpdateSubscriptions" => protobuf(&pb::UpdateSubscriptionsResponse {}),
        "SendData" => protobuf(&pb::SendDataResponse {}),
        _ => twirp_error(StatusCode::NOT_FOUND, "bad_route", "no such method"),
    }
}

/// Asserts that the call token carries exactly the `roomAdmin` grant for `room`.
fn assert_admin_of(rec: &Received, room: &str) {
    let claims = rec.claims();
    let video = claims.video();
    assert!(video.room_admin && !video.room_create && !video.room_list && !video.room_join);
    assert_eq!(video.room, room);
    assert_eq!(lifetime(&claims), 600, "call tokens live 10 minutes");
}

#[test]
fn room_create_list_update_delete() {
    let server = FakeTwirp::start(room_service);

    let out = server.run(&[
        "room",
        "create",
        "--empty-timeout",
        "30",
        "--departure-timeout",
        "7",
        "--max-participants",
        "5",
        "--metadata",
        "hello",
        "r1",
    ]);
    assert_ok(&out);
    let rec = server.last("CreateRoom");
    let req: pb::CreateRoomRequest = rec.decode();
    assert_eq!(req.name, "r1");
    assert_eq!(
        (
            req.empty_timeout,
            req.departure_timeout,
            req.max_participants
        ),
        (30, 7, 5)
    );
    assert_eq!(req.metadata, "hello");
    let claims = rec.claims();
    let video = claims.video();
    assert!(video.room_create && !video.room_admin && !video.room_list);
    assert_eq!(lifetime(&claims), 600);
    assert!(stdout(&out).contains("RM_r1"), "{}", stdout(&out));

    // Legacy spelling, global flags after the subcommand.
    let out = cli(&["create-room", "--name", "r2", "--dev", "--url", &server.url]);
    assert_ok(&out);
    assert_eq!(
        server
            .last("CreateRoom")
            .decode::<pb::CreateRoomRequest>()
            .name,
        "r2"
    );

    let out = server.run(&["room", "list"]);
    assert_ok(&out);
    let rec = server.last("ListRooms");
    assert!(rec.decode::<pb::ListRoomsRequest>().names.is_empty());
    let video = rec.claims().video();
    assert!(video.room_list && !video.room_create && !video.room_admin);
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    for column in ["NAME", "SID", "PARTICIPANTS", "CREATED"] {
        assert!(header.contains(column), "{text}");
    }
    assert!(
        text.contains("RM_r2") && text.contains("2023-11-14 22:13:20 UTC"),
        "{text}"
    );

    let out = server.run(&["room", "list", "--json", "r1", "r2"]);
    assert_ok(&out);
    assert_eq!(
        server
            .last("ListRooms")
            .decode::<pb::ListRoomsRequest>()
            .names,
        ["r1", "r2"]
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["rooms"][0]["name"], "r1");
    assert_eq!(json["rooms"][1]["sid"], "RM_r2");
    // Parse back with the protobuf-JSON impls, as a script in another language would.
    let parsed: pb::ListRoomsResponse = serde_json::from_value(json).unwrap();
    assert_eq!(parsed.rooms[1].creation_time, 1_700_000_000);

    let out = server.run(&["list-rooms"]);
    assert_ok(&out);
    server.last("ListRooms");

    let out = server.run(&["room", "update", "--metadata", "new", "r1"]);
    assert_ok(&out);
    let rec = server.last("UpdateRoomMetadata");
    let req: pb::UpdateRoomMetadataRequest = rec.decode();
    assert_eq!((req.room.as_str(), req.metadata.as_str()), ("r1", "new"));
    assert_admin_of(&rec, "r1");

    let out = server.run(&["update-room-metadata", "--room", "r2", "--metadata", "x"]);
    assert_ok(&out);
    assert_admin_of(&server.last("UpdateRoomMetadata"), "r2");

    let out = server.run(&["room", "delete", "r1"]);
    assert_ok(&out);
    let rec = server.last("DeleteRoom");
    assert_eq!(rec.decode::<pb::DeleteRoomRequest>().room, "r1");
    let video = rec.claims().video();
    assert!(
        video.room_create && !video.room_admin,
        "DeleteRoom needs roomCreate"
    );

    let out = server.run(&["delete-room", "--room", "r2"]);
    assert_ok(&out);
    assert_eq!(
        server
            .last("DeleteRoom")
            .decode::<pb::DeleteRoomRequest>()
            .room,
        "r2"
    );
}

#[test]
fn twirp_error_makes_the_cli_fail() {
    let server = FakeTwirp::start(room_service);
    let out = server.run(&["room", "delete", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: not_found: requested room does not exist"),
        "{err}"
    );
    assert_eq!(
        server
            .last("DeleteRoom")
            .decode::<pb::DeleteRoomRequest>()
            .room,
        "nowhere"
    );
    assert!(stdout(&out).is_empty());

    let out = server.run(&["--json", "room", "delete", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(err["code"], "not_found");
    assert_eq!(err["msg"], "requested room does not exist");

    let out = server.run(&["room", "participants", "get", "--room", "r1", "zed"]);
    assert_failed(&out);
    assert!(stderr(&out).contains("participant does not exist"));
}

#[test]
fn plain_text_auth_failure_is_reported() {
    let server = FakeTwirp::start(|_, _| {
        (
            StatusCode::UNAUTHORIZED,
            "text/plain",
            b"invalid authorization token: invalid API key".to_vec(),
        )
    });
    let out = server.run(&["room", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unauthenticated") && err.contains("invalid API key"),
        "{err}"
    );
}

#[test]
fn participant_commands() {
    let server = FakeTwirp::start(room_service);

    let out = server.run(&["room", "participants", "list", "r1"]);
    assert_ok(&out);
    let rec = server.last("ListParticipants");
    assert_eq!(rec.decode::<pb::ListParticipantsRequest>().room, "r1");
    assert_admin_of(&rec, "r1");
    let text = stdout(&out);
    assert!(
        text.contains("alice") && text.contains("PA_alice") && text.contains("ACTIVE"),
        "{text}"
    );

    let out = server.run(&["list-participants", "--room", "r2", "--json"]);
    assert_ok(&out);
    assert_admin_of(&server.last("ListParticipants"), "r2");
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["participants"][0]["identity"], "alice");

    let out = server.run(&["room", "participants", "get", "--room", "r1", "alice"]);
    assert_ok(&out);
    let rec = server.last("GetParticipant");
    let req: pb::RoomParticipantIdentity = rec.decode();
    assert_eq!((req.room.as_str(), req.identity.as_str()), ("r1", "alice"));
    assert_admin_of(&rec, "r1");
    assert!(stdout(&out).contains("TR_cam"), "{}", stdout(&out));

    let out = server.run(&["room", "participants", "remove", "--room", "r1", "alice"]);
    assert_ok(&out);
    let rec = server.last("RemoveParticipant");
    assert_eq!(
        rec.decode::<pb::RoomParticipantIdentity>().identity,
        "alice"
    );
    assert_admin_of(&rec, "r1");

    let out = server.run(&[
        "room",
        "participants",
        "update",
        "--room",
        "r1",
        "--metadata",
        "meta",
        "--name",
        "Al",
        "--attribute",
        "k=v",
        "--permissions",
        r#"{"canPublish":false,"canSubscribe":true,"canPublishSources":["camera"]}"#,
        "alice",
    ]);
    assert_ok(&out);
    let rec = server.last("UpdateParticipant");
    let req: pb::UpdateParticipantRequest = rec.decode();
    assert_eq!(
        (
            req.room.as_str(),
            req.identity.as_str(),
            req.metadata.as_str(),
            req.name.as_str()
        ),
        ("r1", "alice", "meta", "Al")
    );
    assert_eq!(req.attributes["k"], "v");
    let perm = req.permission.unwrap();
    assert!(!perm.can_publish && perm.can_subscribe);
    assert_eq!(perm.can_publish_sources, [pb::TrackSource::Camera as i32]);
    assert_admin_of(&rec, "r1");

    let out = server.run(&["room", "participants", "update", "--room", "r1", "alice"]);
    assert_failed(&out);
}

#[test]
fn track_subscription_and_data_commands() {
    let server = FakeTwirp::start(room_service);

    let out = server.run(&[
        "room",
        "mute-track",
        "--room",
        "r1",
        "--identity",
        "alice",
        "--mute",
        "TR_cam",
    ]);
    assert_ok(&out);
    let rec = server.last("MutePublishedTrack");
    let req: pb::MuteRoomTrackRequest = rec.decode();
    assert_eq!(
        (
            req.room.as_str(),
            req.identity.as_str(),
            req.track_sid.as_str(),
            req.muted
        ),
        ("r1", "alice", "TR_cam", true)
    );
    assert_admin_of(&rec, "r1");
    assert!(stdout(&out).starts_with("Muted track TR_cam"));

    let out = server.run(&[
        "room",
        "mute-track",
        "--room",
        "r1",
        "--identity",
        "alice",
        "--unmute",
        "TR_cam",
    ]);
    assert_ok(&out);
    assert!(
        !server
            .last("MutePublishedTrack")
            .decode::<pb::MuteRoomTrackRequest>()
            .muted
    );

    let out = server.run(&[
        "room",
        "update-subscriptions",
        "--room",
        "r1",
        "--identity",
        "bob",
        "--unsubscribe",
        "TR_a",
        "TR_b",
    ]);
    assert_ok(&out);
    let rec = server.last("UpdateSubscriptions");
    let req: pb::UpdateSubscriptionsRequest = rec.decode();
    assert_eq!(req.identity, "bob");
    assert_eq!(req.track_sids, ["TR_a", "TR_b"]);
    assert!(!req.subscribe);
    assert_admin_of(&rec, "r1");

    let out = server.run(&[
        "room",
        "update-subscriptions",
        "--room",
        "r1",
        "--identity",
        "bob",
        "TR_a",
    ]);
    assert_ok(&out);
    assert!(
        server
            .last("UpdateSubscriptions")
            .decode::<pb::UpdateSubscriptionsRequest>()
            .subscribe
    );

    let out = server.run(&[
        "room",
        "send-data",
        "--room",
        "r1",
        "--topic",
        "chat",
        "--identity",
        "bob",
        "--identity",
        "carol",
        "--lossy",
        "hello there",
    ]);
    assert_ok(&out);
    let rec = server.last("SendData");
    let req: pb::SendDataRequest = rec.decode();
    assert_eq!(req.data, b"hello there");
    assert_eq!(req.topic.as_deref(), Some("chat"));
    assert_eq!(req.destination_identities, ["bob", "carol"]);
    assert_eq!(req.kind, pb::data_packet::Kind::Lossy as i32);
    assert_admin_of(&rec, "r1");

    let out = server.run(&["room", "send-data", "--room", "r2", "--json", "hi"]);
    assert_ok(&out);
    let req: pb::SendDataRequest = server.last("SendData").decode();
    assert_eq!(req.kind, pb::data_packet::Kind::Reliable as i32);
    assert!(req.topic.is_none() && req.destination_identities.is_empty());
    assert_eq!(stdout(&out).trim(), "{}");
}

#[test]
fn unreachable_server_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("ws://{addr}");
    let out = cli(&["--dev", "--url", &url, "room", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("http://{addr}")) && err.contains("could not connect"),
        "{err}"
    );
}

#[test]
fn https_is_refused_clearly() {
    let out = cli(&["--dev", "--url", "wss://media.example", "room", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("https not supported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn url_comes_from_the_environment() {
    let server = FakeTwirp::start(room_service);
    let ws = server.url.replace("http://", "ws://");
    let out = cli_env(
        &["room", "list"],
        &[
            ("LIVEKIT_URL", ws.as_str()),
            ("LIVEKIT_API_KEY", "devkey"),
            ("LIVEKIT_API_SECRET", "secret"),
        ],
    );
    assert_ok(&out);
    server.last("ListRooms");
}
