//! LiveKit Agents on the control task: the [`lkr_agent::Dispatcher`] beside the room
//! machine, and the pump of one agent worker's `/agent` WebSocket.
//!
//! The dispatcher lives on the control task ([`AgentHost`]), so room events reach it in the
//! order the machine made them, and a Twirp dispatch call sees the room and the dispatcher
//! in one step, without a lock or a second channel. Each worker connection is a
//! [`run_worker`] task: frames in (binary protobuf, or protobuf-JSON text; answered in the
//! form last received) become dispatcher inputs, and what the dispatcher addresses to the
//! worker comes out of a bounded queue ([`WORKER_QUEUE`]; a worker that falls that far
//! behind is closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use lkr_agent::{Conn, Dispatcher, Output};
use lkr_proto::pb;
use lkr_room::{Machine, RoomEvent};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::control::Control;

/// Messages queued for one worker connection; a worker that falls this far behind is closed.
pub const WORKER_QUEUE: usize = 256;

/// What the control task sends one worker connection.
#[derive(Debug)]
pub enum ToWorker {
    /// Send this message.
    Message(Box<pb::ServerMessage>),
    /// Close the connection, saying why.
    Close(String),
}

/// A connected worker's side of its link to the control task.
#[derive(Debug)]
pub struct WorkerJoined {
    pub conn: Conn,
    pub rx: mpsc::Receiver<ToWorker>,
    /// Notified when the connection must close at once (it fell behind).
    pub abort: Arc<Notify>,
}

struct WorkerLink {
    tx: mpsc::Sender<ToWorker>,
    abort: Arc<Notify>,
}

/// The dispatcher and the queues of the connected workers, owned by the control task.
pub struct AgentHost {
    pub dispatcher: Dispatcher,
    links: HashMap<Conn, WorkerLink>,
}

impl AgentHost {
    /// A host for `dispatcher`, with no worker connected.
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self {
            dispatcher,
            links: HashMap::new(),
        }
    }

    /// Admits a worker connection authorised by API key `api_key`.
    pub fn connect(
        &mut self,
        now: Instant,
        api_key: &str,
        secret: &str,
    ) -> Result<WorkerJoined, lkr_agent::AgentError> {
        let conn = self
            .dispatcher
            .handle_worker_connect(now, api_key, secret)?;
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let abort = Arc::new(Notify::new());
        self.links.insert(
            conn,
            WorkerLink {
                tx,
                abort: abort.clone(),
            },
        );
        Ok(WorkerJoined { conn, rx, abort })
    }

    /// Worker `conn`'s connection ended.
    pub fn gone(&mut self, now: Instant, conn: Conn) {
        self.links.remove(&conn);
        self.dispatcher.handle_worker_gone(now, conn);
    }

    /// Feeds a room event the machine emitted to the dispatcher.
    pub fn on_event(&mut self, now: Instant, machine: &Machine, ev: &RoomEvent) {
        let d = &mut self.dispatcher;
        match ev {
            RoomEvent::RoomStarted { room } => {
                d.handle_room_started(now, room, &machine.room_agents(&room.name));
            }
            RoomEvent::RoomFinished { room } => d.handle_room_finished(now, &room.name),
            RoomEvent::ParticipantJoined { room, participant } => {
                d.handle_participant_joined(now, room, participant);
            }
            RoomEvent::TrackPublished {
                room, participant, ..
            } => d.handle_track_published(now, room, participant),
            RoomEvent::ParticipantLeft {
                room, participant, ..
            } => d.handle_participant_left(now, &room.name, &participant.identity),
            _ => {}
        }
    }

    /// Delivers the dispatcher's outputs to the workers' queues.
    pub fn drain(&mut self, now: Instant) {
        while let Some(out) = self.dispatcher.poll_output() {
            match out {
                Output::Send { to, message } => {
                    let Some(link) = self.links.get(&to) else {
                        continue;
                    };
                    match link.tx.try_send(ToWorker::Message(message)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::info!(worker = to, "agent worker fell behind; closing it");
                            if let Some(l) = self.links.remove(&to) {
                                l.abort.notify_one();
                            }
                            self.dispatcher.handle_worker_gone(now, to);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.links.remove(&to);
                            self.dispatcher.handle_worker_gone(now, to);
                        }
                    }
                }
                Output::Close { to, reason } => {
                    if let Some(l) = self.links.remove(&to)
                        && l.tx.try_send(ToWorker::Close(reason)).is_err()
                    {
                        l.abort.notify_one();
                    }
                }
            }
        }
    }

    /// Closes every worker connection (the server is shutting down).
    pub fn close_all(&mut self) {
        for (_, l) in self.links.drain() {
            if l.tx
                .try_send(ToWorker::Close("server shutting down".into()))
                .is_err()
            {
                l.abort.notify_one();
            }
        }
    }
}

fn encode(m: &pb::ServerMessage, json: bool) -> Option<WsMessage> {
    if json {
        serde_json::to_string(m)
            .ok()
            .map(|t| WsMessage::Text(t.into()))
    } else {
        Some(WsMessage::Binary(m.encode_to_vec().into()))
    }
}

/// Runs one worker connection on an accepted WebSocket until it ends. A frame that is not a
/// worker message closes this connection (policy violation) and no other.
pub async fn run_worker<S>(mut ws: WebSocketStream<S>, control: Control, joined: WorkerJoined)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _running = control.session_guard();
    let WorkerJoined {
        conn,
        mut rx,
        abort,
    } = joined;
    let mut json = false;
    let close = |reason: String| {
        Some(CloseFrame {
            code: CloseCode::Policy,
            reason: reason.chars().take(120).collect::<String>().into(),
        })
    };
    let frame_out: Option<Option<CloseFrame>> = loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break None };
                let msg = match frame {
                    WsMessage::Binary(b) => {
                        json = false;
                        pb::WorkerMessage::decode(b.as_ref()).map_err(|e| e.to_string())
                    }
                    WsMessage::Text(t) => {
                        json = true;
                        serde_json::from_str::<pb::WorkerMessage>(t.as_str()).map_err(|e| e.to_string())
                    }
                    WsMessage::Close(_) => break None,
                    _ => {
                        if control.worker_seen(conn).await.is_err() {
                            break Some(None);
                        }
                        continue;
                    }
                };
                match msg {
                    Ok(m) => {
                        if control.worker_message(conn, m).await.is_err() {
                            break Some(None);
                        }
                    }
                    Err(e) => {
                        tracing::info!(worker = conn, "closing agent worker: undecodable message: {e}");
                        break Some(close(format!("malformed worker message: {e}")));
                    }
                }
            }
            out = rx.recv() => match out {
                Some(ToWorker::Message(m)) => {
                    let Some(frame) = encode(&m, json) else { continue };
                    if ws.send(frame).await.is_err() {
                        break None;
                    }
                }
                Some(ToWorker::Close(reason)) => break Some(close(reason)),
                None => break Some(close("server shutting down".into())),
            },
            _ = abort.notified() => break Some(None),
        }
    };
    if let Some(frame) = frame_out {
        let frame = frame.or(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = ws.close(frame).await;
    }
    tracing::debug!(worker = conn, "agent worker connection ended");
    let _ = control.worker_gone(conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_agent::{Limits, Timing};

    fn host(now: Instant) -> AgentHost {
        AgentHost::new(Dispatcher::new(
            Limits::default(),
            Timing::default(),
            pb::ServerInfo::default(),
            now,
            1_700_000_000_000,
        ))
    }

    fn ping(n: i64) -> pb::WorkerMessage {
        pb::WorkerMessage {
            message: Some(pb::worker_message::Message::Ping(pb::WorkerPing {
                timestamp: n,
            })),
        }
    }

    /// A worker that stops reading its connection is cut when its queue is full: what the
    /// server holds for it stays bounded, it is forgotten, and another worker is unaffected.
    #[test]
    fn a_worker_that_stops_reading_is_cut_at_its_queue_bound() {
        let now = Instant::now();
        let mut h = host(now);
        let slow = h.connect(now, "k", "s").unwrap();
        let mut fast = h.connect(now, "k", "s").unwrap();
        for _ in 0..4 * WORKER_QUEUE {
            for j in [&slow, &fast] {
                // Once cut, the slow worker is unknown: its late messages change nothing.
                let _ = h.dispatcher.handle_worker_message(now, j.conn, ping(1));
            }
            h.drain(now);
            while fast.rx.try_recv().is_ok() {}
        }
        assert!(slow.rx.len() <= WORKER_QUEUE, "{} queued", slow.rx.len());
        assert_eq!(h.links.len(), 1, "the slow worker's link is gone");
        assert_eq!(
            h.dispatcher.stats().workers,
            1,
            "and the dispatcher forgot it"
        );
        // The fast worker still gets its answers.
        h.dispatcher
            .handle_worker_message(now, fast.conn, ping(7))
            .unwrap();
        h.drain(now);
        let Ok(ToWorker::Message(m)) = fast.rx.try_recv() else {
            panic!("the fast worker got nothing")
        };
        assert!(
            matches!(m.message, Some(pb::server_message::Message::Pong(p)) if p.last_timestamp == 7)
        );
    }

    /// Every connection past the cap is refused before it holds anything.
    #[test]
    fn worker_connections_are_capped() {
        let now = Instant::now();
        let mut h = AgentHost::new(Dispatcher::new(
            Limits {
                max_workers: 3,
                ..Limits::default()
            },
            Timing::default(),
            pb::ServerInfo::default(),
            now,
            0,
        ));
        let held: Vec<WorkerJoined> = (0..3).map(|_| h.connect(now, "k", "s").unwrap()).collect();
        assert_eq!(
            h.connect(now, "k", "s").unwrap_err(),
            lkr_agent::AgentError::TooManyWorkers(3)
        );
        assert_eq!(h.links.len(), 3);
        h.gone(now, held[0].conn);
        assert!(
            h.connect(now, "k", "s").is_ok(),
            "a freed place is usable again"
        );
    }
}
