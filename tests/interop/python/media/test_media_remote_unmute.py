"""With `room.enable_remote_unmute: true`, MutePublishedTrack may unmute a real client's track
as well as mute it: the publisher's SDK mutes and unmutes its own track, and a subscriber sees
the track muted, then unmuted, and hears it again. (The default, refusing an unmute, is in
test_media_admin.py.)"""

from __future__ import annotations

import pytest

import lkhelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, assert_tone

FREQ = 440


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with(["--config-body", "room:\n  enable_remote_unmute: true\n"])
    try:
        yield env
    finally:
        env.cleanup()


def test_an_admin_unmutes_a_track_where_the_configuration_allows_it(media: MediaEnv):
    room = lkhelpers.unique("runmute")
    pub = media.python_client("pub", room)
    pub.wait_for("connected", timeout=20)
    sub = media.python_client("sub", room)
    sub.wait_for("connected", timeout=20)
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=20)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], kind="audio", timeout=20)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "before mute")

    mark = len(sub.events)
    res = media.twirp("MutePublishedTrack", room=room, identity="pub", track_sid=tone["sid"], muted=True)
    assert res.get("ok") and res["result"]["track"] == {"sid": tone["sid"], "muted": True}, res
    muted = sub.wait_for("track_muted", participant="pub", sid=tone["sid"], after=mark, timeout=10)

    res = media.twirp("MutePublishedTrack", room=room, identity="pub", track_sid=tone["sid"], muted=False)
    assert res.get("ok") and res["result"]["track"] == {"sid": tone["sid"], "muted": False}, res
    unmuted = sub.wait_for(
        "track_unmuted", participant="pub", sid=tone["sid"], after=sub.index_of(muted) + 1, timeout=10
    )
    assert unmuted["muted"] is False, unmuted
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "after unmute")
    # The publisher's own SDK followed both requests: its local track was muted, then unmuted.
    own = pub.wait_for("track_muted", participant="pub", sid=tone["sid"], timeout=10)
    assert own["local"] is True, own
    own = pub.wait_for("track_unmuted", participant="pub", sid=tone["sid"], after=pub.index_of(own) + 1, timeout=10)
    assert own["local"] is True, own
