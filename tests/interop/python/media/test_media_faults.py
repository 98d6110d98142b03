"""Faults: a client killed with SIGKILL is removed and announced within the departure timeout;
a client whose network vanishes (the process frozen: no signal, no consent) is removed too, and
the others keep their media."""

from __future__ import annotations

import os
import signal
import time

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, assert_tone

DEPARTURE = 5
CONFIG = f"room:\n  departure_timeout: {DEPARTURE}\n"


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", CONFIG])
    try:
        yield env
    finally:
        env.cleanup()


def in_room(media: MediaEnv, room: str):
    r = media.twirp("ListParticipants", room=room)
    assert r.get("ok"), r
    return sorted(p["identity"] for p in r["result"].get("participants", []))


def test_a_killed_client_is_removed_within_the_departure_timeout(media: MediaEnv):
    room = lkhelpers.unique("kill")
    alice = media.python_client("alice", room)
    alice.wait_for("connected", timeout=20)
    bob = media.python_client("bob", room)
    bob.wait_for("connected", timeout=20)
    alice.wait_for("participant_connected", participant="bob", timeout=10)

    killed = time.monotonic()
    os.killpg(bob.proc.pid, signal.SIGKILL)
    gone = alice.wait_for("participant_disconnected", participant="bob", timeout=DEPARTURE + 10)
    took = time.monotonic() - killed
    assert took <= DEPARTURE + 3, f"announced after {took:.1f}s"
    assert in_room(media, room) == ["alice"]
    assert gone


def test_a_client_whose_network_vanishes_is_removed(media: MediaEnv):
    room = lkhelpers.unique("vanish")
    alice = media.python_client("alice", room)
    alice.wait_for("connected", timeout=20)
    tone = alice.request("publish_audio", name="tone", freq=440, timeout=20)
    bob = media.python_client("bob", room)
    carol = media.python_client("carol", room)
    for c in (bob, carol):
        c.wait_for("connected", timeout=20)
        c.wait_for("track_subscribed", participant="alice", sid=tone["sid"], timeout=20)

    # Bob's process stops: no signal pings, no ICE consent, no RTCP. Nothing is closed.
    frozen = time.monotonic()
    os.killpg(bob.proc.pid, signal.SIGSTOP)
    try:
        carol.wait_for("participant_disconnected", participant="bob", timeout=45)
        took = time.monotonic() - frozen
        # Consent expires after 30 s (RFC 7675), the signal ping timeout after 15 s.
        assert took <= 35, f"removed after {took:.1f}s"
        assert in_room(media, room) == ["alice", "carol"]
        # The others never noticed anything but bob leaving.
        assert_tone(carol.request("analyze_audio", participant="alice", seconds=0.5, timeout=20), 440, "carol")
        assert not alice.find("disconnected") and not carol.find("disconnected")
    finally:
        os.killpg(bob.proc.pid, signal.SIGCONT)
