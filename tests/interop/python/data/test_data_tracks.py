"""Data tracks between real Python SDK clients (`publish_data_track`, `try_push`,
`RemoteDataTrack.subscribe`): the SDK's own packetizer splits each frame into packets on the
`_data_track` channel under the publisher's handle, the server forwards them under each
subscriber's handle, and the subscriber's depacketizer rebuilds the frames. The browser test
(`tests/interop/browser/datatrack.test.mjs`) checks the same with livekit-client.
"""

from __future__ import annotations

import lkhelpers
from datahelpers import join

# Small frames, then frames the SDK splits into several packets (its packets stay under the
# data channel's message size), then small ones again.
SIZES = [40] * 20 + [20_000, 48_000, 5_000] + [100] * 17


def _frames(c, sid: str, after: int = 0):
    return c.find("data_track_frame", after=after, sid=sid)


def test_a_data_track_reaches_every_subscriber_intact(media, single_pc):
    room = lkhelpers.unique("dtrack")
    alice, bob, carol = join(media, room, ["alice", "bob", "carol"], single_pc)

    pub = alice.request("publish_data_track", name="imu", timeout=20)
    assert "error" not in pub, f"publish_data_track refused: {pub}\n{alice.describe()}"
    assert pub["sid"].startswith("DTR_"), pub
    for rx in (bob, carol):
        seen = rx.wait_for("data_track_published", name="imu", timeout=15)
        assert (seen["participant"], seen["sid"]) == ("alice", pub["sid"]), seen
        sub = rx.request("subscribe_data_track", participant="alice", name="imu", timeout=20)
        assert sub.get("sid") == pub["sid"], sub

    # A second track of the same name is refused; the first keeps working.
    dup = alice.request("publish_data_track", name="imu", timeout=20)
    assert "error" in dup, f"a second data track named imu was accepted: {dup}"

    # Frames pushed before a subscription is active may be dropped by the SDK; push a first
    # frame until both subscribers get one, then the measured run.
    for attempt in range(50):
        alice.request("push_data_frames", name="imu", sizes=[8], interval_ms=100, timeout=10)
        if _frames(bob, pub["sid"]) and _frames(carol, pub["sid"]):
            break
    else:
        raise AssertionError(f"no frame reached the subscribers\n{bob.describe()}\n{carol.describe()}")
    marks = {rx.label: len(rx.events) for rx in (bob, carol)}
    sent = alice.request("push_data_frames", name="imu", sizes=SIZES, interval_ms=20, timeout=60)["sent"]
    last = sent[-1]
    for rx in (bob, carol):
        rx.wait_for("data_track_frame", after=marks[rx.label], sid=pub["sid"], sha256=last["sha256"], timeout=20)
        got = {f["index"]: f for f in _frames(rx, pub["sid"], after=marks[rx.label])}
        missing = [s["index"] for s in sent if s["index"] not in got]
        assert not missing, f"[{rx.label}] frames {missing} of {len(sent)} never arrived\n{rx.describe()}"
        for s in sent:
            f = got[s["index"]]
            assert (f["size"], f["sha256"]) == (s["size"], s["sha256"]), f"[{rx.label}] frame {s['index']} arrived damaged: {f} vs {s}"
            assert f["user_timestamp"] == 10**12 + s["index"], f
    assert not alice.find("data_track_frame"), "the publisher received its own track"

    # Unpublishing ends the subscribers' streams.
    alice.request("unpublish_data_track", name="imu", timeout=20)
    for rx in (bob, carol):
        rx.wait_for("data_track_unpublished", sid=pub["sid"], timeout=15)
        ended = rx.wait_for("data_track_ended", sid=pub["sid"], timeout=15)
        assert ended["error"] is None, ended


def test_data_tracks_need_the_data_grant(media, single_pc):
    room = lkhelpers.unique("dtrack-grant")
    (alice,) = join(media, room, ["alice"], single_pc, can_publish_data=False)
    res = alice.request("publish_data_track", name="imu", timeout=30)
    assert "error" in res, f"a participant without canPublishData published a data track: {res}"
    assert "not allowed" in res["message"].lower() or "unauthorized" in res["message"].lower(), res
