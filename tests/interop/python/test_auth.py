"""Authentication and grants, as the LiveKit server checks them."""

from __future__ import annotations

import time

import pytest
from livekit import api

from lkhelpers import (
    API_KEY,
    API_SECRET,
    api_token,
    assert_twirp_error,
    expect_twirp,
    lk,
    lk_with_token,
    make_jwt,
    run,
    twirp_json,
    twirp_post,
    unique,
)


@pytest.fixture(scope="module")
def room(server) -> str:
    """A room that exists for the whole module."""
    name = unique("auth")

    async def body():
        async with lk(server.url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=600))

    run(body())
    return name


# ---------------------------------------------------------------- bad credentials (SDK)


def test_wrong_secret_is_unauthenticated(url):
    async def body():
        async with lk(url, API_KEY, "not-the-secret") as lkapi:
            await expect_twirp(lkapi.room.list_rooms(api.ListRoomsRequest()), "unauthenticated", 401)
            await expect_twirp(lkapi.room.create_room(api.CreateRoomRequest(name=unique("x"))), "unauthenticated", 401)

    run(body())


def test_unknown_api_key_is_unauthenticated(url):
    async def body():
        async with lk(url, "APIunknownkey", API_SECRET) as lkapi:
            await expect_twirp(lkapi.room.list_rooms(api.ListRoomsRequest()), "unauthenticated", 401)

    run(body())


def test_rejected_create_has_no_effect(url):
    name = unique("ghost")

    async def body():
        async with lk(url, API_KEY, "wrong") as bad:
            await expect_twirp(bad.room.create_room(api.CreateRoomRequest(name=name)), "unauthenticated", 401)
        async with lk(url) as good:
            res = await good.room.list_rooms(api.ListRoomsRequest(names=[name]))
            assert list(res.rooms) == []

    run(body())


# ---------------------------------------------------------------- grants (SDK with custom tokens)


def sdk_token(grants: api.VideoGrants) -> str:
    at = api.AccessToken(API_KEY, API_SECRET).with_grants(grants)
    if grants.room_join:
        at = at.with_identity("someone")
    return at.to_jwt()


def test_python_access_token_with_exact_grants_is_accepted(url, room):
    async def body():
        async with lk_with_token(url, sdk_token(api.VideoGrants(room_list=True))) as c:
            res = await c.room.list_rooms(api.ListRoomsRequest(names=[room]))
            assert [r.name for r in res.rooms] == [room]
        async with lk_with_token(url, sdk_token(api.VideoGrants(room_admin=True, room=room))) as c:
            res = await c.room.list_participants(api.ListParticipantsRequest(room=room))
            assert list(res.participants) == []
        name = unique("tok")
        async with lk_with_token(url, sdk_token(api.VideoGrants(room_create=True))) as c:
            created = await c.room.create_room(api.CreateRoomRequest(name=name))
            assert created.name == name
            await c.room.delete_room(api.DeleteRoomRequest(room=name))

    run(body())


def test_create_room_needs_room_create(url):
    async def body():
        for grants in (
            api.VideoGrants(room_list=True),
            api.VideoGrants(room_admin=True, room="anything"),
            api.VideoGrants(room_join=True, room="anything"),
        ):
            async with lk_with_token(url, sdk_token(grants)) as c:
                await expect_twirp(c.room.create_room(api.CreateRoomRequest(name=unique("g"))), "unauthenticated", 401)

    run(body())


def test_list_rooms_needs_room_list(url):
    async def body():
        for grants in (api.VideoGrants(room_create=True), api.VideoGrants(room_admin=True, room="x")):
            async with lk_with_token(url, sdk_token(grants)) as c:
                await expect_twirp(c.room.list_rooms(api.ListRoomsRequest()), "unauthenticated", 401)

    run(body())


def test_delete_room_needs_room_create_not_room_admin(url, room):
    async def body():
        async with lk_with_token(url, sdk_token(api.VideoGrants(room_admin=True, room=room))) as c:
            await expect_twirp(c.room.delete_room(api.DeleteRoomRequest(room=room)), "unauthenticated", 401)
        async with lk(url) as lkapi:
            res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
            assert [r.name for r in res.rooms] == [room], "room must survive a rejected DeleteRoom"

    run(body())


@pytest.mark.parametrize(
    "grants_for",
    [
        pytest.param(lambda room: api.VideoGrants(room_admin=True, room="some-other-room"), id="admin-other-room"),
        pytest.param(lambda room: api.VideoGrants(room_admin=True), id="admin-no-room"),
        pytest.param(lambda room: api.VideoGrants(room=room, room_join=True), id="join-not-admin"),
        pytest.param(lambda room: api.VideoGrants(room_create=True, room_list=True), id="create-list-only"),
    ],
)
def test_per_room_calls_need_room_admin_for_that_room(url, room, grants_for):
    async def body():
        async with lk_with_token(url, sdk_token(grants_for(room))) as c:
            calls = [
                lambda: c.room.list_participants(api.ListParticipantsRequest(room=room)),
                lambda: c.room.get_participant(api.RoomParticipantIdentity(room=room, identity="nobody")),
                lambda: c.room.remove_participant(api.RoomParticipantIdentity(room=room, identity="nobody")),
                lambda: c.room.mute_published_track(
                    api.MuteRoomTrackRequest(room=room, identity="nobody", track_sid="TR_x", muted=True)
                ),
                lambda: c.room.update_participant(api.UpdateParticipantRequest(room=room, identity="nobody", metadata="m")),
                lambda: c.room.update_subscriptions(
                    api.UpdateSubscriptionsRequest(room=room, identity="nobody", track_sids=["TR_x"], subscribe=True)
                ),
                lambda: c.room.send_data(api.SendDataRequest(room=room, data=b"x")),
                lambda: c.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room, metadata="hijack")),
            ]
            for call in calls:
                await expect_twirp(call(), "unauthenticated", 401)
        async with lk(url) as lkapi:
            res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
            assert [r.metadata for r in res.rooms] != ["hijack"], "rejected UpdateRoomMetadata took effect"

    run(body())


# ---------------------------------------------------------------- raw HTTP with hand-made tokens


def test_raw_room_admin_for_other_room(url, room):
    token = api_token({"roomAdmin": True, "room": "another-room"})
    resp = twirp_json(url, "ListParticipants", {"room": room}, token)
    assert_twirp_error(resp, "unauthenticated", 401)


def test_raw_room_admin_for_right_room_is_accepted(url, room):
    token = api_token({"roomAdmin": True, "room": room})
    resp = twirp_json(url, "ListParticipants", {"room": room}, token)
    assert resp.status == 200, resp
    assert resp.json().get("participants", []) == []


def test_raw_expired_token(url):
    now = int(time.time())
    token = make_jwt({"iss": API_KEY, "sub": "", "nbf": now - 7200, "exp": now - 3600, "video": {"roomList": True}}, API_SECRET)
    resp = twirp_json(url, "ListRooms", {}, token)
    body = assert_twirp_error(resp, "unauthenticated", 401)
    assert "expir" in body["msg"].lower(), f"message should mention expiry: {resp}"


def test_raw_token_within_leeway_is_accepted(url):
    # exp 10 s in the past is inside LiveKit's 60 s leeway.
    now = int(time.time())
    token = make_jwt({"iss": API_KEY, "sub": "", "nbf": now - 600, "exp": now - 10, "video": {"roomList": True}}, API_SECRET)
    resp = twirp_json(url, "ListRooms", {}, token)
    assert resp.status == 200, resp


def test_raw_no_authorization_header(url):
    resp = twirp_json(url, "ListRooms", {}, None)
    assert_twirp_error(resp, "unauthenticated", 401)
    resp = twirp_json(url, "CreateRoom", {"name": unique("noauth")}, None)
    assert_twirp_error(resp, "unauthenticated", 401)


def test_raw_garbage_token(url):
    assert_twirp_error(twirp_json(url, "ListRooms", {}, "not-a-jwt"), "unauthenticated", 401)


def test_raw_token_signed_with_wrong_secret(url):
    token = api_token({"roomList": True}, secret="wrong-secret")
    assert_twirp_error(twirp_json(url, "ListRooms", {}, token), "unauthenticated", 401)


def test_raw_token_unknown_key(url):
    token = api_token({"roomList": True}, key="APIdoesnotexist")
    assert_twirp_error(twirp_json(url, "ListRooms", {}, token), "unauthenticated", 401)


def test_raw_token_without_exp(url):
    token = api_token({"roomList": True}, include_exp=False)
    assert_twirp_error(twirp_json(url, "ListRooms", {}, token), "unauthenticated", 401)


def test_raw_token_not_yet_valid(url):
    token = api_token({"roomList": True}, nbf_offset_s=3600, ttl_s=7200)
    assert_twirp_error(twirp_json(url, "ListRooms", {}, token), "unauthenticated", 401)


def test_raw_alg_none_token(url):
    token = api_token({"roomList": True}, header={"alg": "none", "typ": "JWT"})
    assert_twirp_error(twirp_json(url, "ListRooms", {}, token), "unauthenticated", 401)


def test_raw_error_for_protobuf_request_is_json(url):
    token = api_token({"roomList": True}, secret="wrong-secret")
    resp = twirp_post(url, "ListRooms", api.ListRoomsRequest().SerializeToString(), token=token, content_type="application/protobuf")
    assert_twirp_error(resp, "unauthenticated", 401)
