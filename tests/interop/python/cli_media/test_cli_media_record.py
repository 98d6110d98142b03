"""livekit-cli records what an unmodified Python SDK client publishes.

The SDK publishes a 440 Hz tone (Opus) and 640x480 video (VP8, simulcast); `room join --record`
writes them as .ogg and .ivf; ffprobe reads both with the duration the CLI reports and the
publisher's frame size, ffmpeg decodes them without errors, and the audio is still the tone.
"""

from __future__ import annotations

import lkhelpers
from cli_media_helpers import TONE_HZ, decode_errors, decoded_tone, ffprobe, spawn_cli, wait_exit
from mediahelpers import MediaEnv

RECORD_SECONDS = 12
LAYER_SIZES = {(640, 480), (320, 240), (160, 120)}


def test_cli_records_an_sdk_publisher(media: MediaEnv, clips, tmp_path):
    room = lkhelpers.unique("clirec")
    pub = media.python_client("pub", room, single_pc=False)
    pub.wait_for("connected", timeout=20)
    pub.request("publish_audio", name="tone", freq=TONE_HZ, timeout=20)
    pub.request("publish_video", name="cam", color=[200, 60, 90], simulcast=True, timeout=20)

    out = tmp_path / "rec"
    rec = spawn_cli(media, "rec", "room", "join", "--identity", "rec", "--record", str(out), "--duration", f"{RECORD_SECONDS}s", room)
    rec.wait_for("connected", timeout=20)
    rec.wait_for("recording", timeout=20)
    assert wait_exit(rec, RECORD_SECONDS + 30) == 0, rec.describe()
    recorded = {e["path"]: e for e in rec.find("recorded")}
    assert len(recorded) == 2, f"expected an .ogg and an .ivf: {recorded}\n{rec.describe()}"

    ogg = [p for p in recorded if p.endswith(".ogg")]
    ivf = [p for p in recorded if p.endswith(".ivf")]
    assert len(ogg) == 1 and len(ivf) == 1, recorded

    a = ffprobe(ogg[0])
    s = a["streams"][0]
    assert s["codec_name"] == "opus", a
    dur = float(a["format"]["duration"])
    reported = recorded[ogg[0]]["seconds"]
    assert abs(dur - reported) < 0.3, f"ffprobe says {dur}s, the CLI reported {reported}s"
    assert RECORD_SECONDS - 5 < dur <= RECORD_SECONDS + 1, a["format"]
    assert decode_errors(ogg[0]) == ""
    tone = decoded_tone(ogg[0])
    assert tone["freq"] is not None and abs(tone["freq"] - TONE_HZ) <= 10, tone
    assert tone["rms"] > 1500, tone

    v = ffprobe(ivf[0])
    s = v["streams"][0]
    assert s["codec_name"] == "vp8", v
    assert (s["width"], s["height"]) in LAYER_SIZES, s
    dur = float(v["format"]["duration"])
    reported = recorded[ivf[0]]["seconds"]
    assert abs(dur - reported) < 0.3, f"ffprobe says {dur}s, the CLI reported {reported}s"
    assert RECORD_SECONDS - 5 < dur <= RECORD_SECONDS + 1, v["format"]
    frames = int(s["nb_read_frames"])
    assert frames == recorded[ivf[0]]["frames"], (s, recorded[ivf[0]])
    # The SDK publisher sends 20 frames per second.
    assert frames >= 10 * dur, f"{frames} frames in {dur}s"
    assert decode_errors(ivf[0]) == ""
