"""Track subscription permissions, judged by the Python SDK: a publisher that allows only bob
(`set_track_subscription_permissions`) is heard by bob and not by carol, who joined with
auto-subscribe as bob did; allowing only carol instead takes the track from bob and gives it to
carol, who hears it; allowing everyone gives it back to bob."""

from __future__ import annotations

import pytest

import lkhelpers
from mediahelpers import MediaEnv, assert_tone

FREQ = 440
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


@pytest.mark.parametrize("single_pc", MODES)
def test_only_allowed_participants_receive_a_track(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("perm")
    alice = media.python_client("alice", room, single_pc=single_pc, max_seconds=90)
    alice.wait_for("connected", timeout=20)
    alice.request("set_permissions", all=False, allow=[{"identity": "bob"}], timeout=10)
    tone = alice.request("publish_audio", name="tone", freq=FREQ, timeout=20)

    bob = media.python_client("bob", room, single_pc=single_pc, max_seconds=90)
    carol = media.python_client("carol", room, single_pc=single_pc, max_seconds=90)
    carol.wait_for("connected", timeout=20)
    seen = carol.request("state", timeout=10)["remote"]["alice"]
    assert tone["sid"] in seen["tracks"], seen  # she knows of the track
    bob.wait_for("track_subscribed", participant="alice", sid=tone["sid"], timeout=20)
    assert_tone(bob.request("analyze_audio", participant="alice", seconds=0.5, timeout=20), FREQ, "bob")
    # Carol asked for it at the same moment bob did (auto-subscribe); by now she would have it.
    assert carol.find("track_subscribed", participant="alice") == [], carol.describe()

    # Only carol now: bob loses the track, carol gets it and hears it.
    b_mark, c_mark = len(bob.events), len(carol.events)
    alice.request("set_permissions", all=False, allow=[{"identity": "carol", "tracks": [tone["sid"]]}], timeout=10)
    carol.wait_for("track_subscribed", participant="alice", sid=tone["sid"], after=c_mark, timeout=20)
    assert_tone(carol.request("analyze_audio", participant="alice", seconds=0.5, timeout=20), FREQ, "carol")
    # Bob no longer hears it: what reaches his SDK now is silence, or nothing. (The Python SDK
    # does not act on the server's SubscriptionPermissionUpdate, and reports no unsubscription.)
    bob.send("analyze_audio", id="after-revoke", participant="alice", seconds=0.5, timeout=3)
    gone = bob.result("after-revoke", timeout=10)
    assert "error" in gone or gone["rms"] < 200, f"bob still hears alice's tone: {gone}"

    # Everyone: bob gets it back.
    b_mark = len(bob.events)
    alice.request("set_permissions", all=True, timeout=10)
    bob.wait_for("track_subscribed", participant="alice", sid=tone["sid"], after=b_mark, timeout=20)
    assert_tone(bob.request("analyze_audio", participant="alice", seconds=0.5, timeout=20), FREQ, "bob again")
