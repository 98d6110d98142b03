"""RPC calls the server makes to a participant (Twirp `RoomService.PerformRpc`, sent with the
`livekit-api` SDK's Twirp client from inside the namespace) to a real Python SDK client that
registered the method with `register_rpc_method`: the handler's answer is the call's result,
its `RpcError` comes back as LiveKit's Twirp error, and a call nobody answers, to a method
nobody registered or to nobody ends with LiveKit's errors. MoveParticipant and
ForwardParticipant, LiveKit Cloud's, are checked and refused as not implemented.
"""

from __future__ import annotations

import json

import lkhelpers
from datahelpers import join, register, twirp


def test_the_server_calls_a_participants_method(media, single_pc):
    room = lkhelpers.unique("srv-rpc")
    (alice,) = join(media, room, ["alice"], single_pc)
    register(alice, "register_rpc", method="greet", behavior="echo")
    register(alice, "register_rpc", method="fail", behavior="error", code=2001, message="nope", data="why")
    register(alice, "register_rpc", method="slow", behavior="sleep", seconds=5)

    res = twirp(media, "PerformRpc", room=room, identity="alice", rpc_method="greet", payload="hi from the server")
    assert res.get("ok"), f"PerformRpc failed: {res}"
    body = json.loads(res["result"]["payload"])
    assert body["echo"] == "hi from the server" and body["by"] == "alice", body
    inv = alice.wait_for("rpc_invoked", method="greet", timeout=5)
    assert inv["payload"] == "hi from the server", inv
    assert inv["caller"].startswith("RPC_"), f"the caller identity is the call's id: {inv}"

    # The handler's RpcError: LiveKit's internal error with its code, message and data.
    res = twirp(media, "PerformRpc", room=room, identity="alice", rpc_method="fail", payload="x")
    assert not res.get("ok") and res.get("code") == "internal", res
    assert res["message"] == "RpcError 2001: nope: why", res

    # A method alice did not register: the SDK answers 1400, LiveKit's invalid_argument.
    res = twirp(media, "PerformRpc", room=room, identity="alice", rpc_method="nothing", payload="x")
    assert not res.get("ok") and res.get("code") == "invalid_argument", res
    assert res["message"].startswith("RpcError 1400"), res

    # A handler slower than the call's timeout: canceled, response timeout.
    res = twirp(media, "PerformRpc", room=room, identity="alice", rpc_method="slow", payload="x", response_timeout_ms=1500)
    assert not res.get("ok") and res.get("code") == "canceled", res
    assert res["message"] == "RpcError 1502: Response timeout", res

    # Nobody by that name; no destination at all.
    res = twirp(media, "PerformRpc", room=room, identity="nobody", rpc_method="greet")
    assert not res.get("ok") and res.get("code") == "not_found", res
    res = twirp(media, "PerformRpc", room=room, identity="", rpc_method="greet")
    assert not res.get("ok") and res.get("code") == "invalid_argument", res
    assert "destination identity is required" in res["message"], res


def test_moving_and_forwarding_are_checked_and_refused_as_not_implemented(media, single_pc):
    """LiveKit Cloud's MoveParticipant and ForwardParticipant, through `livekit-api`'s own
    `move_participant` / `forward_participant`: checked as LiveKit checks them, then refused."""
    room = lkhelpers.unique("move")
    join(media, room, ["alice"], single_pc)
    for method in ("MoveParticipant", "ForwardParticipant"):
        res = twirp(media, method, room=room, identity="alice", destination_room=room)
        assert not res.get("ok") and res.get("code") == "invalid_argument", res
        assert res["message"] == "destination room cannot be the same as source room", res
        res = twirp(media, method, room=room, identity="alice", destination_room=room + "-b")
        assert not res.get("ok") and res.get("code") == "unimplemented", res
        assert res["message"].startswith("not implemented"), res
