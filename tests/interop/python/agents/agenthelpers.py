"""Harness for the LiveKit Agents tests: the media tests' namespace and server (own namespace
prefix `lkagent`), agent workers run by the real `livekit-agents` framework inside it, and
AgentDispatchService / RoomService calls made by the `livekit-api` SDK from inside it.

The workers run from their own venv (`.venv-agents`, made by scripts/test from
agents/requirements.txt): `livekit-agents` pins an older `livekit` SDK than the one the other
tests use, so the user side of every test is the suite's pinned SDK and the agent side the
framework's. Set LKR_AGENTS_PYTHON to use another interpreter.
"""

from __future__ import annotations

import json
import os
import time
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "media"))

import mediahelpers  # noqa: E402
from mediahelpers import HTTP_URL, WS_URL, API_KEY, API_SECRET, ClientProc, MediaEnv, NetNs, python_bin  # noqa: E402,F401

REPO = HERE.parents[3]
WORKER = HERE / "agent_worker.py"
ADMIN = HERE / "agent_admin.py"
NODE_WORKER = REPO / "tests" / "interop" / "node" / "agents" / "agent_worker.mjs"


def agents_python() -> str:
    return os.environ.get("LKR_AGENTS_PYTHON") or str(REPO / ".venv-agents" / "bin" / "python")


def agents_usable() -> Optional[str]:
    py = agents_python()
    if not os.path.exists(py):
        return f"{py} is missing: scripts/test makes it (python3 -m venv .venv-agents; pip install -r {HERE / 'requirements.txt'})"
    return None


class AgentEnv(MediaEnv):
    """A MediaEnv in a namespace of our own prefix, with agent workers as its clients."""

    def __init__(self, extra_args: Optional[List[str]] = None) -> None:
        super().__init__(extra_args=extra_args)
        self.ns = NetNs(prefix="lkagent")

    def _worker_env(
        self, label: str, agent_name: str, tone_hz: int, job_type: str = "room", on_request: str = "accept"
    ) -> Dict[str, str]:
        env = self._client_env()
        env.update(
            {
                "JOB_TYPE": job_type,
                "ON_REQUEST": on_request,
                "AGENT_NAME": agent_name,
                "WORKER_LABEL": label,
                "TONE_HZ": str(tone_hz),
                # Offline: no telemetry export, no hosted inference, nothing but the server.
                "LIVEKIT_URL": WS_URL,
                "LIVEKIT_API_KEY": API_KEY,
                "LIVEKIT_API_SECRET": API_SECRET,
                "OTEL_SDK_DISABLED": "true",
                "HF_HUB_OFFLINE": "1",
                "NO_COLOR": "1",
            }
        )
        return env

    def worker(
        self, label: str, agent_name: str = "", tone_hz: int = 660, job_type: str = "room", on_request: str = "accept"
    ) -> ClientProc:
        """A Python agent worker (`agent_worker.py start`), registered when this returns."""
        argv = self.ns.argv([agents_python(), str(WORKER), "start", "--url", WS_URL, "--api-key", API_KEY, "--api-secret", API_SECRET])
        return self._start_worker(label, argv, self._worker_env(label, agent_name, tone_hz, job_type, on_request))

    def node_worker(self, label: str, agent_name: str = "", tone_hz: int = 660) -> ClientProc:
        node = mediahelpers.node_bin()
        if node is None:
            raise AssertionError("node is not installed")
        argv = self.ns.argv([node, str(NODE_WORKER), "start"])
        return self._start_worker(label, argv, self._worker_env(label, agent_name, tone_hz))

    def _start_worker(self, label: str, argv: List[str], env: Dict[str, str]) -> ClientProc:
        n = next(self._seq)
        c = ClientProc(f"worker:{label}", argv, self.dir / f"worker-{n}-{label}.stderr", env=env)
        self.clients.append(c)
        c.wait_for("registered", timeout=60)
        return c

    def admin(self, op: str, timeout: float = 30, **args: Any) -> Dict[str, Any]:
        """One agent_admin.py operation inside the namespace (see that file)."""
        cp = mediahelpers._run(
            self.ns.argv([python_bin(), str(ADMIN), op, HTTP_URL, API_KEY, API_SECRET, json.dumps(args)]),
            timeout=timeout,
            check=False,
        )
        try:
            return json.loads(cp.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"agent_admin {op} printed no JSON: rc={cp.returncode} {cp.stdout!r} {cp.stderr[-2000:]!r}")

    def ok(self, op: str, **args: Any) -> Dict[str, Any]:
        res = self.admin(op, **args)
        assert res.get("ok"), f"{op} {args} failed: {res}\n{self.server_log_tail(4000)}"
        return res["result"]


def kill_worker(w: ClientProc) -> None:
    """SIGKILL the worker's whole process group: its connection drops without a goodbye."""
    try:
        os.killpg(w.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    w.proc.wait(timeout=10)


def whoami(user: ClientProc, agent_identity: str) -> Dict[str, Any]:
    """The agent's own account of itself, over RPC from `user`."""
    res = user.request("perform_rpc", destination=agent_identity, method="whoami", payload="?", response_timeout=10, timeout=30)
    assert res.get("ok"), f"whoami RPC to {agent_identity} failed: {res}"
    return json.loads(res["response"])


def wait_agent(user: ClientProc, timeout: float = 20, exclude: tuple = ()) -> Dict[str, Any]:
    """The first agent participant `user` saw join (its participant_connected event, whose
    `kind` is the SDK's participant kind), other than the identities in `exclude`, once its
    tone is subscribed."""

    def found():
        for e in user.find("participant_connected"):
            if e.get("kind") == "AGENT" and e.get("participant") not in exclude:
                return e
        return None

    t0 = time.monotonic()
    e = mediahelpers.wait_until(found, timeout, interval=0.1)
    assert e, f"no agent joined within {timeout}s\n{user.describe()}"
    # Ready: the agent registers its RPC methods, then publishes its tone (see
    # agent_worker.py); a request sent before its connection is up would be lost.
    left = max(1.0, timeout - (time.monotonic() - t0))
    user.wait_for("track_subscribed", participant=e["participant"], name="agent-tone", timeout=left)
    return e


def agent_env_with(extra_args=None) -> AgentEnv:
    """A started AgentEnv whose server gets `extra_args`, for a module's own fixture."""
    if os.geteuid() != 0:
        pytest.skip("these tests need root: they create a network namespace")
    why = mediahelpers.netns_usable() or agents_usable()
    if why:
        pytest.fail(why, pytrace=False)
    env = AgentEnv(extra_args=extra_args)
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the agents environment: {e}", pytrace=False)
    return env
