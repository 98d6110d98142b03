"""`room.sync_streams: true`: a subscriber's tracks of one publisher's stream share one stream id
(`PA_…|camera`), so that its browser plays them in sync (`browser.test.mjs` checks that
Chromium puts them in one MediaStream). The Python SDK still names, receives and decodes every
track in both modes, and a video unsubscribed and subscribed again comes back (on a new section
in dual PC mode, where sections that carried a track are not reused)."""

from __future__ import annotations

import pytest

from mediafixtures import media_env_with
from mediahelpers import MediaEnv
from test_media_av import MODES
from test_media_av import test_audio_and_video_reach_the_subscriber as audio_and_video_reach_the_subscriber
from test_media_av import (
    test_video_comes_back_after_unsubscribing_and_subscribing_again as video_comes_back_after_subscribing_again,
)


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", "room:\n  sync_streams: true\n"])
    try:
        yield env
    finally:
        env.cleanup()


def assert_joins_synced(media: MediaEnv) -> None:
    """The server took every join of this module's clients for synced stream ids (its log says
    so), so the checks above ran with them."""
    joins = [line for line in media.server_log().splitlines() if "participant joined" in line]
    assert joins and all("sync_streams=true" in line for line in joins), "\n".join(joins[-6:])


@pytest.mark.parametrize("single_pc", MODES)
def test_audio_and_video_of_one_stream_reach_the_subscriber(media: MediaEnv, single_pc: bool):
    audio_and_video_reach_the_subscriber(media, single_pc)
    assert_joins_synced(media)


@pytest.mark.parametrize("single_pc", MODES)
def test_a_synced_video_comes_back_after_subscribing_again(media: MediaEnv, single_pc: bool):
    video_comes_back_after_subscribing_again(media, single_pc)
    assert_joins_synced(media)
