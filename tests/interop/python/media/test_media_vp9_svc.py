"""VP9 with spatial layers (SVC) from the Python SDK (the Rust SDK inside) to a Python SDK
subscriber.

The publisher asks for VP9 (`TrackPublishOptions.video_codec`); the server must answer that
codec first, so the track is VP9 (`/node/stats` shows its mime type), and the SDK sends it as
one stream carrying three spatial layers. A subscriber that asks for the low, medium and high
quality (`set_video_quality`) must decode a quarter, half and the whole frame size in turn:
the server leaves the spatial layers above the one asked for out of what it forwards. Both
signalling modes.
"""

from __future__ import annotations

import json
import time

import pytest

import lkhelpers
from mediahelpers import MediaEnv
from test_media_simulcast_layers import node_stats, wait_for_size

COLOR = [40, 160, 90]
WIDTH, HEIGHT = 1280, 720


def server_track(media: MediaEnv, track_sid: str):
    for room in node_stats(media)["rooms"]:
        for p in room["participants"]:
            for t in p["tracks"]:
                if t["sid"] == track_sid:
                    return t
    return None


@pytest.mark.parametrize("single_pc", [True, False], ids=["single_pc", "dual_pc"])
def test_a_subscriber_decodes_the_spatial_layer_it_asks_for(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("svc")
    sub = media.python_client("sub", room, max_seconds=120, single_pc=single_pc)
    sub.wait_for("connected", timeout=20)
    pub = media.python_client("pub", room, max_seconds=120, single_pc=single_pc)
    pub.wait_for("connected", timeout=20)
    sub.wait_for("participant_connected", participant="pub", timeout=10)

    video = pub.request("publish_video", name="cam", color=COLOR, codec="vp9", width=WIDTH, height=HEIGHT, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    track = server_track(media, video["sid"])
    assert track is not None and track["mime"].lower() == "video/vp9", f"the track is not VP9 on the server: {track}"

    # The sender's bandwidth estimate ramps up to the top layer first.
    res = wait_for_size(sub, (WIDTH, HEIGHT), timeout=30)
    assert [tuple(x) for x in res.get("sizes", [])] == [(WIDTH, HEIGHT)], f"the subscriber never decodes {WIDTH}x{HEIGHT}: {res}"
    sends = pub.request("video_send_stats", name="cam")["streams"]
    print(f"\npublisher sends {json.dumps(sends)}")
    assert len(sends) == 1, f"VP9 should leave as one stream: {sends}"

    for quality, want in [("low", (WIDTH // 4, HEIGHT // 4)), ("medium", (WIDTH // 2, HEIGHT // 2)), ("high", (WIDTH, HEIGHT))]:
        t0 = time.monotonic()
        sub.request("set_video_quality", participant="pub", quality=quality)
        res = wait_for_size(sub, want)
        print(f"quality {quality} -> {res.get('sizes')} after {time.monotonic() - t0:.1f} s")
        assert [tuple(x) for x in res.get("sizes", [])] == [want], f"after set_video_quality({quality}) the subscriber should decode {want}: {res}"
        med = res["median_rgb"]
        assert all(abs(a - b) <= 25 for a, b in zip(med, COLOR)), res
