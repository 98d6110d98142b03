"""RoomService through a third node: node c holds no participant of the room, yet ListRooms,
ListParticipants, MutePublishedTrack, SendData, UpdateRoomMetadata, RemoveParticipant and
DeleteRoom called there (by the `livekit-api` SDK) act on the room wherever it lives."""

from __future__ import annotations

import json
import time

import lkhelpers
from clusterflows import join, publish, wait_subscribed
from clusterhelpers import ClusterEnv, wait_until


def test_room_service_through_a_third_node(cluster: ClusterEnv):
    room = lkhelpers.unique("clu-api")
    alice, a_conn = join(cluster, "alice", room, "a")
    bob, b_conn = join(cluster, "bob", room, "b")
    ta = publish(alice, "alice", video=False)
    tb = publish(bob, "bob", video=False)
    wait_subscribed(bob, "alice", ta)
    wait_subscribed(alice, "bob", tb)

    # Every node lists the room; c lists both participants with their sids and tracks.
    for n in ("c", "a", "b"):
        rooms = {r["name"]: r for r in cluster.twirp_ok(n, "ListRooms")["rooms"]}
        assert room in rooms, f"ListRooms through {n} misses {room}: {rooms}"
        assert rooms[room]["num_participants"] == 2, rooms[room]
    only = cluster.twirp_ok("c", "ListRooms", names=[room])["rooms"]
    assert [r["name"] for r in only] == [room], only
    parts = {p["identity"]: p for p in cluster.twirp_ok("c", "ListParticipants", room=room)["participants"]}
    assert set(parts) == {"alice", "bob"}, parts
    assert parts["alice"]["sid"] == a_conn["sid"] and parts["bob"]["sid"] == b_conn["sid"], parts
    assert [t["sid"] for t in parts["alice"]["tracks"]] == [ta["audio"]["sid"]], parts["alice"]
    got = cluster.twirp_ok("c", "GetParticipant", room=room, identity="bob")
    assert got["sid"] == b_conn["sid"], got

    # Mute alice's tone from c: bob (on b) sees it muted, and the room says so.
    res = cluster.twirp_ok("c", "MutePublishedTrack", room=room, identity="alice", track_sid=ta["audio"]["sid"], muted=True)
    assert res == {"track_sid": ta["audio"]["sid"], "muted": True}, res
    bob.wait_for("track_muted", participant="alice", sid=ta["audio"]["sid"], timeout=15)
    muted = wait_until(
        lambda: [t["muted"] for t in cluster.twirp_ok("c", "GetParticipant", room=room, identity="alice")["tracks"]] == [True],
        timeout=10,
        interval=0.3,
    )
    assert muted, cluster.twirp_ok("c", "GetParticipant", room=room, identity="alice")

    # Server data from c: first to bob only, then to everyone.
    cluster.twirp_ok("c", "SendData", room=room, text="to bob via c", topic="srv", destination_identities=["bob"])
    ev = bob.wait_for("data_received", topic="srv", text="to bob via c", timeout=15)
    assert ev["participant"] is None, ev  # sent by the server, not by a participant
    cluster.twirp_ok("c", "SendData", room=room, text="to all via c", topic="srv")
    alice.wait_for("data_received", topic="srv", text="to all via c", timeout=15)
    bob.wait_for("data_received", topic="srv", text="to all via c", timeout=15)
    assert not alice.find("data_received", text="to bob via c"), "alice got data addressed to bob only"

    # Metadata from c reaches both clients.
    r = cluster.twirp_ok("c", "UpdateRoomMetadata", room=room, metadata="set through c")
    assert r["name"] == room and r["metadata"] == "set through c", r
    alice.wait_for("room_metadata_changed", new="set through c", timeout=15)
    bob.wait_for("room_metadata_changed", new="set through c", timeout=15)
    p = cluster.twirp_ok("c", "UpdateParticipant", room=room, identity="alice", metadata="alice-meta")
    assert p["metadata"] == "alice-meta", p
    bob.wait_for("participant_metadata_changed", participant="alice", new="alice-meta", timeout=15)

    # Remove bob through c: his client is told, alice sees him leave, c lists alice alone.
    cluster.twirp_ok("c", "RemoveParticipant", room=room, identity="bob")
    gone = bob.wait_for("disconnected", timeout=15)
    assert gone["reason_name"] == "PARTICIPANT_REMOVED", gone
    alice.wait_for("participant_disconnected", participant="bob", timeout=15)
    left = wait_until(lambda: cluster.identities("c", room) == ["alice"], timeout=10, interval=0.3)
    assert left, f"ListParticipants through c after RemoveParticipant: {cluster.identities('c', room)}"
    assert not alice.find("disconnected"), alice.describe()

    # Removing someone who is not there is NOT_FOUND wherever it is asked.
    res = cluster.twirp("c", "RemoveParticipant", room=room, identity="nobody")
    assert not res["ok"] and res.get("code") == "not_found", res

    # Delete the room through c: alice is sent away and no node lists it any more.
    cluster.twirp_ok("c", "DeleteRoom", room=room)
    gone = alice.wait_for("disconnected", timeout=15)
    assert gone["reason_name"] == "ROOM_DELETED", gone
    for n in ("a", "b", "c"):
        res = cluster.admin_call("wait_rooms", url=cluster.nodes[n].url, room=room, present=False, deadline=10)
        assert res["ok"], f"ListRooms through {n} still shows {room} after DeleteRoom: {res}"
    assert cluster.owners(room) == [], cluster.local_rooms()


def test_perform_rpc_through_another_node_waits_as_long_as_the_call(cluster: ClusterEnv):
    """A PerformRpc to a participant on node a, called through another node, whose handler takes 12 s
    of a 16 s response timeout: the caller gets the answer (the call forwarded to a is not cut
    at the 10 s other forwarded calls get), and a call that outlasts its own timeout ends with
    LiveKit's response-timeout error from a, not a cut connection."""
    room = lkhelpers.unique("clu-rpc")
    alice, _ = join(cluster, "alice", room, "a")
    alice.request("register_rpc", timeout=10, method="slow", behavior="sleep", seconds=12)
    via = next(n for n in ("a", "b", "c") if n != cluster.owner(room))

    def call(timeout_ms: int):
        t0 = time.monotonic()
        res = cluster.admin_call(
            "twirp",
            wait=60,
            url=cluster.nodes[via].url,
            method="PerformRpc",
            args={"room": room, "identity": "alice", "rpc_method": "slow", "payload": "x", "response_timeout_ms": timeout_ms},
            deadline=50,
        )
        return res, time.monotonic() - t0

    res, took = call(16_000)
    assert res.get("ok"), f"PerformRpc through {via} with a 16 s timeout, answered after 12 s: {res} after {took:.1f} s"
    assert json.loads(res["result"]["payload"])["by"] == "alice", res
    assert took >= 11, f"answered after {took:.1f} s, before the handler's 12 s"

    res, took = call(11_000)
    assert not res.get("ok") and res.get("code") == "canceled", f"{res} after {took:.1f} s"
    assert "1502" in res.get("error", ""), res
