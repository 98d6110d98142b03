//! The LiveKit Agents dispatcher, sans-IO: agent workers, the jobs offered to them, and each
//! room's agent dispatches.
//!
//! An agent worker is a long-running process (the `livekit-agents` Python framework,
//! `@livekit/agents` for Node) connected to the server's `/agent` WebSocket. It registers
//! (agent name, job type, permissions, version), reports its status and load, and is offered
//! jobs: the server sends an `AvailabilityRequest`, the worker answers, and the server hands
//! the accepting worker a `JobAssignment` carrying the job and a token for the agent
//! participant, which then joins the room like any client.
//!
//! # Data flow
//!
//! The owner (the control task in `lkr-signal`) feeds the [`Dispatcher`]:
//!
//! - worker connections: [`Dispatcher::handle_worker_connect`], every decoded message
//!   ([`Dispatcher::handle_worker_message`]), liveness frames
//!   ([`Dispatcher::handle_worker_seen`]) and the end of the connection
//!   ([`Dispatcher::handle_worker_gone`]);
//! - room events: [`Dispatcher::handle_room_started`] (with the room's configured agent
//!   dispatches), [`Dispatcher::handle_participant_joined`],
//!   [`Dispatcher::handle_track_published`], [`Dispatcher::handle_participant_left`],
//!   [`Dispatcher::handle_room_finished`];
//! - the `AgentDispatchService` calls ([`Dispatcher::create_dispatch`],
//!   [`Dispatcher::delete_dispatch`], [`Dispatcher::list_dispatch`]);
//! - time: [`Dispatcher::handle_timeout`] at [`Dispatcher::poll_timeout`].
//!
//! and drains [`Dispatcher::poll_output`]: messages for a worker, or an order to close one.
//! Every input carries `now`; the dispatcher reads no clock, touches no socket and spawns
//! nothing (the agent token's `nbf`/`exp` are the only wall-clock reads, made by the token
//! signer).
//!
//! # Rules, as LiveKit's server has them
//!
//! - A room that starts gets its configured dispatches (the token's or CreateRoom's
//!   `agents`), or one dispatch with no agent name when none is configured: workers
//!   registered without an agent name are dispatched automatically, named agents only on
//!   request.
//! - A dispatch makes one job per room (`JT_ROOM` workers), per publishing participant
//!   (`JT_PUBLISHER`) or per participant (`JT_PARTICIPANT`); agent participants never get
//!   jobs of their own. No job is made when no worker of that name and type is registered.
//! - A job is offered to one available worker at a time, chosen by load (the lowest
//!   reported load, then the fewest jobs); a worker that declines, or does not answer within
//!   the availability timeout, is skipped and the next is asked, until none is left.
//! - A worker silent for the worker timeout, or whose connection ends, is forgotten; its
//!   running jobs are marked failed (their agent participants stay until their own
//!   connections end, as in LiveKit) and its pending offers go to another worker.
//! - The job of an agent participant that leaves its room, every job of a deleted dispatch
//!   and every job of a room that finishes is terminated (`JobTermination`).
//!
//! Everything a peer can grow is capped ([`Limits`]): workers, jobs, dispatches per room,
//! metadata size; a worker's malformed message closes that worker alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use lkr_proto::pb;
use lkr_proto::token::{AccessToken, VideoGrant};

/// The participant attribute naming the agent a participant runs, as LiveKit sets it.
pub const AGENT_NAME_ATTRIBUTE: &str = "lk.agent_name";
/// The agent protocol version this server speaks.
pub const AGENT_PROTOCOL: i32 = 1;
/// Prefix of worker ids.
pub const WORKER_PREFIX: &str = "AW_";
/// Prefix of job ids.
pub const JOB_PREFIX: &str = "AJ_";
/// Prefix of dispatch ids.
pub const DISPATCH_PREFIX: &str = "AD_";
/// Lifetime of an agent participant's token, as LiveKit signs it.
pub const AGENT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Ended jobs a dispatch remembers for ListDispatch (older ones are forgotten).
const ENDED_JOBS_KEPT: usize = 16;
/// Longest agent name, version or identity a worker may send.
const MAX_NAME_LEN: usize = 256;

/// What the dispatcher holds at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Worker connections at once (registered or not).
    pub max_workers: usize,
    /// Jobs held at once (offered, running, and ended ones still listed).
    pub max_jobs: usize,
    /// Dispatches of one room.
    pub max_dispatches_per_room: usize,
    /// Bytes of a dispatch's or an agent participant's metadata.
    pub max_metadata_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_workers: 1024,
            max_jobs: 8192,
            max_dispatches_per_room: 64,
            max_metadata_size: 64 * 1024,
        }
    }
}

/// The dispatcher's deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// From connection to `register` (LiveKit: 10 s).
    pub register_timeout: Duration,
    /// From an availability request to its answer (LiveKit: 10 s).
    pub availability_timeout: Duration,
    /// Longest silence of a registered worker (the frameworks report their status every
    /// 2.5 s and ping the WebSocket every 30 s).
    pub worker_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            register_timeout: Duration::from_secs(10),
            availability_timeout: Duration::from_secs(10),
            worker_timeout: Duration::from_secs(15),
        }
    }
}

/// A worker connection, numbered by the dispatcher.
pub type Conn = u64;

/// What the dispatcher asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message to the worker.
    Send {
        to: Conn,
        message: Box<pb::ServerMessage>,
    },
    /// Close the worker's connection (nothing more goes to it).
    Close { to: Conn, reason: String },
}

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The worker or API caller sent something wrong.
    Peer,
    /// Something it named does not exist.
    NotFound,
    /// A cap was reached.
    Limit,
    /// The server could not do its part.
    Internal,
}

/// A refused input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("too many agent workers are connected (limit {0})")]
    TooManyWorkers(usize),
    #[error("unknown worker connection")]
    UnknownWorker,
    #[error("the worker message is empty")]
    EmptyMessage,
    #[error("the worker sent {0} before registering")]
    NotRegistered(&'static str),
    #[error("the worker registered twice")]
    AlreadyRegistered,
    #[error("unknown job type {0}")]
    UnknownJobType(i32),
    #[error("{0} is longer than {MAX_NAME_LEN} bytes")]
    TooLong(&'static str),
    #[error("metadata is larger than {0} bytes")]
    MetadataTooLarge(usize),
    #[error("requested room does not exist")]
    RoomNotFound,
    #[error("dispatch ID not found")]
    DispatchNotFound,
    #[error("too many agent dispatches in this room (limit {0})")]
    TooManyDispatches(usize),
    #[error("could not sign the agent token: {0}")]
    Token(String),
}

impl AgentError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            AgentError::TooManyWorkers(_) | AgentError::TooManyDispatches(_) => Fault::Limit,
            AgentError::UnknownWorker | AgentError::RoomNotFound | AgentError::DispatchNotFound => {
                Fault::NotFound
            }
            AgentError::Token(_) => Fault::Internal,
            AgentError::EmptyMessage
            | AgentError::NotRegistered(_)
            | AgentError::AlreadyRegistered
            | AgentError::UnknownJobType(_)
            | AgentError::TooLong(_)
            | AgentError::MetadataTooLarge(_) => Fault::Peer,
        }
    }
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub workers: usize,
    pub registered: usize,
    pub jobs_running: usize,
    pub jobs_offered: usize,
    /// Jobs that found no worker to take them.
    pub jobs_unassigned_total: u64,
    /// Jobs not made because `max_jobs` was reached.
    pub jobs_refused_total: u64,
}

struct Registration {
    id: String,
    agent_name: String,
    job_type: pb::JobType,
    permissions: pb::ParticipantPermission,
}

struct Worker {
    api_key: String,
    secret: String,
    reg: Option<Registration>,
    status: pb::WorkerStatus,
    load: f32,
    /// Jobs offered to or running on this worker.
    jobs: HashSet<String>,
    /// When it is given up on: registration deadline, then last heard from + timeout.
    deadline: Instant,
    /// Its entry in the timer set (at or before `deadline`; moved on when it fires early).
    armed: Instant,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Offered {
        worker: Conn,
        deadline: Instant,
        attempted: Vec<Conn>,
    },
    Running {
        worker: Conn,
    },
    Ended,
}

struct Job {
    job: pb::Job,
    room: String,
    phase: Phase,
}

struct Dispatch {
    info: pb::AgentDispatch,
    /// Jobs made for it, oldest first.
    jobs: VecDeque<String>,
}

struct RoomAgents {
    info: pb::Room,
    dispatches: BTreeMap<String, Dispatch>,
    /// Participants that have published (their publisher jobs were launched).
    publishers: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Worker(Conn),
    Job(String),
}

/// The dispatcher. See the crate docs.
pub struct Dispatcher {
    limits: Limits,
    timing: Timing,
    server_info: pb::ServerInfo,
    base: Instant,
    base_unix_ms: i64,
    next_conn: Conn,
    workers: HashMap<Conn, Worker>,
    jobs: HashMap<String, Job>,
    rooms: HashMap<String, RoomAgents>,
    timers: BTreeSet<(Instant, Timer)>,
    out: VecDeque<Output>,
    unassigned_total: u64,
    refused_total: u64,
}

#[allow(deprecated)] // agent and recorder are still set by older servers and clients
fn is_dependent(p: &pb::ParticipantInfo) -> bool {
    use pb::participant_info::Kind;
    p.kind == Kind::Agent as i32
        || p.kind == Kind::Egress as i32
        || p.permission.as_ref().is_some_and(|x| x.agent || x.recorder)
}

fn job_ended(status: i32) -> bool {
    status == pb::JobStatus::JsSuccess as i32 || status == pb::JobStatus::JsFailed as i32
}

impl Dispatcher {
    /// A dispatcher with no workers; `server_info` is sent in every registration answer;
    /// `now` and `unix_ms` tie the caller's clock to wall time for job timestamps.
    pub fn new(
        limits: Limits,
        timing: Timing,
        server_info: pb::ServerInfo,
        now: Instant,
        unix_ms: i64,
    ) -> Self {
        Self {
            limits,
            timing,
            server_info,
            base: now,
            base_unix_ms: unix_ms,
            next_conn: 1,
            workers: HashMap::new(),
            jobs: HashMap::new(),
            rooms: HashMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
            unassigned_total: 0,
            refused_total: 0,
        }
    }

    fn unix_ns(&self, now: Instant) -> i64 {
        let ms = self.base_unix_ms
            + i64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(0);
        ms.saturating_mul(1_000_000)
    }

    /// Counts of what the dispatcher holds.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            workers: self.workers.len(),
            registered: self.workers.values().filter(|w| w.reg.is_some()).count(),
            jobs_unassigned_total: self.unassigned_total,
            jobs_refused_total: self.refused_total,
            ..Default::default()
        };
        for j in self.jobs.values() {
            match j.phase {
                Phase::Offered { .. } => s.jobs_offered += 1,
                Phase::Running { .. } => s.jobs_running += 1,
                Phase::Ended => {}
            }
        }
        s
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline (a registration, a worker's silence, an unanswered offer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    fn send(&mut self, to: Conn, message: pb::server_message::Message) {
        self.out.push_back(Output::Send {
            to,
            message: Box::new(pb::ServerMessage {
                message: Some(message),
            }),
        });
    }

    // ------------------------------------------------------------------ workers

    /// A worker connection authorised with API key `api_key` (whose `secret` signs its
    /// agents' tokens). Refused past `max_workers`.
    pub fn handle_worker_connect(
        &mut self,
        now: Instant,
        api_key: &str,
        secret: &str,
    ) -> Result<Conn, AgentError> {
        if self.workers.len() >= self.limits.max_workers {
            return Err(AgentError::TooManyWorkers(self.limits.max_workers));
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let deadline = now + self.timing.register_timeout;
        self.workers.insert(
            conn,
            Worker {
                api_key: api_key.to_string(),
                secret: secret.to_string(),
                reg: None,
                status: pb::WorkerStatus::WsAvailable,
                load: 0.0,
                jobs: HashSet::new(),
                deadline,
                armed: deadline,
            },
        );
        self.timers.insert((deadline, Timer::Worker(conn)));
        Ok(conn)
    }

    /// A frame from the worker that carried no message (a WebSocket ping): it is alive.
    pub fn handle_worker_seen(&mut self, now: Instant, conn: Conn) {
        let timeout = self.timing.worker_timeout;
        if let Some(w) = self.workers.get_mut(&conn)
            && w.reg.is_some()
        {
            w.deadline = now + timeout;
        }
    }

    /// A message from worker `conn`. A message that breaks the protocol closes that worker
    /// (an [`Output::Close`] is queued and the worker forgotten) and is returned.
    pub fn handle_worker_message(
        &mut self,
        now: Instant,
        conn: Conn,
        message: pb::WorkerMessage,
    ) -> Result<(), AgentError> {
        let r = self.worker_message(now, conn, message);
        if let Err(e) = &r
            && *e != AgentError::UnknownWorker
        {
            tracing::info!(worker = conn, "closing agent worker: {e}");
            self.out.push_back(Output::Close {
                to: conn,
                reason: e.to_string(),
            });
            self.handle_worker_gone(now, conn);
        }
        r
    }

    fn worker_message(
        &mut self,
        now: Instant,
        conn: Conn,
        message: pb::WorkerMessage,
    ) -> Result<(), AgentError> {
        use pb::worker_message::Message as M;
        let timeout = self.timing.worker_timeout;
        let w = self
            .workers
            .get_mut(&conn)
            .ok_or(AgentError::UnknownWorker)?;
        let registered = w.reg.is_some();
        if registered {
            w.deadline = now + timeout;
        }
        let Some(m) = message.message else {
            return Err(AgentError::EmptyMessage);
        };
        match m {
            M::Ping(p) => {
                self.send(
                    conn,
                    pb::server_message::Message::Pong(pb::WorkerPong {
                        last_timestamp: p.timestamp,
                        timestamp: self.unix_ns(now) / 1_000_000,
                    }),
                );
                Ok(())
            }
            M::Register(r) if !registered => self.register(now, conn, r),
            M::Register(_) => Err(AgentError::AlreadyRegistered),
            _ if !registered => Err(AgentError::NotRegistered(
                "a message other than register or ping",
            )),
            M::Availability(a) => self.availability(now, conn, a),
            M::UpdateWorker(u) => {
                if let Some(s) = u.status
                    && let Ok(s) = pb::WorkerStatus::try_from(s)
                {
                    w.status = s;
                }
                w.load = if u.load.is_finite() {
                    u.load.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                Ok(())
            }
            M::UpdateJob(u) => {
                self.update_job(now, conn, &u);
                Ok(())
            }
            // LiveKit's open-source server ignores these two as well.
            M::SimulateJob(_) | M::MigrateJob(_) => Ok(()),
        }
    }

    fn register(
        &mut self,
        now: Instant,
        conn: Conn,
        r: pb::RegisterWorkerRequest,
    ) -> Result<(), AgentError> {
        let job_type =
            pb::JobType::try_from(r.r#type).map_err(|_| AgentError::UnknownJobType(r.r#type))?;
        if r.agent_name.len() > MAX_NAME_LEN {
            return Err(AgentError::TooLong("the agent name"));
        }
        if r.version.len() > MAX_NAME_LEN {
            return Err(AgentError::TooLong("the version"));
        }
        let permissions = r.allowed_permissions.unwrap_or(pb::ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_update_metadata: true,
            ..Default::default()
        });
        let id = lkr_proto::id::new_id(WORKER_PREFIX);
        let timeout = self.timing.worker_timeout;
        let w = self
            .workers
            .get_mut(&conn)
            .ok_or(AgentError::UnknownWorker)?;
        w.deadline = now + timeout;
        tracing::info!(worker = %id, agent_name = %r.agent_name, job_type = job_type.as_str_name(), version = %r.version, "agent worker registered");
        w.reg = Some(Registration {
            id: id.clone(),
            agent_name: r.agent_name,
            job_type,
            permissions,
        });
        let mut info = self.server_info.clone();
        info.agent_protocol = AGENT_PROTOCOL;
        self.send(
            conn,
            pb::server_message::Message::Register(pb::RegisterWorkerResponse {
                worker_id: id,
                server_info: Some(info),
                endpoint_settings: None,
            }),
        );
        Ok(())
    }

    /// Worker `conn`'s connection ended (or it was closed): it is forgotten, its offers go to
    /// other workers and its running jobs are marked failed.
    pub fn handle_worker_gone(&mut self, now: Instant, conn: Conn) {
        let Some(w) = self.workers.remove(&conn) else {
            return;
        };
        self.timers.remove(&(w.armed, Timer::Worker(conn)));
        if let Some(reg) = &w.reg {
            tracing::info!(worker = %reg.id, jobs = w.jobs.len(), "agent worker gone");
        }
        let ended_at = self.unix_ns(now);
        for id in w.jobs {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            match &job.phase {
                Phase::Offered { .. } => self.offer_next(now, &id),
                Phase::Running { .. } => {
                    job.phase = Phase::Ended;
                    if let Some(s) = job.job.state.as_mut() {
                        s.status = pb::JobStatus::JsFailed as i32;
                        s.error = "agent worker is gone".into();
                        s.ended_at = ended_at;
                        s.updated_at = ended_at;
                    }
                }
                Phase::Ended => {}
            }
        }
    }

    fn availability(
        &mut self,
        now: Instant,
        conn: Conn,
        a: pb::AvailabilityResponse,
    ) -> Result<(), AgentError> {
        let offered_here = self
            .jobs
            .get(&a.job_id)
            .is_some_and(|j| matches!(j.phase, Phase::Offered { worker, .. } if worker == conn));
        if !offered_here {
            tracing::debug!(worker = conn, job = %a.job_id, "availability answer for no pending offer");
            return Ok(());
        }
        if a.participant_identity.len() > MAX_NAME_LEN {
            return Err(AgentError::TooLong("the participant identity"));
        }
        if a.participant_name.len() > MAX_NAME_LEN {
            return Err(AgentError::TooLong("the participant name"));
        }
        let attrs: usize = a
            .participant_attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if a.participant_metadata.len() + attrs > self.limits.max_metadata_size {
            return Err(AgentError::MetadataTooLarge(self.limits.max_metadata_size));
        }
        let t = self.unix_ns(now);
        if a.terminate {
            self.end_job(&a.job_id, pb::JobStatus::JsSuccess, "", t);
            return Ok(());
        }
        if !a.available {
            tracing::debug!(worker = conn, job = %a.job_id, "worker declined the job");
            self.offer_next(now, &a.job_id);
            return Ok(());
        }
        let Some(w) = self.workers.get(&conn) else {
            return Err(AgentError::UnknownWorker);
        };
        let Some(reg) = &w.reg else {
            return Err(AgentError::NotRegistered("availability"));
        };
        let Some(job) = self.jobs.get_mut(&a.job_id) else {
            return Ok(());
        };
        let identity = if a.participant_identity.is_empty() {
            format!("agent-{}", job.job.id)
        } else {
            a.participant_identity.clone()
        };
        let mut attributes: std::collections::BTreeMap<String, String> =
            a.participant_attributes.into_iter().collect();
        attributes.insert(AGENT_NAME_ATTRIBUTE.into(), reg.agent_name.clone());
        let p = &reg.permissions;
        let mut token = AccessToken::new(w.api_key.clone(), w.secret.clone())
            .with_ttl(AGENT_TOKEN_TTL)
            .with_identity(identity.clone())
            .with_name(a.participant_name)
            .with_metadata(a.participant_metadata)
            .with_grant(VideoGrant {
                room_join: true,
                agent: true,
                room: job.room.clone(),
                can_subscribe: Some(p.can_subscribe),
                can_publish: Some(p.can_publish),
                can_publish_data: Some(p.can_publish_data),
                hidden: p.hidden,
                can_update_own_metadata: Some(p.can_update_metadata),
                can_subscribe_metrics: Some(p.can_subscribe_metrics),
                ..Default::default()
            });
        token.claims.kind = "agent".into();
        token.claims.attributes = attributes;
        let jwt = match token.to_jwt() {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(job = %job.job.id, "agent token: {e}");
                self.offer_next(now, &a.job_id);
                return Ok(());
            }
        };
        job.phase = Phase::Running { worker: conn };
        if let Some(s) = job.job.state.as_mut() {
            s.status = pb::JobStatus::JsRunning as i32;
            s.participant_identity = identity.clone();
            s.updated_at = t;
        }
        tracing::info!(job = %job.job.id, worker = %reg.id, room = %job.room, identity = %identity, "agent job assigned");
        let assignment = pb::JobAssignment {
            job: Some(job.job.clone()),
            url: None,
            token: jwt,
        };
        self.send(conn, pb::server_message::Message::Assignment(assignment));
        Ok(())
    }

    fn update_job(&mut self, now: Instant, conn: Conn, u: &pb::UpdateJobStatus) {
        let t = self.unix_ns(now);
        let Some(job) = self.jobs.get_mut(&u.job_id) else {
            return;
        };
        if !matches!(job.phase, Phase::Running { worker } if worker == conn) {
            return;
        }
        if job_ended(u.status) {
            let status = pb::JobStatus::try_from(u.status).unwrap_or(pb::JobStatus::JsFailed);
            let error: String = u.error.chars().take(MAX_NAME_LEN).collect();
            self.end_job(&u.job_id, status, &error, t);
        } else if let Some(s) = job.job.state.as_mut() {
            s.status = u.status;
            s.updated_at = t;
        }
    }

    /// Marks a job ended and frees its worker's slot.
    fn end_job(&mut self, id: &str, status: pb::JobStatus, error: &str, t: i64) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let worker = match job.phase {
            Phase::Offered {
                worker, deadline, ..
            } => {
                self.timers.remove(&(deadline, Timer::Job(id.to_string())));
                Some(worker)
            }
            Phase::Running { worker } => Some(worker),
            Phase::Ended => None,
        };
        job.phase = Phase::Ended;
        if let Some(s) = job.job.state.as_mut() {
            s.status = status as i32;
            s.error = error.to_string();
            s.ended_at = t;
            s.updated_at = t;
        }
        if let Some(w) = worker.and_then(|w| self.workers.get_mut(&w)) {
            w.jobs.remove(id);
        }
    }

    /// Tells the worker running job `id` to end it, and marks it ended.
    fn terminate_job(&mut self, now: Instant, id: &str, status: pb::JobStatus, error: &str) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        if let Phase::Running { worker } = job.phase
            && self.workers.contains_key(&worker)
        {
            tracing::info!(job = %id, "terminating agent job");
            self.send(
                worker,
                pb::server_message::Message::Termination(pb::JobTermination {
                    job_id: id.to_string(),
                }),
            );
        }
        let t = self.unix_ns(now);
        self.end_job(id, status, error, t);
    }

    // ------------------------------------------------------------------ jobs

    /// The available worker for `(agent_name, job_type)` with the lowest load (then the
    /// fewest jobs, then the oldest connection), skipping `attempted`.
    fn pick(&self, agent_name: &str, job_type: pb::JobType, attempted: &[Conn]) -> Option<Conn> {
        self.workers
            .iter()
            .filter(|(c, w)| {
                !attempted.contains(c)
                    && w.status == pb::WorkerStatus::WsAvailable
                    && w.reg
                        .as_ref()
                        .is_some_and(|r| r.agent_name == agent_name && r.job_type == job_type)
            })
            .min_by(|(ca, a), (cb, b)| {
                a.load
                    .total_cmp(&b.load)
                    .then(a.jobs.len().cmp(&b.jobs.len()))
                    .then(ca.cmp(cb))
            })
            .map(|(c, _)| *c)
    }

    fn has_workers(&self, agent_name: &str, job_type: pb::JobType) -> bool {
        self.workers.values().any(|w| {
            w.reg
                .as_ref()
                .is_some_and(|r| r.agent_name == agent_name && r.job_type == job_type)
        })
    }

    /// Makes a job of `job_type` for dispatch `dispatch` of `room` (for `participant`), and
    /// offers it. No job is made when no worker of that name and type is registered.
    fn launch(
        &mut self,
        now: Instant,
        room: &str,
        dispatch: &str,
        job_type: pb::JobType,
        participant: Option<&pb::ParticipantInfo>,
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let Some(d) = r.dispatches.get(dispatch) else {
            return;
        };
        if !self.has_workers(&d.info.agent_name, job_type) {
            tracing::debug!(room, agent_name = %d.info.agent_name, job_type = job_type.as_str_name(), "no agent worker registered for this dispatch");
            return;
        }
        if self.jobs.len() >= self.limits.max_jobs {
            self.refused_total += 1;
            tracing::warn!(
                room,
                cap = self.limits.max_jobs,
                "agent job not made: too many jobs"
            );
            return;
        }
        let id = lkr_proto::id::new_id(JOB_PREFIX);
        let t = self.unix_ns(now);
        #[allow(deprecated)] // namespace is still a field of Job
        let job = pb::Job {
            id: id.clone(),
            dispatch_id: d.info.id.clone(),
            r#type: job_type as i32,
            room: Some(r.info.clone()),
            participant: participant.cloned(),
            namespace: String::new(),
            metadata: d.info.metadata.clone(),
            agent_name: d.info.agent_name.clone(),
            state: Some(pb::JobState {
                status: pb::JobStatus::JsPending as i32,
                started_at: t,
                updated_at: t,
                ..Default::default()
            }),
            attributes: d.info.attributes.clone(),
            ..Default::default()
        };
        self.jobs.insert(
            id.clone(),
            Job {
                job,
                room: room.to_string(),
                phase: Phase::Offered {
                    worker: 0,
                    deadline: now,
                    attempted: Vec::new(),
                },
            },
        );
        if let Some(d) = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.dispatches.get_mut(dispatch))
        {
            d.jobs.push_back(id.clone());
        }
        self.offer_next(now, &id);
        self.forget_old_jobs(room, dispatch);
    }

    /// Offers job `id` to the next worker that has not been asked, or gives it up.
    fn offer_next(&mut self, now: Instant, id: &str) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let mut attempted = match &job.phase {
            Phase::Offered {
                worker, attempted, ..
            } => {
                let mut a = attempted.clone();
                if *worker != 0 {
                    a.push(*worker);
                }
                a
            }
            _ => return,
        };
        if let Phase::Offered {
            worker, deadline, ..
        } = job.phase
        {
            self.timers.remove(&(deadline, Timer::Job(id.to_string())));
            if let Some(w) = self.workers.get_mut(&worker) {
                w.jobs.remove(id);
            }
        }
        let agent_name = job.job.agent_name.clone();
        let job_type = pb::JobType::try_from(job.job.r#type).unwrap_or(pb::JobType::JtRoom);
        let Some(worker) = self.pick(&agent_name, job_type, &attempted) else {
            tracing::info!(job = %id, agent_name = %agent_name, asked = attempted.len(), "no agent worker took the job");
            self.unassigned_total += 1;
            let t = self.unix_ns(now);
            self.end_job(id, pb::JobStatus::JsFailed, "no worker available", t);
            return;
        };
        attempted.shrink_to_fit();
        let deadline = now + self.timing.availability_timeout;
        let (worker_id, mut msg_job) = {
            let w = &self.workers[&worker];
            let wid = w.reg.as_ref().map(|r| r.id.clone()).unwrap_or_default();
            (wid, self.jobs[id].job.clone())
        };
        if let Some(s) = msg_job.state.as_mut() {
            s.worker_id = worker_id.clone();
        }
        if let Some(j) = self.jobs.get_mut(id) {
            j.phase = Phase::Offered {
                worker,
                deadline,
                attempted,
            };
            if let Some(s) = j.job.state.as_mut() {
                s.worker_id = worker_id;
            }
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.jobs.insert(id.to_string());
        }
        self.timers.insert((deadline, Timer::Job(id.to_string())));
        self.send(
            worker,
            pb::server_message::Message::Availability(pb::AvailabilityRequest {
                job: Some(msg_job),
                resuming: false,
            }),
        );
    }

    /// Keeps at most [`ENDED_JOBS_KEPT`] ended jobs listed under a dispatch.
    fn forget_old_jobs(&mut self, room: &str, dispatch: &str) {
        let Some(d) = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.dispatches.get_mut(dispatch))
        else {
            return;
        };
        let ended = d
            .jobs
            .iter()
            .filter(|j| self.jobs.get(*j).is_none_or(|j| j.phase == Phase::Ended))
            .count();
        let mut excess = ended.saturating_sub(ENDED_JOBS_KEPT);
        let mut keep = VecDeque::with_capacity(d.jobs.len());
        for j in d.jobs.drain(..) {
            let ended = self.jobs.get(&j).is_none_or(|x| x.phase == Phase::Ended);
            if ended && excess > 0 {
                excess -= 1;
                self.jobs.remove(&j);
            } else {
                keep.push_back(j);
            }
        }
        d.jobs = keep;
    }

    // ------------------------------------------------------------------ rooms

    /// Room `room` started; `agents` are its configured dispatches (from the creating
    /// token's `roomConfig` or CreateRoom), and with none, one dispatch with no agent name.
    pub fn handle_room_started(
        &mut self,
        now: Instant,
        room: &pb::Room,
        agents: &[pb::RoomAgentDispatch],
    ) {
        let default = [pb::RoomAgentDispatch::default()];
        let agents = if agents.is_empty() {
            &default[..]
        } else {
            agents
        };
        // A CreateDispatch that created the room may have come first: keep its dispatch.
        let r = self
            .rooms
            .entry(room.name.clone())
            .or_insert_with(|| RoomAgents {
                info: room.clone(),
                dispatches: BTreeMap::new(),
                publishers: HashSet::new(),
            });
        r.info = room.clone();
        let room_left = self
            .limits
            .max_dispatches_per_room
            .saturating_sub(r.dispatches.len());
        for a in agents.iter().take(room_left) {
            if a.metadata.len() > self.limits.max_metadata_size {
                tracing::warn!(room = %room.name, agent_name = %a.agent_name, "room agent dispatch skipped: metadata too large");
                continue;
            }
            let id = self.add_dispatch(
                now,
                &room.name,
                &a.agent_name,
                &a.metadata,
                a.attributes.clone(),
            );
            self.launch(now, &room.name, &id, pb::JobType::JtRoom, None);
        }
    }

    fn add_dispatch(
        &mut self,
        now: Instant,
        room: &str,
        agent_name: &str,
        metadata: &str,
        attributes: HashMap<String, String>,
    ) -> String {
        let id = lkr_proto::id::new_id(DISPATCH_PREFIX);
        let t = self.unix_ns(now);
        if let Some(r) = self.rooms.get_mut(room) {
            r.dispatches.insert(
                id.clone(),
                Dispatch {
                    info: pb::AgentDispatch {
                        id: id.clone(),
                        agent_name: agent_name.to_string(),
                        room: room.to_string(),
                        metadata: metadata.to_string(),
                        state: Some(pb::AgentDispatchState {
                            jobs: Vec::new(),
                            created_at: t,
                            deleted_at: 0,
                        }),
                        attributes,
                        ..Default::default()
                    },
                    jobs: VecDeque::new(),
                },
            );
        }
        id
    }

    /// A participant joined room `room`: participant jobs for every dispatch (agents and
    /// egress participants get none).
    pub fn handle_participant_joined(
        &mut self,
        now: Instant,
        room: &pb::Room,
        participant: &pb::ParticipantInfo,
    ) {
        if is_dependent(participant) {
            return;
        }
        let Some(r) = self.rooms.get_mut(&room.name) else {
            return;
        };
        r.info = room.clone();
        let ids: Vec<String> = r.dispatches.keys().cloned().collect();
        for id in ids {
            self.launch(
                now,
                &room.name,
                &id,
                pb::JobType::JtParticipant,
                Some(participant),
            );
        }
    }

    /// A participant published a track: publisher jobs on its first publication.
    pub fn handle_track_published(
        &mut self,
        now: Instant,
        room: &pb::Room,
        participant: &pb::ParticipantInfo,
    ) {
        if is_dependent(participant) {
            return;
        }
        let Some(r) = self.rooms.get_mut(&room.name) else {
            return;
        };
        if !r.publishers.insert(participant.identity.clone()) {
            return;
        }
        let ids: Vec<String> = r.dispatches.keys().cloned().collect();
        for id in ids {
            self.launch(
                now,
                &room.name,
                &id,
                pb::JobType::JtPublisher,
                Some(participant),
            );
        }
    }

    /// A participant left room `room`: when it was a job's agent, the job is terminated.
    pub fn handle_participant_left(&mut self, now: Instant, room: &str, identity: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.publishers.remove(identity);
        // Only this room's jobs are looked at (its dispatches list them).
        let running: Vec<String> = r
            .dispatches
            .values()
            .flat_map(|d| d.jobs.iter())
            .filter(|id| {
                self.jobs.get(*id).is_some_and(|j| {
                    matches!(j.phase, Phase::Running { .. })
                        && j.job
                            .state
                            .as_ref()
                            .is_some_and(|s| s.participant_identity == identity)
                })
            })
            .cloned()
            .collect();
        for id in running {
            self.terminate_job(
                now,
                &id,
                pb::JobStatus::JsFailed,
                "agent worker left the room",
            );
        }
    }

    /// Room `room` finished: every job of it is terminated and its dispatches forgotten.
    pub fn handle_room_finished(&mut self, now: Instant, room: &str) {
        let Some(r) = self.rooms.remove(room) else {
            return;
        };
        for d in r.dispatches.into_values() {
            for id in d.jobs {
                self.terminate_job(now, &id, pb::JobStatus::JsSuccess, "");
                self.jobs.remove(&id);
            }
        }
    }

    // ------------------------------------------------------------------ AgentDispatchService

    /// CreateDispatch for `room` (whose current participants are `participants`): the
    /// dispatch is made and its jobs launched at once.
    pub fn create_dispatch(
        &mut self,
        now: Instant,
        room: &pb::Room,
        participants: &[pb::ParticipantInfo],
        req: &pb::CreateAgentDispatchRequest,
    ) -> Result<pb::AgentDispatch, AgentError> {
        if req.agent_name.len() > MAX_NAME_LEN {
            return Err(AgentError::TooLong("the agent name"));
        }
        let attrs: usize = req.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        if req.metadata.len() + attrs > self.limits.max_metadata_size {
            return Err(AgentError::MetadataTooLarge(self.limits.max_metadata_size));
        }
        let r = self
            .rooms
            .entry(room.name.clone())
            .or_insert_with(|| RoomAgents {
                info: room.clone(),
                dispatches: BTreeMap::new(),
                publishers: HashSet::new(),
            });
        r.info = room.clone();
        if r.dispatches.len() >= self.limits.max_dispatches_per_room {
            return Err(AgentError::TooManyDispatches(
                self.limits.max_dispatches_per_room,
            ));
        }
        let id = self.add_dispatch(
            now,
            &room.name,
            &req.agent_name,
            &req.metadata,
            req.attributes.clone(),
        );
        tracing::info!(room = %room.name, dispatch = %id, agent_name = %req.agent_name, "agent dispatch created");
        self.launch(now, &room.name, &id, pb::JobType::JtRoom, None);
        for p in participants.iter().filter(|p| !is_dependent(p)) {
            if !p.tracks.is_empty() {
                if let Some(r) = self.rooms.get_mut(&room.name) {
                    r.publishers.insert(p.identity.clone());
                }
                self.launch(now, &room.name, &id, pb::JobType::JtPublisher, Some(p));
            }
            self.launch(now, &room.name, &id, pb::JobType::JtParticipant, Some(p));
        }
        self.dispatch_info(&room.name, &id)
            .ok_or(AgentError::DispatchNotFound)
    }

    /// DeleteDispatch: the dispatch goes and its jobs are terminated.
    pub fn delete_dispatch(
        &mut self,
        now: Instant,
        room: &str,
        dispatch_id: &str,
    ) -> Result<pb::AgentDispatch, AgentError> {
        let mut info = self
            .dispatch_info(room, dispatch_id)
            .ok_or(AgentError::DispatchNotFound)?;
        let d = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.dispatches.remove(dispatch_id))
            .ok_or(AgentError::DispatchNotFound)?;
        for id in d.jobs {
            self.terminate_job(now, &id, pb::JobStatus::JsSuccess, "");
            self.jobs.remove(&id);
        }
        if let Some(s) = info.state.as_mut() {
            s.deleted_at = self.unix_ns(now);
        }
        tracing::info!(room, dispatch = dispatch_id, "agent dispatch deleted");
        Ok(info)
    }

    /// ListDispatch: the room's dispatches (or only `dispatch_id`), with their jobs.
    pub fn list_dispatch(&self, room: &str, dispatch_id: &str) -> Vec<pb::AgentDispatch> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.dispatches
            .keys()
            .filter(|id| dispatch_id.is_empty() || *id == dispatch_id)
            .filter_map(|id| self.dispatch_info(room, id))
            .collect()
    }

    fn dispatch_info(&self, room: &str, id: &str) -> Option<pb::AgentDispatch> {
        let d = self.rooms.get(room)?.dispatches.get(id)?;
        let mut info = d.info.clone();
        if let Some(s) = info.state.as_mut() {
            s.jobs = d
                .jobs
                .iter()
                .filter_map(|j| self.jobs.get(j))
                .map(|j| j.job.clone())
                .collect();
        }
        Some(info)
    }

    // ------------------------------------------------------------------ time

    /// Handles every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((t, _)) = self.timers.first() {
            if *t > now {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Worker(conn) => {
                    let Some(w) = self.workers.get_mut(&conn) else {
                        continue;
                    };
                    if w.deadline > now {
                        w.armed = w.deadline;
                        self.timers.insert((w.deadline, Timer::Worker(conn)));
                        continue;
                    }
                    let reason = if w.reg.is_some() {
                        "the worker stopped answering"
                    } else {
                        "the worker did not register in time"
                    };
                    tracing::info!(worker = conn, "closing agent worker: {reason}");
                    self.out.push_back(Output::Close {
                        to: conn,
                        reason: reason.into(),
                    });
                    self.handle_worker_gone(now, conn);
                }
                Timer::Job(id) => {
                    let due = self.jobs.get(&id).is_some_and(
                        |j| matches!(j.phase, Phase::Offered { deadline, .. } if deadline <= now),
                    );
                    if due {
                        tracing::info!(job = %id, "agent worker did not answer the job offer in time");
                        self.offer_next(now, &id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
