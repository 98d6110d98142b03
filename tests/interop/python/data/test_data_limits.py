"""limit.max_metadata_size / limit.max_attributes_size (server started with a config body) as seen
through the real Python SDK and `livekit-api`: a participant's own update over a limit is
answered request_response LIMIT_EXCEEDED and applied nowhere; UpdateParticipant and
UpdateRoomMetadata over a limit are invalid_argument; values at the limit are accepted.
"""

from __future__ import annotations

import os

import pytest

import lkhelpers
import mediahelpers
from datahelpers import answered_update, participants, sdk_error, twirp, twirp_ok, wait_all_see_each_other
from mediahelpers import MediaEnv

MAX_METADATA = 1000
MAX_ATTRIBUTES = 600


class LimitedEnv(MediaEnv):
    def server_argv(self):
        return super().server_argv() + [
            "--config-body",
            f"limit:\n  max_metadata_size: {MAX_METADATA}\n  max_attributes_size: {MAX_ATTRIBUTES}\n",
        ]


@pytest.fixture(scope="module")
def media_env():
    if os.geteuid() != 0:
        pytest.skip("data tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    env = LimitedEnv()
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


def _limit_exceeded(c, cmd, field, value):
    res, results = answered_update(c, cmd, field, lambda i: value)
    assert res is not None, f"{cmd} over the limit: no request_response reached the SDK in {len(results)} tries: {results}"
    why = sdk_error(res).replace("_", "").replace(" ", "").lower()
    assert "limitexceeded" in why, f"{cmd} over the limit was not refused as LIMIT_EXCEEDED: {res}"
    return res


def test_metadata_and_attribute_limits(media, single_pc):
    room = lkhelpers.unique("limits")
    alice = media.python_client(
        "alice", room, single_pc=single_pc, token=media.token("alice", room, can_update_own_metadata=True), max_seconds=120
    )
    bob = media.python_client("bob", room, single_pc=single_pc, max_seconds=120)
    wait_all_see_each_other([alice, bob])

    at_limit = "m" * MAX_METADATA
    over = "o" * (MAX_METADATA + 1)
    alice.start("set_metadata", metadata=at_limit)
    ev = bob.wait_for("participant_metadata_changed", participant="alice", timeout=10)
    assert ev["new"] == at_limit, "metadata of exactly limit.max_metadata_size bytes was not applied"

    res = _limit_exceeded(alice, "set_metadata", "metadata", over)
    assert res["local"]["metadata"] == at_limit, res

    # attributes: key + value bytes summed
    attrs_at = {"k": "v" * (MAX_ATTRIBUTES - 1)}
    attrs_over = {"k": "v" * MAX_ATTRIBUTES}
    alice.start("set_attributes", attributes=attrs_at)
    ev = bob.wait_for("participant_attributes_changed", participant="alice", timeout=10)
    assert ev["attributes"] == attrs_at, ev
    res = _limit_exceeded(alice, "set_attributes", "attributes", attrs_over)
    assert res["local"]["attributes"] == attrs_at, res

    # the API: over the limit is invalid_argument; nothing changes
    for args in ({"metadata": over}, {"attributes": {"x": "y" * MAX_ATTRIBUTES}}):
        bad = twirp(media, "UpdateParticipant", room=room, identity="bob", **args)
        assert not bad.get("ok") and (bad.get("code"), bad.get("status")) == ("invalid_argument", 400), (args.keys(), bad)
    bad = twirp(media, "UpdateRoomMetadata", room=room, metadata=over)
    assert not bad.get("ok") and (bad.get("code"), bad.get("status")) == ("invalid_argument", 400), bad

    # at the limit the API is fine, and the clients see it
    twirp_ok(media, "UpdateRoomMetadata", room=room, metadata=at_limit)
    for rx in (alice, bob):
        rx.wait_for("room_metadata_changed", new=at_limit, timeout=10)
    twirp_ok(media, "UpdateParticipant", room=room, identity="bob", metadata="fine")
    alice.wait_for("participant_metadata_changed", participant="bob", new="fine", timeout=10)

    # nothing over the limit was ever applied or broadcast
    for rx in (alice, bob):
        assert not rx.find("participant_metadata_changed", new=over), rx.describe()
        assert not rx.find("room_metadata_changed", new=over), rx.describe()
        assert not rx.find("participant_attributes_changed", attributes=attrs_over), rx.describe()
    p = participants(media, room)
    assert p["alice"]["metadata"] == at_limit and p["alice"]["attributes"] == attrs_at, p["alice"]
    assert p["bob"]["metadata"] == "fine" and p["bob"]["attributes"] == {}, p["bob"]
