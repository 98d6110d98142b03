"""Twirp RoomService against live media participants (calls made by the `livekit-api` SDK
from inside the namespace): ListParticipants shows their published tracks, RemoveParticipant
disconnects a real-time client with reason PARTICIPANT_REMOVED."""

from __future__ import annotations

import lkhelpers
from mediahelpers import MediaEnv, wait_until


def _participants(media: MediaEnv, room: str):
    res = media.twirp("ListParticipants", room=room)
    assert res.get("ok"), f"ListParticipants failed: {res}"
    return {p["identity"]: p for p in res["result"]["participants"]}


def test_list_participants_then_remove_participant(media: MediaEnv):
    room = lkhelpers.unique("admin")
    alice = media.python_client("alice", room)
    a_conn = alice.wait_for("connected", timeout=20)
    bob = media.python_client("bob", room)
    b_conn = bob.wait_for("connected", timeout=20)

    a_tone = alice.start("publish_audio", name="a-tone", freq=440)
    a_cam = alice.start("publish_video", name="a-cam", color=[200, 60, 90])
    b_tone = bob.start("publish_audio", name="b-tone", freq=600)
    a_tone, a_cam, b_tone = alice.result(a_tone, 20), alice.result(a_cam, 20), bob.result(b_tone, 20)
    # once the other side is subscribed, the server certainly has the tracks
    bob.wait_for("track_subscribed", participant="alice", kind="audio", timeout=20)
    bob.wait_for("track_subscribed", participant="alice", kind="video", timeout=20)
    alice.wait_for("track_subscribed", participant="bob", kind="audio", timeout=20)

    parts = _participants(media, room)
    assert set(parts) == {"alice", "bob"}, parts
    assert parts["alice"]["sid"] == a_conn["sid"] and parts["bob"]["sid"] == b_conn["sid"], parts
    assert all(p["sid"].startswith("PA_") for p in parts.values()), parts
    assert parts["alice"]["state"] == "ACTIVE" and parts["bob"]["state"] == "ACTIVE", parts

    a_tracks = {t["sid"]: t for t in parts["alice"]["tracks"]}
    assert set(a_tracks) == {a_tone["sid"], a_cam["sid"]}, parts["alice"]
    assert all(sid.startswith("TR_") for sid in a_tracks), a_tracks
    ta, tv = a_tracks[a_tone["sid"]], a_tracks[a_cam["sid"]]
    assert (ta["type"], ta["name"], ta["source"]) == ("AUDIO", "a-tone", "MICROPHONE"), ta
    assert (tv["type"], tv["name"], tv["source"]) == ("VIDEO", "a-cam", "CAMERA"), tv
    assert (tv["width"], tv["height"]) == (640, 480), tv
    b_tracks = parts["bob"]["tracks"]
    assert [(t["sid"], t["type"], t["name"]) for t in b_tracks] == [(b_tone["sid"], "AUDIO", "b-tone")], b_tracks

    res = media.twirp("RemoveParticipant", room=room, identity="alice")
    assert res.get("ok"), f"RemoveParticipant failed: {res}"

    gone = alice.wait_for("disconnected", timeout=15)
    assert gone["reason_name"] == "PARTICIPANT_REMOVED", gone
    bob.wait_for("participant_disconnected", participant="alice", timeout=15)
    bob.wait_for("track_unpublished", participant="alice", sid=a_tone["sid"], timeout=15)
    # the removed client ends on its own (it reports `closed` after the disconnect)
    alice.wait_for("closed", timeout=15)

    remaining = wait_until(lambda: set(_participants(media, room)) == {"bob"}, timeout=10, interval=0.3)
    assert remaining, f"alice still listed after RemoveParticipant: {_participants(media, room)}"
    assert not bob.find("disconnected"), "bob was disconnected too: " + bob.describe()


def test_an_admin_mutes_a_track_but_may_not_unmute_it_by_default(media: MediaEnv):
    """MutePublishedTrack mutes a real client's track; unmuting is refused as LiveKit refuses
    it unless `room.enable_remote_unmute` is set (failed_precondition, HTTP 412)."""
    room = lkhelpers.unique("rmute")
    pub = media.python_client("pub", room)
    pub.wait_for("connected", timeout=20)
    sub = media.python_client("sub", room)
    sub.wait_for("connected", timeout=20)
    tone = pub.request("publish_audio", name="tone", freq=440, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], kind="audio", timeout=20)

    mark = len(sub.events)
    res = media.twirp("MutePublishedTrack", room=room, identity="pub", track_sid=tone["sid"], muted=True)
    assert res.get("ok") and res["result"]["track"] == {"sid": tone["sid"], "muted": True}, res
    muted = sub.wait_for("track_muted", participant="pub", sid=tone["sid"], after=mark, timeout=10)
    assert muted["muted"] is True, muted

    res = media.twirp("MutePublishedTrack", room=room, identity="pub", track_sid=tone["sid"], muted=False)
    assert not res.get("ok"), res
    assert (res["code"], res["status"]) == ("failed_precondition", 412), res
    assert "remote unmute not enabled" in res["error"], res
    # The refusal changed nothing: the record (read after the refused call) still says muted.
    tracks = _participants(media, room)["pub"]["tracks"]
    assert [(t["sid"], t["muted"]) for t in tracks] == [(tone["sid"], True)], tracks
    assert not sub.find("track_unmuted", after=sub.index_of(muted) + 1), sub.describe()
    # The publisher's SDK muted its own track on the server's request and was not told to unmute.
    own = pub.wait_for("track_muted", participant="pub", sid=tone["sid"], timeout=10)
    assert own["local"] is True, own
    assert not pub.find("track_unmuted", after=pub.index_of(own) + 1), pub.describe()
