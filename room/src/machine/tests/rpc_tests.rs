//! The server's RPC calls to participants (PerformRpc): the request a client gets, its
//! answer taken instead of forwarded, and every other way a call ends (refused at once, no
//! acknowledgement, no response, the participant leaving), with the cap on waiting calls.

use super::*;

fn call(room: &str, to: &str, payload: &str, timeout_ms: u32) -> pb::PerformRpcRequest {
    pb::PerformRpcRequest {
        room: room.into(),
        destination_identity: to.into(),
        method: "greet".into(),
        payload: payload.into(),
        response_timeout_ms: timeout_ms,
    }
}

/// Starts a call to `to` in room `r`; its id.
fn start(w: &mut World, to: &str, payload: &str, timeout_ms: u32) -> String {
    w.m.api_perform_rpc(w.now, &call("r", to, payload, timeout_ms))
        .unwrap()
}

/// The RPC requests sent to `peer` since the last clear, with the caller identity they carry.
fn requests_to(w: &World, peer: PeerId) -> Vec<(String, pb::RpcRequest)> {
    w.media
        .iter()
        .filter_map(|c| match c {
            Command::SendData {
                peer: p,
                reliable: true,
                data,
            } if *p == peer => {
                let pkt: pb::DataPacket = prost::Message::decode(data.as_ref()).ok()?;
                match pkt.value {
                    Some(pb::data_packet::Value::RpcRequest(r)) => {
                        Some((pkt.participant_identity, r))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// `value` from the client of `peer`, addressed to `to` as an SDK addresses its answers.
fn answer(w: &mut World, peer: PeerId, to: &str, value: pb::data_packet::Value) {
    let pkt = pb::DataPacket {
        destination_identities: vec![to.into()],
        value: Some(value),
        ..Default::default()
    };
    w.send_data(peer, &pkt);
}

fn ack(id: &str) -> pb::data_packet::Value {
    pb::data_packet::Value::RpcAck(pb::RpcAck {
        request_id: id.into(),
    })
}

fn response(id: &str, value: pb::rpc_response::Value) -> pb::data_packet::Value {
    pb::data_packet::Value::RpcResponse(pb::RpcResponse {
        request_id: id.into(),
        value: Some(value),
    })
}

#[test]
fn a_call_reaches_its_participant_and_its_answer_is_the_servers() {
    let mut w = World::new();
    let (_a, _b, pa, pb_) = w.connected_pair();
    let id = start(&mut w, "alice", "hi", 5000);
    w.drain();
    let sent = requests_to(&w, pa);
    assert_eq!(sent.len(), 1);
    let (caller, req) = &sent[0];
    assert_eq!(
        (caller.as_str(), req.id.as_str()),
        (id.as_str(), id.as_str())
    );
    assert_eq!((req.method.as_str(), req.payload.as_str()), ("greet", "hi"));
    assert_eq!((req.response_timeout_ms, req.version), (5000, 1));
    w.clear();
    answer(&mut w, pa, &id, ack(&id));
    answer(
        &mut w,
        pa,
        &id,
        response(&id, pb::rpc_response::Value::Payload("hello".into())),
    );
    assert_eq!(w.rpcs, vec![(id.clone(), Ok("hello".to_string()))]);
    assert!(
        !w.media
            .iter()
            .any(|c| matches!(c, Command::SendData { peer, .. } if *peer == pb_)),
        "the answer is not forwarded"
    );

    // An application error comes back as the client sent it.
    let id = start(&mut w, "alice", "", 0);
    w.clear();
    answer(
        &mut w,
        pa,
        &id,
        response(
            &id,
            pb::rpc_response::Value::Error(pb::RpcError {
                code: 2001,
                message: "no".into(),
                data: "why".into(),
            }),
        ),
    );
    let (_, result) = w.rpcs.pop().unwrap();
    let f = result.unwrap_err();
    assert_eq!(f.to_string(), "RpcError 2001: no: why");
    assert_eq!(f.twirp_code(), "internal");

    // An answer naming a call, from someone the call was not sent to, is not its answer.
    let id = start(&mut w, "alice", "", 0);
    w.clear();
    answer(
        &mut w,
        pb_,
        &id,
        response(&id, pb::rpc_response::Value::Payload("forged".into())),
    );
    assert!(w.rpcs.is_empty(), "{:?}", w.rpcs);
    answer(
        &mut w,
        pa,
        &id,
        response(&id, pb::rpc_response::Value::Payload("real".into())),
    );
    assert_eq!(w.rpcs, vec![(id, Ok("real".to_string()))]);
}

#[test]
fn a_call_ends_without_an_ack_without_a_response_or_when_its_participant_leaves() {
    let mut w = World::new();
    let (a, _b, pa, _) = w.connected_pair();
    // No acknowledgement within 2 s: connection timeout.
    let silent = start(&mut w, "alice", "x", 10_000);
    w.run_for(Duration::from_millis(1900));
    assert!(w.rpcs.is_empty());
    w.run_for(Duration::from_millis(200));
    let (id, r) = w.rpcs.pop().unwrap();
    assert_eq!(id, silent);
    let f = r.unwrap_err();
    assert_eq!((f.code, f.twirp_code()), (1501, "canceled"));
    assert_eq!(f.to_string(), "RpcError 1501: Connection timeout");

    // Acknowledged, never answered: response timeout at the call's own timeout.
    let slow = start(&mut w, "alice", "x", 4000);
    answer(&mut w, pa, &slow, ack(&slow));
    w.run_for(Duration::from_millis(3900));
    assert!(w.rpcs.is_empty(), "{:?}", w.rpcs);
    w.run_for(Duration::from_millis(200));
    let f = w.rpcs.pop().unwrap().1.unwrap_err();
    assert_eq!((f.code, f.twirp_code()), (1502, "canceled"));

    // The participant leaves: its calls end at once.
    let pending = start(&mut w, "alice", "x", 0);
    w.signal(&a, Req::Leave(pb::LeaveRequest::default()))
        .unwrap();
    let (id, r) = w.rpcs.pop().unwrap();
    assert_eq!(id, pending);
    assert_eq!(r.unwrap_err().twirp_code(), "unavailable");
    // and only once: its deadlines went with it.
    w.run_for(Duration::from_secs(11));
    assert!(w.rpcs.is_empty(), "{:?}", w.rpcs);
}

#[test]
fn calls_are_refused_at_once_for_what_cannot_be_sent_and_capped() {
    let mut w = World::new();
    let (_a, _b, _pa, _) = w.connected_pair();
    let refuse = |w: &mut World, req: pb::PerformRpcRequest| {
        w.m.api_perform_rpc(w.now, &req).unwrap_err().to_string()
    };
    assert_eq!(
        refuse(&mut w, call("r", "", "x", 0)),
        "destination identity is required"
    );
    assert_eq!(
        refuse(&mut w, call("r", "nobody", "x", 0)),
        "participant does not exist"
    );
    assert_eq!(
        refuse(&mut w, call("nowhere", "alice", "x", 0)),
        "requested room does not exist"
    );
    let big = "x".repeat(MAX_RPC_PAYLOAD + 1);
    assert_eq!(
        refuse(&mut w, call("r", "alice", &big, 0)),
        "RpcError 1402: Request payload too large"
    );
    for _ in 0..MAX_PENDING_RPCS {
        start(&mut w, "bob", "x", 0);
    }
    let e =
        w.m.api_perform_rpc(w.now, &call("r", "bob", "x", 0))
            .unwrap_err();
    assert_eq!(e.twirp_code(), "resource_exhausted");
    // Once they end (no acknowledgement), calls are taken again.
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.rpcs.len(), MAX_PENDING_RPCS);
    start(&mut w, "bob", "x", 0);
}
