"""The live node page (`/node`) in headless Chromium at a phone's size, against a running room.

A Python SDK participant publishes a tone and a video, another subscribes; Chromium (driven
by playwright-core, inside the test's namespace) opens the page, is refused with a wrong
secret, logs in with the API key and secret, and must show both participants and a nonzero
bitrate on each published track, fit a 390 px wide screen, and keep refreshing. The data
behind it needs a token: none, a wrong one, or one without roomList/roomAdmin get 401.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import API_KEY, API_SECRET, HTTP_URL, INTEROP_DIR, MediaEnv, NetNs, node_bin, python_bin

CHECK = INTEROP_DIR / "browser" / "node_page_check.mjs"


@pytest.fixture(scope="module")
def media_env():
    if os.geteuid() != 0:
        pytest.skip("these tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    env = MediaEnv()
    env.ns = NetNs(prefix="lkegr")
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


def stats_status(media: MediaEnv, token: str | None) -> int:
    """The HTTP status of GET /node/stats with `token`, asked from inside the namespace."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1] + '/node/stats')\n"
        "if sys.argv[2]: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
        "try:\n"
        "    print(urllib.request.urlopen(req, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    cp = subprocess.run(media.ns.argv([python_bin(), "-c", code, HTTP_URL, token or ""]), capture_output=True, text=True, timeout=30)
    return int(cp.stdout.strip())


def login_status(media: MediaEnv, body: str) -> int:
    """The HTTP status of POST /node/login with `body`, from inside the namespace."""
    code = (
        "import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1] + '/node/login', data=sys.argv[2].encode(), method='POST')\n"
        "try:\n"
        "    print(urllib.request.urlopen(req, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    cp = subprocess.run(media.ns.argv([python_bin(), "-c", code, HTTP_URL, body]), capture_output=True, text=True, timeout=30)
    return int(cp.stdout.strip())


def test_node_page_shows_participants_and_bitrates_on_a_phone(media: MediaEnv, tmp_path: Path):
    assert node_bin(), "node is required to drive Chromium"
    room = lkhelpers.unique("nodepage")
    alice = media.python_client("alice", room, max_seconds=120)
    alice.wait_for("connected", timeout=20)
    a = alice.start("publish_audio", name="tone", freq=440)
    v = alice.start("publish_video", name="cam", color=[200, 60, 90])
    alice.result(a, 20), alice.result(v, 20)
    bob = media.python_client("bob", room, single_pc=False, max_seconds=120)
    bob.wait_for("connected", timeout=20)
    bob.wait_for("track_subscribed", participant="alice", kind="video", timeout=20)

    shot = tmp_path / "node-page.png"
    cp = subprocess.run(
        media.ns.argv(
            [
                node_bin(), str(CHECK), "--url", HTTP_URL, "--key", API_KEY, "--secret", API_SECRET,
                "--wrong-secret", "wrong", "--expect", "alice,bob", "--publisher", "alice",
                "--screenshot", str(shot), "--timeout-s", "30",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in cp.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the page check printed nothing: {cp.stdout!r} {cp.stderr[-3000:]!r}"
    res = json.loads(lines[-1])
    assert res["ok"], res
    assert res["wrong_secret_error"] == "invalid API key or secret", res
    assert res["view_hidden_after_wrong"], res
    assert not res["page_errors"], res
    assert room in res["rooms"], res
    assert {"alice", "bob"} <= set(res["participants"]), res
    mine = {t["kind"]: t for t in res["tracks"] if t["participant"] == "alice"}
    assert set(mine) == {"audio", "video"}, res
    # Opus at its usual rate, and simulcast video well above it.
    assert 8_000 < mine["audio"]["bps"] < 200_000, mine
    assert mine["video"]["bps"] > 50_000, mine
    assert mine["video"]["loss"] < 0.05 and mine["audio"]["loss"] < 0.05, mine
    assert "kbps" in mine["video"]["bitrate_text"] or "Mbps" in mine["video"]["bitrate_text"], mine
    # Simulcast: the layers are listed by rid (the SDK sends two for 640x480).
    assert mine["video"]["layers"].count("bps") >= 2 and "q " in mine["video"]["layers"], mine
    # Fits a phone: nothing wider than the screen.
    assert res["width"] == 390 and res["overflow_px"] <= 0, res
    assert all(t["row_width"] <= 390 for t in res["tracks"]), res
    assert shot.stat().st_size > 10_000

    # The data needs a token with roomList or roomAdmin.
    assert stats_status(media, None) == 401
    assert stats_status(media, "not-a-jwt") == 401
    wrong = MediaEnv.token("x", room, secret="wrong-secret")
    assert stats_status(media, wrong) == 401
    join_only = MediaEnv.token("x", room)
    assert stats_status(media, join_only) == 401
    admin = MediaEnv.token("x", room, room_admin=True)
    assert stats_status(media, admin) == 200
    # Logging in: the right pair gets a token, a wrong one 401, a huge body 413.
    assert login_status(media, json.dumps({"key": API_KEY, "secret": API_SECRET})) == 200
    assert login_status(media, json.dumps({"key": API_KEY, "secret": "no"})) == 401
    assert login_status(media, json.dumps({"key": "nobody", "secret": API_SECRET})) == 401
    assert login_status(media, json.dumps({"key": API_KEY, "secret": "x" * 10_000})) == 413
    assert media.server_alive()
