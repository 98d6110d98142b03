//! RPC calls the server makes to a participant (Twirp `RoomService.PerformRpc`), as LiveKit
//! makes them: an `RpcRequest` data packet on the participant's reliable channel whose
//! caller identity is the request's own id, answered by the client's `RpcAck` and then its
//! `RpcResponse` (a payload or an error), which the server takes instead of forwarding.
//!
//! The machine keeps each call until it is answered, its deadline passes (no ack within
//! [`RPC_ACK_WITHIN`]: connection timeout; no response within the call's timeout: response
//! timeout) or its participant goes (recipient disconnected); each end is one
//! [`Output::RpcDone`](super::Output::RpcDone) for whoever waits on the call. At most
//! [`MAX_PENDING_RPCS`] calls wait at once.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use lkr_proto::{id, pb};

use super::{Machine, Output};
use crate::RoomError;

/// Calls waiting for their answer on one node.
pub const MAX_PENDING_RPCS: usize = 1024;
/// Largest request or response payload, in bytes (LiveKit's 15 KiB).
pub const MAX_RPC_PAYLOAD: usize = 15 * 1024;
/// How long the participant has to acknowledge a call (LiveKit's round-trip allowance).
pub const RPC_ACK_WITHIN: Duration = Duration::from_secs(2);
/// The response timeout of a call that names none (LiveKit's 10 s).
pub const RPC_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response timeout a call may ask for.
pub const RPC_MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A call that ended without a payload: LiveKit's RPC error (code, message, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFailure {
    pub code: u32,
    pub message: String,
    pub data: String,
}

impl RpcFailure {
    /// One of the errors LiveKit's RPC defines itself.
    fn builtin(code: u32) -> Self {
        let message = match code {
            1501 => "Connection timeout",
            1502 => "Response timeout",
            1503 => "Recipient disconnected",
            1504 => "Response payload too large",
            1505 => "Failed to send",
            1401 => "Recipient not found",
            1402 => "Request payload too large",
            _ => "Application error in method handler",
        };
        Self {
            code,
            message: message.into(),
            data: String::new(),
        }
    }

    /// The Twirp error code LiveKit answers this failure with.
    pub fn twirp_code(&self) -> &'static str {
        match self.code {
            1501 | 1502 => "canceled",
            1503 => "unavailable",
            1400 => "invalid_argument",
            1401 => "not_found",
            1402 => "malformed",
            1403 | 1404 => "unimplemented",
            _ => "internal",
        }
    }
}

impl std::fmt::Display for RpcFailure {
    /// As LiveKit writes it: `RpcError 1502: Response timeout`, then `: data` if any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcError {}: {}", self.code, self.message)?;
        if !self.data.is_empty() {
            write!(f, ": {}", self.data)?;
        }
        Ok(())
    }
}

/// What a participant's data packet says of a call: acknowledged, or answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RpcReply {
    Ack(String),
    Response(pb::RpcResponse),
}

/// One call waiting for its answer.
#[derive(Debug)]
struct Pending {
    psid: String,
    /// Until acknowledged.
    ack_by: Option<Instant>,
    respond_by: Instant,
}

impl Pending {
    fn deadline(&self) -> Instant {
        self.ack_by
            .map_or(self.respond_by, |a| a.min(self.respond_by))
    }
}

/// The calls waiting on one node, and their deadlines in order.
#[derive(Debug, Default)]
pub(crate) struct Rpcs {
    pending: HashMap<String, Pending>,
    deadlines: BTreeSet<(Instant, String)>,
}

impl Rpcs {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    fn insert(&mut self, id: String, p: Pending) {
        self.deadlines.insert((p.deadline(), id.clone()));
        self.pending.insert(id, p);
    }

    fn remove(&mut self, id: &str) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        self.deadlines.remove(&(p.deadline(), id.to_string()));
        Some(p)
    }
}

impl Machine {
    /// PerformRpc: sends `req.method` with its payload to `req.destination_identity` in
    /// `req.room`; the call's id, whose end comes as [`Output::RpcDone`]. Refused at once
    /// (and nothing kept) without a destination, for an unknown room or participant, a
    /// payload over [`MAX_RPC_PAYLOAD`], or when [`MAX_PENDING_RPCS`] calls already wait.
    pub fn api_perform_rpc(
        &mut self,
        now: Instant,
        req: &pb::PerformRpcRequest,
    ) -> Result<String, RoomError> {
        if req.destination_identity.is_empty() {
            return Err(RoomError::InvalidArgument(
                "destination identity is required".into(),
            ));
        }
        if req.method.is_empty() {
            return Err(RoomError::InvalidArgument("method is required".into()));
        }
        if req.payload.len() > MAX_RPC_PAYLOAD {
            return Err(RoomError::InvalidArgument(
                RpcFailure::builtin(1402).to_string(),
            ));
        }
        let rec = self
            .rooms
            .participant(&req.room, &req.destination_identity)?;
        let psid = rec.info.sid.clone();
        let Some(peer) = self.participants.get(&psid).and_then(|p| p.data_peer()) else {
            return Err(RoomError::Internal(RpcFailure::builtin(1505).to_string()));
        };
        if self.rpcs.pending.len() >= MAX_PENDING_RPCS {
            return Err(RoomError::LimitExceeded(format!(
                "at most {MAX_PENDING_RPCS} RPC calls may wait at once"
            )));
        }
        let timeout = match req.response_timeout_ms {
            0 => RPC_DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms.into()).min(RPC_MAX_TIMEOUT),
        };
        let rpc_id = id::new_id("RPC_");
        #[allow(deprecated)] // clients still read the kind
        let packet = pb::DataPacket {
            kind: pb::data_packet::Kind::Reliable as i32,
            // The caller's identity is the call's id: the client answers to it.
            participant_identity: rpc_id.clone(),
            value: Some(pb::data_packet::Value::RpcRequest(pb::RpcRequest {
                id: rpc_id.clone(),
                method: req.method.clone(),
                payload: req.payload.clone(),
                response_timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                version: 1,
                ..Default::default()
            })),
            ..Default::default()
        };
        self.out.media(lkr_sfu::Command::SendData {
            peer,
            reliable: true,
            data: bytes::Bytes::from(prost::Message::encode_to_vec(&packet)),
        });
        tracing::debug!(participant = %psid, rpc = %rpc_id, method = %req.method, "RPC call sent");
        self.rpcs.insert(
            rpc_id.clone(),
            Pending {
                psid,
                ack_by: Some(now + RPC_ACK_WITHIN),
                respond_by: now + timeout,
            },
        );
        Ok(rpc_id)
    }

    /// Takes `psid`'s acknowledgement or answer of one of the server's calls; false when the
    /// packet is about no call of the server's to it (then it is forwarded as any other).
    pub(super) fn take_rpc_reply(&mut self, psid: &str, reply: RpcReply) -> bool {
        let id = match &reply {
            RpcReply::Ack(id) => id,
            RpcReply::Response(r) => &r.request_id,
        };
        if self.rpcs.pending.get(id).is_none_or(|p| p.psid != psid) {
            return false;
        }
        let id = id.clone();
        match reply {
            RpcReply::Ack(_) => {
                if let Some(mut p) = self.rpcs.remove(&id) {
                    p.ack_by = None;
                    self.rpcs.insert(id, p);
                }
            }
            RpcReply::Response(r) => {
                self.rpcs.remove(&id);
                use pb::rpc_response::Value;
                let result = match r.value {
                    Some(Value::Payload(p)) if p.len() > MAX_RPC_PAYLOAD => {
                        Err(RpcFailure::builtin(1504))
                    }
                    Some(Value::Payload(p)) => Ok(p),
                    Some(Value::Error(e)) => Err(RpcFailure {
                        code: e.code,
                        message: e.message,
                        data: e.data,
                    }),
                    // A compressed payload, or none: not a response this server reads.
                    _ => Err(RpcFailure::builtin(1504)),
                };
                self.out.0.push_back(Output::RpcDone { id, result });
            }
        }
        true
    }

    /// Ends the calls whose deadline passed: unacknowledged ones with a connection timeout,
    /// unanswered ones with a response timeout.
    pub(super) fn expire_rpcs(&mut self, now: Instant) {
        while let Some((t, id)) = self.rpcs.deadlines.first().cloned() {
            if t > now {
                break;
            }
            let Some(p) = self.rpcs.remove(&id) else {
                continue;
            };
            let code = if p.ack_by.is_some_and(|a| a <= now) {
                1501
            } else {
                1502
            };
            tracing::debug!(participant = %p.psid, rpc = %id, code, "RPC call ended unanswered");
            self.out.0.push_back(Output::RpcDone {
                id,
                result: Err(RpcFailure::builtin(code)),
            });
        }
    }

    /// Ends the calls to a participant that left.
    pub(super) fn end_rpcs_of(&mut self, psid: &str) {
        if self.rpcs.pending.is_empty() {
            return;
        }
        let gone: Vec<String> = self
            .rpcs
            .pending
            .iter()
            .filter(|(_, p)| p.psid == psid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.rpcs.remove(&id);
            self.out.0.push_back(Output::RpcDone {
                id,
                result: Err(RpcFailure::builtin(1503)),
            });
        }
    }
}
