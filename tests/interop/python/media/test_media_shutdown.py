"""Graceful shutdown: SIGTERM tells every participant to leave with SERVER_SHUTDOWN (the SDK
reports that reason), finishes every room (room_finished reaches the webhook receiver), and the
process exits within its bound; a second signal exits at once."""

from __future__ import annotations

import signal
import time

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import API_KEY, API_SECRET, PY_DIR, python_bin

RECEIVER = PY_DIR / "media" / "webhook_receiver.py"
PORT = 18111


def config(urls):
    lines = "\n".join(f"    - {u}" for u in urls)
    return f"webhook:\n  api_key: {API_KEY}\n  urls:\n{lines}\n"


@pytest.fixture
def env_factory():
    envs = []

    def make(extra):
        env = media_env_with(extra)
        envs.append(env)
        return env

    yield make
    for e in envs:
        e.cleanup()


def wait_exit(proc, timeout: float):
    try:
        return proc.wait(timeout=timeout)
    except Exception:  # noqa: BLE001
        return None


def test_sigterm_sends_participants_away_and_finishes_rooms(env_factory):
    env = env_factory(["--config-body", config([f"http://127.0.0.1:{PORT}/"])])
    hooks = env.process(
        "webhooks",
        [python_bin(), str(RECEIVER), "--port", str(PORT), "--key", API_KEY, "--secret", API_SECRET],
    )
    hooks.wait_for("listening", timeout=15)
    room = lkhelpers.unique("bye")
    alice = env.python_client("alice", room, single_pc=True)
    bob = env.python_client("bob", room, single_pc=False)
    alice.wait_for("connected", timeout=20)
    bob.wait_for("connected", timeout=20)
    alice.request("publish_audio", name="tone", freq=440, timeout=20)

    started = time.monotonic()
    env.server.send_signal(signal.SIGTERM)
    for c in (alice, bob):
        ev = c.wait_for("disconnected", timeout=10)
        assert ev["reason_name"] == "SERVER_SHUTDOWN", ev
    hooks.wait_for("webhook", name="room_finished", room=room, timeout=10)
    rc = wait_exit(env.server, 15)
    took = time.monotonic() - started
    assert rc == 0, f"exit code {rc}\n{env.server_log_tail()}"
    assert took < 15, f"shutdown took {took:.1f}s"
    log = env.server_log()
    assert "shutdown complete" in log, env.server_log_tail()


def test_a_second_signal_exits_at_once(env_factory):
    # A receiver that never answers keeps the graceful shutdown waiting on its delivery.
    env = env_factory(["--config-body", config([f"http://127.0.0.1:{PORT}/"])])
    stall = env.process(
        "stalled",
        [python_bin(), str(RECEIVER), "--port", str(PORT), "--key", API_KEY, "--secret", API_SECRET, "--stall"],
    )
    stall.wait_for("listening", timeout=15)
    alice = env.python_client("alice", lkhelpers.unique("stuck"), single_pc=True)
    alice.wait_for("connected", timeout=20)
    stall.wait_for("stalled_request", timeout=10)

    env.server.send_signal(signal.SIGTERM)
    alice.wait_for("disconnected", timeout=10)
    assert env.server.poll() is None, "still delivering webhooks"
    second = time.monotonic()
    env.server.send_signal(signal.SIGTERM)
    rc = wait_exit(env.server, 5)
    assert rc is not None, "the second signal did not end the process"
    assert time.monotonic() - second < 3
    assert "second signal" in env.server_log(), env.server_log_tail()
