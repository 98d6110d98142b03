"""Prometheus metrics: LiveKit's names, figures that move by what clients did, basic auth."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from livekit import api

import lkhelpers

USER, PASSWORD = lkhelpers.METRICS_USER, lkhelpers.METRICS_PASSWORD


@pytest.fixture(scope="module")
def server():
    port = lkhelpers.free_tcp_port()
    body = lkhelpers.prometheus_config(port)
    srv = lkhelpers.start_server(
        ["--keys", f"{lkhelpers.API_KEY}: {lkhelpers.API_SECRET}", "--config-body", body]
    )
    srv.metrics_port = port
    try:
        yield srv
    finally:
        srv.cleanup()


def scrape(server, user=USER, password=PASSWORD):
    req = urllib.request.Request(f"http://127.0.0.1:{server.metrics_port}/metrics")
    if user is not None:
        cred = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


value = lkhelpers.metric_value


def test_wrong_or_missing_credentials_get_401(server):
    for user, pw in [(None, None), (USER, "wrong"), ("nobody", PASSWORD)]:
        with pytest.raises(urllib.error.HTTPError) as e:
            scrape(server, user, pw)
        assert e.value.code == 401
        assert "Basic" in e.value.headers.get("WWW-Authenticate", "")


def test_figures_follow_rooms_participants_and_twirp_calls(server):
    before = scrape(server)
    assert value(before, "livekit_room_total") == 0
    joins_before = value(before, "livekit_participant_join_total", state="joined")
    room = lkhelpers.unique("metrics")

    async def session():
        sessions, sockets = [], []
        for i in range(3):
            token = lkhelpers.api_token({"roomJoin": True, "room": room}, identity=f"m{i}")
            s = aiohttp.ClientSession()
            sessions.append(s)
            ws = await s.ws_connect(f"{server.ws_url}/rtc?access_token={token}&protocol=16")
            await asyncio.wait_for(ws.receive(), 10)
            sockets.append(ws)
        lk = lkhelpers.lk(server.url)
        try:
            for _ in range(5):
                await lk.room.list_rooms(api.ListRoomsRequest())
            with pytest.raises(api.TwirpError):
                await lk.room.list_participants(api.ListParticipantsRequest(room="no-such-room"))
        finally:
            await lk.aclose()
        during = scrape(server)
        for ws in sockets:
            await ws.send_bytes(bytes([0x42, 0]))  # SignalRequest{leave: {}}
            # A WebSocket close handshake, so the leave is read before the socket goes (an
            # abrupt reset can discard it; the server would then keep the place for a resume).
            await ws.close()
        for s in sessions:
            await s.close()
        return during

    assert "livekit_node_twirp_request_status{" not in before, "no Twirp call was made yet"
    during = lkhelpers.run(session())
    assert value(during, "livekit_room_total") == 1
    assert value(during, "livekit_participant_total") == 3
    assert value(during, "livekit_participant_join_total", state="joined") == joins_before + 3
    assert value(during, "livekit_node_twirp_request_status", method="ListRooms", status="200") == 5
    assert value(during, "livekit_node_twirp_request_status", method="ListParticipants", status="404", code="not_found") == 1
    assert value(during, "process_open_fds") > 0
    assert value(during, "process_resident_memory_bytes") > 1_000_000
    # Everyone left with `leave`: the figures come back down.
    # (Well before the 20 s a dropped connection would keep them.)
    assert lkhelpers.wait_until(lambda: value(scrape(server), "livekit_participant_total") == 0, 12)


def opus_packets(path) -> int:
    """Audio packets in an Ogg/Opus file: packets end at lacing values below 255; the first
    two are the OpusHead and OpusTags headers."""
    data = open(path, "rb").read()
    i = packets = 0
    while i + 27 <= len(data) and data[i : i + 4] == b"OggS":
        nseg = data[i + 26]
        lacing = data[i + 27 : i + 27 + nseg]
        packets += sum(1 for v in lacing if v < 255)
        i += 27 + nseg + sum(lacing)
    return packets - 2


def test_packet_counters_move_by_what_was_sent(server, tmp_path):
    import shutil
    import subprocess

    assert shutil.which("ffmpeg"), "ffmpeg is needed (scripts/test installs it)"
    clip = tmp_path / "tone.ogg"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000:duration=3", "-c:a", "libopus",
         "-b:a", "48k", "-frame_duration", "20", str(clip)],
        check=True, timeout=60,
    )
    sent = opus_packets(clip)
    assert 140 <= sent <= 160, sent
    room = lkhelpers.unique("counted")
    cli = [lkhelpers.CLI_BIN, "--url", server.url, "--api-key", lkhelpers.API_KEY, "--api-secret", lkhelpers.API_SECRET]
    rec = subprocess.Popen(
        cli + ["room", "join", "--identity", "rec", "--record", str(tmp_path / "rec"), "--duration", "30s", room],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert lkhelpers.wait_until(lambda: value(scrape(server), "livekit_participant_total") >= 1, 10)
        before = scrape(server)
        in0 = value(before, "livekit_packet_total", direction="incoming")
        out0 = value(before, "livekit_packet_total", direction="outgoing", transmission="primary")
        bytes0 = value(before, "livekit_packet_bytes", direction="incoming")
        pub = subprocess.run(
            cli + ["room", "join", "--identity", "pub", "--publish", str(clip), "--exit-after-publish", room],
            capture_output=True, text=True, timeout=60,
        )
        assert pub.returncode == 0, pub.stderr[-2000:]

        # The media thread publishes its counters once a second.
        now = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            t = scrape(server)
            if value(t, "livekit_packet_total", direction="incoming") - in0 >= sent:
                now = t
                break
            time.sleep(0.2)
        assert now, f"incoming packets never reached the {sent} sent:\n{t}"
        got_in = value(now, "livekit_packet_total", direction="incoming") - in0
        got_out = value(now, "livekit_packet_total", direction="outgoing", transmission="primary") - out0
        assert got_in == sent, f"server counted {got_in} incoming RTP packets, the file has {sent}"
        # The one subscriber got them all but the few sent before its subscription was up.
        assert sent - 15 <= got_out <= sent, f"{got_out} forwarded of {sent}"
        assert value(now, "livekit_packet_bytes", direction="incoming") - bytes0 >= sent * 20
        # Every received batch was timed through to its sends.
        assert value(now, "livekit_forward_latency_count") > value(before, "livekit_forward_latency_count")
        assert value(now, "livekit_forward_latency_bucket", le="+Inf") == value(now, "livekit_forward_latency_count")
        # Loopback loses nothing: the loss counter stays where it was.
        assert value(now, "livekit_packet_loss_total") == value(before, "livekit_packet_loss_total")
        # Both joined with media: two more join latencies observed, all under 5 s.
        assert value(now, "livekit_session_join_latency_ms_count") >= 2
        assert value(now, "livekit_session_join_latency_ms_bucket", le="5000") == value(
            now, "livekit_session_join_latency_ms_count"
        )
    finally:
        rec.terminate()
        rec.wait(timeout=10)
