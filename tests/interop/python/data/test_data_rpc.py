"""RPC between two real Python SDK clients (`perform_rpc` / `register_rpc_method`), which rides
on DataPacket rpc_request / rpc_ack / rpc_response (spec §3.2, §3.3 rule 9): responses, errors
raised by the handler (code, message and data reach the caller), unknown methods, a handler
slower than the caller's timeout, and payloads near the 15 KB RPC limit in both directions.
"""

from __future__ import annotations

import json

import lkhelpers
from datahelpers import join, register


def test_rpc_round_trip_and_errors(media, single_pc):
    room = lkhelpers.unique("rpc")
    alice, bob = join(media, room, ["alice", "bob"], single_pc)

    register(alice, "register_rpc", method="greet", behavior="echo")
    register(alice, "register_rpc", method="fail", behavior="error", code=2001, message="nope, not today", data='{"why": 42}')
    register(alice, "register_rpc", method="crash", behavior="crash")
    register(bob, "register_rpc", method="greet", behavior="echo")

    # bob -> alice
    res = bob.request("perform_rpc", destination="alice", method="greet", payload="hi from bob", response_timeout=10, timeout=20)
    assert res["ok"], f"RPC bob -> alice failed: {res}"
    body = json.loads(res["response"])
    assert body == {"echo": "hi from bob", "caller": "bob", "by": "alice"}, body
    inv = alice.wait_for("rpc_invoked", method="greet", timeout=5)
    assert (inv["caller"], inv["payload"]) == ("bob", "hi from bob"), inv

    # alice -> bob (the other direction, same method name)
    res = alice.request("perform_rpc", destination="bob", method="greet", payload="hi from alice", response_timeout=10, timeout=20)
    assert res["ok"] and json.loads(res["response"]) == {"echo": "hi from alice", "caller": "alice", "by": "bob"}, res
    bob.wait_for("rpc_invoked", method="greet", caller="alice", timeout=5)

    # an RpcError raised by the handler reaches the caller with its code, message and data
    res = bob.request("perform_rpc", destination="alice", method="fail", payload="x", response_timeout=10, timeout=20)
    assert not res["ok"], f"the handler raised, yet the call succeeded: {res}"
    assert (res["code"], res["message"], res["data"]) == (2001, "nope, not today", '{"why": 42}'), res
    alice.wait_for("rpc_invoked", method="fail", caller="bob", timeout=5)

    # any other exception in the handler becomes APPLICATION_ERROR (1500)
    res = bob.request("perform_rpc", destination="alice", method="crash", payload="x", response_timeout=10, timeout=20)
    assert not res["ok"] and res["code"] == 1500, res

    # a method nobody registered: UNSUPPORTED_METHOD (1400), answered by alice's SDK
    res = bob.request("perform_rpc", destination="alice", method="nothing-here", payload="x", response_timeout=10, timeout=20)
    assert not res["ok"] and res["code"] == 1400, res

    # every call reached alice exactly once (no duplicated rpc_request packets)
    assert len(alice.find("rpc_invoked", method="greet")) == 1, alice.describe()
    assert len(alice.find("rpc_invoked", method="fail")) == 1, alice.describe()
    assert len(alice.find("rpc_invoked", method="crash")) == 1, alice.describe()


def test_rpc_timeout_and_large_payloads(media, single_pc):
    room = lkhelpers.unique("rpcbig")
    alice, bob = join(media, room, ["alice", "bob"], single_pc)

    register(alice, "register_rpc", method="slow", behavior="sleep", seconds=6)
    register(alice, "register_rpc", method="big", behavior="size", size=14000, seed=3)
    register(alice, "register_rpc", method="echo", behavior="echo")

    # the ack arrives (else CONNECTION_TIMEOUT 1501 after ~7 s) but the response does not come
    # within the caller's 2 s: RESPONSE_TIMEOUT (1502)
    res = bob.request("perform_rpc", destination="alice", method="slow", payload="zzz", response_timeout=2, timeout=20)
    assert not res["ok"] and res["code"] == 1502, f"expected RESPONSE_TIMEOUT (1502): {res}"
    assert res["elapsed"] < 6, res
    alice.wait_for("rpc_invoked", method="slow", caller="bob", timeout=5)

    # a 14,000-byte request and a 14,000-byte response (the RPC limit is 15 KB)
    res = bob.request("perform_rpc", destination="alice", method="big", size=14000, seed=4, response_timeout=10, timeout=20)
    assert res["ok"], res
    inv = alice.wait_for("rpc_invoked", method="big", timeout=5)
    assert inv["payload_size"] == 14000, inv
    res_echo = bob.request("perform_rpc", destination="alice", method="echo", payload="after big", response_timeout=10, timeout=20)
    assert res_echo["ok"], res_echo
    assert res["response_size"] == 14000, res

    # the request and the response arrived intact: compare with what each side built
    assert (inv["payload_size"], inv["payload_sha256"]) == (res["request_size"], res["request_sha256"]), (inv, res)
    handled = alice.wait_for("rpc_handled", method="big", timeout=5)
    assert (res["response_size"], res["response_sha256"]) == (handled["response_size"], handled["response_sha256"]), (
        res,
        handled,
    )
