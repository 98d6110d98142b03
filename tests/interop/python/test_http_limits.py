"""The HTTP listener under hostile clients: LiveKit's `limit.max_api_request_body_size` as the
Python server SDK sees it, bodies never read without a valid token, slow clients cut off, and
refusals that do not say whether an API key exists."""

from __future__ import annotations

import socket
import time

import pytest

import lkhelpers
from lkhelpers import API_KEY, API_SECRET, api_token, lk, run, unique

BODY_LIMIT = 4096
CONFIG = f"""
limit:
  max_api_request_body_size: {BODY_LIMIT}
  http_read_header_timeout: 1
  http_read_body_timeout: 1
"""


@pytest.fixture(scope="module")
def server():
    try:
        srv = lkhelpers.start_server(["--keys", f"{API_KEY}: {API_SECRET}", "--config-body", CONFIG])
    except lkhelpers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield srv
    finally:
        srv.cleanup()


def _connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return s


def _read_answer(s: socket.socket) -> bytes:
    """Reads until the server closes or a whole head and short body arrived."""
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        buf += chunk
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(body) >= length:
                break
    return buf


def test_sdk_body_over_the_limit_is_413(server):
    from livekit import api

    async def body():
        async with lk(server.url) as c:
            room = unique("body")
            await c.room.create_room(api.CreateRoomRequest(name=room))
            # Within the limit: fine.
            await c.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room, metadata="m" * 1000))
            # Over it: LiveKit's 413, whatever the room holds stays unchanged.
            with pytest.raises(api.TwirpError) as e:
                await c.room.update_room_metadata(
                    api.UpdateRoomMetadataRequest(room=room, metadata="x" * (BODY_LIMIT * 2))
                )
            assert e.value.status == 413, e.value
            rooms = await c.room.list_rooms(api.ListRoomsRequest(names=[room]))
            assert [r.metadata for r in rooms.rooms] == ["m" * 1000]

    run(body())


@pytest.mark.parametrize("auth", ["none", "garbage", "unknown-key"])
def test_body_never_read_without_a_valid_token(server, auth):
    headers = {
        "none": "",
        "garbage": "Authorization: Bearer not-a-jwt\r\n",
        "unknown-key": f"Authorization: Bearer {api_token({'roomCreate': True}, key='nokey')}\r\n",
    }[auth]
    s = _connect(server)
    # 9 MiB announced, not one byte of it sent: the answer comes from the head alone.
    s.sendall(
        (
            "POST /twirp/livekit.RoomService/CreateRoom HTTP/1.1\r\nHost: x\r\n"
            f"{headers}Content-Type: application/json\r\nContent-Length: {9 << 20}\r\n\r\n"
        ).encode()
    )
    answer = _read_answer(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b"unauthenticated" in answer, answer[:300]
    assert b"nokey" not in answer and b"API key" not in answer, answer[:300]


def test_unknown_key_and_wrong_secret_read_the_same(server):
    a = lkhelpers.twirp_json(server.url, "ListRooms", {}, api_token({"roomList": True}, key="nokey"))
    b = lkhelpers.twirp_json(server.url, "ListRooms", {}, api_token({"roomList": True}, secret="wrong"))
    assert (a.status, a.json()) == (b.status, b.json()) == (401, {"code": "unauthenticated", "msg": "invalid authorization token"})


def test_slow_header_and_slow_body_are_cut_off(server):
    start = time.monotonic()
    s = _connect(server)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert _read_answer(s) == b"", "a half-sent head got an answer"
    s.close()
    s = _connect(server)
    token = api_token({"roomCreate": True})
    s.sendall(
        (
            "POST /twirp/livekit.RoomService/CreateRoom HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            '{"na'
        ).encode()
    )
    answer = _read_answer(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    # Both within a few times the 1 s timeouts, far below the 10 s socket timeout.
    assert time.monotonic() - start < 8
