"""Twirp transport rules checked with raw HTTP: routes, content types, JSON bodies."""

from __future__ import annotations

import json

from livekit import api

from lkhelpers import (
    api_token,
    assert_twirp_error,
    http_request,
    lk,
    run,
    twirp_json,
    twirp_post,
    twirp_url,
    unique,
)

LIST = {"roomList": True}
CREATE = {"roomCreate": True}


def _num(v) -> int:
    # protobuf-JSON: 32-bit ints are numbers, 64-bit ints may be strings.
    return int(v)


def _field(obj: dict, snake: str, camel: str, default=None):
    if snake in obj:
        return obj[snake]
    return obj.get(camel, default)


def test_get_on_twirp_path_is_bad_route(url):
    resp = http_request(
        "GET",
        twirp_url(url, "ListRooms"),
        headers={"Authorization": f"Bearer {api_token(LIST)}", "Content-Type": "application/json"},
    )
    assert_twirp_error(resp, "bad_route", 404)


def test_unknown_method_is_bad_route(url):
    resp = twirp_json(url, "Nope", {}, api_token(LIST))
    assert_twirp_error(resp, "bad_route", 404)


def test_unknown_method_protobuf_is_bad_route(url):
    resp = twirp_post(url, "Nope", b"", token=api_token(LIST), content_type="application/protobuf")
    assert_twirp_error(resp, "bad_route", 404)


def test_unknown_service_is_bad_route(url):
    resp = twirp_json(url, "ListRooms", {}, api_token(LIST), service="livekit.NoSuchService")
    assert_twirp_error(resp, "bad_route", 404)


def test_wrong_content_type_is_bad_route(url):
    resp = twirp_post(url, "ListRooms", b"{}", token=api_token(LIST), content_type="text/plain")
    assert_twirp_error(resp, "bad_route", 404)


def test_bad_route_has_no_side_effect(url):
    name = unique("badroute")
    resp = twirp_post(url, "CreateRoom", json.dumps({"name": name}).encode(), token=api_token(CREATE), content_type="text/plain")
    assert_twirp_error(resp, "bad_route", 404)
    listed = twirp_json(url, "ListRooms", {"names": [name]}, api_token(LIST))
    assert listed.status == 200, listed
    assert listed.json().get("rooms", []) == []


def test_json_create_room_snake_case_and_unknown_fields(url):
    name = unique("snake")
    resp = twirp_json(
        url,
        "CreateRoom",
        {"name": name, "empty_timeout": 5, "max_participants": 7, "metadata": "snake", "some_future_field": {"a": 1}},
        api_token(CREATE),
    )
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json"), resp
    room = resp.json()
    assert room["name"] == name
    assert room["sid"].startswith("RM_")
    assert _num(_field(room, "empty_timeout", "emptyTimeout")) == 5
    assert _num(_field(room, "max_participants", "maxParticipants")) == 7
    assert room["metadata"] == "snake"

    # And the protobuf (SDK) view of the same room agrees.
    async def body():
        async with lk(url) as lkapi:
            res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
            assert [(r.empty_timeout, r.max_participants, r.metadata) for r in res.rooms] == [(5, 7, "snake")]

    run(body())


def test_json_create_room_camel_case(url):
    name = unique("camel")
    resp = twirp_json(url, "CreateRoom", {"name": name, "emptyTimeout": 42, "maxParticipants": 3}, api_token(CREATE))
    assert resp.status == 200, resp
    room = resp.json()
    assert room["name"] == name
    assert _num(_field(room, "empty_timeout", "emptyTimeout")) == 42
    assert _num(_field(room, "max_participants", "maxParticipants")) == 3
    ct = _field(room, "creation_time", "creationTime")
    assert ct is not None and _num(ct) > 1_600_000_000, room


def test_json_list_rooms_filter(url):
    a, b = unique("ja"), unique("jb")
    for n in (a, b):
        assert twirp_json(url, "CreateRoom", {"name": n}, api_token(CREATE)).status == 200
    resp = twirp_json(url, "ListRooms", {"names": [a]}, api_token(LIST))
    assert resp.status == 200, resp
    assert [r["name"] for r in resp.json()["rooms"]] == [a]


def test_json_content_type_with_charset(url):
    # What the Node SDK sends.
    resp = twirp_post(url, "ListRooms", b"{}", token=api_token(LIST), content_type="application/json;charset=UTF-8")
    assert resp.status == 200, resp
    assert isinstance(resp.json().get("rooms", []), list)


def test_protobuf_empty_body(url):
    resp = twirp_post(url, "ListRooms", b"", token=api_token(LIST), content_type="application/protobuf")
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/protobuf"), resp
    api.ListRoomsResponse.FromString(resp.body)


def test_malformed_json_body(url):
    resp = twirp_post(url, "CreateRoom", b"{not json", token=api_token(CREATE), content_type="application/json")
    assert resp.status == 400, resp
    body = resp.json()
    assert body.get("code") in ("malformed", "invalid_argument"), resp


def test_not_found_error_body_shape(url):
    token = api_token({"roomAdmin": True, "room": "nonexistent-room-xyz"})
    resp = twirp_json(url, "ListParticipants", {"room": "nonexistent-room-xyz"}, token)
    assert_twirp_error(resp, "not_found", 404)
    token = api_token(CREATE)
    resp = twirp_json(url, "DeleteRoom", {"room": "nonexistent-room-xyz"}, token)
    assert_twirp_error(resp, "not_found", 404)
