"""AgentDispatchService on a server whose rooms are not created on demand
(`room.auto_create: false`): a dispatch for a room that does not exist is LiveKit's
`not_found`; once the room is created, the dispatch brings the named agent."""

from __future__ import annotations

import json

import pytest

from agenthelpers import agent_env_with, wait_agent, whoami


@pytest.fixture(scope="module")
def agent_env():
    env = agent_env_with(["--config-body", "room:\n  auto_create: false\n"])
    try:
        yield env
    finally:
        env.cleanup()


def test_dispatch_to_a_room_that_does_not_exist(agents):
    agents.worker("strict", agent_name="strict")
    grants = {"room_admin": True, "room": "strict-room", "room_create": True}
    r = agents.ok(
        "twirp_json",
        service="livekit.AgentDispatchService",
        method="CreateDispatch",
        body={"room": "strict-room", "agentName": "strict"},
        grants=grants,
    )
    assert r["status"] == 404, r
    assert json.loads(r["body"]) == {"code": "not_found", "msg": "requested room does not exist"}, r
    # Through the SDK (protobuf) too.
    res = agents.admin("create_dispatch", room="strict-room", agent_name="strict")
    assert not res["ok"] and res["code"] == "not_found" and res["status"] == 404, res
    r = agents.ok("twirp_json", service="livekit.RoomService", method="CreateRoom", body={"name": "strict-room"}, grants=grants)
    assert r["status"] == 200, r
    user = agents.python_client("gina", "strict-room")
    user.wait_for("connected", timeout=20)
    d = agents.ok("create_dispatch", room="strict-room", agent_name="strict", metadata="now")
    agent = wait_agent(user, timeout=25)
    who = whoami(user, agent["participant"])
    assert (who["worker"], who["metadata"]) == ("strict", "now"), who
    assert [x["id"] for x in agents.ok("list_dispatch", room="strict-room")["dispatches"] if x["agent_name"] == "strict"] == [d["id"]]
