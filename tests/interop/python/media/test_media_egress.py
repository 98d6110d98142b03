"""Track egress to files on the node (`livekit.Egress` through the Python `livekit-api` SDK).

A Python SDK publisher sends a 440 Hz tone and a video; StartTrackEgress records each track
into `egress.file_dir`, the file grows while recording, StopEgress completes it, and
ListEgress reports EGRESS_COMPLETE with the file's size and duration. `ffprobe` reads the
files (Ogg/Opus, IVF/VP8) and the decoded audio's spectrum peaks at 440 Hz. Webhooks say
egress_started / egress_updated / egress_ended. A file that cannot be written ends that egress
with EGRESS_FAILED and the error while the room and its participants go on; bad requests get
LiveKit's Twirp codes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import lkhelpers
import mediahelpers
from mediahelpers import API_KEY, API_SECRET, HTTP_URL, MediaEnv, NetNs, PY_DIR, python_bin, wait_until

EGRESS_ADMIN = PY_DIR / "media" / "egress_admin.py"
RECEIVER = PY_DIR / "media" / "webhook_receiver.py"
HOOK_PORT = 18410
MAX_EGRESSES = 4


@pytest.fixture(scope="module")
def egress_dir():
    """The egress directory, with `small/` a 32 KiB tmpfs (about 5 s of the tone). It is
    mounted before the server starts: `ip netns exec` gives the server its own copy of the
    mount table."""
    d = Path(tempfile.mkdtemp(prefix="lkegr-files-"))
    small = d / "small"
    small.mkdir()
    mounted = False
    try:
        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(small)], check=True, timeout=10)
            mounted = True
        yield d
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(small)], check=False, timeout=10)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def media_env(egress_dir: Path):
    if os.geteuid() != 0:
        pytest.skip("these tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    config = f"""
egress:
  file_dir: {egress_dir}
  max_concurrent: {MAX_EGRESSES}
webhook:
  api_key: {API_KEY}
  urls: ["http://127.0.0.1:{HOOK_PORT}/lk"]
"""
    env = MediaEnv(extra_args=["--config-body", config])
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


def egress(media: MediaEnv, call: str, **args) -> dict:
    cp = subprocess.run(
        media.ns.argv([python_bin(), str(EGRESS_ADMIN), HTTP_URL, API_KEY, API_SECRET, call, json.dumps(args)]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    try:
        return json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"egress_admin {call} printed no JSON: {cp.stdout!r} {cp.stderr[-2000:]!r}")


def ok(res: dict) -> dict | list:
    assert res.get("ok"), res
    return res["result"]


def listed(media: MediaEnv, egress_id: str) -> dict:
    items = ok(egress(media, "ListEgress", egress_id=egress_id))
    assert len(items) == 1, items
    return items[0]


def wait_status(media: MediaEnv, egress_id: str, status: str, timeout: float = 15) -> dict:
    got = wait_until(lambda: listed(media, egress_id)["status"] == status, timeout=timeout, interval=0.3)
    info = listed(media, egress_id)
    assert got, f"egress {egress_id} is {info['status']}, not {status}: {info}"
    return info


def ffprobe(path: Path) -> dict:
    cp = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, f"ffprobe cannot read {path}: {cp.stderr}"
    return json.loads(cp.stdout)


def tone_of(path: Path) -> dict:
    """The decoded audio's dominant frequency, loudness and purity (energy near the peak)."""
    cp = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    pcm = np.frombuffer(cp.stdout, dtype=np.int16).astype(np.float64)
    assert len(pcm) > 48000, f"only {len(pcm)} samples decoded"
    pcm = pcm[len(pcm) // 4 :]  # past any start-up
    spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 48000)
    peak = int(np.argmax(spec[1:]) + 1)
    near = (freqs > freqs[peak] - 20) & (freqs < freqs[peak] + 20)
    return {
        "freq": float(freqs[peak]),
        "rms": float(np.sqrt(np.mean(pcm**2))),
        "purity": float(spec[near].sum() / spec.sum()),
        "seconds": len(cp.stdout) / 2 / 48000,
    }


def hooks_of(receiver, egress_id: str):
    return [(e["name"], e["egress_status"]) for e in receiver.find("webhook") if e["egress_id"] == egress_id]


def test_track_egress_records_tone_and_video_files(media: MediaEnv, egress_dir: Path):
    hooks = media.process(
        "webhooks", [python_bin(), str(RECEIVER), "--port", str(HOOK_PORT), "--key", API_KEY, "--secret", API_SECRET]
    )
    hooks.wait_for("listening", timeout=15)
    room = lkhelpers.unique("egress")
    alice = media.python_client("alice", room, max_seconds=120)
    alice.wait_for("connected", timeout=20)
    tone = alice.start("publish_audio", name="tone", freq=440)
    cam = alice.start("publish_video", name="cam", color=[40, 160, 220], simulcast=False)
    tone, cam = alice.result(tone, 20), alice.result(cam, 20)
    # The server has the tracks once ListParticipants shows them.
    assert wait_until(
        lambda: len(ok(media.twirp("ListParticipants", room=room))["participants"][0]["tracks"]) == 2, timeout=15
    )

    a = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="rec/{room_name}-tone"))
    v = ok(egress(media, "StartTrackEgress", room=room, track=cam["sid"]))
    # The same tracks as WebM, asked for by the file name.
    aw = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="webm/{track_id}.webm"))
    vw = ok(egress(media, "StartTrackEgress", room=room, track=cam["sid"], filepath="webm/{track_id}.webm"))
    assert aw["files"][0]["filename"] == f"webm/{tone['sid']}.webm", aw
    assert a["status"] == "EGRESS_STARTING" and a["room_name"] == room and a["room_id"].startswith("RM_"), a
    assert a["egress_id"].startswith("EG_") and a["track_id"] == tone["sid"], a
    assert a["files"][0]["filename"] == f"rec/{room}-tone.ogg", a
    assert v["files"][0]["filename"].endswith(".ivf") and v["files"][0]["filename"].startswith(f"{room}-{cam['sid']}-")
    audio_path = egress_dir / a["files"][0]["filename"]
    video_path = egress_dir / v["files"][0]["filename"]
    assert a["files"][0]["location"] == str(audio_path), a

    for e in (a, v, aw, vw):
        wait_status(media, e["egress_id"], "EGRESS_ACTIVE")
    # The files grow while recording (flushed every second).
    sizes = [audio_path.stat().st_size]
    assert wait_until(lambda: audio_path.stat().st_size > sizes[0] + 4000, timeout=15), "the Ogg file does not grow"
    assert wait_until(lambda: audio_path.stat().st_size > 16000, timeout=20), audio_path.stat()
    assert wait_until(lambda: video_path.stat().st_size > 100_000, timeout=20), video_path.stat()
    active = ok(egress(media, "ListEgress", room=room, active=True))
    assert {i["egress_id"] for i in active} == {e["egress_id"] for e in (a, v, aw, vw)}, active

    stopping = ok(egress(media, "StopEgress", egress_id=a["egress_id"]))
    assert stopping["status"] == "EGRESS_ENDING", stopping
    for e in (v, aw, vw):
        ok(egress(media, "StopEgress", egress_id=e["egress_id"]))
    done_a = wait_status(media, a["egress_id"], "EGRESS_COMPLETE")
    done_v = wait_status(media, v["egress_id"], "EGRESS_COMPLETE")
    done_aw = wait_status(media, aw["egress_id"], "EGRESS_COMPLETE")
    done_vw = wait_status(media, vw["egress_id"], "EGRESS_COMPLETE")
    audio_webm = egress_dir / aw["files"][0]["filename"]
    video_webm = egress_dir / vw["files"][0]["filename"]
    for done, path in ((done_a, audio_path), (done_v, video_path), (done_aw, audio_webm), (done_vw, video_webm)):
        f = done["files"][0]
        assert f["size"] == path.stat().st_size > 0, (done, path.stat())
        assert f["duration"] > 2_000_000_000, done
        assert done["ended_at"] > done["started_at"] > 0 and f["ended_at"] >= f["started_at"] > 0, done
        assert done["error"] == "", done

    probe = ffprobe(audio_path)
    s = probe["streams"][0]
    assert probe["format"]["format_name"] == "ogg" and s["codec_name"] == "opus", probe
    seconds = float(probe["format"]["duration"])
    assert abs(seconds - done_a["files"][0]["duration"] / 1e9) < 0.5, (seconds, done_a)
    t = tone_of(audio_path)
    assert abs(t["freq"] - 440) <= 10, t
    assert t["rms"] > 1500 and t["purity"] > 0.6, t

    probe = ffprobe(video_path)
    s = probe["streams"][0]
    assert probe["format"]["format_name"] == "ivf" and s["codec_name"] == "vp8", probe
    assert 0 < s["width"] <= 640 and 0 < s["height"] <= 480, s
    assert int(s["nb_read_frames"]) >= 30, s

    # WebM: Opus and VP8 in Matroska, the tone still at 440 Hz, the full picture size.
    probe = ffprobe(audio_webm)
    assert "webm" in probe["format"]["format_name"] and probe["streams"][0]["codec_name"] == "opus", probe
    assert abs(float(probe["format"]["duration"]) - done_aw["files"][0]["duration"] / 1e9) < 0.5, (probe, done_aw)
    t = tone_of(audio_webm)
    assert abs(t["freq"] - 440) <= 10 and t["rms"] > 1500 and t["purity"] > 0.6, t
    probe = ffprobe(video_webm)
    s = probe["streams"][0]
    assert "webm" in probe["format"]["format_name"] and s["codec_name"] == "vp8", probe
    assert (s["width"], s["height"]) == (640, 480), s
    assert int(s["nb_read_frames"]) >= 30, s

    # Webhooks for each egress, in order (the ACTIVE update may come before or after the
    # ENDING one only if stopped at once, which is not the case here).
    for e in (a, v):
        hooks.wait_for("webhook", name="egress_ended", egress_id=e["egress_id"], timeout=10)
        assert hooks_of(hooks, e["egress_id"]) == [
            ("egress_started", "EGRESS_STARTING"),
            ("egress_updated", "EGRESS_ACTIVE"),
            ("egress_updated", "EGRESS_ENDING"),
            ("egress_ended", "EGRESS_COMPLETE"),
        ], hooks.describe()
    assert not hooks.find("webhook_error"), hooks.describe()

    # Stopping again is refused as LiveKit refuses it.
    again = egress(media, "StopEgress", egress_id=a["egress_id"])
    assert (again.get("ok"), again.get("code")) == (False, "failed_precondition"), again
    assert "EGRESS_COMPLETE" in again["error"], again


def test_a_simulcast_track_is_recorded_from_its_top_layer(media: MediaEnv, egress_dir: Path):
    # Two layers (q 320x240, h 640x480): the file gets the best one, whole.
    room = lkhelpers.unique("egresssim")
    alice = media.python_client("alice", room, max_seconds=120)
    alice.wait_for("connected", timeout=20)
    cam = alice.request("publish_video", name="cam", color=[40, 160, 220], simulcast=True, timeout=20)

    def layers():
        rooms = ok(egress(media, "NodeStats"))["rooms"]
        tracks = [t for r in rooms if r["name"] == room for p in r["participants"] for t in p["tracks"]]
        return {layer["rid"]: layer["live"] for t in tracks if t["sid"] == cam["sid"] for layer in t["layers"]}

    assert wait_until(lambda: layers() == {"q": True, "h": True}, timeout=15), layers()
    e = ok(egress(media, "StartTrackEgress", room=room, track=cam["sid"], filepath="simulcast-{track_id}"))
    wait_status(media, e["egress_id"], "EGRESS_ACTIVE")
    path = egress_dir / e["files"][0]["filename"]
    assert wait_until(lambda: path.stat().st_size > 150_000, timeout=30), path.stat()
    ok(egress(media, "StopEgress", egress_id=e["egress_id"]))
    wait_status(media, e["egress_id"], "EGRESS_COMPLETE")
    s = ffprobe(path)["streams"][0]
    assert s["codec_name"] == "vp8" and (s["width"], s["height"]) == (640, 480), s
    assert int(s["nb_read_frames"]) >= 30, s


def test_an_unwritable_file_fails_its_egress_alone(media: MediaEnv, egress_dir: Path):
    room = lkhelpers.unique("egressfail")
    alice = media.python_client("alice", room, max_seconds=120)
    alice.wait_for("connected", timeout=20)
    tone = alice.request("publish_audio", name="tone", freq=440, timeout=20)
    bob = media.python_client("bob", room, single_pc=False, max_seconds=120)
    bob.wait_for("connected", timeout=20)
    bob.wait_for("track_subscribed", participant="alice", sid=tone["sid"], timeout=20)

    # A full disk from the start: the file is /dev/full, every write fails with ENOSPC.
    os.symlink("/dev/full", egress_dir / "full.ogg")
    # A path that cannot be created: one of its directories is a file.
    (egress_dir / "plain-file").write_text("not a directory")
    filling = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="small/filling"))
    full = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="full.ogg"))
    blocked = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="plain-file/x"))
    healthy = ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="healthy"))

    f = wait_status(media, full["egress_id"], "EGRESS_FAILED")
    assert "No space left on device" in f["error"], f
    # The small disk (a tmpfs, see egress_dir): failed once it is full, with what it wrote.
    filled = wait_status(media, filling["egress_id"], "EGRESS_FAILED", timeout=30)
    assert "No space left on device" in filled["error"], filled
    written = (egress_dir / "small" / "filling.ogg").stat().st_size
    assert 16 * 1024 < written <= 32 * 1024, written
    assert filled["files"][0]["size"] == written, filled
    b = wait_status(media, blocked["egress_id"], "EGRESS_FAILED")
    # create_dir_all's word for a directory that is a file
    assert "File exists" in b["error"] or "Not a directory" in b["error"], b
    # The other egress, the room and its participants go on.
    wait_status(media, healthy["egress_id"], "EGRESS_ACTIVE")
    path = egress_dir / "healthy.ogg"
    size = path.stat().st_size
    assert wait_until(lambda: path.stat().st_size > size + 4000, timeout=15), "the healthy egress stopped writing"
    parts = ok(media.twirp("ListParticipants", room=room))["participants"]
    assert {p["identity"] for p in parts} == {"alice", "bob"}, parts
    res = bob.request("analyze_audio", participant="alice", seconds=2, timeout=20)
    mediahelpers.assert_tone(res, 440, "bob after the failed egresses")
    assert not alice.find("disconnected") and not bob.find("disconnected")
    assert media.server_alive()

    # The publisher leaving ends the healthy egress with its track: COMPLETE.
    alice.close()
    done = wait_status(media, healthy["egress_id"], "EGRESS_COMPLETE")
    assert done["files"][0]["size"] == path.stat().st_size > 0, done
    assert tone_of(path)["freq"] == pytest.approx(440, abs=10)


def test_bad_egress_requests_get_livekit_codes(media: MediaEnv):
    room = lkhelpers.unique("egressbad")
    alice = media.python_client("alice", room, max_seconds=120)
    alice.wait_for("connected", timeout=20)
    tone = alice.request("publish_audio", name="tone", freq=440, timeout=20)
    assert wait_until(lambda: ok(media.twirp("ListParticipants", room=room))["participants"][0]["tracks"], timeout=15)

    r = egress(media, "StartTrackEgress", room=room, track="TR_unknown")
    assert (r["ok"], r.get("code"), r.get("status")) == (False, "not_found", 404), r
    r = egress(media, "StartTrackEgress", room="no-such-room", track=tone["sid"])
    assert (r["ok"], r.get("code")) == (False, "not_found"), r
    assert r["error"] == "requested room does not exist", r
    r = egress(media, "StopEgress", egress_id="EG_unknown")
    assert (r["ok"], r.get("code")) == (False, "not_found"), r
    r = egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="../outside")
    assert (r["ok"], r.get("code")) == (False, "invalid_argument"), r
    # Without roomRecord: LiveKit's answer (unauthenticated, "permissions denied").
    body = {"room_name": room, "track_id": tone["sid"], "file": {"filepath": "x"}}
    r = egress(media, "Raw", method="StartTrackEgress", body=body, grants={"room_admin": True, "room": room})
    assert (r["ok"], r.get("status"), r.get("code")) == (False, 401, "unauthenticated"), r
    r = egress(media, "Raw", method="ListEgress", body={}, grants={"room_list": True})
    assert (r["ok"], r.get("code")) == (False, "unauthenticated"), r
    # Room composite needs an egress fleet.
    r = egress(media, "Raw", method="StartRoomCompositeEgress", body={"room_name": room}, grants={"room_record": True})
    assert (r["ok"], r.get("code")) == (False, "unimplemented"), r

    # The cap on egresses recording at once.
    started = [
        ok(egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath=f"cap-{i}"))
        for i in range(MAX_EGRESSES)
    ]
    r = egress(media, "StartTrackEgress", room=room, track=tone["sid"], filepath="cap-over")
    assert (r["ok"], r.get("code")) == (False, "resource_exhausted"), r
    for e in started:
        ok(egress(media, "StopEgress", egress_id=e["egress_id"]))
    for e in started:
        wait_status(media, e["egress_id"], "EGRESS_COMPLETE")
    # Nothing else was disturbed.
    assert not alice.find("disconnected") and media.server_alive()
