"""LiveKit's `audio:` keys decide who is an active speaker, judged by the Python SDK: with
`active_level: 45` a tone at -40 dBov, not a speaker by default (`test_media_speakers.py`), is
one, and a tone at -50 dBov still is not, though its audio reaches the subscriber."""

from __future__ import annotations

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv
from speakerhelpers import assert_speaker_and_not


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", "audio:\n  active_level: 45\n"])
    try:
        yield env
    finally:
        env.cleanup()


def test_a_lower_active_level_makes_a_quiet_tone_an_active_speaker(media: MediaEnv):
    assert_speaker_and_not(media, lkhelpers.unique("spkcfg"), speaker=-40, other=-50)
