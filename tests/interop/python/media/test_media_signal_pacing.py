"""Signalling threads that wake on a schedule, with real clients: with
`rtc.idle_signal_pacing: 0.2`, two idle Python SDK participants, whose signal connections carry
nothing but their pings, make the node's signalling threads pace (`livekit_signal_pacing` 1:
one thread wakes every 50 ms and answers whatever pings arrived). For longer than the clients'
ping timeout the node stays pacing and neither client reconnects or disconnects (their pings are
answered); a third participant joins while it paces and is seen by the others, which ends
pacing at once (the metric 0); a data message gets through; once the room is quiet again for
a window the threads pace again; and a RoomService call made then is answered and ends pacing."""

from __future__ import annotations

import time

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, scrape_metrics, wait_until

METRICS_PORT = 18124
# LiveKit's clients are told a ping timeout of 15 s (JoinResponse.ping_timeout).
PING_TIMEOUT = 15


@pytest.fixture(scope="module")
def media_env():
    config = lkhelpers.prometheus_config(METRICS_PORT) + "rtc:\n  idle_signal_pacing: 0.2\n"
    env = media_env_with(["--config-body", config])
    try:
        yield env
    finally:
        env.cleanup()


def pacing(media: MediaEnv) -> float:
    return lkhelpers.metric_value(scrape_metrics(media, METRICS_PORT), "livekit_signal_pacing")


def test_idle_signal_connections_are_served_by_pacing_threads(media: MediaEnv):
    room = lkhelpers.unique("pace")
    alice = media.python_client("alice", room)
    alice.wait_for("connected", timeout=20)
    bob = media.python_client("bob", room)
    bob.wait_for("connected", timeout=20)
    alice.wait_for("participant_connected", participant="bob", timeout=10)

    assert wait_until(lambda: pacing(media) == 1, timeout=30), "the signalling threads never paced"
    # Longer than the ping timeout: a client whose pings went unanswered would reconnect, and
    # the server would drop a connection it heard nothing from.
    marks = (len(alice.events), len(bob.events))
    until = time.monotonic() + PING_TIMEOUT + 5
    while time.monotonic() < until:
        assert pacing(media) == 1, "pacing stopped with nothing but keepalives"
        time.sleep(1)
    for c, mark in zip((alice, bob), marks):
        for ev in ("reconnecting", "disconnected"):
            assert not c.find(ev, after=mark), c.describe()
        assert all(e["state"] == "CONN_CONNECTED" for e in c.find("connection_state", after=mark)), c.describe()

    # A join while the threads pace: its request is served, the others hear of it, and
    # pacing ends.
    carol = media.python_client("carol", room)
    carol.wait_for("connected", timeout=20)
    alice.wait_for("participant_connected", participant="carol", timeout=10)
    bob.wait_for("participant_connected", participant="carol", timeout=10)
    assert pacing(media) == 0, "a join did not end pacing"
    alice.request("publish_data", text="while the room was quiet", timeout=10)
    bob.wait_for("data_received", text="while the room was quiet", timeout=10)
    carol.wait_for("data_received", text="while the room was quiet", timeout=10)

    # Quiet again: pacing resumes.
    assert wait_until(lambda: pacing(media) == 1, timeout=30), "pacing never resumed"

    # An API request while the threads pace is answered (by the `livekit-api` SDK), and ends
    # pacing too.
    res = media.twirp("ListParticipants", room=room)
    assert res.get("ok"), f"ListParticipants failed: {res}"
    assert {p["identity"] for p in res["result"]["participants"]} == {"alice", "bob", "carol"}, res
    assert pacing(media) == 0, "an API request did not end pacing"
