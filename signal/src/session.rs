//! One participant's WebSocket: a pump between the connection and the control task.
//!
//! Frames in are decoded (binary protobuf or JSON, answered in the same form) and handed to
//! the room machine; what the machine addresses to the participant is written out. Pings are
//! answered here, and a connection silent past the ping timeout is ended here (the machine
//! learns of it as of any dropped connection). The
//! session holds no room state: when the connection drops, the machine decides what the
//! participant's place becomes (kept for the departure timeout), and the socket and its
//! buffers are released at once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt, StreamExt};
use lkr_proto::pb;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

use crate::control::{Control, Joined, ToSession};
use lkr_room::JoinReply;

use pb::signal_request::Message as Req;
use pb::signal_response::Message as Resp;

/// Silence after which a signal connection counts as dropped.
const PING_TIMEOUT: Duration = Duration::from_secs(lkr_room::machine::PING_TIMEOUT as u64);

/// Flushes the frames fed since the last flush, if any (`fed` counts them, and is reset).
async fn flush_fed<S>(
    ws: &mut WebSocketStream<S>,
    fed: &mut usize,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *fed > 0 {
        ws.flush().await?;
        *fed = 0;
    }
    Ok(())
}

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

fn encode(m: &Resp, json: bool) -> Option<WsMessage> {
    if json {
        json_text(m).map(WsMessage::Text)
    } else {
        Some(WsMessage::Binary(binary(m)))
    }
}

/// `m` as the protobuf bytes of a `SignalResponse` carrying it. A message whose only field
/// is the oneof encodes as that field, so `m` is encoded as it is, not copied into one.
fn binary(m: &Resp) -> Bytes {
    let mut out = Vec::with_capacity(m.encoded_len());
    m.encode(&mut out);
    Bytes::from(out)
}

/// `m` as the JSON of a `SignalResponse` carrying it.
fn json_text(m: &Resp) -> Option<Utf8Bytes> {
    let msg = pb::SignalResponse {
        message: Some(m.clone()),
    };
    serde_json::to_string(&msg).ok().map(Utf8Bytes::from)
}

/// A signal response on its way to one or more connections: the room machine addresses one
/// message to every participant of a room, and it is encoded once per form (binary, JSON)
/// however many connections send it.
#[derive(Debug)]
pub struct Outgoing {
    body: Body,
    binary: OnceLock<Bytes>,
    json: OnceLock<Option<Utf8Bytes>>,
    size: OnceLock<usize>,
}

/// What an [`Outgoing`] carries.
#[derive(Debug)]
enum Body {
    /// A message.
    Message(Arc<Resp>),
    /// A join response, already in protobuf; decoded only when asked for (JSON,
    /// [`Outgoing::message`]).
    Join {
        reply: JoinReply,
        decoded: OnceLock<Box<Resp>>,
    },
}

impl Outgoing {
    /// A message not yet encoded.
    pub fn new(message: Arc<Resp>) -> Self {
        Self::of(Body::Message(message))
    }

    /// A join response.
    pub fn join(reply: JoinReply) -> Self {
        Self::of(Body::Join {
            reply,
            decoded: OnceLock::new(),
        })
    }

    fn of(body: Body) -> Self {
        Self {
            body,
            binary: OnceLock::new(),
            json: OnceLock::new(),
            size: OnceLock::new(),
        }
    }

    /// Its size in protobuf, measured on first use (what it holds in a session's queue).
    pub fn size(&self) -> usize {
        *self.size.get_or_init(|| match &self.body {
            Body::Message(m) => m.encoded_len(),
            Body::Join { reply, .. } => reply.bytes().len(),
        })
    }

    /// The message.
    pub fn message(&self) -> &Resp {
        match &self.body {
            Body::Message(m) => m,
            Body::Join { reply, decoded } => {
                decoded.get_or_init(|| Box::new(Resp::Join(reply.decoded())))
            }
        }
    }

    /// Whether this carries `message` itself (not an equal copy).
    pub fn carries(&self, message: &Arc<Resp>) -> bool {
        matches!(&self.body, Body::Message(m) if Arc::ptr_eq(m, message))
    }

    /// The message as a WebSocket message of the given form, encoded on first use.
    fn frame(&self, json: bool) -> Option<WsMessage> {
        if json {
            self.json
                .get_or_init(|| json_text(self.message()))
                .clone()
                .map(WsMessage::Text)
        } else {
            let bytes = self.binary.get_or_init(|| match &self.body {
                Body::Message(m) => binary(m),
                Body::Join { reply, .. } => reply.bytes(),
            });
            Some(WsMessage::Binary(bytes.clone()))
        }
    }
}

/// Largest WebSocket frame a session writes: a longer message (a join response listing a
/// thousand participants) goes out in fragments of this size, so that the connection's
/// write buffer, which keeps its largest size for the connection's life, stays this small.
const MAX_FRAME: usize = 8 * 1024;

/// Sends `msg`, in fragments of at most [`MAX_FRAME`] bytes when it is longer.
async fn send<S>(
    ws: &mut WebSocketStream<S>,
    msg: WsMessage,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (data, first) = match msg {
        WsMessage::Binary(b) if b.len() > MAX_FRAME => (b, Data::Binary),
        WsMessage::Text(t) if t.len() > MAX_FRAME => (Bytes::from(t), Data::Text),
        msg => return ws.send(msg).await,
    };
    let mut start = 0;
    while start < data.len() {
        let end = (start + MAX_FRAME).min(data.len());
        let opcode = OpCode::Data(if start == 0 { first } else { Data::Continue });
        let frame = Frame::message(data.slice(start..end), opcode, end == data.len());
        ws.send(WsMessage::Frame(frame)).await?;
        start = end;
    }
    Ok(())
}

/// Messages written between two looks at the rest of the session's queue at most.
const BATCH: usize = 32;

/// Writes `first` and whatever else the session's queue already holds (up to [`BATCH`]
/// messages), flushing once the buffered frames reach [`MAX_FRAME`] bytes and at the end
/// rather than after every message: a join's burst (the join response, an offer, updates)
/// leaves in one or two writes to the socket instead of one each. A message longer than
/// [`MAX_FRAME`] goes out in fragments as [`send`] writes it. Returns what was met in the
/// queue and is not a signal message (`Some(None)`: the queue has ended), for the caller to
/// handle next.
async fn write_queued<S>(
    ws: &mut WebSocketStream<S>,
    first: Arc<Outgoing>,
    rx: &mut crate::control::SessionQueue,
    json: bool,
) -> Result<Option<Option<ToSession>>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use crate::bounded::TryRecvError;
    let mut buffered = 0;
    let mut next = Some(first);
    let mut written = 0;
    let mut leftover = None;
    while let Some(m) = next.take() {
        if let Some(frame) = m.frame(json) {
            let len = frame.len();
            if len > MAX_FRAME {
                if buffered > 0 {
                    ws.flush().await?;
                    buffered = 0;
                }
                send(ws, frame).await?;
            } else {
                ws.feed(frame).await?;
                buffered += len;
                if buffered >= MAX_FRAME {
                    ws.flush().await?;
                    buffered = 0;
                }
            }
        }
        written += 1;
        if written < BATCH {
            match rx.try_recv() {
                Ok(ToSession::Signal(m)) => next = Some(m),
                Ok(other) => leftover = Some(Some(other)),
                Err(TryRecvError::Disconnected) => leftover = Some(None),
                Err(TryRecvError::Empty) => {}
            }
        }
    }
    if buffered > 0 {
        ws.flush().await?;
    }
    Ok(leftover)
}

/// What one frame from the client asks of the session (a value handed straight back to the
/// read loop, so its size matters less than boxing each request would).
#[allow(clippy::large_enum_variant)]
enum Incoming {
    /// Nothing: a control frame, an empty or undecodable request.
    Nothing,
    /// The client closed the connection.
    Closed,
    /// A ping, answered by this pong without a trip through the room machine.
    Pong(Resp),
    /// A request for the room machine.
    Request(Req),
}

/// Decodes `frame` (binary protobuf or JSON; `json` notes which form the client last
/// used, and so which form it is answered in).
fn incoming(frame: WsMessage, json: &mut bool, psid: &str) -> Incoming {
    let req = match frame {
        WsMessage::Binary(b) => {
            *json = false;
            pb::SignalRequest::decode(b.as_ref()).map_err(|e| e.to_string())
        }
        WsMessage::Text(t) => {
            *json = true;
            serde_json::from_str::<pb::SignalRequest>(t.as_str()).map_err(|e| e.to_string())
        }
        WsMessage::Close(_) => return Incoming::Closed,
        _ => return Incoming::Nothing,
    };
    match req {
        Ok(pb::SignalRequest {
            message: Some(Req::Ping(_)),
        }) => Incoming::Pong(Resp::Pong(wall_ms())),
        Ok(pb::SignalRequest {
            message: Some(Req::PingReq(p)),
        }) => Incoming::Pong(Resp::PongResp(pb::Pong {
            last_ping_timestamp: p.timestamp,
            timestamp: wall_ms(),
        })),
        Ok(pb::SignalRequest { message: Some(m) }) => Incoming::Request(m),
        Ok(_) => Incoming::Nothing,
        Err(e) => {
            tracing::debug!(participant = %psid, "undecodable signal frame dropped: {e}");
            Incoming::Nothing
        }
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
    let end = 'session: loop {
        tokio::select! {
            frame = ws.next() => {
                // Frames that arrived together (a browser sends `ping` and `ping_req` back
                // to back) are read together and their pongs leave in one write; at most
                // `BATCH` frames before the other branches get their turn.
                let mut frame = frame;
                let mut read = 0;
                let mut pongs = 0;
                let mut requests = false;
                loop {
                    let Some(Ok(f)) = frame else { break 'session End::Gone };
                    silence.as_mut().reset(tokio::time::Instant::now() + PING_TIMEOUT);
                    match incoming(f, &mut json, &psid) {
                        Incoming::Closed => break 'session End::Gone,
                        Incoming::Nothing => {}
                        Incoming::Pong(pong) => {
                            if let Some(frame) = encode(&pong, json) {
                                if ws.feed(frame).await.is_err() {
                                    break 'session End::Gone;
                                }
                                pongs += 1;
                            }
                        }
                        Incoming::Request(m) => {
                            // Not a keepalive (the control task ends pacing on it).
                            requests = true;
                            // A pong already fed leaves before a request that may wait
                            // for room in the control queue: a busy node still answers
                            // pings at once.
                            if flush_fed(&mut ws, &mut pongs).await.is_err() {
                                break 'session End::Gone;
                            }
                            if control.signal(&psid, m).await.is_err() {
                                break 'session End::Shutdown;
                            }
                        }
                    }
                    read += 1;
                    if read == BATCH {
                        break;
                    }
                    match ws.next().now_or_never() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
                if !requests {
                    control.pacer().keepalive();
                }
                if flush_fed(&mut ws, &mut pongs).await.is_err() {
                    break End::Gone;
                }
            }
            _ = &mut silence => {
                tracing::info!(participant = %psid, "no signal message within the ping timeout");
                break End::Gone;
            }
            out = rx.recv() => {
                let mut out = out;
                loop {
                    match out {
                        Some(ToSession::Signal(m)) => match write_queued(&mut ws, m, &mut rx, json).await {
                            Ok(Some(next)) => out = next,
                            Ok(None) => break,
                            Err(_) => break 'session End::Gone,
                        },
                        Some(ToSession::Close(leave)) => {
                            if let Some(l) = leave
                                && let Some(frame) = encode(&Resp::Leave(l), json)
                            {
                                let _ = ws.send(frame).await;
                            }
                            break 'session End::Closed;
                        }
                        None => {
                            let leave = pb::LeaveRequest {
                                can_reconnect: false,
                                reason: pb::DisconnectReason::ServerShutdown as i32,
                                action: pb::leave_request::Action::Disconnect as i32,
                                regions: None,
                            };
                            if let Some(frame) = encode(&Resp::Leave(leave), json) {
                                let _ = ws.send(frame).await;
                            }
                            break 'session End::Shutdown;
                        }
                    }
                }
            }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameSocket;

    fn payload(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>())
    }

    /// The binary form is the bytes of a `SignalResponse` carrying the message, and decodes
    /// back to it.
    #[test]
    fn the_binary_form_is_a_signal_response() {
        let m = Resp::RoomUpdate(pb::RoomUpdate {
            room: Some(pb::Room {
                name: "r".into(),
                metadata: "m".repeat(300),
                ..Default::default()
            }),
        });
        let wrapped = pb::SignalResponse {
            message: Some(m.clone()),
        };
        assert_eq!(&binary(&m)[..], &wrapped.encode_to_vec()[..]);
        assert_eq!(pb::SignalResponse::decode(binary(&m)).unwrap(), wrapped);
    }

    /// A join response with encoded participants reaches binary and JSON clients whole:
    /// both forms read back as the response with its other participants.
    #[test]
    fn a_join_response_reads_back_whole_in_both_forms() {
        let others: Vec<pb::ParticipantInfo> = (0..3)
            .map(|i| pb::ParticipantInfo {
                sid: format!("PA_{i}"),
                identity: format!("p{i}"),
                metadata: "m".repeat(i * 100),
                version: i as u32 + 1,
                ..Default::default()
            })
            .collect();
        let response = pb::JoinResponse {
            room: Some(pb::Room {
                name: "r".into(),
                ..Default::default()
            }),
            server_version: "1.9.0".into(),
            ping_interval: 5,
            ..Default::default()
        };
        let whole = pb::JoinResponse {
            other_participants: others.clone(),
            ..response.clone()
        };
        let encoded: Vec<Vec<u8>> = others.iter().map(|o| o.encode_to_vec()).collect();
        let out = Outgoing::join(JoinReply::new(&response, &encoded));
        let Some(WsMessage::Binary(b)) = out.frame(false) else {
            panic!("not binary")
        };
        assert_eq!(
            pb::SignalResponse::decode(b).unwrap().message,
            Some(Resp::Join(whole.clone()))
        );
        let Some(WsMessage::Text(t)) = out.frame(true) else {
            panic!("not text")
        };
        let json: pb::SignalResponse = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(json.message, Some(Resp::Join(whole.clone())));
        assert_eq!(out.message(), &Resp::Join(whole));
    }

    /// A long message leaves in frames of at most `MAX_FRAME` bytes (first binary, then
    /// continuations, the last one final); a short one in one frame.
    #[tokio::test]
    async fn a_long_message_goes_out_in_bounded_fragments() {
        let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
        let big = payload(10 * MAX_FRAME + 123);
        let writer = tokio::spawn({
            let big = big.clone();
            async move {
                let mut ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
                send(&mut ws, WsMessage::Binary(big)).await.unwrap();
                send(&mut ws, WsMessage::Binary(payload(100)))
                    .await
                    .unwrap();
            }
        });
        let mut raw = Vec::new();
        client_io.read_to_end(&mut raw).await.unwrap();
        writer.await.unwrap();
        let mut frames = FrameSocket::new(std::io::Cursor::new(raw));
        let mut got = Vec::new();
        let mut shapes = Vec::new();
        while let Some(f) = frames.read(None).unwrap() {
            shapes.push((f.header().opcode, f.header().is_final));
            let p = f.into_payload();
            assert!(p.len() <= MAX_FRAME, "a frame of {} bytes", p.len());
            got.extend_from_slice(&p);
        }
        assert_eq!(shapes.len(), 12, "{shapes:?}");
        assert_eq!(shapes[0].0, OpCode::Data(Data::Binary));
        assert!(
            shapes[1..11]
                .iter()
                .all(|s| s.0 == OpCode::Data(Data::Continue))
        );
        let finals: Vec<bool> = shapes.iter().map(|s| s.1).collect();
        assert_eq!(finals.iter().filter(|f| **f).count(), 2, "{finals:?}");
        assert!(finals[10] && finals[11]);
        assert_eq!(shapes[11].0, OpCode::Data(Data::Binary));
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], &payload(100)[..]);
    }

    /// The server's end of a connection, counting the writes it is asked for (on a TCP
    /// socket, one system call each).
    pub(crate) struct CountingIo {
        pub(crate) inner: tokio::io::DuplexStream,
        pub(crate) writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountingIo {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingIo {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn outgoing(text: &str) -> Arc<Outgoing> {
        Arc::new(Outgoing::new(Arc::new(Resp::RoomUpdate(pb::RoomUpdate {
            room: Some(pb::Room {
                name: text.into(),
                ..Default::default()
            }),
        }))))
    }

    fn room_name(m: WsMessage) -> String {
        let WsMessage::Binary(b) = m else {
            panic!("not binary: {m:?}")
        };
        match pb::SignalResponse::decode(b).unwrap().message {
            Some(Resp::RoomUpdate(u)) => u.room.unwrap().name,
            other => panic!("{other:?}"),
        }
    }

    /// Queued messages leave together: ten small ones in one write, in order; a long one
    /// in the middle goes in fragments after what was buffered before it; a close met in
    /// the queue is handed back, and what follows it stays queued.
    #[tokio::test]
    async fn queued_messages_leave_in_few_writes_and_in_order() {
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let io = CountingIo {
            inner: server_io,
            writes: writes.clone(),
        };
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let (tx, mut rx) = crate::bounded::channel(64, usize::MAX);

        for i in 1..10 {
            tx.try_send(ToSession::Signal(outgoing(&format!("m{i}"))), 0)
                .unwrap();
        }
        let left = write_queued(&mut ws, outgoing("m0"), &mut rx, false)
            .await
            .unwrap();
        assert!(left.is_none());
        assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 1);
        for i in 0..10 {
            assert_eq!(
                room_name(client.next().await.unwrap().unwrap()),
                format!("m{i}")
            );
        }

        let long = "x".repeat(3 * MAX_FRAME);
        tx.try_send(ToSession::Signal(outgoing(&long)), 0).unwrap();
        tx.try_send(ToSession::Signal(outgoing("after")), 0)
            .unwrap();
        tx.try_send(ToSession::Close(None), 0).unwrap();
        tx.try_send(ToSession::Signal(outgoing("later")), 0)
            .unwrap();
        let left = write_queued(&mut ws, outgoing("before"), &mut rx, false)
            .await
            .unwrap();
        assert!(matches!(left, Some(Some(ToSession::Close(None)))));
        for name in ["before", long.as_str(), "after"] {
            assert_eq!(room_name(client.next().await.unwrap().unwrap()), name);
        }
        match rx.try_recv() {
            Ok(ToSession::Signal(m)) => assert!(
                matches!(m.message(), Resp::RoomUpdate(u) if u.room.as_ref().unwrap().name == "later")
            ),
            _ => panic!("what followed the close was not left queued"),
        }

        drop(tx);
        let left = write_queued(&mut ws, outgoing("last"), &mut rx, false)
            .await
            .unwrap();
        assert!(matches!(left, Some(None)), "the queue's end is handed back");
    }

    /// A WebSocket client reads the fragments as the one message that was sent, in both
    /// forms.
    #[tokio::test]
    async fn a_client_reassembles_the_fragments() {
        let (server_io, client_io) = tokio::io::duplex(1 << 12);
        let big = payload(5 * MAX_FRAME + 1);
        let text: String = (0..3 * MAX_FRAME)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let writer = tokio::spawn({
            let (big, text) = (big.clone(), text.clone());
            async move {
                let mut ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
                send(&mut ws, WsMessage::Binary(big)).await.unwrap();
                send(&mut ws, WsMessage::Text(text.into())).await.unwrap();
            }
        });
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            WsMessage::Binary(big)
        );
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            WsMessage::Text(text.into())
        );
        writer.await.unwrap();
    }
}
