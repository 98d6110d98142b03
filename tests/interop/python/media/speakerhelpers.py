"""Active-speaker checks shared by the speaker tests: tones at chosen levels and the Python
SDK's list of active speakers."""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List

from mediahelpers import ClientProc, MediaEnv


def amplitude_at(dbov: float) -> int:
    """The int16 peak of a sine whose RMS level is `dbov` (e.g. -40)."""
    return round(32767 * math.sqrt(2) * 10 ** (dbov / 20))


def speakers_event(
    c: ClientProc, pred: Callable[[List[str]], bool], what: str, after: int = 0, timeout: float = 20
) -> Dict[str, Any]:
    """The first active_speakers_changed event (from index `after` on) whose list satisfies `pred`."""
    deadline = time.monotonic() + timeout
    with c.cond:
        while True:
            for e in c.events[after:]:
                if e.get("event") == "active_speakers_changed" and pred(e["speakers"]):
                    return e
            left = deadline - time.monotonic()
            if left <= 0 or c.eof:
                seen = [e["speakers"] for e in c.events if e.get("event") == "active_speakers_changed"]
                raise AssertionError(f"[{c.label}] no active speaker list with {what} within {timeout}s; lists seen: {seen}\n{c.describe()}")
            c.cond.wait(min(left, 0.5))


def tone_publisher(media: MediaEnv, sub: ClientProc, identity: str, room: str, freq: int, dbov: float) -> ClientProc:
    """A Python SDK client publishing a `freq` Hz sine at `dbov`, once `sub` is subscribed to it."""
    c = media.python_client(identity, room, max_seconds=90)
    c.wait_for("connected", timeout=20)
    res = c.request("publish_audio", name="tone", freq=freq, amplitude=amplitude_at(dbov), timeout=20)
    sub.wait_for("track_subscribed", participant=identity, sid=res["sid"], kind="audio", timeout=20)
    return c


def assert_audio_arrives(sub: ClientProc, identity: str, dbov: float) -> None:
    """`sub` receives `identity`'s audio at the level it was published at (its peak within a
    factor of two): not silence, and no louder."""
    want = amplitude_at(dbov)
    res = sub.request("audio_peak", participant=identity, frames=100, timeout=20)
    assert "error" not in res and res["frames"] >= 50, f"too little audio from {identity}: {res}"
    assert want / 2 <= res["peak"] <= want * 2, f"{identity}'s audio should peak near {want} ({dbov} dBov): {res}"


def assert_speaker_and_not(media: MediaEnv, room: str, speaker: float, other: float) -> None:
    """In `room`, a 440 Hz tone at `speaker` dBov is an active speaker and a 330 Hz tone at
    `other` dBov, measured in the same intervals, is not, though its audio arrives; nor is it
    once the speaker is muted, intervals later."""
    sub = media.python_client("sub", room, max_seconds=90)
    sub.wait_for("connected", timeout=20)
    tone_publisher(media, sub, "other", room, 330, other)
    loud = tone_publisher(media, sub, "speaker", room, 440, speaker)
    assert_audio_arrives(sub, "speaker", speaker)

    on = speakers_event(sub, lambda s: "speaker" in s, "speaker")
    assert "other" not in on["speakers"], on
    assert_audio_arrives(sub, "other", other)

    mark = len(sub.events)
    loud.request("mute", name="tone", timeout=10)
    off = speakers_event(sub, lambda s: "speaker" not in s, "speaker gone", after=mark)
    assert off["speakers"] == [], off
    assert_audio_arrives(sub, "other", other)
