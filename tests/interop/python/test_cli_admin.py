"""livekit-cli admin commands against a live server; effects checked with the Python SDK."""

from __future__ import annotations

import json

from livekit import api

from lkhelpers import API_KEY, API_SECRET, describe, find_named, lk, run, run_cli, unique


def cli(url: str, *args: str, env=None):
    return run_cli(["--url", url, "--api-key", API_KEY, "--api-secret", API_SECRET, *args], env=env)


def ok(cp):
    assert cp.returncode == 0, describe(cp)
    return cp


def rooms(url: str, names=None) -> dict:
    async def body():
        async with lk(url) as lkapi:
            res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=names or []))
            return {r.name: r for r in res.rooms}

    return run(body())


def test_room_create_list_update_delete(url):
    name = unique("myroom")
    ok(cli(url, "room", "create", "--empty-timeout", "300", name))
    got = rooms(url, [name])
    assert name in got, f"room not created; rooms: {sorted(got)}"
    assert got[name].empty_timeout == 300
    assert got[name].sid.startswith("RM_")

    cp = ok(cli(url, "room", "list", "--json"))
    try:
        listed = json.loads(cp.stdout)
    except ValueError as e:
        raise AssertionError(f"`room list --json` did not print JSON\n{describe(cp)}") from e
    entries = find_named(listed, name)
    assert entries, f"`room list --json` does not show {name}\n{describe(cp)}"
    assert any(e.get("sid") == got[name].sid for e in entries), f"sid {got[name].sid} not in JSON\n{cp.stdout}"

    ok(cli(url, "room", "update", "--metadata", "x", name))
    assert rooms(url, [name])[name].metadata == "x"

    ok(cli(url, "room", "delete", name))
    assert name not in rooms(url)


def test_room_list_plain_shows_room(url):
    name = unique("plain")
    ok(cli(url, "room", "create", name))
    cp = ok(cli(url, "room", "list"))
    assert name in cp.stdout, describe(cp)


def test_room_list_filtered_by_name(url):
    a, b = unique("fa"), unique("fb")
    ok(cli(url, "room", "create", a))
    ok(cli(url, "room", "create", b))
    cp = ok(cli(url, "room", "list", "--json", a))
    data = json.loads(cp.stdout)
    assert find_named(data, a), describe(cp)
    assert not find_named(data, b), f"filter by name returned other rooms\n{describe(cp)}"


def test_legacy_room_commands(url):
    name = unique("legacy")
    ok(cli(url, "create-room", "--name", name))
    assert name in rooms(url, [name])
    cp = ok(cli(url, "list-rooms"))
    assert name in cp.stdout, describe(cp)
    ok(cli(url, "delete-room", name))
    assert name not in rooms(url)


def test_room_delete_missing_fails_with_not_found(url):
    cp = cli(url, "room", "delete", unique("missing"))
    assert cp.returncode != 0, describe(cp)
    assert "not_found" in (cp.stdout + cp.stderr), describe(cp)


def test_room_participants_list_empty_room(url):
    name = unique("parts")
    ok(cli(url, "room", "create", name))
    ok(cli(url, "room", "participants", "list", name))


def test_wrong_secret_fails(url):
    cp = run_cli(["--url", url, "--api-key", API_KEY, "--api-secret", "wrong", "room", "list"])
    assert cp.returncode != 0, describe(cp)
    assert "unauthenticated" in (cp.stdout + cp.stderr), describe(cp)


def test_credentials_from_environment(url):
    name = unique("envroom")
    cp = run_cli(
        ["room", "create", name],
        env={"LIVEKIT_URL": url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET},
    )
    ok(cp)
    assert name in rooms(url, [name])
