"""Active speakers with LiveKit's default `audio:` settings, judged by the Python SDK: a tone at
-12 dBov is an active speaker, one at -40 dBov (under the default bar of -35 dBov) is not,
though its audio reaches the subscriber. (`test_media_speakers_config.py` lowers the bar.)"""

from __future__ import annotations

import lkhelpers
from mediahelpers import MediaEnv
from speakerhelpers import assert_speaker_and_not


def test_a_tone_under_the_default_level_is_no_active_speaker(media: MediaEnv):
    assert_speaker_and_not(media, lkhelpers.unique("spk"), speaker=-12, other=-40)
