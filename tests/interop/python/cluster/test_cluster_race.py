"""Racing joins: two participants start joining a fresh room at the same moment through two
different nodes. The placement is atomic, so they end up in one room on one node and see each
other. Three rounds, over each pair of nodes."""

from __future__ import annotations

import lkhelpers
from clusterhelpers import ClusterEnv, wait_until


def test_racing_joins_on_two_nodes_meet_in_one_room(cluster: ClusterEnv):
    for x, y in (("a", "b"), ("b", "c"), ("c", "a")):
        room = lkhelpers.unique(f"clu-race-{x}{y}")
        # Both processes are started back to back; each connects as soon as its SDK is loaded.
        p = cluster.client("p", room, x)
        q = cluster.client("q", room, y)
        cp = p.wait_for("connected", timeout=25)
        cq = q.wait_for("connected", timeout=25)
        print(f"{room}: p via {x} connected at {cp['t']:.3f}, q via {y} at {cq['t']:.3f} (apart {abs(cp['t'] - cq['t']) * 1000:.0f} ms)")
        # Each sees the other, either already in the room at join or arriving after.
        for me, ev, other in ((p, cp, "q"), (q, cq, "p")):
            if other not in ev["remote"]:
                me.wait_for("participant_connected", participant=other, timeout=15)
        owners = wait_until(lambda: cluster.owners(room), timeout=5, interval=0.3)
        seen = cluster.local_rooms()
        assert len(owners) == 1, f"room {room} (p via {x}, q via {y}) is held by {owners}: {seen}"
        assert cluster.local_participants(owners[0], room) == ["p", "q"], cluster.stats(owners[0])
        names = cluster.room_names("c")
        assert names.count(room) == 1, names
        assert sorted(cluster.identities(x, room)) == ["p", "q"]
        p.close()
        q.close()


def test_racing_signal_connections_meet_in_one_room(cluster: ClusterEnv):
    """Tighter races than SDK processes can make: the admin process opens both signal
    WebSockets at the same instant (within a millisecond or so), 8 times over each pair."""
    from mediahelpers import MediaEnv

    spreads = []
    for round_no in range(8):
        for x, y in (("a", "b"), ("b", "c"), ("c", "a")):
            room = lkhelpers.unique(f"clu-rawrace-{x}{y}")
            joins = [
                {"ws": cluster.nodes[x].ws_url, "token": MediaEnv.token("p", room)},
                {"ws": cluster.nodes[y].ws_url, "token": MediaEnv.token("q", room)},
            ]
            res = cluster.admin_call("race_join", joins=joins, deadline=10, wait=20)
            jp, jq = res["joins"]
            assert "error" not in jp and "error" not in jq, f"round {round_no} {x}/{y}: {res}"
            spreads.append(abs(jp["opened_at"] - jq["opened_at"]))
            assert (jp["identity"], jp["room"], jq["identity"], jq["room"]) == ("p", room, "q", room), res
            assert jp["others"] == ["q"] and jq["others"] == ["p"], f"round {round_no} {x}/{y}: they do not see each other: {res}"
            owners = cluster.owners(room)
            assert len(owners) == 1, f"round {round_no}: {room} (p via {x}, q via {y}) is held by {owners}: {cluster.local_rooms()}"
            assert cluster.local_participants(owners[0], room) == ["p", "q"], cluster.stats(owners[0])
            cluster.admin_call("race_close")
    spreads.sort()
    print(f"24 racing pairs; WebSocket upgrades apart: median {spreads[len(spreads) // 2] * 1000:.1f} ms, max {spreads[-1] * 1000:.1f} ms")
