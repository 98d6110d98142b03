"""VP9 and AV1 IVF files through livekit-cli: one CLI publishes them, another records them, and
a Python SDK client decodes them.

Clips are made by ffmpeg (libvpx-vp9, libaom-av1); the recordings must probe as the same codec
and size, decode without errors and keep (nearly) every frame.
"""

from __future__ import annotations

import pytest

import lkhelpers
from cli_media_helpers import (
    CLIP_COLOR,
    CLIP_H,
    CLIP_SECONDS,
    CLIP_W,
    decode_errors,
    ffprobe,
    make_video_clip,
    spawn_cli,
    wait_exit,
)
from mediahelpers import MediaEnv, assert_video


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_cli_publishes_and_records(media: MediaEnv, clips, tmp_path, codec: str):
    clip = make_video_clip(tmp_path, codec)
    room = lkhelpers.unique(f"cli{codec}")
    out = tmp_path / "rec"
    rec = spawn_cli(media, "rec", "room", "join", "--identity", "rec", "--record", str(out), "--duration", "20s", room)
    rec.wait_for("connected", timeout=20)
    sub = media.python_client("sub", room)
    sub.wait_for("connected", timeout=20)
    pub = spawn_cli(
        media, "pub", "room", "join", "--identity", "pub", "--publish", str(clip), "--exit-after-publish", room
    )
    published = pub.wait_for("published", timeout=20)
    assert published["mime_type"].lower() == f"video/{codec}", published
    sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    v = sub.start("analyze_video", participant="pub", frames=30, timeout=20)
    res = sub.result(v, timeout=40)
    assert_video(res, CLIP_COLOR, f"sdk <- cli ({codec})")
    assert all(tuple(s) == (CLIP_W, CLIP_H) for s in res["sizes"]), res
    done = pub.wait_for("publish_done", timeout=CLIP_SECONDS + 20)
    assert wait_exit(pub, 20) == 0, pub.describe()

    # The recorder sees the track end when the publisher leaves, and closes the file.
    recorded = rec.wait_for("recorded", timeout=20)
    probe = ffprobe(recorded["path"])
    s = probe["streams"][0]
    assert s["codec_name"] == codec, probe
    assert (s["width"], s["height"]) == (CLIP_W, CLIP_H), s
    frames = int(s["nb_read_frames"])
    assert frames == recorded["frames"], (s, recorded)
    assert frames >= done["frames"] - 5, f"recorded {frames} of {done['frames']} frames"
    # The recording lasts as long as the media the publisher sent: the clip, plus the frames
    # it sent again from the last keyframe when a receiver asked for one (`keyframe_resends`,
    # each going on one frame later in RTP time).
    dur = float(probe["format"]["duration"])
    assert done["seconds"] >= CLIP_SECONDS - 0.1, done
    assert done["keyframe_resends"] > 0 or done["seconds"] < CLIP_SECONDS + 0.5, done
    assert abs(dur - done["seconds"]) < 0.5, (probe["format"], done)
    assert decode_errors(recorded["path"]) == ""
