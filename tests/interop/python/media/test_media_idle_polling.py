"""A shard that reads its socket on a schedule, with real clients: two idle Python SDK
participants (connected, nothing published) send the shard nothing but their consent checks
and SCTP heartbeats, so with `rtc.idle_poll_wakeups: 1` it stops waking for each datagram and
reads every 50 ms (`livekit_media_polling_shards` 1). While it polls, each client's ICE agent
gets answers to its further checks (its candidate-pair stats), the clients stay connected,
and a data message reaches the other side; then one publishes a
tone, the other decodes it, and the shard wakes for each datagram again (the metric back to 0)."""

from __future__ import annotations

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, assert_tone, scrape_metrics, wait_until

METRICS_PORT = 18123
FREQ = 660


@pytest.fixture(scope="module")
def media_env():
    config = lkhelpers.prometheus_config(METRICS_PORT) + "rtc:\n  idle_poll_wakeups: 1\n"
    env = media_env_with(["--config-body", config])
    try:
        yield env
    finally:
        env.cleanup()


def polling(media: MediaEnv) -> float:
    text = scrape_metrics(media, METRICS_PORT)
    return lkhelpers.metric_value(text, "livekit_media_polling_shards")


def answered(c) -> int:
    """STUN responses the client's ICE agent has received, over its candidate pairs."""
    return sum(p["responses_received"] for p in c.request("ice_stats", timeout=10)["pairs"])


def test_idle_peers_are_served_by_a_polling_shard(media: MediaEnv):
    room = lkhelpers.unique("poll")
    alice = media.python_client("alice", room)
    alice.wait_for("connected", timeout=20)
    bob = media.python_client("bob", room)
    bob.wait_for("connected", timeout=20)
    alice.wait_for("participant_connected", participant="bob", timeout=10)

    assert wait_until(lambda: polling(media) == 1, timeout=30), "the shard never started polling"
    # The clients' checks (libwebrtc sends one every 2.5 s on a stable pair) are answered,
    # late by up to a poll period, and nobody notices.
    marks = (len(alice.events), len(bob.events))
    before = {c.label: answered(c) for c in (alice, bob)}
    for c in (alice, bob):
        assert wait_until(lambda: answered(c) >= before[c.label] + 3, timeout=20), (
            f"{c.label}: checks not answered while the shard polls: {before[c.label]} -> {answered(c)}"
        )
    assert polling(media) == 1, "the shard stopped polling with nothing but idle upkeep"
    for c, mark in zip((alice, bob), marks):
        for ev in ("reconnecting", "disconnected"):
            assert not c.find(ev, after=mark), c.describe()
        assert all(e["state"] == "CONN_CONNECTED" for e in c.find("connection_state", after=mark)), c.describe()

    # Data read from a polled socket.
    alice.request("publish_data", text="read by a polling shard", timeout=10)
    bob.wait_for("data_received", text="read by a polling shard", timeout=10)

    # Media: the shard wakes for each datagram again, and the tone is decoded.
    alice.request("publish_audio", name="tone", freq=FREQ, timeout=20)
    bob.wait_for("track_subscribed", participant="alice", kind="audio", timeout=20)
    assert_tone(bob.request("analyze_audio", participant="alice", seconds=1.0, timeout=30), FREQ, "bob <- alice")
    assert wait_until(lambda: polling(media) == 0, timeout=10), "the shard still polls with media flowing"
