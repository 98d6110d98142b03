"""Active speakers with LiveKit's default `audio:` settings, judged by the Python SDK: a tone at
-12 dBov is an active speaker, one at -40 dBov (under the default bar of -35 dBov) is not,
though its audio reaches the subscriber. (`test_media_speakers_config.py` lowers the bar.)"""

from __future__ import annotations

import lkhelpers
from mediahelpers import MediaEnv, assert_tone
from speakerhelpers import assert_faint_audio_arrives, speakers_event, tone_publisher


def test_a_tone_under_the_default_level_is_no_active_speaker(media: MediaEnv):
    room = lkhelpers.unique("spk")
    sub = media.python_client("sub", room, max_seconds=90)
    sub.wait_for("connected", timeout=20)
    tone_publisher(media, sub, "quiet", room, 330, -40)
    loud = tone_publisher(media, sub, "loud", room, 440, -12)
    assert_tone(sub.request("analyze_audio", participant="loud", seconds=0.5, timeout=20), 440, "loud")

    # The loud tone is listed, the quiet one, measured in the same intervals, is not.
    on = speakers_event(sub, lambda s: "loud" in s, "loud")
    assert "quiet" not in on["speakers"], on
    assert_faint_audio_arrives(sub, "quiet", -40)

    # Still not once the loud one is muted, intervals later.
    mark = len(sub.events)
    loud.request("mute", name="tone", timeout=10)
    off = speakers_event(sub, lambda s: "loud" not in s, "loud gone", after=mark)
    assert off["speakers"] == [], off
    assert_faint_audio_arrives(sub, "quiet", -40)
