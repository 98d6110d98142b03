"""Track state changes made by a publisher are seen by a subscriber: mute, unmute, unpublish."""

from __future__ import annotations

import pytest

import lkhelpers
from mediahelpers import MediaEnv, assert_tone

FREQ = 440
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


@pytest.mark.parametrize("single_pc", MODES)
def test_mute_unmute_unpublish_seen_by_subscriber(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("mute")
    pub = media.python_client("pub", room, single_pc=single_pc)
    pub.wait_for("connected", timeout=20)
    sub = media.python_client("sub", room, single_pc=single_pc)
    sub.wait_for("connected", timeout=20)

    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], kind="audio", timeout=20)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "before mute")

    mark = len(sub.events)
    pub.request("mute", name="tone")
    muted = sub.wait_for("track_muted", participant="pub", sid=tone["sid"], after=mark, timeout=10)
    assert muted["muted"] is True and muted["local"] is False, muted
    assert not sub.find("track_unmuted", after=mark), "unmuted before the publisher unmuted"

    mark = sub.index_of(muted) + 1
    pub.request("unmute", name="tone")
    unmuted = sub.wait_for("track_unmuted", participant="pub", sid=tone["sid"], after=mark, timeout=10)
    assert unmuted["muted"] is False, unmuted
    # the tone flows again after unmuting
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "after unmute")

    mark = len(sub.events)
    pub.request("unpublish", name="tone", timeout=15)
    sub.wait_for("track_unpublished", participant="pub", sid=tone["sid"], after=mark, timeout=10)
    # the publisher is still in the room: unpublishing is not leaving
    assert not sub.find("participant_disconnected", participant="pub"), sub.describe()
