"""Per-room admin calls through the Python SDK while nobody can join yet."""

from __future__ import annotations

from livekit import api

from lkhelpers import (
    api_token,
    assert_twirp_error,
    expect_twirp,
    lk,
    run,
    twirp_post,
    unique,
)

NO_PARTICIPANT = "participant does not exist"


def test_list_participants_of_empty_room(url):
    name = unique("lp")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            res = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
            assert isinstance(res, api.ListParticipantsResponse)
            assert list(res.participants) == []

    run(body())


def test_list_participants_of_missing_room(url):
    async def body():
        async with lk(url) as lkapi:
            await expect_twirp(
                lkapi.room.list_participants(api.ListParticipantsRequest(room=unique("missing"))), "not_found", 404
            )

    run(body())


def test_get_participant_absent(url):
    name = unique("gp")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await expect_twirp(
                lkapi.room.get_participant(api.RoomParticipantIdentity(room=name, identity="nobody")),
                "not_found",
                404,
                NO_PARTICIPANT,
            )

    run(body())


def test_remove_participant_absent(url):
    name = unique("rp")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await expect_twirp(
                lkapi.room.remove_participant(api.RoomParticipantIdentity(room=name, identity="nobody")),
                "not_found",
                404,
                NO_PARTICIPANT,
            )

    run(body())


def test_mute_published_track_absent(url):
    name = unique("mute")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await expect_twirp(
                lkapi.room.mute_published_track(
                    api.MuteRoomTrackRequest(room=name, identity="nobody", track_sid="TR_abc", muted=True)
                ),
                "not_found",
                404,
                NO_PARTICIPANT,
            )

    run(body())


def test_update_participant_absent(url):
    name = unique("up")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await expect_twirp(
                lkapi.room.update_participant(
                    api.UpdateParticipantRequest(room=name, identity="nobody", metadata="x", name="N")
                ),
                "not_found",
                404,
                NO_PARTICIPANT,
            )

    run(body())


def test_update_subscriptions_absent(url):
    name = unique("us")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            await expect_twirp(
                lkapi.room.update_subscriptions(
                    api.UpdateSubscriptionsRequest(room=name, identity="nobody", track_sids=["TR_abc"], subscribe=True)
                ),
                "not_found",
                404,
                NO_PARTICIPANT,
            )

    run(body())


def test_send_data_to_existing_room(url):
    name = unique("sd")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            res = await lkapi.room.send_data(
                api.SendDataRequest(room=name, data=b"hello", kind=api.DataPacket.Kind.RELIABLE, topic="t")
            )
            assert isinstance(res, api.SendDataResponse)
            # Still no participants, and the room is still there.
            lp = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
            assert list(lp.participants) == []

    run(body())


def test_send_data_to_missing_room(url):
    async def body():
        async with lk(url) as lkapi:
            await expect_twirp(
                lkapi.room.send_data(api.SendDataRequest(room=unique("missing"), data=b"x")), "not_found", 404
            )

    run(body())


def _send_data_raw(url: str, room: str, nonce: bytes):
    req = api.SendDataRequest(room=room, data=b"payload", kind=api.DataPacket.Kind.RELIABLE, nonce=nonce)
    token = api_token({"roomAdmin": True, "room": room})
    return twirp_post(url, "SendData", req.SerializeToString(), token=token, content_type="application/protobuf")


def test_send_data_nonce_must_be_16_bytes(url):
    name = unique("nonce")

    async def body():
        async with lk(url) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))

    run(body())
    # The SDK always sends a 16-byte nonce, so bad ones go over raw HTTP (protobuf body).
    assert_twirp_error(_send_data_raw(url, name, b"short"), "invalid_argument", 400)
    assert_twirp_error(_send_data_raw(url, name, bytes(17)), "invalid_argument", 400)
    ok = _send_data_raw(url, name, bytes(range(16)))
    assert ok.status == 200, ok
    # No nonce at all is allowed too.
    none = _send_data_raw(url, name, b"")
    assert none.status == 200, none
