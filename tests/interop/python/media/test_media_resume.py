"""Resume with the Python SDK, in both signalling modes: when the signal connection is cut, or
the whole network goes away for a few seconds, the SDK reports reconnecting/reconnected, keeps
its participant SID, the other side sees no leave, and the tone flows again."""

from __future__ import annotations

import subprocess
import time

import pytest

import lkhelpers
from mediahelpers import OUTAGE, OUTAGE_END, PORT, MediaEnv, assert_tone, nft

FREQ = 440
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


def cut_signal(media: MediaEnv) -> None:
    """Aborts every client-side TCP connection to the signalling port (media is untouched)."""
    subprocess.run(media.ns.argv(["ss", "-K", "dport", "=", f":{PORT}"]), capture_output=True, check=True)


def start(media: MediaEnv, room: str, single_pc: bool):
    pub = media.python_client("pub", room, single_pc=single_pc)
    pub.wait_for("connected", timeout=20)
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=20)
    sub = media.python_client("sub", room, single_pc=single_pc)
    joined = sub.wait_for("connected", timeout=20)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=20)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "before")
    return pub, sub, joined["sid"]


@pytest.mark.parametrize("single_pc", MODES)
def test_resume_after_the_signal_connection_is_cut(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("resume")
    pub, sub, sid = start(media, room, single_pc)
    mark_pub = len(pub.events)
    cut_signal(media)
    for c in (pub, sub):
        c.wait_for("reconnecting", timeout=15)
        back = c.wait_for("reconnected", timeout=20)
        assert back["sid"], back
    assert sub.find("reconnected")[-1]["sid"] == sid, "the SID is kept"
    # Nobody left: no participant_disconnected on either side.
    assert not pub.find("participant_disconnected", after=mark_pub), pub.describe()
    assert not sub.find("participant_disconnected"), sub.describe()
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "after resume")
    # The room still has both, with their SIDs.
    r = media.twirp("ListParticipants", room=room)
    assert sorted(p["identity"] for p in r["result"]["participants"]) == ["pub", "sub"], r
    assert sid in [p["sid"] for p in r["result"]["participants"]], r


@pytest.mark.parametrize("single_pc", MODES)
def test_resume_after_a_total_outage(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("outage")
    pub, sub, sid = start(media, room, single_pc)
    # Every packet inside the namespace is dropped for 18 s (signal and media alike): longer
    # than the 15 s ping timeout, so both sides notice the signal connection is gone.
    nft(media, OUTAGE)
    time.sleep(18)
    nft(media, OUTAGE_END)
    restored = time.monotonic()
    for c in (pub, sub):
        c.wait_for("reconnected", timeout=30)
    back = time.monotonic() - restored
    assert back <= 2.0, f"reconnected {back:.2f}s after the network returned"
    assert sub.find("reconnected")[-1]["sid"] == sid
    assert not sub.find("participant_disconnected"), sub.describe()
    assert not pub.find("participant_disconnected"), pub.describe()
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "after the outage")
