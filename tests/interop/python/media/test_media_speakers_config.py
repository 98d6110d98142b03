"""LiveKit's `audio:` keys decide who is an active speaker, judged by the Python SDK: with
`active_level: 45` a tone at -40 dBov, not a speaker by default (`test_media_speakers.py`), is
one, and a tone at -50 dBov still is not, though its audio reaches the subscriber."""

from __future__ import annotations

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv
from speakerhelpers import assert_faint_audio_arrives, speakers_event, tone_publisher


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", "audio:\n  active_level: 45\n"])
    try:
        yield env
    finally:
        env.cleanup()


def test_a_lower_active_level_makes_a_quiet_tone_an_active_speaker(media: MediaEnv):
    room = lkhelpers.unique("spkcfg")
    sub = media.python_client("sub", room, max_seconds=90)
    sub.wait_for("connected", timeout=20)
    tone_publisher(media, sub, "faint", room, 330, -50)
    quiet = tone_publisher(media, sub, "quiet", room, 440, -40)

    on = speakers_event(sub, lambda s: "quiet" in s, "quiet")
    assert "faint" not in on["speakers"], on
    assert_faint_audio_arrives(sub, "faint", -50)

    mark = len(sub.events)
    quiet.request("mute", name="tone", timeout=10)
    off = speakers_event(sub, lambda s: "quiet" not in s, "quiet gone", after=mark)
    assert off["speakers"] == [], off
    assert_faint_audio_arrives(sub, "faint", -50)
