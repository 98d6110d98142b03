"""Room presets (`room.room_configurations`): a token's `roomPreset` (the Python `livekit-api`
SDK's `with_room_preset`) or CreateRoom's `room_preset` names a configured room
configuration, and the room takes from it what the request leaves unset: its participant
limit, timeouts, metadata and agents (a real `livekit-agents` worker is dispatched by the
preset). A preset nobody configured is refused with LiveKit's invalid_argument, and a join
that names one creates nothing."""

from __future__ import annotations

import pytest

from agenthelpers import API_KEY, API_SECRET, agent_env_with, wait_agent, whoami
from mediahelpers import MediaEnv

CONFIG = """room:
  room_configurations:
    duo:
      max_participants: 2
      empty_timeout: 77
      departure_timeout: 9
      metadata: preset-duo
      agents: [{agent_name: preset-helper, metadata: from preset}]
"""


@pytest.fixture(scope="module")
def agent_env():
    env = agent_env_with(["--config-body", CONFIG])
    try:
        yield env
    finally:
        env.cleanup()


def preset_token(identity: str, room: str, preset: str) -> str:
    from livekit import api

    return (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_room_preset(preset)
        .to_jwt()
    )


def test_a_token_preset_creates_the_room_with_its_configuration(agents):
    agents.worker("preset-helper", agent_name="preset-helper", tone_hz=880)
    room = "preset-room"
    alice = agents.python_client("alice", room, token=preset_token("alice", room, "duo"))
    alice.wait_for("connected", timeout=20)
    # The preset's agent is dispatched to the room with the preset's metadata.
    helper = wait_agent(alice, timeout=20)
    who = whoami(alice, helper["participant"])
    assert (who["worker"], who["metadata"], who["room"]) == ("preset-helper", "from preset", room), who
    # The room's record, as the client and the API see it.
    state = alice.request("state")
    assert state["room_metadata"] == "preset-duo", state
    rooms = agents.ok("list_rooms", names=[room])["rooms"]
    assert [(r["max_participants"], r["empty_timeout"], r["departure_timeout"], r["metadata"]) for r in rooms] == [
        (2, 77, 9, "preset-duo")
    ], rooms
    # Two participants at most (the agent does not count): bob joins, carol is turned away.
    bob = agents.python_client("bob", room)
    bob.wait_for("connected", timeout=20)
    carol = agents.python_client("carol", room)
    err = carol.wait_for("connect_error", timeout=30)
    assert "403" in err["error"], err
    assert not carol.find("connected"), carol.describe()
    why = agents.ok("join_refused", token=MediaEnv.token("carol", room))
    assert why["status"] == 403 and "maximum of 2 participants" in why["body"], why


def test_create_room_takes_a_preset_under_its_own_settings(agents):
    r = agents.ok("create_room", name="preset-api-room", room_preset="duo", metadata="explicit")
    # The request's own metadata wins; what it left unset comes from the preset.
    assert (r["max_participants"], r["empty_timeout"], r["departure_timeout"], r["metadata"]) == (
        2,
        77,
        9,
        "explicit",
    ), r


def test_an_unknown_preset_is_refused(agents):
    res = agents.admin("create_room", name="nowhere", room_preset="trio")
    assert not res.get("ok") and res.get("code") == "invalid_argument", res
    assert 'unknown room configuration "trio"' in res["message"], res
    # A join whose token names it creates no room.
    tok = preset_token("dave", "nowhere-2", "trio")
    dave = agents.python_client("dave", "nowhere-2", token=tok)
    err = dave.wait_for("connect_error", timeout=30)
    assert "400" in err["error"], err
    why = agents.ok("join_refused", token=tok)
    assert why["status"] == 400 and 'unknown room configuration "trio"' in why["body"], why
    assert agents.ok("list_rooms", names=["nowhere", "nowhere-2"])["rooms"] == []
