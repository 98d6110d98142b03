"""Simulcast layers of a real publisher: which RTP stream the server files under which layer.

The Python SDK (the Rust SDK inside) publishes simulcast VP8 at 1280x720 (three encodings,
rids q/h/f) and at 640x480 (two: q/h). Its own outbound RTP stats say, per rid, the frame size
it encodes and the bytes it sends; the server's per-layer stats (`/node/stats`, listed by rid)
must carry the same rids at the same rates, and the layers must grow from the lowest (q) to the
highest. A subscriber that asks for the low layer must then decode the small frames, and one
that asks for the high layer the full-size ones.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Dict, List

import pytest

import lkhelpers
from mediahelpers import HTTP_URL, MediaEnv, python_bin

COLOR = [40, 160, 90]

# (width, height) -> the rids the SDK sends for it, lowest resolution first.
CASES = [
    pytest.param(1280, 720, ["q", "h", "f"], id="720p_three_layers"),
    pytest.param(640, 480, ["q", "h"], id="480p_two_layers"),
]


def node_stats(media: MediaEnv) -> Dict[str, Any]:
    """GET /node/stats from inside the namespace with an admin token."""
    token = MediaEnv.token("stats", "any", room_admin=True, room_list=True)
    code = (
        "import sys, urllib.request\n"
        "req = urllib.request.Request(sys.argv[1] + '/node/stats')\n"
        "req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
        "print(urllib.request.urlopen(req, timeout=10).read().decode())\n"
    )
    cp = subprocess.run(media.ns.argv([python_bin(), "-c", code, HTTP_URL, token]), capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"/node/stats failed: {cp.stdout!r} {cp.stderr[-1000:]!r}"
    return json.loads(cp.stdout)


def server_layers(media: MediaEnv, track_sid: str) -> List[Dict[str, Any]]:
    for room in node_stats(media)["rooms"]:
        for p in room["participants"]:
            for t in p["tracks"]:
                if t["sid"] == track_sid:
                    return t["layers"]
    return []


def measure(media: MediaEnv, pub, track_sid: str, seconds: float = 6.0) -> Dict[str, Dict[str, Any]]:
    """Per rid: the server's mean bitrate over `seconds` (its per-second samples averaged) and
    packets, next to what the publisher says it sent on that rid (bitrate and frame size)."""
    before = {s["rid"]: s for s in pub.request("video_send_stats", name="cam")["streams"]}
    samples: Dict[str, List[int]] = {}
    packets: Dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for layer in server_layers(media, track_sid):
            samples.setdefault(layer["rid"], []).append(layer["bitrate_bps"])
            packets[layer["rid"]] = layer["packets"]
        time.sleep(1.0)
    after = {s["rid"]: s for s in pub.request("video_send_stats", name="cam")["streams"]}
    out: Dict[str, Dict[str, Any]] = {}
    for rid, s in after.items():
        b = before.get(rid, {"bytes_sent": 0, "at": s["at"]})
        dt = max(1e-3, s["at"] - b["at"])
        out.setdefault(rid, {}).update(
            client_bps=int((s["bytes_sent"] - b["bytes_sent"]) * 8 / dt),
            width=s["width"],
            height=s["height"],
            active=s["active"],
        )
    for rid, xs in samples.items():
        out.setdefault(rid, {}).update(server_bps=int(sum(xs) / len(xs)), packets=packets[rid])
    return out


def wait_for_size(sub, size, timeout: float = 20.0) -> Dict[str, Any]:
    """Short video analyses until every frame decoded has `size`; the last analysis."""
    deadline = time.monotonic() + timeout
    res: Dict[str, Any] = {}
    while time.monotonic() < deadline:
        res = sub.request("analyze_video", participant="pub", frames=8, timeout=15)
        if "error" not in res and [tuple(x) for x in res["sizes"]] == [tuple(size)]:
            return res
    return res


@pytest.mark.parametrize("width,height,rids", CASES)
def test_simulcast_layers_follow_the_rids(media: MediaEnv, width: int, height: int, rids: List[str]):
    room = lkhelpers.unique("sim")
    sub = media.python_client("sub", room, max_seconds=120)
    sub.wait_for("connected", timeout=20)
    pub = media.python_client("pub", room, max_seconds=120)
    pub.wait_for("connected", timeout=20)
    sub.wait_for("participant_connected", participant="pub", timeout=10)

    video = pub.request("publish_video", name="cam", color=COLOR, simulcast=True, width=width, height=height, timeout=20)
    sv = sub.wait_for("track_subscribed", participant="pub", kind="video", timeout=20)
    assert sv["sid"] == video["sid"] and sv["simulcasted"], sv
    assert (sv["width"], sv["height"]) == (width, height), sv

    # Let the sender's bandwidth estimate ramp up (it probes meanwhile), then compare both
    # sides per rid.
    first = sub.request("analyze_video", participant="pub", frames=10, timeout=30)
    assert "error" not in first, first
    time.sleep(4)
    m = measure(media, pub, video["sid"])
    print(f"\n{width}x{height} per rid: {json.dumps(m)}")

    # The SDK's rids, and the frame sizes it encodes under them: q the smallest, f (or h when
    # there are two) the full size.
    assert sorted(m) == sorted(rids), f"rids: publisher and server disagree with {rids}: {m}"
    sizes = [(m[r]["width"], m[r]["height"]) for r in rids]
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(sizes, sizes[1:])), f"frame sizes by rid {rids}: {sizes}"
    assert sizes[-1] == (width, height), sizes

    # The server files each rid's stream under that rid, at the rate the publisher sends it
    # (RTP headers on top; nothing else, probe padding included, counted).
    for rid in rids:
        c, s = m[rid]["client_bps"], m[rid]["server_bps"]
        assert 0.6 * c - 10_000 <= s <= 1.4 * c + 20_000, f"rid {rid}: the server counts {s} bit/s, the publisher sent {c}: {m}"

    # The subscriber asks for each quality and decodes that layer's frames.
    qualities = ["low", "medium", "high"][-len(rids) :] if len(rids) == 3 else ["low", "high"]
    for quality, rid in zip(qualities, rids):
        sub.request("set_video_quality", participant="pub", quality=quality)
        want = (m[rid]["width"], m[rid]["height"])
        res = wait_for_size(sub, want)
        print(f"{width}x{height}: quality {quality} -> {res.get('sizes')} (layer {rid} is {want})")
        assert [tuple(x) for x in res.get("sizes", [])] == [want], (
            f"after set_video_quality({quality}) the subscriber should decode layer {rid} at {want}: {res}"
        )
        med = res["median_rgb"]
        assert all(abs(a - b) <= 25 for a, b in zip(med, COLOR)), res
