"""The original README flow, with another participant receiving:

    livekit-cli create-room --name ROOM
    livekit-cli create-token --join --room ROOM --identity cli-user
    livekit-cli join --token TOKEN --audio tone.ogg --video clip.ivf

The legacy `join` takes no API key: only the token. A Python SDK participant in the room gets both
tracks from `cli-user` and hears the tone.
"""

from __future__ import annotations

import lkhelpers
from cli_media_helpers import TONE_HZ, Clips, run_cli
from mediahelpers import HTTP_URL, MediaEnv, assert_tone


def test_readme_flow(media: MediaEnv, clips: Clips):
    room = lkhelpers.unique("readme")
    cp = run_cli(media, "create-room", "--name", room)
    assert cp.returncode == 0, lkhelpers.describe(cp)
    assert room in cp.stdout, cp.stdout
    cp = run_cli(media, "create-token", "--join", "--room", room, "--identity", "cli-user")
    assert cp.returncode == 0, lkhelpers.describe(cp)
    token = cp.stdout.strip().splitlines()[-1].removeprefix("Access token: ").strip()
    assert token.count(".") == 2, cp.stdout

    watcher = media.python_client("watcher", room)
    watcher.wait_for("connected", timeout=20)
    argv = media.ns.argv(
        [
            lkhelpers.CLI_BIN, "--url", HTTP_URL, "--json", "join", "--token", token,
            "--audio", str(clips.ogg), "--video", str(clips.ivf), "--loop", "--duration", "40s",
        ]
    )
    cli = media._spawn("cli:join", argv)
    cli.wait_for("connected", timeout=20)
    sa = watcher.wait_for("track_subscribed", participant="cli-user", kind="audio", timeout=20)
    sv = watcher.wait_for("track_subscribed", participant="cli-user", kind="video", timeout=20)
    assert sa["sid"].startswith("TR_") and sv["sid"].startswith("TR_"), (sa, sv)
    a = watcher.start("analyze_audio", participant="cli-user", seconds=1.0, timeout=25)
    assert_tone(watcher.result(a, timeout=40), TONE_HZ, "watcher <- cli join")
    v = watcher.start("analyze_video", participant="cli-user", frames=20, timeout=25)
    res = watcher.result(v, timeout=40)
    assert res.get("frames", 0) >= 20, res
