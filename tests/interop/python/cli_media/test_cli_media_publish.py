"""livekit-cli publishes files; an unmodified Python SDK client receives and decodes them.

`room join --publish tone.ogg --publish clip.ivf` (our own client, single PC) against the server;
the SDK subscriber (dual PC, its default, and single PC) decodes a 440 Hz tone and 320x240
frames of the clip's colour with a moving bar.
"""

from __future__ import annotations

import pytest

import lkhelpers
from cli_media_helpers import CLIP_COLOR, CLIP_H, CLIP_W, TONE_HZ, Clips, spawn_cli
from mediahelpers import MediaEnv, assert_tone, assert_video

MODES = [pytest.param(False, id="sdk_dual_pc"), pytest.param(True, id="sdk_single_pc")]


@pytest.mark.parametrize("single_pc", MODES)
def test_cli_files_reach_an_sdk_subscriber(media: MediaEnv, clips: Clips, single_pc: bool):
    room = lkhelpers.unique("clipub")
    sub = media.python_client("sub", room, single_pc=single_pc)
    sub.wait_for("connected", timeout=20)
    cli = spawn_cli(
        media, "pub", "room", "join", "--identity", "clipub",
        "--publish", str(clips.ogg), "--publish", str(clips.ivf), "--loop", "--duration", "45s", room,
    )
    cli.wait_for("connected", timeout=20)
    pa = cli.wait_for("published", mime_type="audio/opus", timeout=20)
    pv = cli.wait_for("published", mime_type="video/VP8", timeout=20)
    sub.wait_for("participant_connected", participant="clipub", timeout=10)
    sa = sub.wait_for("track_subscribed", participant="clipub", kind="audio", timeout=20)
    sv = sub.wait_for("track_subscribed", participant="clipub", kind="video", timeout=20)
    assert (sa["sid"], sa["source"]) == (pa["sid"], "SOURCE_MICROPHONE"), sa
    assert (sv["sid"], sv["source"]) == (pv["sid"], "SOURCE_CAMERA"), sv
    assert sa["name"] == "tone.ogg" and sv["name"] == "clip.ivf", (sa, sv)

    a = sub.start("analyze_audio", participant="clipub", seconds=1.0, timeout=25)
    v = sub.start("analyze_video", participant="clipub", frames=30, timeout=25)
    assert_tone(sub.result(a, timeout=40), TONE_HZ, "sdk <- cli")
    res = sub.result(v, timeout=40)
    assert_video(res, CLIP_COLOR, "sdk <- cli")
    assert all(tuple(s) == (CLIP_W, CLIP_H) for s in res["sizes"]), f"frames are not {CLIP_W}x{CLIP_H}: {res}"
