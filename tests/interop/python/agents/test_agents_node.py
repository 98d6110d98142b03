"""LiveKit Agents with the real `@livekit/agents` framework (Node): the basic case. A Node
worker registers on `/agent`; a user joining a room gets its agent, of kind AGENT, hears its
tone and gets its RPC answers."""

from __future__ import annotations

import time

import pytest

from agenthelpers import NODE_WORKER, wait_agent, whoami
from mediahelpers import assert_tone


def test_node_agent_joins_with_tone_and_rpc(agents):
    modules = NODE_WORKER.parent / "node_modules" / "@livekit" / "agents"
    if not modules.exists():
        pytest.fail(f"{modules} is missing: scripts/test installs it (npm ci in {NODE_WORKER.parent})", pytrace=False)
    agents.node_worker("node-auto", tone_hz=550)
    t0 = time.monotonic()
    user = agents.python_client("dave", "node-room")
    user.wait_for("connected", timeout=20)
    agent = wait_agent(user, timeout=30)
    took = time.monotonic() - t0
    print(f"Node agent joined and published {took:.2f}s after the user started connecting")
    assert took < 15, f"the Node agent took {took:.1f}s to join"
    who = whoami(user, agent["participant"])
    assert (who["worker"], who["room"], who["caller"]) == ("node-auto", "node-room", "dave"), who
    people = agents.ok("list_participants", room="node-room")["participants"]
    assert [p["kind"] for p in people if p["identity"] == agent["participant"]] == ["AGENT"], people
    assert_tone(user.request("analyze_audio", participant=agent["participant"], seconds=1.0, timeout=40), 550, "the Node agent's tone")
    echo = user.request("perform_rpc", destination=agent["participant"], method="echo", payload="hi node", response_timeout=10)
    assert echo.get("ok") and echo["response"] == "hi node", echo
