"""Three Python SDK participants, each publishing its own tone and picture; everyone receives
the other two (SFU fan-out), checked by pitch and colour so that tracks cannot be mixed up."""

from __future__ import annotations

import pytest

import lkhelpers
from mediahelpers import MediaEnv, assert_tone, assert_video

PEOPLE = {
    "alice": {"freq": 300, "color": [200, 60, 90]},
    "bob": {"freq": 500, "color": [50, 160, 70]},
    "carol": {"freq": 700, "color": [60, 80, 200]},
}

MODES = [
    pytest.param({"alice": True, "bob": True, "carol": True}, id="single_pc"),
    pytest.param({"alice": False, "bob": False, "carol": False}, id="dual_pc"),
    pytest.param({"alice": True, "bob": False, "carol": True}, id="mixed"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("modes", MODES)
def test_three_participants_receive_each_other(media: MediaEnv, modes):
    room = lkhelpers.unique("trio")
    clients = {}
    for name in PEOPLE:
        clients[name] = media.python_client(name, room, single_pc=modes[name])
        clients[name].wait_for("connected", timeout=20)

    pending = {}
    for name, c in clients.items():
        pending[(name, "audio")] = c.start("publish_audio", name=f"{name}-tone", freq=PEOPLE[name]["freq"])
        pending[(name, "video")] = c.start("publish_video", name=f"{name}-cam", color=PEOPLE[name]["color"])
    published = {key: clients[key[0]].result(cid, timeout=25) for key, cid in pending.items()}

    for me, c in clients.items():
        for other in PEOPLE:
            if other == me:
                continue
            for kind in ("audio", "video"):
                ev = c.wait_for("track_subscribed", participant=other, kind=kind, timeout=25)
                assert ev["sid"] == published[(other, kind)]["sid"], (me, ev, published[(other, kind)])

    analyses = {}
    for me, c in clients.items():
        for other in PEOPLE:
            if other != me:
                analyses[(me, other, "audio")] = c.start("analyze_audio", participant=other, seconds=1.0, timeout=25)
                analyses[(me, other, "video")] = c.start("analyze_video", participant=other, frames=30, timeout=25)
    for (me, other, kind), cid in analyses.items():
        res = clients[me].result(cid, timeout=35)
        if kind == "audio":
            assert_tone(res, PEOPLE[other]["freq"], f"{me} <- {other}")
        else:
            assert_video(res, PEOPLE[other]["color"], f"{me} <- {other}")

    # nobody received their own tracks back
    for me, c in clients.items():
        assert not c.find("track_subscribed", participant=me), c.describe()
