"""LiveKit Agents with the real `livekit-agents` framework (Python): a worker registers on
`/agent`, rooms bring its agent, the user (the Python `livekit` SDK) hears the agent's tone and
gets its RPC answers; named agents come only when dispatched (Twirp or token)."""

from __future__ import annotations

import time

from agenthelpers import API_KEY, API_SECRET, wait_agent, whoami
from mediahelpers import assert_tone


def test_agent_joins_a_new_room_with_tone_and_rpc(agents):
    agents.worker("auto")
    t0 = time.monotonic()
    user = agents.python_client("alice", "auto-room")
    user.wait_for("connected", timeout=20)
    agent = wait_agent(user, timeout=20)
    took = time.monotonic() - t0
    print(f"agent joined and published {took:.2f}s after the user started connecting")
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


def test_named_agent_comes_only_when_dispatched_by_twirp(agents):
    agents.worker("auto2")
    agents.worker("helper", agent_name="helper", tone_hz=880)
    user = agents.python_client("bob", "named-room")
    user.wait_for("connected", timeout=20)
    auto = wait_agent(user, timeout=20)
    assert whoami(user, auto["participant"])["worker"] == "auto2"
    # The room started with the automatic dispatch alone: offers are made when a room
    # starts, before its agent joins, so by now a helper job would be listed.
    ds = agents.ok("list_dispatch", room="named-room")["dispatches"]
    assert [d["agent_name"] for d in ds] == [""], ds
    agent_ids = [p["identity"] for p in agents.ok("list_participants", room="named-room")["participants"] if p["kind"] == "AGENT"]
    assert agent_ids == [auto["participant"]], agent_ids
    # Dispatched by name: the helper comes, with the dispatch's metadata.
    d = agents.ok("create_dispatch", room="named-room", agent_name="helper", metadata="m1")
    assert d["id"].startswith("AD_") and d["agent_name"] == "helper" and d["metadata"] == "m1", d
    helper = wait_agent(user, timeout=20, exclude=(auto["participant"],))
    who = whoami(user, helper["participant"])
    assert (who["worker"], who["metadata"], who["room"]) == ("helper", "m1", "named-room"), who
    assert_tone(user.request("analyze_audio", participant=helper["participant"], seconds=1.0, timeout=40), 880, "the helper's tone")
    listed = {x["id"]: x for x in agents.ok("list_dispatch", room="named-room")["dispatches"]}
    assert set(listed) == {ds[0]["id"], d["id"]}, listed
    assert [j["status"] for j in listed[d["id"]]["jobs"]] == ["JS_RUNNING"], listed
    # Deleting the dispatch terminates its job: the helper leaves, the other agent stays.
    gone = agents.ok("delete_dispatch", room="named-room", dispatch_id=d["id"])
    assert gone["id"] == d["id"] and gone["deleted_at"] > 0, gone
    user.wait_for("participant_disconnected", participant=helper["participant"], timeout=20)
    assert [x["id"] for x in agents.ok("list_dispatch", room="named-room")["dispatches"]] == [ds[0]["id"]]
    assert whoami(user, auto["participant"])["worker"] == "auto2"


def test_named_agent_comes_by_token_room_config(agents):
    from livekit import api

    agents.worker("helper2", agent_name="helper2", tone_hz=880)
    tok = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity("carol")
        .with_name("carol")
        .with_grants(api.VideoGrants(room_join=True, room="token-room"))
        .with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="helper2", metadata="from token")]))
        .to_jwt()
    )
    user = agents.python_client("carol", "token-room", token=tok)
    user.wait_for("connected", timeout=20)
    helper = wait_agent(user, timeout=20)
    who = whoami(user, helper["participant"])
    assert (who["worker"], who["metadata"]) == ("helper2", "from token"), who
    # The token named its agents: no automatic dispatch in this room.
    ds = agents.ok("list_dispatch", room="token-room")["dispatches"]
    assert [(x["agent_name"], x["metadata"]) for x in ds] == [("helper2", "from token")], ds


def test_publisher_worker_gets_one_job_per_publisher(agents):
    from livekit import api

    agents.worker("pub-worker", agent_name="per-publisher", job_type="publisher")
    tok = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity("frank")
        .with_grants(api.VideoGrants(room_join=True, room="pub-room"))
        .with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="per-publisher", metadata="pp")]))
        .to_jwt()
    )
    user = agents.python_client("frank", "pub-room", token=tok)
    user.wait_for("connected", timeout=20)
    # No job before anyone publishes: a publisher worker's job is for a publishing participant.
    ds = agents.ok("list_dispatch", room="pub-room")["dispatches"]
    assert len(ds) == 1 and ds[0]["jobs"] == [], ds
    user.request("publish_audio", name="tone", freq=440)
    agent = wait_agent(user, timeout=25)
    who = whoami(user, agent["participant"])
    assert (who["worker"], who["for_participant"], who["metadata"]) == ("pub-worker", "frank", "pp"), who
    assert who["job_type"] == 1, who  # JT_PUBLISHER
    jobs = agents.ok("list_dispatch", room="pub-room")["dispatches"][0]["jobs"]
    assert [(j["type"], j["status"]) for j in jobs] == [("JT_PUBLISHER", "JS_RUNNING")], jobs
