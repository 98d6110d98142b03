//! The dispatcher in virtual time: registration, offers, choice by load, retries, worker
//! loss, terminations, dispatch calls and every cap.

use super::*;
use lkr_proto::token::verify;
use pb::server_message::Message as S;
use pb::worker_message::Message as W;

const KEY: &str = "devkey";
const SECRET: &str = "secret";

struct Harness {
    d: Dispatcher,
    t0: Instant,
}

fn harness() -> Harness {
    harness_with(Limits::default())
}

fn harness_with(limits: Limits) -> Harness {
    let t0 = Instant::now();
    Harness {
        d: Dispatcher::new(
            limits,
            Timing::default(),
            pb::ServerInfo::default(),
            t0,
            1_700_000_000_000,
        ),
        t0,
    }
}

fn msg(m: W) -> pb::WorkerMessage {
    pb::WorkerMessage { message: Some(m) }
}

fn room(name: &str) -> pb::Room {
    pb::Room {
        sid: format!("RM_{name}"),
        name: name.into(),
        ..Default::default()
    }
}

fn person(identity: &str) -> pb::ParticipantInfo {
    pb::ParticipantInfo {
        identity: identity.into(),
        ..Default::default()
    }
}

impl Harness {
    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.d.poll_output()).collect()
    }

    /// Messages to `to` (in order), dropping everything else.
    fn sent_to(&mut self, to: Conn) -> Vec<S> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { to: t, message } if t == to => message.message,
                _ => None,
            })
            .collect()
    }

    fn worker(&mut self, name: &str, job_type: pb::JobType) -> Conn {
        let c = self.d.handle_worker_connect(self.t0, KEY, SECRET).unwrap();
        self.d
            .handle_worker_message(
                self.t0,
                c,
                msg(W::Register(pb::RegisterWorkerRequest {
                    r#type: job_type as i32,
                    agent_name: name.into(),
                    version: "1.8.9".into(),
                    ..Default::default()
                })),
            )
            .unwrap();
        let sent = self.sent_to(c);
        assert!(
            matches!(&sent[..], [S::Register(r)] if r.worker_id.starts_with(WORKER_PREFIX)),
            "{sent:?}"
        );
        c
    }

    /// The job ids offered to `to` among the pending outputs.
    fn offers(&mut self, to: Conn) -> Vec<pb::Job> {
        self.sent_to(to)
            .into_iter()
            .filter_map(|m| match m {
                S::Availability(a) => a.job,
                _ => None,
            })
            .collect()
    }

    fn answer(&mut self, now: Instant, c: Conn, job: &str, available: bool) {
        self.d
            .handle_worker_message(
                now,
                c,
                msg(W::Availability(pb::AvailabilityResponse {
                    job_id: job.into(),
                    available,
                    participant_identity: format!("agent-{c}"),
                    participant_name: "Agent".into(),
                    ..Default::default()
                })),
            )
            .unwrap();
    }

    fn load(&mut self, c: Conn, load: f32) {
        self.d
            .handle_worker_message(
                self.t0,
                c,
                msg(W::UpdateWorker(pb::UpdateWorkerStatus {
                    status: Some(pb::WorkerStatus::WsAvailable as i32),
                    load,
                    ..Default::default()
                })),
            )
            .unwrap();
    }
}

/// Register answers with a worker id; a ping gets a pong echoing its timestamp.
#[test]
fn register_and_ping() {
    let mut h = harness();
    let c = h.worker("", pb::JobType::JtRoom);
    h.d.handle_worker_message(h.t0, c, msg(W::Ping(pb::WorkerPing { timestamp: 42 })))
        .unwrap();
    let sent = h.sent_to(c);
    assert!(matches!(&sent[..], [S::Pong(p)] if p.last_timestamp == 42 && p.timestamp > 0));
    assert_eq!(h.d.stats().registered, 1);
}

/// A room that starts is offered to a worker registered without an agent name; accepting
/// brings an assignment whose token joins that room as an AGENT participant.
#[test]
fn room_start_dispatches_an_unnamed_worker_with_an_agent_token() {
    let mut h = harness();
    let c = h.worker("", pb::JobType::JtRoom);
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    let offers = h.offers(c);
    assert_eq!(offers.len(), 1);
    let job = &offers[0];
    assert!(job.id.starts_with(JOB_PREFIX));
    assert_eq!(job.room.as_ref().unwrap().name, "r1");
    assert_eq!(job.r#type, pb::JobType::JtRoom as i32);
    h.answer(h.at(0.1), c, &job.id, true);
    let sent = h.sent_to(c);
    let [S::Assignment(a)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(a.job.as_ref().unwrap().id, job.id);
    let keys = HashMap::from([(KEY.to_string(), SECRET.to_string())]);
    let claims = verify(&a.token, &keys).unwrap();
    assert_eq!(claims.identity(), format!("agent-{c}"));
    assert_eq!(claims.name, "Agent");
    assert_eq!(claims.kind, "agent");
    let g = claims.video();
    assert!(g.room_join && g.agent && g.room == "r1");
    assert_eq!(
        claims
            .attributes
            .get(AGENT_NAME_ATTRIBUTE)
            .map(String::as_str),
        Some("")
    );
    assert_eq!(h.d.stats().jobs_running, 1);
    let listed = h.d.list_dispatch("r1", "");
    assert_eq!(listed.len(), 1);
    let jobs = &listed[0].state.as_ref().unwrap().jobs;
    assert_eq!(jobs.len(), 1);
    let st = jobs[0].state.as_ref().unwrap();
    assert_eq!(st.status, pb::JobStatus::JsRunning as i32);
    assert_eq!(st.participant_identity, format!("agent-{c}"));
}

/// A named agent is not dispatched when a room starts, only by CreateDispatch or by the
/// room's configured dispatches.
#[test]
fn named_agents_come_only_when_dispatched() {
    let mut h = harness();
    let c = h.worker("helper", pb::JobType::JtRoom);
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    assert!(h.offers(c).is_empty());
    let d =
        h.d.create_dispatch(
            h.t0,
            &room("r1"),
            &[],
            &pb::CreateAgentDispatchRequest {
                agent_name: "helper".into(),
                room: "r1".into(),
                metadata: "m".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(d.id.starts_with(DISPATCH_PREFIX));
    let offers = h.offers(c);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].metadata, "m");
    assert_eq!(offers[0].dispatch_id, d.id);
    h.d.handle_room_started(
        h.t0,
        &room("r2"),
        &[pb::RoomAgentDispatch {
            agent_name: "helper".into(),
            metadata: "from token".into(),
            ..Default::default()
        }],
    );
    let offers = h.offers(c);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].metadata, "from token");
    assert_eq!(offers[0].room.as_ref().unwrap().name, "r2");
}

/// A worker that declines or does not answer in time is skipped; the next one is asked;
/// when nobody is left the job fails and is counted.
#[test]
fn decline_and_timeout_retry_on_another_worker() {
    let mut h = harness();
    let a = h.worker("", pb::JobType::JtRoom);
    let b = h.worker("", pb::JobType::JtRoom);
    let c = h.worker("", pb::JobType::JtRoom);
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    let first = h.offers(a);
    assert_eq!(
        first.len(),
        1,
        "the oldest of equally loaded workers is asked first"
    );
    let id = first[0].id.clone();
    h.answer(h.at(0.1), a, &id, false);
    assert_eq!(h.offers(b).len(), 1, "declined: the next worker is asked");
    assert!(h.d.poll_timeout().is_some_and(|t| t <= h.at(10.1)));
    h.d.handle_timeout(h.at(10.0));
    assert!(h.outputs().is_empty(), "not due yet");
    h.d.handle_timeout(h.at(10.1));
    assert_eq!(h.offers(c).len(), 1, "timed out: the third worker is asked");
    // A late answer from the worker that timed out changes nothing.
    h.answer(h.at(10.2), b, &id, true);
    assert!(h.outputs().is_empty());
    h.answer(h.at(10.3), c, &id, false);
    assert!(h.outputs().is_empty());
    let s = h.d.stats();
    assert_eq!(
        (s.jobs_running, s.jobs_offered, s.jobs_unassigned_total),
        (0, 0, 1)
    );
}

/// The worker with the lowest load is chosen; equally loaded workers share jobs; a full
/// worker is not asked.
#[test]
fn worker_choice_by_load() {
    let mut h = harness();
    let a = h.worker("", pb::JobType::JtRoom);
    let b = h.worker("", pb::JobType::JtRoom);
    h.load(a, 0.5);
    h.load(b, 0.1);
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    assert_eq!(h.offers(b).len(), 1);
    h.load(b, 0.5);
    // Equal loads: the one with fewer jobs.
    h.d.handle_room_started(h.t0, &room("r2"), &[]);
    assert_eq!(h.offers(a).len(), 1);
    h.d.handle_worker_message(
        h.t0,
        a,
        msg(W::UpdateWorker(pb::UpdateWorkerStatus {
            status: Some(pb::WorkerStatus::WsFull as i32),
            load: 0.0,
            ..Default::default()
        })),
    )
    .unwrap();
    h.d.handle_room_started(h.t0, &room("r3"), &[]);
    assert_eq!(h.offers(b).len(), 1, "a full worker is skipped");
}

/// A worker whose connection ends: its running job fails (no re-dispatch, as LiveKit), its
/// pending offer moves to another worker, and new dispatches go to the others.
#[test]
fn worker_loss() {
    let mut h = harness();
    let a = h.worker("", pb::JobType::JtRoom);
    let b = h.worker("", pb::JobType::JtRoom);
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    let j1 = h.offers(a)[0].id.clone();
    h.answer(h.t0, a, &j1, true);
    h.outputs();
    h.load(b, 0.9);
    h.d.handle_room_started(h.t0, &room("r2"), &[]);
    let j2 = h.offers(a)[0].id.clone();
    h.d.handle_worker_gone(h.at(1.0), a);
    let moved = h.offers(b);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, j2);
    let listed = h.d.list_dispatch("r1", "");
    let st = listed[0].state.as_ref().unwrap().jobs[0]
        .state
        .clone()
        .unwrap();
    assert_eq!(st.status, pb::JobStatus::JsFailed as i32);
    h.d.handle_room_started(h.t0, &room("r3"), &[]);
    assert_eq!(h.offers(b).len(), 1);
}

/// A registered worker silent past the worker timeout is closed and forgotten; one that
/// never registers is closed at the registration deadline.
#[test]
fn silent_workers_are_forgotten() {
    let mut h = harness();
    let a = h.worker("", pb::JobType::JtRoom);
    let b = h.d.handle_worker_connect(h.t0, KEY, SECRET).unwrap();
    h.d.handle_timeout(h.at(10.0));
    let out = h.outputs();
    assert_eq!(
        out,
        vec![Output::Close {
            to: b,
            reason: "the worker did not register in time".into()
        }]
    );
    // Heard from at 10 s: alive until 25 s.
    h.load(a, 0.0);
    h.d.handle_worker_seen(h.at(10.0), a);
    h.d.handle_timeout(h.at(15.0));
    assert!(h.outputs().is_empty());
    h.d.handle_timeout(h.at(25.0));
    assert!(matches!(&h.outputs()[..], [Output::Close { to, .. }] if *to == a));
    assert_eq!(h.d.stats().workers, 0);
}

/// The job of an agent that leaves its room, the jobs of a deleted dispatch and of a
/// finished room are terminated at their workers.
#[test]
fn terminations() {
    let mut h = harness();
    let a = h.worker("", pb::JobType::JtRoom);
    for r in ["r1", "r2", "r3"] {
        h.d.handle_room_started(h.t0, &room(r), &[]);
        let id = h.offers(a)[0].id.clone();
        h.answer(h.t0, a, &id, true);
        h.outputs();
    }
    let terminated = |h: &mut Harness| -> Vec<String> {
        h.sent_to(a)
            .into_iter()
            .filter_map(|m| match m {
                S::Termination(t) => Some(t.job_id),
                _ => None,
            })
            .collect()
    };
    let j1 = h.d.list_dispatch("r1", "")[0].state.as_ref().unwrap().jobs[0]
        .id
        .clone();
    h.d.handle_participant_left(h.t0, "r1", "someone-else");
    assert!(terminated(&mut h).is_empty());
    h.d.handle_participant_left(h.t0, "r1", &format!("agent-{a}"));
    assert_eq!(terminated(&mut h), vec![j1]);
    let d2 = h.d.list_dispatch("r2", "")[0].clone();
    let deleted = h.d.delete_dispatch(h.t0, "r2", &d2.id).unwrap();
    assert!(deleted.state.unwrap().deleted_at > 0);
    assert_eq!(
        terminated(&mut h),
        vec![d2.state.unwrap().jobs[0].id.clone()]
    );
    assert_eq!(
        h.d.delete_dispatch(h.t0, "r2", &d2.id).unwrap_err(),
        AgentError::DispatchNotFound
    );
    let j3 = h.d.list_dispatch("r3", "")[0].state.as_ref().unwrap().jobs[0]
        .id
        .clone();
    h.d.handle_room_finished(h.t0, "r3");
    assert_eq!(terminated(&mut h), vec![j3]);
    assert!(h.d.list_dispatch("r3", "").is_empty());
}

/// Participant and publisher workers get one job per (non-agent) participant.
#[test]
fn participant_and_publisher_jobs() {
    let mut h = harness();
    let p = h.worker("", pb::JobType::JtParticipant);
    let q = h.worker("", pb::JobType::JtPublisher);
    let r = room("r1");
    h.d.handle_room_started(h.t0, &r, &[]);
    h.d.handle_participant_joined(h.t0, &r, &person("alice"));
    let mut bot = person("bot");
    bot.kind = pb::participant_info::Kind::Agent as i32;
    h.d.handle_participant_joined(h.t0, &r, &bot);
    h.d.handle_track_published(h.t0, &r, &person("alice"));
    h.d.handle_track_published(h.t0, &r, &person("alice"));
    let out = h.outputs();
    let offered = |to: Conn| {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to: t, message } if *t == to => match &message.message {
                    Some(S::Availability(a)) => a.job.as_ref().and_then(|j| j.participant.clone()),
                    _ => None,
                },
                _ => None,
            })
            .map(|p| p.identity)
            .collect::<Vec<_>>()
    };
    assert_eq!(offered(p), vec!["alice".to_string()]);
    assert_eq!(offered(q), vec!["alice".to_string()]);
}

/// Protocol breaches close that worker alone, with the reason.
#[test]
fn malformed_messages_close_only_that_worker() {
    let cases: Vec<(&str, Vec<pb::WorkerMessage>, AgentError)> = vec![
        (
            "empty",
            vec![pb::WorkerMessage { message: None }],
            AgentError::EmptyMessage,
        ),
        (
            "before register",
            vec![msg(W::UpdateWorker(pb::UpdateWorkerStatus::default()))],
            AgentError::NotRegistered("a message other than register or ping"),
        ),
        (
            "bad job type",
            vec![msg(W::Register(pb::RegisterWorkerRequest {
                r#type: 9,
                ..Default::default()
            }))],
            AgentError::UnknownJobType(9),
        ),
        (
            "long name",
            vec![msg(W::Register(pb::RegisterWorkerRequest {
                agent_name: "x".repeat(300),
                ..Default::default()
            }))],
            AgentError::TooLong("the agent name"),
        ),
        (
            "registers twice",
            vec![
                msg(W::Register(pb::RegisterWorkerRequest::default())),
                msg(W::Register(pb::RegisterWorkerRequest::default())),
            ],
            AgentError::AlreadyRegistered,
        ),
    ];
    for (name, msgs, want) in cases {
        let mut h = harness();
        let good = h.worker("", pb::JobType::JtRoom);
        let bad = h.d.handle_worker_connect(h.t0, KEY, SECRET).unwrap();
        let mut err = None;
        for m in msgs {
            if let Err(e) = h.d.handle_worker_message(h.t0, bad, m) {
                err = Some(e);
            }
        }
        assert_eq!(err, Some(want.clone()), "{name}");
        assert_eq!(want.fault(), Fault::Peer);
        let out = h.outputs();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { to, .. } if *to == bad)),
            "{name}: {out:?}"
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Close { to, .. } if *to == good))
        );
        assert_eq!(h.d.stats().workers, 1, "{name}");
        h.d.handle_room_started(h.t0, &room("r"), &[]);
        assert_eq!(
            h.offers(good).len(),
            1,
            "{name}: the other worker still works"
        );
    }
}

/// Every cap: workers, dispatches per room, metadata, jobs.
#[test]
fn caps() {
    let mut h = harness_with(Limits {
        max_workers: 2,
        max_jobs: 2,
        max_dispatches_per_room: 2,
        max_metadata_size: 8,
    });
    let a = h.worker("", pb::JobType::JtRoom);
    let _b = h.worker("n", pb::JobType::JtRoom);
    assert_eq!(
        h.d.handle_worker_connect(h.t0, KEY, SECRET),
        Err(AgentError::TooManyWorkers(2))
    );
    h.d.handle_room_started(h.t0, &room("r1"), &[]);
    let req = |meta: &str| pb::CreateAgentDispatchRequest {
        agent_name: "n".into(),
        room: "r1".into(),
        metadata: meta.into(),
        ..Default::default()
    };
    assert_eq!(
        h.d.create_dispatch(h.t0, &room("r1"), &[], &req("123456789")),
        Err(AgentError::MetadataTooLarge(8))
    );
    h.d.create_dispatch(h.t0, &room("r1"), &[], &req(""))
        .unwrap();
    let e =
        h.d.create_dispatch(h.t0, &room("r1"), &[], &req(""))
            .unwrap_err();
    assert_eq!(e, AgentError::TooManyDispatches(2));
    assert_eq!(e.fault(), Fault::Limit);
    h.outputs();
    // Two jobs are held (r1's two); a third room gets none.
    h.d.handle_room_started(h.t0, &room("r2"), &[]);
    assert!(h.offers(a).is_empty());
    assert_eq!(h.d.stats().jobs_refused_total, 1);
    // Over-large configured dispatches are skipped, and at most the cap are made.
    h.d.handle_room_finished(h.t0, "r1");
    let many: Vec<pb::RoomAgentDispatch> = (0..5)
        .map(|_| pb::RoomAgentDispatch {
            agent_name: "z".into(),
            ..Default::default()
        })
        .collect();
    h.d.handle_room_started(h.t0, &room("r3"), &many);
    assert_eq!(h.d.list_dispatch("r3", "").len(), 2);
}

/// A dispatch keeps at most a few ended jobs listed, so a room whose participants come and
/// go does not grow it.
#[test]
fn ended_jobs_are_bounded() {
    let mut h = harness();
    let p = h.worker("", pb::JobType::JtParticipant);
    let r = room("r1");
    h.d.handle_room_started(h.t0, &r, &[]);
    for i in 0..100 {
        let who = format!("u{i}");
        h.d.handle_participant_joined(h.t0, &r, &person(&who));
        let id = h.offers(p)[0].id.clone();
        h.answer(h.t0, p, &id, false);
    }
    let jobs = h.d.list_dispatch("r1", "")[0]
        .state
        .as_ref()
        .unwrap()
        .jobs
        .len();
    assert!(jobs <= ENDED_JOBS_KEPT + 1, "{jobs}");
    assert!(h.d.jobs.len() <= ENDED_JOBS_KEPT + 1);
}

/// Thousands of arbitrary inputs (workers connecting, registering, answering at random,
/// vanishing; rooms and participants coming and going; time passing) never panic, and the
/// dispatcher's holdings stay within their caps and consistent.
#[test]
fn random_inputs_keep_the_bounds() {
    let limits = Limits {
        max_workers: 6,
        max_jobs: 40,
        max_dispatches_per_room: 4,
        max_metadata_size: 32,
    };
    let mut h = harness_with(limits.clone());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut conns: Vec<Conn> = Vec::new();
    let mut offered: Vec<(Conn, String)> = Vec::new();
    let mut now = h.t0;
    for _ in 0..20_000 {
        now += Duration::from_millis(rnd(400));
        let name = format!("r{}", rnd(5));
        match rnd(12) {
            0 => {
                if let Ok(c) = h.d.handle_worker_connect(now, KEY, SECRET) {
                    conns.push(c);
                }
            }
            1 | 2 => {
                let Some(&c) = conns.get(rnd(conns.len() as u64) as usize) else {
                    continue;
                };
                let m = match rnd(8) {
                    0 => W::Register(pb::RegisterWorkerRequest {
                        r#type: rnd(4) as i32,
                        agent_name: if rnd(2) == 0 {
                            String::new()
                        } else {
                            "n".into()
                        },
                        ..Default::default()
                    }),
                    1 => W::UpdateWorker(pb::UpdateWorkerStatus {
                        status: Some(rnd(3) as i32),
                        load: [0.0, 0.5, f32::NAN, -3.0, 7.0][rnd(5) as usize],
                        ..Default::default()
                    }),
                    2 => W::Ping(pb::WorkerPing {
                        timestamp: rnd(1000) as i64,
                    }),
                    3 => W::UpdateJob(pb::UpdateJobStatus {
                        job_id: offered.last().map(|o| o.1.clone()).unwrap_or_default(),
                        status: rnd(5) as i32,
                        error: "e".repeat(rnd(600) as usize),
                    }),
                    4 => W::MigrateJob(pb::MigrateJobRequest::default()),
                    _ => W::Availability(pb::AvailabilityResponse {
                        job_id: offered
                            .get(rnd(offered.len() as u64) as usize)
                            .map(|o| o.1.clone())
                            .unwrap_or_default(),
                        available: rnd(3) != 0,
                        terminate: rnd(10) == 0,
                        participant_metadata: "m".repeat(rnd(40) as usize),
                        ..Default::default()
                    }),
                };
                let _ = h.d.handle_worker_message(now, c, msg(m));
            }
            3 => {
                if !conns.is_empty() {
                    let c = conns.swap_remove(rnd(conns.len() as u64) as usize);
                    h.d.handle_worker_gone(now, c);
                }
            }
            4 => h.d.handle_room_started(now, &room(&name), &[]),
            5 => h.d.handle_room_finished(now, &name),
            6 => {
                let p = person(&format!("p{}", rnd(9)));
                h.d.handle_participant_joined(now, &room(&name), &p);
            }
            7 => {
                let p = person(&format!("p{}", rnd(9)));
                h.d.handle_track_published(now, &room(&name), &p);
            }
            8 => {
                h.d.handle_participant_left(now, &name, &format!("agent-{}", rnd(7)))
            }
            9 => {
                let _ = h.d.create_dispatch(
                    now,
                    &room(&name),
                    &[person("p1")],
                    &pb::CreateAgentDispatchRequest {
                        agent_name: if rnd(2) == 0 {
                            String::new()
                        } else {
                            "n".into()
                        },
                        room: name.clone(),
                        ..Default::default()
                    },
                );
            }
            10 => {
                if let Some(d) = h.d.list_dispatch(&name, "").first() {
                    let _ = h.d.delete_dispatch(now, &name, &d.id);
                }
            }
            _ => h.d.handle_timeout(now),
        }
        for o in h.outputs() {
            match o {
                Output::Send { to, message } => {
                    if let Some(S::Availability(a)) = message.message {
                        offered.push((to, a.job.map(|j| j.id).unwrap_or_default()));
                        if offered.len() > 64 {
                            offered.remove(0);
                        }
                    }
                }
                Output::Close { to, .. } => conns.retain(|c| *c != to),
            }
        }
        let s = h.d.stats();
        assert!(s.workers <= limits.max_workers);
        assert!(h.d.jobs.len() <= limits.max_jobs);
        for r in h.d.rooms.values() {
            assert!(r.dispatches.len() <= limits.max_dispatches_per_room);
        }
        // Every job a worker holds exists and names that worker.
        for (c, w) in &h.d.workers {
            for id in &w.jobs {
                let j = &h.d.jobs[id];
                assert!(
                    matches!(j.phase, Phase::Offered { worker, .. } | Phase::Running { worker } if worker == *c),
                    "{id} is held by {c} but is {:?}",
                    j.phase
                );
            }
        }
        assert!(h.d.timers.len() <= h.d.workers.len() + h.d.jobs.len());
    }
}
