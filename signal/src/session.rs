//! One participant's WebSocket: a pump between the connection and the control task.
//!
//! Frames in are decoded (binary protobuf or JSON, answered in the same form) and handed to
//! the room machine; what the machine addresses to the participant is written out. Pings are
//! answered here, and a connection silent past the ping timeout is ended here (the machine
//! learns of it as of any dropped connection). The
//! session holds no room state: when the connection drops, the machine decides what the
//! participant's place becomes (kept for the departure timeout), and the socket and its
//! buffers are released at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use lkr_proto::pb;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::control::{Control, Joined, ToSession};

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

/// Silence after which a signal connection counts as dropped.
const PING_TIMEOUT: Duration = Duration::from_secs(lkr_room::machine::PING_TIMEOUT as u64);

/// Milliseconds since the Unix epoch, for pongs.
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How the session ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The connection dropped or the client closed it.
    Gone,
    /// The machine closed it (leave, removal, timeout).
    Closed,
    /// It fell behind and was cut.
    Aborted,
    /// The control task stopped.
    Shutdown,
}

fn encode(m: Resp, json: bool) -> Option<WsMessage> {
    let msg = pb::SignalResponse { message: Some(m) };
    if json {
        serde_json::to_string(&msg)
            .ok()
            .map(|t| WsMessage::Text(t.into()))
    } else {
        Some(WsMessage::Binary(msg.encode_to_vec().into()))
    }
}

/// Runs a session on an accepted WebSocket until it ends.
pub async fn run<S>(mut ws: WebSocketStream<S>, control: Control, joined: Joined)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _running = control.session_guard();
    let Joined {
        participant_sid: psid,
        link,
        mut rx,
        abort,
    } = joined;
    let mut json = false;
    // The connection's liveness is watched here: a client that sends nothing (LiveKit's
    // clients ping every `ping_interval`) for the ping timeout is treated as gone.
    let silence = tokio::time::sleep(PING_TIMEOUT);
    tokio::pin!(silence);
    let end = loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break End::Gone };
                silence.as_mut().reset(tokio::time::Instant::now() + PING_TIMEOUT);
                let req = match frame {
                    WsMessage::Binary(b) => {
                        json = false;
                        pb::SignalRequest::decode(b.as_ref()).map_err(|e| e.to_string())
                    }
                    WsMessage::Text(t) => {
                        json = true;
                        serde_json::from_str::<pb::SignalRequest>(t.as_str()).map_err(|e| e.to_string())
                    }
                    WsMessage::Close(_) => break End::Gone,
                    _ => Ok(pb::SignalRequest { message: None }),
                };
                let m = match req {
                    Ok(pb::SignalRequest { message: Some(m) }) => m,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(participant = %psid, "undecodable signal frame dropped: {e}");
                        continue;
                    }
                };
                // Pings are answered here, without a trip through the room machine.
                let pong = match m {
                    Req::Ping(_) => Resp::Pong(wall_ms()),
                    Req::PingReq(p) => Resp::PongResp(pb::Pong {
                        last_ping_timestamp: p.timestamp,
                        timestamp: wall_ms(),
                    }),
                    m => {
                        if control.signal(&psid, m).await.is_err() {
                            break End::Shutdown;
                        }
                        continue;
                    }
                };
                if let Some(frame) = encode(pong, json)
                    && ws.send(frame).await.is_err()
                {
                    break End::Gone;
                }
            }
            _ = &mut silence => {
                tracing::info!(participant = %psid, "no signal message within the ping timeout");
                break End::Gone;
            }
            out = rx.recv() => match out {
                Some(ToSession::Signal(m)) => {
                    let Some(frame) = encode(*m, json) else { continue };
                    if ws.send(frame).await.is_err() {
                        break End::Gone;
                    }
                }
                Some(ToSession::Close(leave)) => {
                    if let Some(l) = leave
                        && let Some(frame) = encode(Resp::Leave(l), json)
                    {
                        let _ = ws.send(frame).await;
                    }
                    break End::Closed;
                }
                None => {
                    let leave = pb::LeaveRequest {
                        can_reconnect: false,
                        reason: pb::DisconnectReason::ServerShutdown as i32,
                        action: pb::leave_request::Action::Disconnect as i32,
                        regions: None,
                    };
                    if let Some(frame) = encode(Resp::Leave(leave), json) {
                        let _ = ws.send(frame).await;
                    }
                    break End::Shutdown;
                }
            },
            _ = abort.notified() => break End::Aborted,
        }
    };
    if end != End::Aborted {
        let _ = ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
    tracing::debug!(participant = %psid, ?end, "session ended");
    if end == End::Gone {
        let _ = control.lost(&psid, link).await;
    }
}

/// Answers a resume attempt (`reconnect=1`) for a participant the server no longer has with a
/// `leave` asking for a full reconnect, as LiveKit does.
pub async fn refuse_resume<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let msg = pb::SignalResponse {
        message: Some(Resp::Leave(pb::LeaveRequest {
            can_reconnect: true,
            reason: pb::DisconnectReason::StateMismatch as i32,
            action: pb::leave_request::Action::Reconnect as i32,
            regions: None,
        })),
    };
    let _ = ws.send(WsMessage::Binary(msg.encode_to_vec().into())).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}
