#!/usr/bin/env python3
"""Calls for the agents tests that must run inside their network namespace.

    agent_admin.py OP URL KEY SECRET JSON_ARGS

OPs (through the unmodified `livekit-api` SDK, LiveKitAPI):
    create_dispatch {room, agent_name, metadata}    -> the AgentDispatch
    delete_dispatch {room, dispatch_id}             -> the AgentDispatch
    list_dispatch {room}                            -> {"dispatches": [...]}
    list_participants {room}                        -> {"participants": [{identity, kind, attributes}]}
    create_room {name, room_preset, metadata}       -> the Room (name, max_participants,
                                                       empty_timeout, departure_timeout, metadata)
    list_rooms {names}                              -> {"rooms": [the Room, ...]}
    twirp_json {service, method, body, grants}      -> the raw Twirp answer (status, body) of a
                                                       JSON request signed with `grants` (aiohttp)
    join_refused {token}                            -> {"status", "body"} of a WebSocket upgrade
                                                       to /rtc with that token (the body says why
                                                       a refused join was refused)
Raw worker connections to /agent (aiohttp):
    worker_refused {token_grants | token}           -> {"status", "body"} of the refused upgrade
    bad_worker {frames: ["register" | "garbage" | "json_garbage" | "ping"]}
        -> the messages received, and the close code/reason the server closed it with

Output is one JSON line on stdout ({"ok": true, "result": ...} or {"ok": false, ...}).
"""

from __future__ import annotations

import asyncio
import json
import sys


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def dispatch_dict(d) -> dict:
    from livekit import api

    return {
        "id": d.id,
        "agent_name": d.agent_name,
        "room": d.room,
        "metadata": d.metadata,
        "deleted_at": d.state.deleted_at,
        "jobs": [
            {
                "id": j.id,
                "type": api.JobType.Name(j.type),
                "status": api.JobStatus.Name(j.state.status),
                "error": j.state.error,
                "participant_identity": j.state.participant_identity,
                "worker_id": j.state.worker_id,
            }
            for j in d.state.jobs
        ],
    }


def token(key: str, secret: str, identity: str = "admin", **grants) -> str:
    from livekit import api

    return api.AccessToken(key, secret).with_identity(identity).with_grants(api.VideoGrants(**grants)).to_jwt()


async def sdk(op: str, url: str, key: str, secret: str, args: dict) -> None:
    from livekit import api

    lk = api.LiveKitAPI(url, key, secret)
    try:
        if op == "create_dispatch":
            d = await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(room=args["room"], agent_name=args.get("agent_name", ""), metadata=args.get("metadata", ""))
            )
            out({"ok": True, "result": dispatch_dict(d)})
        elif op == "delete_dispatch":
            d = await lk.agent_dispatch.delete_dispatch(args["dispatch_id"], args["room"])
            out({"ok": True, "result": dispatch_dict(d)})
        elif op == "list_dispatch":
            ds = await lk.agent_dispatch.list_dispatch(args["room"])
            out({"ok": True, "result": {"dispatches": [dispatch_dict(d) for d in ds]}})
        elif op == "list_participants":
            res = await lk.room.list_participants(api.ListParticipantsRequest(room=args["room"]))
            out(
                {
                    "ok": True,
                    "result": {
                        "participants": [
                            {"identity": p.identity, "kind": api.ParticipantInfo.Kind.Name(p.kind), "attributes": dict(p.attributes)}
                            for p in res.participants
                        ]
                    },
                }
            )
        elif op == "create_room":
            req = api.CreateRoomRequest(
                name=args["name"], room_preset=args.get("room_preset", ""), metadata=args.get("metadata", "")
            )
            out({"ok": True, "result": room_dict(await lk.room.create_room(req))})
        elif op == "list_rooms":
            res = await lk.room.list_rooms(api.ListRoomsRequest(names=args.get("names", [])))
            out({"ok": True, "result": {"rooms": [room_dict(r) for r in res.rooms]}})
        else:
            out({"ok": False, "error": f"unknown op {op}"})
    except api.TwirpError as e:
        out({"ok": False, "error": str(e), "code": e.code, "status": e.status, "message": e.message})
    except Exception as e:  # noqa: BLE001 - reported to the test
        out({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        await lk.aclose()


def room_dict(r) -> dict:
    return {
        "name": r.name,
        "max_participants": r.max_participants,
        "empty_timeout": r.empty_timeout,
        "departure_timeout": r.departure_timeout,
        "metadata": r.metadata,
    }


async def twirp_json(url: str, key: str, secret: str, args: dict) -> None:
    import aiohttp

    tok = token(key, secret, **args.get("grants", {}))
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{url}/twirp/{args['service']}/{args['method']}",
            data=json.dumps(args.get("body", {})),
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        ) as r:
            out({"ok": True, "result": {"status": r.status, "body": await r.text()}})


async def refused_upgrade(url: str, tok: str) -> None:
    """A WebSocket upgrade request to `url` with that token; reports the status and body."""
    import base64
    import os

    import aiohttp

    headers = {
        "Authorization": f"Bearer {tok}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=headers) as r:
            body = await r.text() if r.status != 101 else ""
            out({"ok": True, "result": {"status": r.status, "body": body}})


async def worker_refused(url: str, key: str, secret: str, args: dict) -> None:
    await refused_upgrade(f"{url}/agent", args.get("token") or token(key, secret, **args.get("token_grants", {})))


async def bad_worker(url: str, key: str, secret: str, args: dict) -> None:
    """A worker connection sending `frames`; reports what came back and how it was closed."""
    import aiohttp
    from livekit.protocol import agent as pa

    tok = token(key, secret, agent=True)
    ws_url = url.replace("http", "ws", 1) + "/agent"
    got = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url, headers={"Authorization": f"Bearer {tok}"}) as ws:
            for f in args["frames"]:
                if f == "register":
                    m = pa.WorkerMessage()
                    m.register.type = pa.JobType.JT_ROOM
                    m.register.agent_name = "bad-worker"
                    await ws.send_bytes(m.SerializeToString())
                elif f == "json_register":
                    await ws.send_str(json.dumps({"register": {"type": "JT_ROOM", "agentName": "bad-json"}}))
                elif f == "ping":
                    m = pa.WorkerMessage()
                    m.ping.timestamp = 1234
                    await ws.send_bytes(m.SerializeToString())
                elif f == "garbage":
                    await ws.send_bytes(b"\xff\xff\xff\xff\x0f not protobuf")
                elif f == "json_garbage":
                    await ws.send_str("{not json")
                elif f == "availability_before_register":
                    m = pa.WorkerMessage()
                    m.availability.job_id = "AJ_x"
                    await ws.send_bytes(m.SerializeToString())
                # read what the server answers to this frame (or its close)
                try:
                    msg = await ws.receive(timeout=3)
                except asyncio.TimeoutError:
                    got.append({"frame": f, "answer": None})
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    sm = pa.ServerMessage()
                    sm.ParseFromString(msg.data)
                    got.append({"frame": f, "answer": sm.WhichOneof("message")})
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    got.append({"frame": f, "answer": "text", "data": json.loads(msg.data)})
                else:
                    got.append({"frame": f, "answer": "closed", "code": ws.close_code, "reason": str(msg.extra or "")})
                    break
    out({"ok": True, "result": {"got": got}})


def main() -> None:
    op, url, key, secret, args = sys.argv[1:6]
    args = json.loads(args)
    if op == "twirp_json":
        asyncio.run(twirp_json(url, key, secret, args))
    elif op == "worker_refused":
        asyncio.run(worker_refused(url, key, secret, args))
    elif op == "bad_worker":
        asyncio.run(bad_worker(url, key, secret, args))
    elif op == "join_refused":
        asyncio.run(refused_upgrade(f"{url}/rtc", args["token"]))
    else:
        asyncio.run(sdk(op, url, key, secret, args))


if __name__ == "__main__":
    main()
