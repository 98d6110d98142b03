"""Participant and room state through the real Python SDK (spec §2.8 update_metadata, §2.9
ParticipantUpdate / room_update, §4.2 UpdateParticipant / UpdateRoomMetadata):

- `set_metadata` / `set_attributes` / `set_name` with `canUpdateOwnMetadata` are seen by the
  others (participant_*_changed), by the participant itself, and by Twirp ListParticipants;
- the server answers every update_metadata with a request_response (spec §2.8; the Go server
  sends reason OK on success, NOT_ALLOWED without the grant): the Rust SDK under the Python one
  waits up to 5 s for it. The Python SDK's `set_*` coroutines never raise: the outcome is in
  the FFI callback ("request error: NotAllowed - ...", or "engine: signal failure: request
  timeout"), which the test client reports as `ffi_error`;
- UpdateParticipant from the API is seen by the participant itself and by the others, and a
  permission granted that way takes effect;
- removing canPublish unpublishes the participant's tracks, removing canPublishData stops its data;
- UpdateRoomMetadata fires room_metadata_changed on every client, and a later joiner starts
  with it.
"""

from __future__ import annotations

import lkhelpers
from datahelpers import answered_update, assert_none, join, participants, sdk_error, twirp_ok, wait_all_see_each_other

ALL_PERMS = dict(can_subscribe=True, can_publish=True, can_publish_data=True)


def _refused(c, cmd, field, value):
    """`cmd` is refused by the server with NOT_ALLOWED (retrying past the SDK's lost answers)."""
    res, results = answered_update(c, cmd, field, lambda i: value)
    assert res is not None, (
        f"{cmd} without canUpdateOwnMetadata: no request_response NOT_ALLOWED reached the SDK in "
        f"{len(results)} tries (each timed out after 5 s): {results}"
    )
    why = sdk_error(res)
    assert "notallowed" in why.replace("_", "").replace(" ", "").lower(), f"{cmd} was not refused as NOT_ALLOWED: {res}"
    return res


def test_set_metadata_attributes_name(media, single_pc):
    room = lkhelpers.unique("meta")
    alice = media.python_client(
        "alice", room, single_pc=single_pc, token=media.token("alice", room, can_update_own_metadata=True), max_seconds=120
    )
    bob = media.python_client("bob", room, single_pc=single_pc, max_seconds=120)
    wait_all_see_each_other([alice, bob])

    # (whether the SDK call itself reports success is test_update_metadata_is_answered's business)
    alice.start("set_metadata", metadata='{"mood": "happy"}')
    ev = bob.wait_for("participant_metadata_changed", participant="alice", timeout=10)
    assert (ev["new"], ev["local"]) == ('{"mood": "happy"}', False), ev
    own = alice.wait_for("participant_metadata_changed", participant="alice", timeout=10)
    assert own["local"] is True and own["new"] == '{"mood": "happy"}', own

    alice.start("set_attributes", attributes={"role": "speaker", "seat": "3"})
    ev = bob.wait_for("participant_attributes_changed", participant="alice", timeout=10)
    assert ev["attributes"] == {"role": "speaker", "seat": "3"}, ev
    assert ev["changed"] == {"role": "speaker", "seat": "3"}, ev
    alice.wait_for("participant_attributes_changed", participant="alice", local=True, timeout=10)

    alice.start("set_name", name="Alice Liddell")
    ev = bob.wait_for("participant_name_changed", participant="alice", timeout=10)
    assert (ev["old"], ev["new"]) == ("alice", "Alice Liddell"), ev
    alice.wait_for("participant_name_changed", participant="alice", local=True, timeout=10)

    # an attribute set to "" is deleted; the others stay
    mark = len(bob.events)
    alice.start("set_attributes", attributes={"seat": ""})
    ev = bob.wait_for("participant_attributes_changed", participant="alice", after=mark, timeout=10)
    assert ev["attributes"] == {"role": "speaker"}, ev
    assert ev["changed"] == {"seat": ""}, ev

    # the server's view (Twirp) and both SDK views agree
    want = ('{"mood": "happy"}', "Alice Liddell", {"role": "speaker"})
    p = participants(media, room)["alice"]
    assert (p["metadata"], p["name"], p["attributes"]) == want, p
    assert p["permission"]["can_update_metadata"] is True, p
    seen = bob.request("state", timeout=10)["remote"]["alice"]
    assert (seen["metadata"], seen["name"], seen["attributes"]) == want, seen
    mine = alice.request("state", timeout=10)["local"]
    assert (mine["metadata"], mine["name"], mine["attributes"]) == want, mine

    # a late joiner gets the current state in its join response
    carol = media.python_client("carol", room, single_pc=single_pc, max_seconds=120)
    carol.wait_for("connected", timeout=20)
    seen = carol.request("state", timeout=10)["remote"]["alice"]
    assert (seen["metadata"], seen["name"], seen["attributes"]) == want, seen


def test_update_metadata_is_answered(media, single_pc):
    """update_metadata with the grant gets a request_response OK (Go: signalhandler /
    ParticipantImpl.UpdateMetadata); without it the Rust SDK's set_metadata / set_attributes /
    set_name end with "request timeout" after 5 s although the change was applied."""
    room = lkhelpers.unique("metaok")
    alice = media.python_client(
        "alice", room, single_pc=single_pc, token=media.token("alice", room, can_update_own_metadata=True), max_seconds=120
    )
    alice.wait_for("connected", timeout=20)
    res, results = answered_update(alice, "set_metadata", "metadata", lambda i: f"answered {i}")
    assert res is not None, (
        "the server applied update_metadata but never answered it with request_response OK: "
        f"every set_metadata ended in the SDK's 5 s timeout: {results}"
    )
    assert sdk_error(res) == "", f"set_metadata with canUpdateOwnMetadata failed: {res}"
    assert res["elapsed"] < 4, res
    # the change itself reaches the participant in a ParticipantUpdate (maybe just after the answer)
    value = f"answered {len(results) - 1}"
    alice.wait_for("participant_metadata_changed", participant="alice", local=True, new=value, timeout=10)


def test_set_metadata_without_permission_is_refused(media, single_pc):
    room = lkhelpers.unique("nometa")
    carol, bob = join(media, room, ["carol", "bob"], single_pc)

    for cmd, field, value in (
        ("set_metadata", "metadata", "sneaky"),
        ("set_name", "name", "Sneaky"),
        ("set_attributes", "attributes", {"sneaky": "yes"}),
    ):
        res = _refused(carol, cmd, field, value)
        loc = res["local"]
        assert (loc["metadata"], loc["name"], loc["attributes"]) == ("", "carol", {}), f"{cmd} changed local state: {res}"

    # an admin update afterwards goes through; nothing carol asked for was ever applied
    twirp_ok(media, "UpdateParticipant", room=room, identity="carol", metadata="set by admin")
    ev = bob.wait_for("participant_metadata_changed", participant="carol", timeout=10)
    assert ev["new"] == "set by admin", f"bob saw carol's refused metadata: {ev}"
    assert_none(bob, "participant_name_changed", participant="carol")
    assert_none(bob, "participant_attributes_changed", participant="carol")
    p = participants(media, room)["carol"]
    assert (p["metadata"], p["name"], p["attributes"]) == ("set by admin", "carol", {}), p
    assert p["permission"]["can_update_metadata"] is False, p


def test_update_participant_api_and_permissions(media, single_pc):
    room = lkhelpers.unique("upd")
    alice, bob = join(media, room, ["alice", "bob"], single_pc)

    info = twirp_ok(
        media, "UpdateParticipant", room=room, identity="bob",
        metadata="api metadata", name="Bob from API", attributes={"team": "blue"},
    )
    assert (info["identity"], info["metadata"], info["name"], info["attributes"]) == (
        "bob", "api metadata", "Bob from API", {"team": "blue"}
    ), info
    for rx, local in ((bob, True), (alice, False)):
        ev = rx.wait_for("participant_metadata_changed", participant="bob", timeout=10)
        assert (ev["new"], ev["local"]) == ("api metadata", local), ev
        ev = rx.wait_for("participant_name_changed", participant="bob", timeout=10)
        assert (ev["new"], ev["local"]) == ("Bob from API", local), ev
        ev = rx.wait_for("participant_attributes_changed", participant="bob", timeout=10)
        assert (ev["attributes"], ev["local"]) == ({"team": "blue"}, local), ev
    got = twirp_ok(media, "GetParticipant", room=room, identity="bob")
    assert (got["metadata"], got["name"], got["attributes"]) == ("api metadata", "Bob from API", {"team": "blue"}), got

    # bob cannot update himself yet; the API grants canUpdateMetadata; now he can
    _refused(bob, "set_metadata", "metadata", "self before grant")
    twirp_ok(media, "UpdateParticipant", room=room, identity="bob", permission={**ALL_PERMS, "can_update_metadata": True})
    ev = bob.wait_for("participant_permissions_changed", participant="bob", timeout=10)
    assert ev["local"] is True and ev["permission"]["can_update_metadata"] is True, ev
    alice.wait_for("participant_permissions_changed", participant="bob", local=False, timeout=10)
    bob.start("set_metadata", metadata="self after grant")
    alice.wait_for("participant_metadata_changed", participant="bob", new="self after grant", timeout=10)
    assert not alice.find("participant_metadata_changed", participant="bob", new="self before grant"), alice.describe()

    # UpdateRoomMetadata reaches every client; a later joiner starts with it
    r = twirp_ok(media, "UpdateRoomMetadata", room=room, metadata='{"topic": "weekly sync"}')
    assert (r["name"], r["metadata"]) == (room, '{"topic": "weekly sync"}'), r
    for rx in (alice, bob):
        ev = rx.wait_for("room_metadata_changed", timeout=10)
        assert ev["new"] == '{"topic": "weekly sync"}', ev
    carol = media.python_client("carol", room, single_pc=single_pc, max_seconds=120)
    carol.wait_for("connected", timeout=20)
    assert carol.request("state", timeout=10)["room_metadata"] == '{"topic": "weekly sync"}'
    # a second change fires again, with the old value
    twirp_ok(media, "UpdateRoomMetadata", room=room, metadata="second")
    for rx in (alice, bob, carol):
        ev = rx.wait_for("room_metadata_changed", new="second", timeout=10)
        assert ev["old"] == '{"topic": "weekly sync"}', ev


def test_revoke_publish_permissions(media, single_pc):
    room = lkhelpers.unique("perm")
    alice, bob = join(media, room, ["alice", "bob"], single_pc)

    tone = alice.request("publish_audio", name="tone", freq=440, timeout=20)
    bob.wait_for("track_subscribed", participant="alice", sid=tone["sid"], timeout=20)

    # removing canPublish unpublishes alice's track for everyone
    twirp_ok(media, "UpdateParticipant", room=room, identity="alice", permission={**ALL_PERMS, "can_publish": False})
    ev = alice.wait_for("participant_permissions_changed", participant="alice", timeout=10)
    assert ev["permission"]["can_publish"] is False, ev
    bob.wait_for("track_unpublished", participant="alice", sid=tone["sid"], timeout=10)
    p = participants(media, room)["alice"]
    assert p["tracks"] == [] and p["permission"]["can_publish"] is False, p
    # alice is still in the room
    assert_none(bob, "participant_disconnected", participant="alice")

    # removing canPublishData: alice's packets are dropped; given back, they flow again
    alice.request("publish_data", text="before revoke", topic="p", timeout=10)
    bob.wait_for("data_received", text="before revoke", timeout=10)
    twirp_ok(media, "UpdateParticipant", room=room, identity="alice", permission={**ALL_PERMS, "can_publish_data": False})
    ev = alice.wait_for("participant_permissions_changed", participant="alice", timeout=10,
                        after=alice.index_of(ev) + 1)
    assert ev["permission"]["can_publish_data"] is False, ev
    alice.request("publish_data", text="while revoked", topic="p", timeout=10)
    # the server has the packet before it handles the next Twirp call: the client sent it
    # over the already open data channel, the Twirp call comes from a new process
    twirp_ok(media, "UpdateParticipant", room=room, identity="alice", permission={**ALL_PERMS, "can_publish_data": True})
    alice.wait_for("participant_permissions_changed", participant="alice", timeout=10, after=alice.index_of(ev) + 1)
    alice.request("publish_data", text="after regrant", topic="p", timeout=10)
    bob.wait_for("data_received", text="after regrant", timeout=10)
    assert_none(bob, "data_received", text="while revoked")


def test_metadata_longer_than_a_websocket_frame(media, single_pc):
    """The server writes signal messages over 8 KiB as several WebSocket frames: a 30 000-byte
    metadata reaches the others whole, in the update and in a later joiner's join response."""
    room = lkhelpers.unique("bigmeta")
    alice = media.python_client(
        "alice", room, single_pc=single_pc, token=media.token("alice", room, can_update_own_metadata=True), max_seconds=120
    )
    bob = media.python_client("bob", room, single_pc=single_pc, max_seconds=120)
    wait_all_see_each_other([alice, bob])

    big = "".join(chr(ord("a") + (i * 7) % 26) for i in range(30_000))
    alice.start("set_metadata", metadata=big)
    ev = bob.wait_for("participant_metadata_changed", participant="alice", timeout=10)
    assert ev["new"] == big, f"bob got {len(ev['new'])} bytes, not the 30000 sent"

    carol = media.python_client("carol", room, single_pc=single_pc, max_seconds=120)
    carol.wait_for("connected", timeout=20)
    seen = carol.request("state", timeout=10)["remote"]["alice"]
    assert seen["metadata"] == big, f"carol's join response gave alice {len(seen['metadata'])} bytes of metadata"
