"""Two Python SDK participants join the same room through two different nodes and exchange a
tone, a camera and data messages; the room lives on exactly one node, which carries the media."""

from __future__ import annotations

import lkhelpers
from clusterflows import check_av_both_ways, pair
from clusterhelpers import ClusterEnv, wait_until


def test_two_nodes_one_room_audio_video_and_data(cluster: ClusterEnv):
    room = lkhelpers.unique("clu-av")
    alice, bob, ta, tb = pair(cluster, room, "a", "b")
    alice.wait_for("participant_connected", participant="bob", timeout=10)

    check_av_both_ways(alice, "alice", bob, "bob", "through nodes a and b")

    # Data both ways (reliable), each received once with the sender's identity.
    sent = alice.request("publish_data", text="hello bob from node a", topic="clu", timeout=15)
    got = bob.wait_for("data_received", participant="alice", topic="clu", timeout=15)
    assert (got["text"], got["sha256"], got["kind"]) == ("hello bob from node a", sent["sha256"], "reliable"), got
    sent = bob.request("publish_data", text="hello alice from node b", topic="clu", timeout=15)
    got = alice.wait_for("data_received", participant="bob", topic="clu", timeout=15)
    assert (got["text"], got["sha256"]) == ("hello alice from node b", sent["sha256"]), got

    # One room, on one node, holding both participants and the media of both.
    owner = cluster.owner(room)
    assert cluster.local_participants(owner, room) == ["alice", "bob"], cluster.stats(owner)

    def flowing():
        r = next(r for r in cluster.stats(owner)["rooms"] if r["name"] == room)
        tracks = {t["sid"]: t["bitrate_bps"] for p in r["participants"] for t in p["tracks"]}
        want = {t["sid"] for t in [*ta.values(), *tb.values()]}
        return tracks if set(tracks) == want and all(tracks[s] > 0 for s in want) else None

    tracks = wait_until(flowing, timeout=10, interval=0.5)
    assert tracks, f"the owner {owner} does not carry all four tracks with a bitrate: {cluster.stats(owner)}"
    print(f"room {room} lives on node {owner}; track bitrates there: {tracks}")
    # The single-node view of the others has no such room.
    for n in cluster.nodes:
        if n != owner:
            assert cluster.local_participants(n, room) == [], f"node {n} also holds {room}"
