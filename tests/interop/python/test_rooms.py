"""RoomService room calls through the real Python SDK (Twirp + protobuf bodies)."""

from __future__ import annotations

import asyncio
import time

import pytest
from livekit import api

from lkhelpers import expect_twirp as expect_error, http_request, lk, run, unique


async def room_names(lkapi: api.LiveKitAPI, names=None) -> list:
    res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=names or []))
    return [r.name for r in res.rooms]


def test_health_ok(url):
    resp = http_request("GET", url + "/")
    assert resp.status == 200, resp
    assert resp.text.strip() == "OK", resp


def test_create_room_returns_room(url):
    name = unique("create")

    async def body():
        async with lk(url) as lkapi:
            before = time.time()
            room = await lkapi.room.create_room(
                api.CreateRoomRequest(name=name, empty_timeout=600, max_participants=20, metadata="m")
            )
            after = time.time()
            assert room.sid.startswith("RM_") and len(room.sid) > 3, room
            assert room.name == name
            assert room.empty_timeout == 600
            assert room.max_participants == 20
            assert room.metadata == "m"
            assert before - 5 <= room.creation_time <= after + 5, (room.creation_time, before)
            assert before * 1000 - 5000 <= room.creation_time_ms <= after * 1000 + 5000, room.creation_time_ms
            assert abs(room.creation_time_ms // 1000 - room.creation_time) <= 1
            assert room.num_participants == 0

    run(body())


def test_create_existing_room_returns_same_room(url):
    name = unique("dup")

    async def body():
        async with lk(url) as lkapi:
            first = await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=300))
            second = await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=300))
            assert first.sid.startswith("RM_")
            assert second.sid == first.sid
            assert second.name == name
            assert (await room_names(lkapi, [name])) == [name]

    run(body())


def test_distinct_rooms_get_distinct_sids(url):
    async def body():
        async with lk(url) as lkapi:
            a = await lkapi.room.create_room(api.CreateRoomRequest(name=unique("a")))
            b = await lkapi.room.create_room(api.CreateRoomRequest(name=unique("b")))
            assert a.sid != b.sid

    run(body())


def test_list_rooms_all_and_filtered(url):
    a, b, c = unique("la"), unique("lb"), unique("lc")

    async def body():
        async with lk(url) as lkapi:
            for n in (a, b, c):
                await lkapi.room.create_room(api.CreateRoomRequest(name=n, metadata=f"md-{n}"))
            all_rooms = await lkapi.room.list_rooms(api.ListRoomsRequest())
            by_name = {r.name: r for r in all_rooms.rooms}
            assert {a, b, c} <= set(by_name), sorted(by_name)
            assert by_name[a].metadata == f"md-{a}"
            assert by_name[a].sid.startswith("RM_")

            assert sorted(await room_names(lkapi, [a, b])) == sorted([a, b])
            assert (await room_names(lkapi, [c])) == [c]
            assert (await room_names(lkapi, [unique("nope")])) == []

    run(body())


def test_delete_room(url):
    name = unique("del")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            assert (await room_names(lkapi, [name])) == [name]
            res = await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
            assert isinstance(res, api.DeleteRoomResponse)
            assert name not in await room_names(lkapi)
            assert (await room_names(lkapi, [name])) == []
            # Deleting it again: the room no longer exists.
            await expect_error(lkapi.room.delete_room(api.DeleteRoomRequest(room=name)), "not_found", 404)

    run(body())


def test_delete_missing_room_not_found(url):
    async def body():
        async with lk(url) as lkapi:
            await expect_error(lkapi.room.delete_room(api.DeleteRoomRequest(room=unique("missing"))), "not_found", 404)

    run(body())


def test_deleted_room_can_be_recreated_with_new_sid(url):
    name = unique("again")

    async def body():
        async with lk(url) as lkapi:
            first = await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
            second = await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            assert second.sid.startswith("RM_")
            assert second.sid != first.sid

    run(body())


def test_update_room_metadata(url):
    name = unique("meta")

    async def body():
        async with lk(url) as lkapi:
            created = await lkapi.room.create_room(api.CreateRoomRequest(name=name, metadata="old"))
            updated = await lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=name, metadata="new-md"))
            assert updated.name == name
            assert updated.sid == created.sid
            assert updated.metadata == "new-md"
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
            assert [r.metadata for r in listed.rooms] == ["new-md"]

    run(body())


def test_update_room_metadata_missing_room(url):
    async def body():
        async with lk(url) as lkapi:
            await expect_error(
                lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=unique("missing"), metadata="x")),
                "not_found",
                404,
            )

    run(body())


def test_empty_timeout_closes_unused_room(url):
    short, long = unique("short"), unique("long")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=long, empty_timeout=300))
            await lkapi.room.create_room(api.CreateRoomRequest(name=short, empty_timeout=1))
            assert (await room_names(lkapi, [short])) == [short], "room must exist right after creation"
            loop_deadline = time.monotonic() + 15
            while time.monotonic() < loop_deadline:
                if not await room_names(lkapi, [short]):
                    break
                await asyncio.sleep(0.25)
            else:
                pytest.fail("room with empty_timeout=1 still listed after 15 s")
            assert short not in await room_names(lkapi)
            # The reaper must not close rooms whose timeout has not elapsed.
            assert (await room_names(lkapi, [long])) == [long]

    run(body())

