"""Prometheus metrics: LiveKit's names, figures that move by what clients did, basic auth."""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.error
import urllib.request

import aiohttp
import pytest
from livekit import api

import lkhelpers

USER, PASSWORD = "scraper", "s3cret"


@pytest.fixture(scope="module")
def server():
    port = lkhelpers.free_tcp_port()
    body = f"prometheus:\n  port: {port}\n  username: {USER}\n  password: {PASSWORD}\n"
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


def value(text: str, name: str, **labels) -> float:
    total = None
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total = (total or 0) + float(m.group(4))
    assert total is not None, f"{name} {labels} not in metrics:\n{text}"
    return total


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
    assert lkhelpers.wait_until(lambda: value(scrape(server), "livekit_participant_total") == 0, 5)
