"""Signal connections that drop: the server releases their sockets at once, while the
participants keep their place for the room's departure timeout, as LiveKit does."""

from __future__ import annotations

import asyncio
import os

import aiohttp
from livekit import api

import lkhelpers
from lkhelpers import LiveKitServer

CONNECTIONS = 150


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def join_and_drop(server: LiveKitServer, room: str, n: int) -> int:
    """Opens `n` signal connections, waits for each JoinResponse, then drops them all
    without a leave. Returns how many joined."""
    joined = 0
    sessions = []
    for i in range(n):
        token = lkhelpers.api_token(
            {"roomJoin": True, "room": room}, identity=f"drop-{i}"
        )
        s = aiohttp.ClientSession()
        sessions.append(s)
        ws = await s.ws_connect(f"{server.ws_url}/rtc?access_token={token}&protocol=16")
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type == aiohttp.WSMsgType.BINARY:
            joined += 1
    for s in sessions:
        await s.close()
    return joined


def test_dropped_websockets_release_their_sockets_at_once(server: LiveKitServer):
    room = lkhelpers.unique("drop")
    pid = server.proc.pid
    baseline = open_fds(pid)
    joined = lkhelpers.run(join_and_drop(server, room, CONNECTIONS))
    assert joined == CONNECTIONS

    # Every socket is closed well before the 20 s departure timeout ...
    released = lkhelpers.wait_until(lambda: open_fds(pid) <= baseline + 10, 5)
    assert released, f"{open_fds(pid)} fds open, {baseline} before"

    # ... while the participants are still in the room, waiting for a reconnect.
    async def participants() -> int:
        lk = lkhelpers.lk(server.url)
        try:
            r = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return len(r.participants)
        finally:
            await lk.aclose()

    assert lkhelpers.run(participants()) == CONNECTIONS
