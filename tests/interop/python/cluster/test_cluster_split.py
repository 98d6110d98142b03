"""A join into a running room right after Redis restarted empty (no persistence): the room's
placement is gone until its node writes it again (on its next one-second refresh). A join
arriving through another node in that window must still land in the running room, not open a
second room of the same name elsewhere (after which the room stays split: the owner logs
"another node holds this room's placement" every second and keeps its participants apart).

Six rooms at once, so that a selector picking the right node by luck (1 in 3 per room) cannot
hide the fault. The server holds such joins until placements settle (three refresh periods
after Redis is found empty)."""

from __future__ import annotations

import time


import lkhelpers
from clusterhelpers import ClusterEnv
from mediahelpers import MediaEnv

ROOMS = 6


def test_joins_right_after_a_redis_restart_find_the_running_rooms(cluster: ClusterEnv):
    rooms = [lkhelpers.unique(f"clu-split{i}") for i in range(ROOMS)]
    # One participant in each room (signal connections held open by the admin process).
    first = [{"ws": cluster.nodes["a"].ws_url, "token": MediaEnv.token(f"alice{i}", r)} for i, r in enumerate(rooms)]
    res = cluster.admin_call("race_join", joins=first, see=0, deadline=10, wait=20)
    assert all("error" not in j and j["room"] == r for j, r in zip(res["joins"], rooms)), res
    held = cluster.local_rooms()
    owner = {r: next(n for n, rs in held.items() if r in rs) for r in rooms}
    via = {r: next(n for n in cluster.nodes if n != owner[r]) for r in rooms}

    cluster.kill_redis()
    # Every node notices the outage on its next refresh (each second); then redis comes back
    # empty, and joins through nodes that do not hold the rooms are the first thing it sees.
    time.sleep(2.0)
    cluster.start_redis()
    back = time.monotonic()
    late = [{"ws": cluster.nodes[via[r]].ws_url, "token": MediaEnv.token(f"carol{i}", r)} for i, r in enumerate(rooms)]
    res = cluster.admin_call("race_join", joins=late, see=1, deadline=5, wait=20)
    print(f"joins {min(j.get('opened_at', 0) for j in res['joins']) - back:.3f}s after redis returned")
    held_after = cluster.local_rooms()
    split = {r: [n for n, rs in held_after.items() if r in rs] for r in rooms}
    print(f"owners before {owner}, joined through {via}, held after {split}")
    for i, (r, j) in enumerate(zip(rooms, res["joins"])):
        assert "error" not in j, res
        assert j["others"] == [f"alice{i}"], f"carol{i} (through {via[r]}) is not in the running room on {owner[r]}: {j}; held: {split}"
        assert split[r] == [owner[r]], f"room {r} split: {split}"
    cluster.admin_call("race_close")
