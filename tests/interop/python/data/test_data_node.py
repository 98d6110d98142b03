"""`@livekit/rtc-node` and the Python SDK in one room (client script: node_data_client.mjs):
publish_data both ways (reliable, lossy, topic, destination identities, 60,000 bytes), a text
stream and an RPC (including an RpcError) from Node to Python and back.
"""

from __future__ import annotations

import json

import pytest

import lkhelpers
import mediahelpers
from datahelpers import NODE_DATA_CLIENT, assert_none, register, wait_all_see_each_other, wait_data_ready


def _need_node_sdk() -> None:
    if mediahelpers.node_bin() is None:
        pytest.fail("node is not installed", pytrace=False)
    if not (mediahelpers.INTEROP_DIR / "node_modules" / "@livekit" / "rtc-node").is_dir():
        pytest.fail("@livekit/rtc-node is not installed (npm ci in tests/interop)", pytrace=False)


def test_node_python_data(media, single_pc):
    _need_node_sdk()
    room = lkhelpers.unique("nodedata")
    node = media.node_client("nodey", room, script=NODE_DATA_CLIENT, single_pc=single_pc, max_seconds=90)
    node.wait_for("connected", timeout=30)
    py = media.python_client("pyth", room, single_pc=single_pc, max_seconds=90)
    carol = media.python_client("carol", room, single_pc=single_pc, max_seconds=90)
    wait_all_see_each_other([node, py, carol], timeout=25)
    wait_data_ready([node, py, carol])

    # Node -> Python: reliable with topic, lossy, 60,000 bytes, destination identities
    node.request("publish_data", text="hello from node", reliable=True, topic="chat", timeout=15)
    node.request("publish_data", text="lossy from node", reliable=False, topic="tick", timeout=15)
    big = node.request("publish_data", size=60000, seed=9, reliable=True, topic="big", timeout=20)
    node.request("publish_data", text="node to pyth only", topic="dm", destination_identities=["pyth"], timeout=15)
    for rx in (py, carol):
        ev = rx.wait_for("data_received", text="hello from node", timeout=15)
        assert (ev["participant"], ev["topic"], ev["kind"]) == ("nodey", "chat", "reliable"), ev
        ev = rx.wait_for("data_received", text="lossy from node", timeout=15)
        assert (ev["participant"], ev["topic"], ev["kind"]) == ("nodey", "tick", "lossy"), ev
        ev = rx.wait_for("data_received", topic="big", timeout=20)
        assert (ev["participant"], ev["size"], ev["sha256"]) == ("nodey", 60000, big["sha256"]), ev
    py.wait_for("data_received", text="node to pyth only", participant="nodey", timeout=15)

    # Python -> Node
    py.request("publish_data", text="hello from python", reliable=True, topic="chat", timeout=15)
    ev = node.wait_for("data_received", text="hello from python", timeout=15)
    assert (ev["participant"], ev["topic"], ev["kind"]) == ("pyth", "chat", "reliable"), ev
    big2 = py.request("publish_data", size=60000, seed=10, reliable=True, topic="big", timeout=20)
    ev = node.wait_for("data_received", topic="big", timeout=20)
    assert (ev["participant"], ev["size"], ev["sha256"]) == ("pyth", 60000, big2["sha256"]), ev

    # text stream Node -> Python
    register(py, "register_text_stream", topic="notes")
    sent = node.request("send_text", size=30000, seed=4, topic="notes", attributes={"from": "node"}, timeout=20)
    ev = py.wait_for("text_stream_received", stream_id=sent["stream_id"], timeout=20)
    assert (ev["participant"], ev["size"], ev["sha256"]) == ("nodey", sent["size"], sent["sha256"]), ev
    assert ev["attributes"].get("from") == "node", ev

    # RPC both ways, with an error from the Node handler
    register(py, "register_rpc", method="py-echo", behavior="echo")
    node.request("register_rpc", method="node-echo", behavior="echo", timeout=10)
    node.request("register_rpc", method="node-fail", behavior="error", code=3003, message="node says no", data="d", timeout=10)
    res = node.request("perform_rpc", destination="pyth", method="py-echo", payload="ping from node", response_timeout=10, timeout=20)
    assert res["ok"] and json.loads(res["response"]) == {"echo": "ping from node", "caller": "nodey", "by": "pyth"}, res
    res = py.request("perform_rpc", destination="nodey", method="node-echo", payload="ping from py", response_timeout=10, timeout=20)
    assert res["ok"] and json.loads(res["response"]) == {"echo": "ping from py", "caller": "pyth", "by": "nodey"}, res
    res = py.request("perform_rpc", destination="nodey", method="node-fail", payload="x", response_timeout=10, timeout=20)
    assert not res["ok"] and (res["code"], res["message"], res["data"]) == (3003, "node says no", "d"), res

    # carol never got the directed packet; nobody got their own
    node.request("publish_data", text="node barrier", topic="barrier", timeout=15)
    carol.wait_for("data_received", text="node barrier", timeout=15)
    assert_none(carol, "data_received", text="node to pyth only")
    assert_none(node, "data_received", participant="nodey")
    assert_none(py, "data_received", participant="pyth")
