//! The task that owns the node's [`Machine`]: every front door sends it inputs through one
//! bounded channel, and it delivers the machine's outputs (signal responses to sessions'
//! queues, commands to the media core, room events to their consumers).
//!
//! Nothing else holds room or participant state, and no lock is taken: the machine runs on
//! this one task, one input at a time, and is drained after each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use lkr_agent::Dispatcher;
use lkr_proto::pb;
use lkr_room::{Join, Machine, Output, RoomError, RoomEvent};

use crate::agents::{AgentHost, WorkerJoined};
use crate::pacing::Pacer;
use crate::session::Outgoing;
use lkr_sfu::{Command, Event};
use tokio::sync::{Notify, mpsc, oneshot};

/// Inputs waiting for the machine before senders wait.
const INPUT_QUEUE: usize = 1024;
/// Messages queued for one signal connection; a connection that falls this far behind is
/// closed (its participant is treated as having lost its connection).
pub const SESSION_QUEUE: usize = 1024;
/// Bytes (encoded) queued for one signal connection; past them the connection is closed as
/// at [`SESSION_QUEUE`]. A message is always queued when nothing else waits, however large
/// (a join response in a large room).
pub const SESSION_QUEUE_BYTES: usize = 32 << 20;

/// The media core's channels, as the driver hands them out (both bounded). Commands are sent
/// with backpressure: the media thread drains them on every wake and never waits for the
/// control plane, so waiting here cannot deadlock, and no command is ever dropped.
#[derive(Debug)]
pub struct MediaLink {
    pub commands: mpsc::Sender<Command>,
    pub events: mpsc::Receiver<Event>,
    /// Bytes of data messages waiting in `events`, counted up by the media core: each
    /// [`Event::Data`] taken off the channel takes its length off.
    pub data_queued: Arc<AtomicUsize>,
}

/// What the control task sends one signal connection.
#[derive(Debug)]
pub enum ToSession {
    /// Send this signal response.
    Signal(Arc<Outgoing>),
    /// Send `leave` (when given) and close.
    Close(Option<pb::LeaveRequest>),
}

/// How a PerformRpc call ended.
#[derive(Debug)]
pub enum RpcOutcome {
    /// Refused before anything was sent (unknown participant, payload too large, too many
    /// calls waiting).
    Refused(RoomError),
    /// Sent: the participant's payload, or why there is none.
    Done(Result<String, lkr_room::RpcFailure>),
}

/// The control task has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the room control task has stopped")]
pub struct ControlGone;

/// A joined participant's side of its signal connection.
#[derive(Debug)]
pub struct Joined {
    pub participant_sid: String,
    /// This connection among those the participant had (a resume makes a new one).
    pub link: u64,
    pub rx: SessionQueue,
    /// Notified when the connection must close at once (it fell behind).
    pub abort: Arc<Notify>,
}

/// A connection's end of its queue, bounded in messages ([`SESSION_QUEUE`]) and in bytes
/// ([`SESSION_QUEUE_BYTES`]).
pub type SessionQueue = crate::bounded::Receiver<ToSession>;

type Call = Box<dyn FnOnce(&mut Machine, Instant) + Send>;
type AgentCall = Box<dyn FnOnce(&mut Machine, &mut Dispatcher, Instant) + Send>;

enum Input {
    Join {
        join: Box<Join>,
        reply: oneshot::Sender<Result<Joined, RoomError>>,
    },
    Signal {
        psid: String,
        message: Box<pb::signal_request::Message>,
    },
    Lost {
        psid: String,
        link: u64,
    },
    Call(Call),
    /// A PerformRpc call: its outcome comes once the participant answers or the call ends.
    Rpc {
        req: Box<pb::PerformRpcRequest>,
        reply: oneshot::Sender<RpcOutcome>,
    },
    Agent(AgentInput),
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl Input {
    /// Whether this input is more than upkeep: participants' and agent workers' requests
    /// are; calls (an API request already said so, a metrics scrape should not), an agent
    /// worker's liveness and its pings are not.
    fn ends_pacing(&self) -> bool {
        match self {
            Input::Call(_) | Input::Rpc { .. } | Input::Agent(AgentInput::Seen { .. }) => false,
            Input::Agent(AgentInput::Message { message, .. }) => {
                !matches!(message.message, Some(pb::worker_message::Message::Ping(_)))
            }
            _ => true,
        }
    }
}

/// What an agent worker connection (or the AgentDispatchService) sends the control task.
enum AgentInput {
    Connect {
        api_key: String,
        secret: String,
        reply: oneshot::Sender<Result<WorkerJoined, lkr_agent::AgentError>>,
    },
    Message {
        conn: lkr_agent::Conn,
        message: Box<pb::WorkerMessage>,
    },
    Seen {
        conn: lkr_agent::Conn,
    },
    Gone {
        conn: lkr_agent::Conn,
    },
    Call(AgentCall),
}

/// A handle on the control task; cheap to clone.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Input>,
    /// False once the media core has stopped.
    media_up: tokio::sync::watch::Receiver<bool>,
    /// Signal connections whose session task is running.
    live: Arc<tokio::sync::watch::Sender<usize>>,
    /// Told what the sessions and the control task do (keepalives or anything else).
    pacer: Arc<Pacer>,
}

/// Counts one running session task while it lives.
pub struct SessionGuard(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Control {
    /// Starts the control task owning `machine`, with the media core's channels (`None`:
    /// signalling only, media commands are dropped). Room events go to `events` when given.
    pub fn spawn(
        machine: Machine,
        media: Option<MediaLink>,
        events: Option<mpsc::Sender<RoomEvent>>,
    ) -> (Control, tokio::task::JoinHandle<()>) {
        Self::spawn_with_agents(
            machine,
            media,
            events,
            lkr_agent::Limits::default(),
            lkr_agent::Timing::default(),
        )
    }

    /// [`Control::spawn`] with the agent dispatcher's caps and deadlines.
    pub fn spawn_with_agents(
        machine: Machine,
        media: Option<MediaLink>,
        events: Option<mpsc::Sender<RoomEvent>>,
        agent_limits: lkr_agent::Limits,
        agent_timing: lkr_agent::Timing,
    ) -> (Control, tokio::task::JoinHandle<()>) {
        Self::spawn_paced(
            machine,
            media,
            events,
            agent_limits,
            agent_timing,
            Arc::new(Pacer::never()),
        )
    }

    /// [`Control::spawn_with_agents`] telling `pacer` (the runtime's park hook) what the
    /// sessions and the control task do.
    pub fn spawn_paced(
        machine: Machine,
        media: Option<MediaLink>,
        events: Option<mpsc::Sender<RoomEvent>>,
        agent_limits: lkr_agent::Limits,
        agent_timing: lkr_agent::Timing,
        pacer: Arc<Pacer>,
    ) -> (Control, tokio::task::JoinHandle<()>) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let dispatcher = Dispatcher::new(
            agent_limits,
            agent_timing,
            machine.node_server_info(),
            Instant::now(),
            unix_ms,
        );
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (media_up_tx, media_up) = tokio::sync::watch::channel(true);
        let (commands, media_events) = match media {
            Some(m) => (Some(m.commands), Some((m.events, m.data_queued))),
            None => (None, None),
        };
        let task = Task {
            machine,
            sessions: HashMap::new(),
            next_link: 1,
            commands,
            events,
            media_up: media_up_tx,
            agents: AgentHost::new(dispatcher),
            pacer: pacer.clone(),
            rpc_waiters: HashMap::new(),
        };
        let handle = tokio::spawn(task.run(rx, media_events));
        let live = Arc::new(tokio::sync::watch::channel(0).0);
        (
            Control {
                tx,
                media_up,
                live,
                pacer,
            },
            handle,
        )
    }

    async fn send(&self, input: Input) -> Result<(), ControlGone> {
        self.tx.send(input).await.map_err(|_| ControlGone)
    }

    /// Admits a participant; its JoinResponse is the first message on the returned queue.
    pub async fn join(&self, join: Join) -> Result<Result<Joined, RoomError>, ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Join {
            join: Box::new(join),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ControlGone)
    }

    /// A signal request from participant `psid`.
    pub async fn signal(
        &self,
        psid: &str,
        message: pb::signal_request::Message,
    ) -> Result<(), ControlGone> {
        self.send(Input::Signal {
            psid: psid.to_string(),
            message: Box::new(message),
        })
        .await
    }

    /// Participant `psid`'s signal connection `link` dropped without `leave`.
    pub async fn lost(&self, psid: &str, link: u64) -> Result<(), ControlGone> {
        self.send(Input::Lost {
            psid: psid.to_string(),
            link,
        })
        .await
    }

    /// Shuts the node down: every participant is sent away with SERVER_SHUTDOWN, every room
    /// finishes, and the control task stops once that is delivered (later calls get
    /// [`ControlGone`]).
    pub async fn shutdown(&self) -> Result<(), ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Shutdown { reply }).await?;
        rx.await.map_err(|_| ControlGone)
    }

    /// Whether the media core is running (false once it has stopped; a control task started
    /// without one, for signalling alone, counts as up).
    pub fn media_up(&self) -> bool {
        *self.media_up.borrow()
    }

    /// Resolves when the media core stops.
    pub async fn media_lost(&self) {
        let mut rx = self.media_up.clone();
        let _ = rx.wait_for(|up| !*up).await;
    }

    /// The pacing of the signalling threads, told what sessions do.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Marks a session task as running until the guard drops.
    pub fn session_guard(&self) -> SessionGuard {
        self.live.send_modify(|n| *n += 1);
        SessionGuard(self.live.clone())
    }

    /// Waits until no session task runs.
    pub async fn sessions_closed(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Admits an agent worker connection authorised by API key `api_key`.
    pub async fn worker_connect(
        &self,
        api_key: &str,
        secret: &str,
    ) -> Result<Result<WorkerJoined, lkr_agent::AgentError>, ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Agent(AgentInput::Connect {
            api_key: api_key.to_string(),
            secret: secret.to_string(),
            reply,
        }))
        .await?;
        rx.await.map_err(|_| ControlGone)
    }

    /// A message from agent worker `conn`.
    pub async fn worker_message(
        &self,
        conn: lkr_agent::Conn,
        message: pb::WorkerMessage,
    ) -> Result<(), ControlGone> {
        self.send(Input::Agent(AgentInput::Message {
            conn,
            message: Box::new(message),
        }))
        .await
    }

    /// A frame from agent worker `conn` that carried no message.
    pub async fn worker_seen(&self, conn: lkr_agent::Conn) -> Result<(), ControlGone> {
        self.send(Input::Agent(AgentInput::Seen { conn })).await
    }

    /// Agent worker `conn`'s connection ended.
    pub async fn worker_gone(&self, conn: lkr_agent::Conn) -> Result<(), ControlGone> {
        self.send(Input::Agent(AgentInput::Gone { conn })).await
    }

    /// Runs `f` on the machine and the agent dispatcher together (an AgentDispatchService
    /// call) and returns its result.
    pub async fn agent_call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Machine, &mut Dispatcher, Instant) -> R + Send + 'static,
    ) -> Result<R, ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Agent(AgentInput::Call(Box::new(
            move |m, d, now| {
                let _ = reply.send(f(m, d, now));
            },
        ))))
        .await?;
        rx.await.map_err(|_| ControlGone)
    }

    /// PerformRpc: sends the call to its participant and waits until it ends.
    pub async fn perform_rpc(&self, req: pb::PerformRpcRequest) -> Result<RpcOutcome, ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Rpc {
            req: Box::new(req),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ControlGone)
    }

    /// Runs `f` on the machine (an API call) and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Machine, Instant) -> R + Send + 'static,
    ) -> Result<R, ControlGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Call(Box::new(move |m, now| {
            let _ = reply.send(f(m, now));
        })))
        .await?;
        rx.await.map_err(|_| ControlGone)
    }
}

struct SessionLink {
    id: u64,
    tx: crate::bounded::Sender<ToSession>,
    abort: Arc<Notify>,
}

struct Task {
    machine: Machine,
    sessions: HashMap<String, SessionLink>,
    next_link: u64,
    commands: Option<mpsc::Sender<Command>>,
    events: Option<mpsc::Sender<RoomEvent>>,
    media_up: tokio::sync::watch::Sender<bool>,
    agents: AgentHost,
    pacer: Arc<Pacer>,
    /// Who waits on each PerformRpc call the machine keeps (as many as it keeps).
    rpc_waiters: HashMap<String, oneshot::Sender<RpcOutcome>>,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut media_events: Option<(mpsc::Receiver<Event>, Arc<AtomicUsize>)>,
    ) {
        loop {
            let deadline = match (
                self.machine.poll_timeout(),
                self.agents.dispatcher.poll_timeout(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let media_event = async {
                match media_events.as_mut() {
                    Some((rx, data_queued)) => {
                        let ev = rx.recv().await;
                        if let Some(Event::Data { data, .. }) = &ev {
                            data_queued.fetch_sub(data.len(), Relaxed);
                        }
                        ev
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    // Participants' and agent workers' requests end pacing; calls (an API
                    // request already did, a metrics scrape should not) and an agent
                    // worker's liveness do not.
                    if input.ends_pacing() {
                        self.pacer.busy();
                    }
                    if let Input::Shutdown { reply } = input {
                        tracing::info!(participants = self.machine.participant_count(), "shutting down rooms");
                        self.machine.handle_shutdown(Instant::now());
                        self.drain().await;
                        let _ = reply.send(());
                        break;
                    }
                    self.handle(input);
                }
                ev = media_event => match ev {
                    Some(ev) => {
                        self.pacer.busy();
                        self.machine.handle_media_event(Instant::now(), ev)
                    }
                    None => {
                        tracing::error!("media core has stopped");
                        media_events = None;
                        self.media_up.send_replace(false);
                    }
                },
                _ = sleep => {
                    let now = Instant::now();
                    self.machine.handle_timeout(now);
                    self.agents.dispatcher.handle_timeout(now);
                }
            }
            self.drain().await;
        }
        // Shutting down: every session and agent worker hears it.
        self.agents.close_all();
        for (_, s) in self.sessions.drain() {
            let leave = pb::LeaveRequest {
                can_reconnect: false,
                reason: pb::DisconnectReason::ServerShutdown as i32,
                action: pb::leave_request::Action::Disconnect as i32,
                regions: None,
            };
            if s.tx.try_send(ToSession::Close(Some(leave)), 0).is_err() {
                s.abort.notify_one();
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Join { join, reply } => {
                let r = self.machine.handle_join(now, *join).map(|psid| {
                    let (tx, rx) = crate::bounded::channel(SESSION_QUEUE, SESSION_QUEUE_BYTES);
                    let abort = Arc::new(Notify::new());
                    let id = self.next_link;
                    self.next_link += 1;
                    let link = SessionLink {
                        id,
                        tx,
                        abort: abort.clone(),
                    };
                    // A resume takes over from a connection that may still be open.
                    if let Some(old) = self.sessions.insert(psid.clone(), link) {
                        old.abort.notify_one();
                    }
                    Joined {
                        participant_sid: psid,
                        link: id,
                        rx,
                        abort,
                    }
                });
                if let Err(Ok(j)) = reply.send(r) {
                    // The connection went away while joining.
                    self.sessions.remove(&j.participant_sid);
                    self.machine.handle_signal_lost(now, &j.participant_sid);
                }
            }
            Input::Signal { psid, message } => {
                if let Err(e) = self.machine.handle_signal(now, &psid, *message) {
                    tracing::debug!(participant = %psid, fault = ?e.fault(), "signal request failed: {e}");
                }
            }
            Input::Lost { psid, link } => {
                // Only the participant's current connection counts: one a resume replaced
                // going away changes nothing.
                if self.sessions.get(&psid).is_some_and(|s| s.id == link) {
                    self.sessions.remove(&psid);
                    self.machine.handle_signal_lost(now, &psid);
                }
            }
            Input::Call(f) => f(&mut self.machine, now),
            Input::Rpc { req, reply } => match self.machine.api_perform_rpc(now, &req) {
                // One waiter per call the machine keeps, which ends each with RpcDone.
                Ok(id) => {
                    self.rpc_waiters.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(RpcOutcome::Refused(e));
                }
            },
            Input::Agent(a) => self.handle_agent(now, a),
            Input::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn handle_agent(&mut self, now: Instant, input: AgentInput) {
        match input {
            AgentInput::Connect {
                api_key,
                secret,
                reply,
            } => {
                let r = self.agents.connect(now, &api_key, &secret);
                if let Err(Ok(j)) = reply.send(r) {
                    self.agents.gone(now, j.conn);
                }
            }
            AgentInput::Message { conn, message } => {
                let _ = self
                    .agents
                    .dispatcher
                    .handle_worker_message(now, conn, *message);
            }
            AgentInput::Seen { conn } => self.agents.dispatcher.handle_worker_seen(now, conn),
            AgentInput::Gone { conn } => self.agents.gone(now, conn),
            AgentInput::Call(f) => f(&mut self.machine, &mut self.agents.dispatcher, now),
        }
    }

    /// Queues `out` for the session of participant `to`; a session whose queue is full (in
    /// messages or bytes) is cut, one that has gone is reported lost.
    fn queue(&mut self, to: &str, out: Arc<Outgoing>) {
        let Some(s) = self.sessions.get(to) else {
            return;
        };
        let size = out.size();
        let sent = s.tx.try_send(ToSession::Signal(out), size);
        match sent {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(s) = self.sessions.remove(to) {
                    s.abort.notify_one();
                }
                self.machine.handle_signal_stalled(Instant::now(), to);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.sessions.remove(to);
                self.machine.handle_signal_lost(Instant::now(), to);
            }
        }
    }

    async fn drain(&mut self) {
        // A message for several participants comes as consecutive outputs sharing it: they
        // share its encodings too.
        let mut last: Option<Arc<Outgoing>> = None;
        // Whether a message went to a client: that is not a keepalive, and ends pacing
        // (once per drain, whatever its number of recipients).
        let mut to_clients = false;
        while let Some(out) = self.machine.poll_output() {
            to_clients |= matches!(
                out,
                Output::Signal { .. } | Output::Join { .. } | Output::Close { .. }
            );
            match out {
                Output::Signal { to, message } => {
                    let out = match &last {
                        Some(o) if o.carries(&message) => o.clone(),
                        _ => last.insert(Arc::new(Outgoing::new(message))).clone(),
                    };
                    self.queue(&to, out);
                }
                Output::Join { to, reply } => self.queue(&to, Arc::new(Outgoing::join(reply))),
                Output::Close { to, leave } => {
                    if let Some(s) = self.sessions.remove(&to)
                        && s.tx.try_send(ToSession::Close(leave), 0).is_err()
                    {
                        s.abort.notify_one();
                    }
                }
                Output::Media(cmd) => {
                    if let Some(m) = &self.commands
                        && m.send(cmd).await.is_err()
                    {
                        tracing::error!("media core is gone");
                    }
                }
                Output::RpcDone { id, result } => {
                    if let Some(w) = self.rpc_waiters.remove(&id) {
                        let _ = w.send(RpcOutcome::Done(result));
                    }
                }
                Output::Event(ev) => {
                    self.agents.on_event(Instant::now(), &self.machine, &ev);
                    if let Some(tx) = &self.events
                        && tx.try_send(*ev).is_err()
                    {
                        tracing::debug!("room event dropped: its consumer is behind");
                    }
                }
            }
        }
        if to_clients {
            self.pacer.busy();
        }
        self.agents.drain(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_proto::token::{Claims, VideoGrant};
    use lkr_room::{Config, Limits, RoomDefaults, Rooms};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    fn machine() -> Machine {
        let config = Config {
            auto_create: true,
            node_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port: 7882,
            tcp_port: None,
            turn: None,
            region: String::new(),
            node_id: "ND_t".into(),
            fingerprint: ("sha-256".into(), "AA".into()),
            max_metadata_size: 0,
            max_attributes_size: 0,
            enable_remote_unmute: false,
            ice_servers: Vec::new(),
            limits: Limits::default(),
        };
        Machine::new(config, Rooms::new(RoomDefaults::default()), Instant::now())
    }

    /// A signal request as a client sends it: one binary WebSocket frame.
    fn request_frame(m: pb::signal_request::Message) -> tokio_tungstenite::tungstenite::Message {
        use prost::Message as _;
        tokio_tungstenite::tungstenite::Message::Binary(
            pb::SignalRequest { message: Some(m) }
                .encode_to_vec()
                .into(),
        )
    }

    fn join(identity: &str) -> Join {
        let claims = Claims {
            sub: identity.into(),
            video: Some(VideoGrant {
                room_join: true,
                room: "r".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Join {
            single_pc: true,
            ..Join::new("r", identity, claims)
        }
    }

    /// The media core stopping is seen at once (for the health check and the process).
    #[tokio::test]
    async fn a_stopped_media_core_is_reported() {
        let (commands, _cmd_rx) = mpsc::channel(16);
        let (events_tx, events) = mpsc::channel(16);
        let link = MediaLink {
            commands,
            events,
            data_queued: Arc::default(),
        };
        let (control, _task) = Control::spawn(machine(), Some(link), None);
        assert!(control.media_up());
        drop(events_tx); // the media thread ended (its sender goes with it, panic or not)
        tokio::time::timeout(Duration::from_secs(5), control.media_lost())
            .await
            .expect("reported");
        assert!(!control.media_up());
    }

    /// Each data message taken off the media core's channel leaves the media core's byte
    /// budget for them.
    #[tokio::test]
    async fn data_taken_from_the_media_core_leaves_its_byte_budget() {
        let (commands, _cmd_rx) = mpsc::channel(16);
        let (events_tx, events) = mpsc::channel(16);
        let data_queued = Arc::new(AtomicUsize::new(0));
        let link = MediaLink {
            commands,
            events,
            data_queued: data_queued.clone(),
        };
        let (_control, _task) = Control::spawn(machine(), Some(link), None);
        for n in [1000, 24] {
            data_queued.fetch_add(n, Relaxed);
            let data = Event::Data {
                peer: lkr_sfu::PeerId(9),
                label: "_reliable".into(),
                binary: true,
                data: vec![0; n],
            };
            events_tx.send(data).await.expect("control running");
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while data_queued.load(Relaxed) != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both taken off");
    }

    /// Reads a connection's queue until it has seen `want` room updates (or the queue ends):
    /// how many it saw, and the bytes its queue still counted then.
    async fn read_room_updates(mut joined: Joined, want: usize) -> (usize, usize) {
        let mut n = 0usize;
        while let Some(m) = joined.rx.recv().await {
            if let ToSession::Signal(m) = m
                && matches!(m.message(), pb::signal_response::Message::RoomUpdate(_))
            {
                n += 1;
                if n == want {
                    break;
                }
            }
        }
        (n, joined.rx.bytes())
    }

    /// Large messages fill a connection's queue by bytes before they fill it by count: one
    /// that stops reading is cut once [`SESSION_QUEUE_BYTES`] wait, while another reads all.
    #[tokio::test]
    async fn a_connection_that_stops_reading_is_cut_at_its_byte_bound() {
        let (control, _task) = Control::spawn(machine(), None, None);
        let slow = control.join(join("slow")).await.unwrap().unwrap();
        let fast = control.join(join("fast")).await.unwrap().unwrap();
        const UPDATES: usize = 160;
        const BIG: usize = 500 << 10;
        let reader = tokio::spawn(read_room_updates(fast, UPDATES));
        for i in 0..UPDATES {
            let metadata = format!("{i}{}", "x".repeat(BIG));
            control
                .call(move |m, _| m.api_update_room_metadata("r", &metadata))
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), slow.abort.notified())
            .await
            .expect("the slow connection is told to close");
        // 160 messages of 500 KiB would fit the count; the bytes stopped them at 32 MiB.
        // (And a few small messages of the join before them.)
        let queued = slow.rx.len();
        assert!(queued <= SESSION_QUEUE_BYTES / BIG + 8, "{queued} queued");
        assert!(
            slow.rx.bytes() <= SESSION_QUEUE_BYTES,
            "{} bytes",
            slow.rx.bytes()
        );
        let (seen, left) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, UPDATES, "the reading participant got every update");
        assert_eq!(left, 0, "what it took left its count");
    }

    /// A participant that stops reading its signal connection is cut once its queue is
    /// full; what the server holds for it stays bounded, and the others are unaffected.
    #[tokio::test]
    async fn a_connection_that_stops_reading_is_cut_at_its_queue_bound() {
        let (control, _task) = Control::spawn(machine(), None, None);
        let slow = control.join(join("slow")).await.unwrap().unwrap();
        let fast = control.join(join("fast")).await.unwrap().unwrap();
        let reader = tokio::spawn(read_room_updates(fast, 3 * SESSION_QUEUE));
        for i in 0..3 * SESSION_QUEUE {
            control
                .call(move |m, _| m.api_update_room_metadata("r", &format!("m{i}")))
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), slow.abort.notified())
            .await
            .expect("the slow connection is told to close");
        assert!(slow.rx.len() <= SESSION_QUEUE, "{} queued", slow.rx.len());
        let (seen, _) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            3 * SESSION_QUEUE,
            "the reading participant got every update"
        );
        // The slow participant keeps its place only for the departure grace, like a
        // dropped connection; its requests are no longer read.
        let count = control.call(|m, _| m.participant_count()).await.unwrap();
        assert_eq!(count, 2);
    }

    /// Pings are answered by the session itself; a connection that says nothing for the
    /// ping timeout is ended by its session and its participant keeps its place (as any
    /// dropped connection, for a resume), while one that keeps pinging stays.
    #[tokio::test(start_paused = true)]
    async fn pings_are_answered_and_a_silent_connection_is_cut_after_the_ping_timeout() {
        use futures_util::{SinkExt, StreamExt};
        use pb::signal_response::Message as Resp;
        use prost::Message as _;
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        use tokio_tungstenite::tungstenite::protocol::Role;

        let (control, _task) = Control::spawn(machine(), None, None);
        let mut clients = Vec::new();
        for who in ["pinger", "silent"] {
            let joined = control.join(join(who)).await.unwrap().unwrap();
            let (server_io, client_io) = tokio::io::duplex(1 << 16);
            let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
            tokio::spawn(crate::session::run(server, control.clone(), joined));
            clients.push(WebSocketStream::from_raw_socket(client_io, Role::Client, None).await);
        }
        let mut silent = clients.pop().unwrap();
        let mut pinger = clients.pop().unwrap();
        // Reads until the answer to a ping; other messages (join, updates) are skipped.
        async fn pong(
            ws: &mut WebSocketStream<tokio::io::DuplexStream>,
        ) -> pb::signal_response::Message {
            while let Some(Ok(WsMessage::Binary(b))) = ws.next().await {
                let m = pb::SignalResponse::decode(b.as_ref())
                    .unwrap()
                    .message
                    .unwrap();
                if matches!(m, Resp::Pong(_) | Resp::PongResp(_)) {
                    return m;
                }
            }
            panic!("the connection ended without a pong");
        }
        let started = tokio::time::Instant::now();
        for round in 0..4 {
            pinger
                .send(request_frame(pb::signal_request::Message::Ping(7)))
                .await
                .unwrap();
            assert!(matches!(pong(&mut pinger).await, Resp::Pong(ms) if ms > 1_700_000_000_000));
            pinger
                .send(request_frame(pb::signal_request::Message::PingReq(
                    pb::Ping {
                        timestamp: 1000 + round,
                        rtt: 0,
                    },
                )))
                .await
                .unwrap();
            match pong(&mut pinger).await {
                Resp::PongResp(p) => assert_eq!(p.last_ping_timestamp, 1000 + round),
                other => panic!("{other:?}"),
            }
            if round == 2 {
                // 10 s of silence: not cut yet.
                while let Some(f) = futures_util::FutureExt::now_or_never(silent.next()) {
                    assert!(
                        matches!(f, Some(Ok(WsMessage::Binary(_)))),
                        "cut before the ping timeout: {f:?}"
                    );
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        // 20 s have passed: the silent one was cut (after 15 s), the pinger was not.
        assert!(started.elapsed() >= Duration::from_secs(20));
        let closed = tokio::time::timeout(Duration::from_millis(10), async {
            while let Some(Ok(frame)) = silent.next().await {
                if matches!(frame, WsMessage::Close(_)) {
                    return true;
                }
            }
            true
        })
        .await;
        assert_eq!(closed, Ok(true), "the silent connection was not cut");
        pinger
            .send(request_frame(pb::signal_request::Message::Ping(8)))
            .await
            .unwrap();
        assert!(matches!(pong(&mut pinger).await, Resp::Pong(_)));
        let connected = control
            .call(|m, _| {
                m.api_list_participants("r")
                    .map(|ps| ps.into_iter().map(|p| p.identity).collect::<Vec<_>>())
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            connected.len(),
            2,
            "the silent one keeps its place: {connected:?}"
        );
    }

    /// A ping followed by requests in one write, while the control task is busy and its
    /// queue fills up: the pong leaves at once, not once the requests behind it are taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pong_does_not_wait_behind_requests_to_a_busy_control_task() {
        use futures_util::{SinkExt, StreamExt};
        use pb::signal_response::Message as Resp;
        use prost::Message as _;
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        use tokio_tungstenite::tungstenite::protocol::Role;

        let (control, _task) = Control::spawn(machine(), None, None);
        let joined = control.join(join("busy")).await.unwrap().unwrap();
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        tokio::spawn(crate::session::run(server, control.clone(), joined));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        // The control task blocks until told to go on (handing its worker's other tasks to
        // another thread, as the session's may be queued there).
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (blocked_tx, blocked) = tokio::sync::oneshot::channel();
        let held = control.clone();
        tokio::spawn(async move {
            let _ = held
                .call(move |_, _| {
                    let _ = blocked_tx.send(());
                    tokio::task::block_in_place(|| wait.recv()).ok();
                })
                .await;
        });
        blocked.await.unwrap();
        // A request the room takes and answers with nothing: a setting for a track that
        // does not exist.
        let request = || {
            request_frame(pb::signal_request::Message::TrackSetting(
                pb::UpdateTrackSettings {
                    track_sids: vec!["TR_none".into()],
                    ..Default::default()
                },
            ))
        };
        // The queue filled to the brim, then a ping and requests that find no room.
        for _ in 0..INPUT_QUEUE {
            client.feed(request()).await.unwrap();
        }
        client
            .feed(request_frame(pb::signal_request::Message::PingReq(
                pb::Ping {
                    timestamp: 42,
                    rtt: 0,
                },
            )))
            .await
            .unwrap();
        for _ in 0..64 {
            client.feed(request()).await.unwrap();
        }
        client.flush().await.unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(WsMessage::Binary(b))) = client.next().await {
                if let Some(Resp::PongResp(p)) =
                    pb::SignalResponse::decode(b.as_ref()).unwrap().message
                {
                    return Some(p.last_ping_timestamp);
                }
            }
            None
        })
        .await;
        go.send(()).unwrap();
        assert_eq!(
            pong,
            Ok(Some(42)),
            "no pong while the control task was busy"
        );
    }

    /// Pings that arrive together are answered together: forty pings sent in one write get
    /// their forty pongs in a few writes (at most `BATCH` frames are read before the
    /// session looks at its other work), not one write each.
    #[tokio::test]
    async fn pings_sent_together_are_answered_in_few_writes() {
        use futures_util::{SinkExt, StreamExt};
        use pb::signal_response::Message as Resp;
        use prost::Message as _;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        use tokio_tungstenite::tungstenite::protocol::Role;

        let (control, _task) = Control::spawn(machine(), None, None);
        let joined = control.join(join("pinger")).await.unwrap().unwrap();
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let writes = std::sync::Arc::new(AtomicUsize::new(0));
        let io = crate::session::tests::CountingIo {
            inner: server_io,
            writes: writes.clone(),
        };
        let server = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        tokio::spawn(crate::session::run(server, control.clone(), joined));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let ping = |ts: i64| {
            request_frame(pb::signal_request::Message::PingReq(pb::Ping {
                timestamp: ts,
                rtt: 0,
            }))
        };
        // Reads until `n` pongs have come, in order; other messages are skipped.
        async fn pongs(ws: &mut WebSocketStream<tokio::io::DuplexStream>, n: i64) {
            let mut next = 0;
            while next < n {
                let Some(Ok(WsMessage::Binary(b))) = ws.next().await else {
                    panic!("the connection ended after {next} pongs");
                };
                if let Some(Resp::PongResp(p)) =
                    pb::SignalResponse::decode(b.as_ref()).unwrap().message
                {
                    assert_eq!(p.last_ping_timestamp, next);
                    next += 1;
                }
            }
        }
        client.send(ping(0)).await.unwrap();
        pongs(&mut client, 1).await;
        let before = writes.load(Ordering::Relaxed);
        for ts in 0..40 {
            client.feed(ping(ts)).await.unwrap();
        }
        client.flush().await.unwrap();
        pongs(&mut client, 40).await;
        let used = writes.load(Ordering::Relaxed) - before;
        assert!(used <= 3, "{used} writes for 40 pongs");
    }
}
