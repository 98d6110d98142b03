"""LiveKit Agents with the real `livekit-agents` framework (Python): a worker registers on
`/agent`, rooms bring its agent, the user (the Python `livekit` SDK) hears the agent's tone and
gets its RPC answers; named agents come only when dispatched (Twirp or token)."""

from __future__ import annotations

import time

from agenthelpers import wait_agent, whoami
from mediahelpers import assert_tone


def test_agent_joins_a_new_room_with_tone_and_rpc(agents):
    agents.worker("auto")
    t0 = time.monotonic()
    user = agents.python_client("alice", "auto-room")
    user.wait_for("connected", timeout=20)
    agent = wait_agent(user, timeout=20)
    took = time.monotonic() - t0
    assert took < 10, f"the agent took {took:.1f}s to join"
    who = whoami(user, agent["participant"])
    assert who["worker"] == "auto"
    assert who["room"] == "auto-room"
    assert who["caller"] == "alice"
    assert who["identity"] == agent["participant"]
    # The agent hears itself as an AGENT too, and the server's records say so.
    assert who["kind"] == 4, who
    people = agents.ok("list_participants", room="auto-room")["participants"]
    me = [p for p in people if p["identity"] == agent["participant"]]
    assert me and me[0]["kind"] == "AGENT", people
    assert me[0]["attributes"].get("lk.agent_name") == "", me
    # Its tone and its echo.
    res = user.request("analyze_audio", participant=agent["participant"], seconds=1.0, timeout=40)
    assert_tone(res, 660, "the agent's tone")
    echo = user.request("perform_rpc", destination=agent["participant"], method="echo", payload="hello agent", response_timeout=10)
    assert echo.get("ok") and echo["response"] == "hello agent", echo
    # The dispatch and its running job, as AgentDispatchService lists them.
    ds = agents.ok("list_dispatch", room="auto-room")["dispatches"]
    assert len(ds) == 1 and ds[0]["agent_name"] == "", ds
    jobs = ds[0]["jobs"]
    assert len(jobs) == 1 and jobs[0]["status"] == "JS_RUNNING", jobs
    assert jobs[0]["participant_identity"] == agent["participant"], jobs
    assert jobs[0]["id"] == who["job_id"]
