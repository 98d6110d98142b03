"""Webhooks from real sessions, verified by the SDKs' own receivers.

The server POSTs every room event to four URLs inside the namespace: a receiver built on the
Python `livekit-api` WebhookReceiver, one built on Node's `livekit-server-sdk` WebhookReceiver,
one that accepts requests and never answers, and a port where nothing listens. Both real
receivers must verify every event of a session (join, publish, unpublish, leave, room close),
in order, while the stalled and dead ones delay nothing.
"""

from __future__ import annotations

import time

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import API_KEY, API_SECRET, MediaEnv, NODE_CLIENT, PY_DIR, node_bin, python_bin

PY_PORT, NODE_PORT, STALL_PORT, DEAD_PORT = 18101, 18102, 18103, 18104
CONFIG = f"""
webhook:
  api_key: {API_KEY}
  urls:
    - http://127.0.0.1:{PY_PORT}/lk
    - http://127.0.0.1:{NODE_PORT}/lk
    - http://127.0.0.1:{STALL_PORT}/lk
    - http://127.0.0.1:{DEAD_PORT}/lk
room:
  departure_timeout: 1
"""
RECEIVER = PY_DIR / "media" / "webhook_receiver.py"
NODE_RECEIVER = NODE_CLIENT.parent / "webhook_receiver.mjs"


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", CONFIG])
    try:
        yield env
    finally:
        env.cleanup()


def hooks(proc, room: str):
    return [(e["name"], e["participant"], e["track"]) for e in proc.find("webhook") if e["room"] == room]


def test_webhooks_of_a_session_verify_in_order(media: MediaEnv):
    assert node_bin(), "node is required for the Node receiver"
    args = ["--key", API_KEY, "--secret", API_SECRET]
    py = media.process("py-webhooks", [python_bin(), str(RECEIVER), "--port", str(PY_PORT), *args])
    node = media.process("node-webhooks", [node_bin(), str(NODE_RECEIVER), "--port", str(NODE_PORT), *args])
    stall = media.process(
        "stalled-webhooks", [python_bin(), str(RECEIVER), "--port", str(STALL_PORT), *args, "--stall"]
    )
    for r in (py, node, stall):
        r.wait_for("listening", timeout=15)

    room = lkhelpers.unique("hooks")
    started = time.monotonic()
    alice = media.python_client("alice", room, single_pc=True)
    alice.wait_for("connected", timeout=20)
    tone = alice.request("publish_audio", name="tone", freq=440, timeout=20)
    py.wait_for("webhook", name="track_published", room=room, timeout=10)
    bob = media.python_client("bob", room, single_pc=False)
    bob.wait_for("connected", timeout=20)
    bob.wait_for("track_subscribed", participant="alice", sid=tone["sid"], timeout=20)
    alice.request("unpublish", name="tone", timeout=15)
    py.wait_for("webhook", name="track_unpublished", room=room, timeout=10)
    bob.close()
    py.wait_for("webhook", name="participant_left", room=room, participant="bob", timeout=10)
    alice.close()
    for r in (py, node):
        r.wait_for("webhook", name="room_finished", room=room, timeout=15)
    elapsed = time.monotonic() - started

    want = [
        ("room_started", "", ""),
        ("participant_joined", "alice", ""),
        ("track_published", "alice", tone["sid"]),
        ("participant_joined", "bob", ""),
        ("track_unpublished", "alice", tone["sid"]),
        ("participant_left", "bob", ""),
        ("participant_left", "alice", ""),
        ("room_finished", "", ""),
    ]
    for r in (py, node):
        assert not r.find("webhook_error"), r.describe()
        assert hooks(r, room) == want, r.describe()
        # One room: every event carries its sid; every event has its own id.
        events = [e for e in r.find("webhook") if e["room"] == room]
        assert len({e["room_sid"] for e in events}) == 1, events
        assert len({e["id"] for e in events}) == len(events), events
    assert all(e["content_type"] == "application/webhook+json" for e in py.find("webhook"))
    # The stalled receiver got the first event and holds it; the rooms did not wait for it.
    assert stall.find("stalled_request"), stall.describe()
    assert elapsed < 60, f"the session took {elapsed:.1f}s"
    assert media.server_alive()
