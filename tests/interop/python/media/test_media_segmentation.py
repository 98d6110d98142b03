"""Segmented sends (UDP GSO) with real clients: a Python SDK subscriber decodes the simulcast
video of a Python SDK publisher (a noisy picture, so that frames take several packets) while
the server's /metrics shows that most of it left in segmented sends (a frame's datagrams to one
subscriber in one send); a server with `rtc.udp_segmentation: false` makes none and the video
is decoded all the same."""

from __future__ import annotations

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, assert_video, scrape_metrics

METRICS_PORT = 18121
COLOR = [40, 160, 90]


def config(segmentation: bool) -> str:
    return (
        lkhelpers.prometheus_config(METRICS_PORT)
        + f"rtc:\n  udp_segmentation: {'true' if segmentation else 'false'}\n"
    )


@pytest.fixture(scope="module", params=[True, False], ids=["segmented", "plain"])
def media_env(request):
    env = media_env_with(["--config-body", config(request.param)])
    env.segmentation = request.param
    try:
        yield env
    finally:
        env.cleanup()


def figures(media: MediaEnv) -> dict:
    text = scrape_metrics(media, METRICS_PORT)
    return {
        "sends": lkhelpers.metric_value(text, "livekit_media_segmented_sends_total"),
        "segmented": lkhelpers.metric_value(text, "livekit_media_segmented_datagrams_total"),
        "out": lkhelpers.metric_value(text, "livekit_packet_total", direction="outgoing"),
    }


def test_video_reaches_real_subscribers_in_segmented_sends(media: MediaEnv):
    room = lkhelpers.unique("gso")
    pub = media.python_client("pub", room)
    pub.wait_for("connected", timeout=20)
    sub = media.python_client("sub", room)
    sub.wait_for("connected", timeout=20)
    pub.request("publish_video", name="cam", color=COLOR, simulcast=True, noise=12, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    before = figures(media)
    assert_video(sub.request("analyze_video", participant="pub", frames=100, timeout=40), COLOR, "sub <- pub")
    after = figures(media)
    d = {k: after[k] - before[k] for k in before}
    print("segmentation", media.segmentation, d)
    assert d["out"] > 0, d
    if media.segmentation:
        assert d["sends"] > 0 and d["segmented"] >= 2 * d["sends"], d
        assert d["segmented"] >= 0.3 * d["out"], f"most of the video should leave in runs: {d}"
    else:
        assert d["sends"] == 0 and d["segmented"] == 0, d
