"""Audio + video end to end: one Python SDK publisher, one Python SDK subscriber, both modes.

The publisher sends a 440 Hz sine (Opus) and 640x480 frames (simulcast) of a known colour with a
moving white bar; the subscriber decodes them and checks pitch, loudness, purity, frame size,
colour and motion, so garbage or frozen media fails.
"""

from __future__ import annotations

import pytest

import lkhelpers
from mediahelpers import MediaEnv, assert_tone, assert_video

COLOR = [200, 60, 90]
FREQ = 440

MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


@pytest.mark.parametrize("single_pc", MODES)
def test_audio_and_video_reach_the_subscriber(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("av")
    sub = media.python_client("sub", room, single_pc=single_pc)
    sub.wait_for("connected", timeout=20)
    pub = media.python_client("pub", room, single_pc=single_pc)
    connected = pub.wait_for("connected", timeout=20)
    assert connected["sid"].startswith("PA_"), connected
    sub.wait_for("participant_connected", participant="pub", timeout=10)

    a_pub = pub.start("publish_audio", name="tone", freq=FREQ)
    v_pub = pub.start("publish_video", name="cam", color=COLOR, simulcast=True)
    audio = pub.result(a_pub, timeout=20)
    video = pub.result(v_pub, timeout=20)
    assert audio["sid"].startswith("TR_") and video["sid"].startswith("TR_"), (audio, video)

    sa = sub.wait_for("track_subscribed", participant="pub", kind="audio", timeout=20)
    sv = sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    assert (sa["sid"], sa["name"], sa["source"]) == (audio["sid"], "tone", "SOURCE_MICROPHONE"), sa
    assert (sv["sid"], sv["name"], sv["source"]) == (video["sid"], "cam", "SOURCE_CAMERA"), sv

    a_ana = sub.start("analyze_audio", participant="pub", seconds=1.0, timeout=20)
    v_ana = sub.start("analyze_video", participant="pub", frames=40, timeout=20)
    assert_tone(sub.result(a_ana, timeout=30), FREQ, "sub <- pub")
    assert_video(sub.result(v_ana, timeout=30), COLOR, "sub <- pub")


@pytest.mark.parametrize("single_pc", MODES)
def test_video_comes_back_after_unsubscribing_and_subscribing_again(media: MediaEnv, single_pc: bool):
    """RemoteTrackPublication.set_subscribed(False) ends the subscription (the SDK reports the
    track unsubscribed), set_subscribed(True) brings the video back, decoded."""
    room = lkhelpers.unique("resub")
    sub = media.python_client("sub", room, single_pc=single_pc)
    sub.wait_for("connected", timeout=20)
    pub = media.python_client("pub", room, single_pc=single_pc)
    pub.wait_for("connected", timeout=20)
    video = pub.request("publish_video", name="cam", color=COLOR, simulcast=True, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    assert_video(sub.request("analyze_video", participant="pub", frames=20, timeout=20), COLOR, "before")

    mark = len(sub.events)
    res = sub.request("resubscribe_video", participant="pub", timeout=20)
    assert res.get("ok") is True and res["sid"] == video["sid"], res
    sub.wait_for("track_unsubscribed", participant="pub", sid=video["sid"], after=mark, timeout=5)
    sub.wait_for("track_subscribed", participant="pub", sid=video["sid"], after=mark, timeout=5)
    assert_video(sub.request("analyze_video", participant="pub", frames=20, timeout=20), COLOR, "after subscribing again")
