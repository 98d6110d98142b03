"""LiveKit Agents: two workers share the jobs, a worker killed mid-job is noticed and the next
dispatch goes to the other, and bad input (no agent grant, malformed worker messages, Twirp
calls for what does not exist) gets LiveKit's answers without disturbing the other workers."""

from __future__ import annotations

import json
import os
import signal
import time

import mediahelpers
from agenthelpers import API_KEY, API_SECRET, kill_worker, wait_agent, whoami


def _dispatch_and_ask(agents, room: str, agent_name: str, user_name: str):
    """A user in `room`, a dispatch of `agent_name` there, and the agent's whoami."""
    user = agents.python_client(user_name, room)
    user.wait_for("connected", timeout=20)
    agents.ok("create_dispatch", room=room, agent_name=agent_name)
    agent = wait_agent(user, timeout=25)
    return user, agent, whoami(user, agent["participant"])


def test_two_workers_share_jobs(agents):
    agents.worker("share-a", agent_name="share")
    agents.worker("share-b", agent_name="share")
    seen = []
    for i in range(2):
        _, _, who = _dispatch_and_ask(agents, f"share-room-{i}", "share", f"sharer{i}")
        seen.append(who["worker"])
    assert sorted(seen) == ["share-a", "share-b"], f"both jobs went to the same worker: {seen}"


def test_worker_killed_mid_job_is_noticed(agents):
    workers = {"kill-a": agents.worker("kill-a", agent_name="kill"), "kill-b": agents.worker("kill-b", agent_name="kill")}
    _, agent, who = _dispatch_and_ask(agents, "kill-room-1", "kill", "victim-user")
    doomed = who["worker"]
    survivor = next(w for w in workers if w != doomed)
    kill_worker(workers[doomed])
    t0 = time.monotonic()

    # The server notices: the dead worker's job is marked failed.
    def job_failed():
        ds = agents.ok("list_dispatch", room="kill-room-1")["dispatches"]
        jobs = [j for d in ds if d["agent_name"] == "kill" for j in d["jobs"]]
        return jobs and jobs[0]["status"] == "JS_FAILED" and jobs[0]

    job = mediahelpers.wait_until(job_failed, 20, interval=0.3)
    assert job, f"the killed worker's job is still listed as running: {agents.ok('list_dispatch', room='kill-room-1')}"
    assert "gone" in job["error"], job
    noticed = time.monotonic() - t0
    print(f"killed worker's job marked failed after {noticed:.2f}s")
    assert noticed < 10, f"the worker's death was noticed after {noticed:.1f}s"
    # The next dispatch goes to the surviving worker (the dead one would never answer: a
    # dispatch offered to it would wait 10 s and then move on; this one is at once).
    user2, agent2, who2 = _dispatch_and_ask(agents, "kill-room-2", "kill", "next-user")
    assert who2["worker"] == survivor, who2


def test_worker_without_agent_grant_is_refused(agents):
    res = agents.ok("worker_refused", token_grants={"room_join": True, "room": "x"})
    assert res["status"] == 401, res
    assert "no permissions to access the room" in res["body"], res
    res = agents.ok("worker_refused", token="not.a.jwt")
    assert res["status"] == 401, res


def test_malformed_worker_messages_close_that_worker_only(agents):
    agents.worker("steady")
    cases = {
        "garbage": ["register", "garbage"],
        "json_garbage": ["json_register", "json_garbage"],
        "before register": ["availability_before_register"],
        "registers twice": ["register", "register"],
    }
    for name, frames in cases.items():
        got = agents.ok("bad_worker", frames=frames)["got"]
        assert got[-1]["answer"] == "closed", f"{name}: {got}"
        assert got[-1]["code"] == 1008, f"{name}: closed with {got[-1]}"
        if frames[0] in ("register", "json_register"):
            first = got[0]
            assert first["answer"] in ("register", "text"), f"{name}: {got}"
            if first["answer"] == "text":
                assert first["data"]["register"]["workerId"].startswith("AW_"), first
    # A ping is answered in kind.
    got = agents.ok("bad_worker", frames=["register", "ping"])["got"]
    assert [g["answer"] for g in got] == ["register", "pong"], got
    # The good worker still serves rooms.
    user = agents.python_client("after-bad", "after-bad-room")
    user.wait_for("connected", timeout=20)
    agent = wait_agent(user, timeout=25)
    assert whoami(user, agent["participant"])["worker"] == "steady"


def test_dispatch_service_errors(agents):
    def call(method, body, grants):
        return agents.ok("twirp_json", service="livekit.AgentDispatchService", method=method, body=body, grants=grants)

    admin = {"room_admin": True, "room": "nowhere"}
    for method, body in (
        ("ListDispatch", {"room": "nowhere"}),
        ("DeleteDispatch", {"room": "nowhere", "dispatchId": "AD_x"}),
    ):
        r = call(method, body, admin)
        assert r["status"] == 404, r
        assert json.loads(r["body"]) == {"code": "not_found", "msg": "requested room does not exist"}, r
    # No roomAdmin for that room.
    r = call("CreateDispatch", {"room": "nowhere", "agentName": "x"}, {"room_admin": True, "room": "elsewhere"})
    assert r["status"] == 401 and json.loads(r["body"])["code"] == "unauthenticated", r
    # An unknown dispatch in a room that exists.
    user = agents.python_client("errs", "errs-room")
    user.wait_for("connected", timeout=20)
    r = call("DeleteDispatch", {"room": "errs-room", "dispatchId": "AD_nope"}, {"room_admin": True, "room": "errs-room"})
    assert r["status"] == 404 and json.loads(r["body"]) == {"code": "not_found", "msg": "dispatch ID not found"}, r
    # An unknown method.
    r = call("Nope", {}, {"room_admin": True, "room": "errs-room"})
    assert r["status"] == 404 and json.loads(r["body"])["code"] == "bad_route", r
    # A dispatch for an agent no worker has registered is kept, with no job (as LiveKit).
    r = call("CreateDispatch", {"room": "errs-room", "agentName": "nobody", "metadata": "m"}, {"room_admin": True, "room": "errs-room"})
    assert r["status"] == 200, r
    d = json.loads(r["body"])
    assert d["agentName"] == "nobody" and d["id"].startswith("AD_"), d
    listed = agents.ok("list_dispatch", room="errs-room")["dispatches"]
    nobody = [x for x in listed if x["agent_name"] == "nobody"]
    assert len(nobody) == 1 and nobody[0]["jobs"] == [], listed


def test_worker_that_stops_answering_is_forgotten(agents):
    stalled = agents.worker("stall-a", agent_name="stall")
    agents.worker("stall-b", agent_name="stall")
    first_id = stalled.find("registered")[0]["worker_id"]
    os.killpg(stalled.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        gone = mediahelpers.wait_until(lambda: "the worker stopped answering" in agents.server_log(), 40, interval=0.3)
        assert gone, "the stopped worker was never given up on\n" + agents.server_log_tail(4000)
        took = time.monotonic() - t0
        print(f"stopped worker given up on after {took:.2f}s")
        assert 10 < took < 25, f"given up on after {took:.1f}s (the worker timeout is 15 s)"
        # Every new dispatch now goes to the worker that answers, at once.
        _, _, who = _dispatch_and_ask(agents, "stall-room", "stall", "stall-user")
        assert who["worker"] == "stall-b", who
    finally:
        os.killpg(stalled.proc.pid, signal.SIGCONT)
    # Woken up, the worker finds its connection closed and registers afresh.
    again = stalled.wait_for("registered", timeout=40, after=stalled.index_of(stalled.find("registered")[0]) + 1)
    assert again["worker_id"] != first_id, again


def test_room_with_only_its_agent_left_closes(agents):
    from livekit import api

    w = agents.worker("closer", agent_name="closer")
    tok = (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity("erin")
        .with_grants(api.VideoGrants(room_join=True, room="closing-room"))
        .with_room_config(api.RoomConfiguration(departure_timeout=1, agents=[api.RoomAgentDispatch(agent_name="closer")]))
        .to_jwt()
    )
    user = agents.python_client("erin", "closing-room", token=tok)
    user.wait_for("connected", timeout=20)
    agent = wait_agent(user, timeout=25)
    job_id = whoami(user, agent["participant"])["job_id"]
    user.close()
    # The agent does not keep the room open: it closes one second after the user left, the
    # agent is sent away and its job ends.
    w.wait_for("job_ended", job_id=job_id, timeout=20)
    rooms = mediahelpers.wait_until(
        lambda: "closing-room" not in [r["name"] for r in agents.twirp("ListRooms")["result"]["rooms"]], 10, interval=0.3
    )
    assert rooms, agents.twirp("ListRooms")


def test_declined_or_unanswered_offers_go_to_another_worker(agents):
    # Registered first, equally idle: each is asked before the taker.
    decliner = agents.worker("decliner", agent_name="picky", on_request="decline")
    agents.worker("taker", agent_name="picky")
    _, _, who = _dispatch_and_ask(agents, "picky-room", "picky", "picky-user")
    assert who["worker"] == "taker", who
    assert decliner.find("job_request", room="picky-room"), "the declining worker was never asked"

    slow = agents.worker("sloth", agent_name="patient", on_request="slow")
    agents.worker("prompt", agent_name="patient")
    t0 = time.monotonic()
    _, _, who = _dispatch_and_ask(agents, "patient-room", "patient", "patient-user")
    took = time.monotonic() - t0
    print(f"unanswered offer moved on; agent in after {took:.2f}s")
    assert who["worker"] == "prompt", who
    assert slow.find("job_request", room="patient-room"), "the slow worker was never asked"
    assert 10 <= took < 25, f"the offer moved on after {took:.1f}s (the availability timeout is 10 s)"


def test_a_job_rejected_for_good_is_not_offered_again(agents):
    refuser = agents.worker("refuser", agent_name="final", on_request="terminate")
    other = agents.worker("bystander", agent_name="final")
    user = agents.python_client("final-user", "final-room")
    user.wait_for("connected", timeout=20)
    agents.ok("create_dispatch", room="final-room", agent_name="final")

    def ended():
        ds = agents.ok("list_dispatch", room="final-room")["dispatches"]
        jobs = [j for d in ds if d["agent_name"] == "final" for j in d["jobs"]]
        return jobs and jobs[0]["status"] == "JS_SUCCESS" and jobs

    jobs = mediahelpers.wait_until(ended, 20, interval=0.3)
    assert jobs and len(jobs) == 1, agents.ok("list_dispatch", room="final-room")
    assert refuser.find("job_request", room="final-room")
    assert not other.find("job_request", room="final-room"), "a job rejected for good was offered again"
    people = agents.ok("list_participants", room="final-room")["participants"]
    assert [p["identity"] for p in people] == ["final-user"], people
