"""The Node real-time SDK (`@livekit/rtc-node`) and the Python one in the same room: each
publishes a tone and decodes the other's (client script: tests/interop/node/media/rtc_client.mjs)."""

from __future__ import annotations

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import MediaEnv, assert_tone

PY_FREQ = 440
NODE_FREQ = 620


def _need_node_sdk() -> None:
    if mediahelpers.node_bin() is None:
        pytest.fail("node is not installed", pytrace=False)
    if not (mediahelpers.INTEROP_DIR / "node_modules" / "@livekit" / "rtc-node").is_dir():
        pytest.fail("@livekit/rtc-node is not installed (npm ci in tests/interop)", pytrace=False)


def test_node_and_python_exchange_audio(media: MediaEnv):
    _need_node_sdk()
    room = lkhelpers.unique("node")
    node = media.node_client("nodey", room)
    n_conn = node.wait_for("connected", timeout=30)
    assert n_conn["sid"].startswith("PA_"), n_conn
    py = media.python_client("pyth", room)
    py.wait_for("connected", timeout=20)
    node.wait_for("participant_connected", participant="pyth", timeout=15)

    n_pub = node.start("publish_audio", name="node-tone", freq=NODE_FREQ)
    p_pub = py.start("publish_audio", name="py-tone", freq=PY_FREQ)
    n_tone = node.result(n_pub, timeout=20)
    p_tone = py.result(p_pub, timeout=20)

    ev = py.wait_for("track_subscribed", participant="nodey", kind="audio", timeout=20)
    assert (ev["sid"], ev["name"], ev["source"]) == (n_tone["sid"], "node-tone", "SOURCE_MICROPHONE"), ev
    ev = node.wait_for("track_subscribed", participant="pyth", kind="audio", timeout=20)
    assert (ev["sid"], ev["name"], ev["source"]) == (p_tone["sid"], "py-tone", "SOURCE_MICROPHONE"), ev

    at_node = node.start("analyze_audio", participant="pyth", seconds=1.0, timeout=20)
    at_py = py.start("analyze_audio", participant="nodey", seconds=1.0, timeout=20)
    assert_tone(node.result(at_node, timeout=30), PY_FREQ, "node <- python")
    assert_tone(py.result(at_py, timeout=30), NODE_FREQ, "python <- node")

    # Node unpublishes; Python sees it
    mark = len(py.events)
    node.request("unpublish", name="node-tone", timeout=15)
    py.wait_for("track_unpublished", participant="nodey", sid=n_tone["sid"], after=mark, timeout=10)

    # Node leaves; Python sees it go
    node.send("disconnect")
    node.wait_for("closed", timeout=15)
    py.wait_for("participant_disconnected", participant="nodey", timeout=15)
