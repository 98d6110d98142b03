#!/usr/bin/env python3
"""A long-lived admin process for the cluster tests, run inside their network namespace.

    cluster_admin.py --key KEY --secret SECRET

It reads one JSON command per line on stdin and answers each with one JSON line on stdout
(`{"event": "result", "id": ..., ...}`, or `{"event": "command_error", ...}` for a malformed
command), so the test drives it like an SDK client (mediahelpers.ClientProc) and one Python start
serves every Twirp call of a module. Commands:

    {"cmd": "ready", "url": "http://10.77.0.1:7880", "deadline": 20}
        polls GET URL/ until it answers 200 "OK"          -> ok, last
    {"cmd": "redis_ping", "host": "10.77.0.1", "port": 6379, "deadline": 10}
        sends PING until it reads +PONG                    -> ok, last
    {"cmd": "twirp", "url": ..., "method": "ListRooms", "args": {...}}
        one RoomService call through the unmodified `livekit-api` SDK
                                                           -> ok, result | error, code, status
    {"cmd": "stats", "url": ...}
        GET URL/node/stats with a roomList token: the rooms that node itself holds
                                                           -> ok, status, body
    {"cmd": "redis", "host": "10.77.0.1", "port": 6379, "args": ["KEYS", "*"]}
        one raw command (for the failure report)            -> ok, reply
    {"cmd": "race_join", "joins": [{"ws": "ws://10.77.0.1:7880", "token": JWT}, ...], "deadline": 10}
        opens every signal WebSocket (`/rtc`, protocol 16) at the same instant and reads each
        one's JoinResponse, then its updates until every connection has seen every other
        identity (or `see` others, or the deadline); the sockets stay open until `race_close`
                                                           -> ok, joins
        (identity, room, sid, others: identities seen, error)
    {"cmd": "race_close"}                                   -> ok, closed
    {"cmd": "wait_rooms", "url": ..., "room": "r", "present": false, "deadline": 20}
        polls ListRooms every 100 ms until `room` is (or is no longer) listed
                                                           -> ok, elapsed, polls, last
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}) + "\n")
    sys.stdout.flush()


def participant_dict(p) -> dict:
    from livekit import api

    return {
        "identity": p.identity,
        "sid": p.sid,
        "state": api.ParticipantInfo.State.Name(p.state),
        "metadata": p.metadata,
        "tracks": [
            {"sid": t.sid, "name": t.name, "type": api.TrackType.Name(t.type), "muted": t.muted} for t in p.tracks
        ],
    }


def room_dict(r) -> dict:
    return {"name": r.name, "sid": r.sid, "num_participants": r.num_participants, "metadata": r.metadata}


def read_resp(f) -> Any:
    """One RESP2 reply from a binary file object."""
    line = f.readline()
    if not line:
        raise ValueError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b"-"):
        return rest.decode(errors="replace") if kind == b"+" else "ERR " + rest.decode(errors="replace")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_resp(f) for _ in range(n)]
    raise ValueError(f"unexpected RESP line {line[:80]!r}")


class Admin:
    def __init__(self, key: str, secret: str) -> None:
        self.key = key
        self.secret = secret
        self.apis: Dict[str, Any] = {}

    def lk(self, url: str):
        from livekit import api

        if url not in self.apis:
            import aiohttp

            # The SDK's own default is 10 s for any call; PerformRpc may wait longer.
            self.apis[url] = api.LiveKitAPI(url, self.key, self.secret, timeout=aiohttp.ClientTimeout(total=60))
        return self.apis[url]

    async def close(self) -> None:
        for a in self.apis.values():
            try:
                await a.aclose()
            except Exception:  # noqa: BLE001
                pass

    # ------------------------------------------------------------ twirp

    async def call(self, url: str, method: str, args: Dict[str, Any]) -> Dict[str, Any]:
        from livekit import api

        lk = self.lk(url)
        try:
            if method == "ListRooms":
                res = await lk.room.list_rooms(api.ListRoomsRequest(names=args.get("names", [])))
                return {"ok": True, "result": {"rooms": [room_dict(r) for r in res.rooms]}}
            if method == "ListParticipants":
                res = await lk.room.list_participants(api.ListParticipantsRequest(room=args["room"]))
                return {"ok": True, "result": {"participants": [participant_dict(p) for p in res.participants]}}
            if method == "GetParticipant":
                p = await lk.room.get_participant(api.RoomParticipantIdentity(room=args["room"], identity=args["identity"]))
                return {"ok": True, "result": participant_dict(p)}
            if method == "RemoveParticipant":
                await lk.room.remove_participant(api.RoomParticipantIdentity(room=args["room"], identity=args["identity"]))
                return {"ok": True, "result": {}}
            if method == "DeleteRoom":
                await lk.room.delete_room(api.DeleteRoomRequest(room=args["room"]))
                return {"ok": True, "result": {}}
            if method == "MutePublishedTrack":
                res = await lk.room.mute_published_track(
                    api.MuteRoomTrackRequest(
                        room=args["room"], identity=args["identity"], track_sid=args["track_sid"], muted=args["muted"]
                    )
                )
                return {"ok": True, "result": {"track_sid": res.track.sid, "muted": res.track.muted}}
            if method == "SendData":
                await lk.room.send_data(
                    api.SendDataRequest(
                        room=args["room"],
                        data=args["text"].encode(),
                        kind=api.DataPacket.Kind.RELIABLE,
                        destination_identities=args.get("destination_identities", []),
                        topic=args.get("topic", ""),
                    )
                )
                return {"ok": True, "result": {}}
            if method == "UpdateParticipant":
                p = await lk.room.update_participant(
                    api.UpdateParticipantRequest(room=args["room"], identity=args["identity"], metadata=args["metadata"])
                )
                return {"ok": True, "result": participant_dict(p)}
            if method == "UpdateRoomMetadata":
                r = await lk.room.update_room_metadata(
                    api.UpdateRoomMetadataRequest(room=args["room"], metadata=args["metadata"])
                )
                return {"ok": True, "result": room_dict(r)}
            if method == "PerformRpc":
                # livekit-api has no wrapper for it: the request goes through its Twirp client.
                req = api.PerformRpcRequest(
                    room=args["room"],
                    destination_identity=args["identity"],
                    method=args["rpc_method"],
                    payload=args.get("payload", ""),
                    response_timeout_ms=int(args.get("response_timeout_ms", 0)),
                )
                res = await lk.room._client.request(
                    "RoomService",
                    "PerformRpc",
                    req,
                    lk.room._auth_header(api.VideoGrants(room_admin=True, room=req.room)),
                    api.PerformRpcResponse,
                )
                return {"ok": True, "result": {"payload": res.payload}}
            return {"ok": False, "error": f"unknown method {method}"}
        except api.TwirpError as e:
            return {"ok": False, "error": str(e), "code": e.code, "status": e.status}
        except Exception as e:  # noqa: BLE001 - reported to the test
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    # ------------------------------------------------------------ commands

    async def cmd_twirp(self, c: Dict[str, Any]) -> Dict[str, Any]:
        return await asyncio.wait_for(
            self.call(c["url"], c["method"], c.get("args", {})), float(c.get("deadline", 15))
        )

    async def cmd_ready(self, c: Dict[str, Any]) -> Dict[str, Any]:
        url = c["url"].rstrip("/") + "/"
        deadline = time.monotonic() + float(c.get("deadline", 20))

        def probe() -> str:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    body = resp.read().decode(errors="replace")
                    return "ok" if resp.status == 200 and body.strip() == "OK" else f"{resp.status} {body[:200]!r}"
            except urllib.error.HTTPError as e:
                return f"HTTP {e.code}"
            except OSError as e:
                return str(e)

        last = "no attempt"
        while time.monotonic() < deadline:
            last = await asyncio.to_thread(probe)
            if last == "ok":
                return {"ok": True}
            await asyncio.sleep(0.1)
        return {"ok": False, "last": last}

    async def cmd_redis_ping(self, c: Dict[str, Any]) -> Dict[str, Any]:
        host, port = c["host"], int(c["port"])
        deadline = time.monotonic() + float(c.get("deadline", 10))

        def probe() -> str:
            try:
                with socket.create_connection((host, port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(64).decode(errors="replace").strip()
            except OSError as e:
                return str(e)

        last = "no attempt"
        while time.monotonic() < deadline:
            last = await asyncio.to_thread(probe)
            if last == "+PONG":
                return {"ok": True}
            await asyncio.sleep(0.1)
        return {"ok": False, "last": last}

    async def cmd_redis(self, c: Dict[str, Any]) -> Dict[str, Any]:
        host, port, args = c["host"], int(c["port"]), [str(a).encode() for a in c["args"]]
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

        def call() -> Any:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(req)
                f = s.makefile("rb")
                return read_resp(f)

        try:
            return {"ok": True, "reply": await asyncio.to_thread(call)}
        except (OSError, ValueError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    async def cmd_race_join(self, c: Dict[str, Any]) -> Dict[str, Any]:
        import aiohttp
        from livekit.protocol import models
        from livekit.protocol import rtc as prt

        if not hasattr(self, "raw"):
            self.raw = []
        session = aiohttp.ClientSession()
        self.raw.append(session)
        deadline = time.monotonic() + float(c.get("deadline", 10))
        joins = c["joins"]
        start = asyncio.Event()

        async def one(j: Dict[str, Any]) -> Dict[str, Any]:
            out: Dict[str, Any] = {"ws": j["ws"], "others": []}
            await start.wait()
            try:
                ws = await session.ws_connect(f"{j['ws']}/rtc?access_token={j['token']}&protocol=16&auto_subscribe=1")
            except aiohttp.WSServerHandshakeError as e:
                out["error"] = f"handshake {e.status}: {e.message}"
                return out
            except Exception as e:  # noqa: BLE001 - reported to the test
                out["error"] = f"{type(e).__name__}: {e}"
                return out
            out["opened_at"] = round(time.monotonic(), 4)
            self.raw.append(ws)
            out["_ws"] = ws
            return out

        async def read(out: Dict[str, Any], want: int) -> None:
            ws = out.get("_ws")
            others = set()
            while ws is not None and time.monotonic() < deadline and ("identity" not in out or len(others) < want):
                try:
                    msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        out["error"] = f"closed: {msg.type.name} {msg.data!r} {msg.extra!r}"
                        break
                    continue
                r = prt.SignalResponse()
                r.ParseFromString(msg.data)
                kind = r.WhichOneof("message")
                if kind == "join":
                    out.update(identity=r.join.participant.identity, sid=r.join.participant.sid, room=r.join.room.name)
                    others |= {p.identity for p in r.join.other_participants}
                elif kind == "update":
                    others |= {
                        p.identity
                        for p in r.update.participants
                        if p.state != models.ParticipantInfo.State.DISCONNECTED and p.identity != out.get("identity")
                    }
                elif kind == "leave":
                    out["error"] = f"leave: {models.DisconnectReason.Name(r.leave.reason)}"
                    break
            out["others"] = sorted(others)

        tasks = [asyncio.ensure_future(one(j)) for j in joins]
        await asyncio.sleep(0)
        start.set()
        outs = await asyncio.gather(*tasks)
        see = int(c.get("see", len(joins) - 1))
        await asyncio.gather(*(read(o, see) for o in outs))
        for o in outs:
            o.pop("_ws", None)
        return {"ok": True, "joins": outs}

    async def cmd_race_close(self, c: Dict[str, Any]) -> Dict[str, Any]:
        n = 0
        for x in reversed(getattr(self, "raw", [])):
            try:
                await x.close()
                n += 1
            except Exception:  # noqa: BLE001
                pass
        self.raw = []
        return {"ok": True, "closed": n}

    async def cmd_stats(self, c: Dict[str, Any]) -> Dict[str, Any]:
        from livekit import api

        token = api.AccessToken(self.key, self.secret).with_grants(api.VideoGrants(room_list=True)).to_jwt()
        req = urllib.request.Request(c["url"].rstrip("/") + "/node/stats", headers={"Authorization": f"Bearer {token}"})

        def get() -> Dict[str, Any]:
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return {"ok": True, "status": resp.status, "body": json.loads(resp.read())}
            except urllib.error.HTTPError as e:
                return {"ok": False, "status": e.code, "error": e.read().decode(errors="replace")[:500]}
            except (OSError, ValueError) as e:
                return {"ok": False, "error": f"{type(e).__name__}: {e}"}

        return await asyncio.to_thread(get)

    async def cmd_wait_rooms(self, c: Dict[str, Any]) -> Dict[str, Any]:
        url, room, present = c["url"], c["room"], bool(c.get("present", True))
        t0 = time.monotonic()
        deadline = t0 + float(c.get("deadline", 20))
        polls = 0
        last: Dict[str, Any] = {}
        while True:
            polls += 1
            last = await self.call(url, "ListRooms", {})
            if last.get("ok"):
                names = [r["name"] for r in last["result"]["rooms"]]
                if (room in names) == present:
                    return {"ok": True, "elapsed": round(time.monotonic() - t0, 3), "polls": polls, "last": last}
            if time.monotonic() >= deadline:
                return {"ok": False, "elapsed": round(time.monotonic() - t0, 3), "polls": polls, "last": last}
            await asyncio.sleep(0.1)

    async def handle(self, c: Dict[str, Any]) -> None:
        name = c.get("cmd", "")
        fn = getattr(self, f"cmd_{name}", None)
        if fn is None:
            emit("command_error", id=c.get("id"), cmd=name, error="unknown command")
            return
        try:
            res = await fn(c)
        except Exception as e:  # noqa: BLE001 - reported to the test
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        emit("result", id=c.get("id"), cmd=name, **res)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                if line.strip():
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read_stdin, daemon=True).start()
        emit("started")
        tasks = set()
        while True:
            line = await queue.get()
            if line is None:
                break
            try:
                c = json.loads(line)
            except ValueError:
                emit("command_error", error=f"not JSON: {line[:200]}")
                continue
            if c.get("cmd") == "disconnect":
                break
            t = asyncio.ensure_future(self.handle(c))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        for t in list(tasks):
            t.cancel()
        await self.cmd_race_close({})
        await self.close()
        emit("closed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    args = ap.parse_args()
    asyncio.run(Admin(args.key, args.secret).main())


if __name__ == "__main__":
    main()
