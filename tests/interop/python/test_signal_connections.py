"""Signal connections: the server sends each message at once (Nagle's algorithm off, as on
LiveKit's Go server), and connections that drop release their sockets at once while the
participants keep their place for the room's departure timeout, as LiveKit does."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket

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


# pidfd_getfd(2): the same number on every Linux architecture.
SYS_PIDFD_GETFD = 438


def accepted_nodelay(pid: int, port: int) -> list[int]:
    """TCP_NODELAY of every connection process `pid` accepted on TCP `port`, read from a
    duplicate of each of its sockets (pidfd_getfd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = os.pidfd_open(pid)
    values = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            try:
                if s.family != socket.AF_INET or s.type != socket.SOCK_STREAM:
                    continue
                if s.getsockname()[1] != port:
                    continue
                try:
                    s.getpeername()
                except OSError:
                    continue  # the listening socket
                values.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            finally:
                s.close()  # our duplicate only
    finally:
        os.close(pidfd)
    return values


def test_signal_connections_send_without_waiting_for_acks(server: LiveKitServer):
    """Two messages written back to back (an answer, then an update) must not wait for the
    client's delayed ACK (40 ms on Linux): the server's sockets have TCP_NODELAY."""

    async def check() -> list[int]:
        token = lkhelpers.api_token(
            {"roomJoin": True, "room": lkhelpers.unique("nodelay")}, identity="nd"
        )
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"{server.ws_url}/rtc?access_token={token}&protocol=16")
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            values = accepted_nodelay(server.proc.pid, server.port)
            await ws.close()
            return values

    values = lkhelpers.run(check())
    assert values, "the signal connection was not found among the server's sockets"
    assert all(v != 0 for v in values), f"TCP_NODELAY per accepted connection: {values}"


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
