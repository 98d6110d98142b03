#!/usr/bin/env python3
"""RoomService calls for the data tests, made by the unmodified `livekit-api` SDK (LiveKitAPI)
from inside the media test's network namespace:

    ns_data_admin.py URL KEY SECRET METHOD JSON_ARGS

METHOD is one of
    SendData            {room, text | data_b64, kind: "RELIABLE"|"LOSSY", topic?, destination_identities?,
                         destination_sids?}
                        through `room.send_data` (which sets a fresh 16-byte nonce itself)
    SendDataRawNonce    {room, text, nonce_hex, kind?, topic?}: the same request with the given
                        nonce, sent through the SDK's Twirp client because `send_data`
                        overwrites the nonce
    UpdateParticipant   {room, identity, metadata?, name?, attributes?, permission?}
    UpdateRoomMetadata  {room, metadata}
    ListParticipants    {room}
    GetParticipant      {room, identity}
    MoveParticipant, ForwardParticipant  {room, identity, destination_room}
    PerformRpc          {room, identity, rpc_method, payload?, response_timeout_ms?}: a call the
                        server makes to that participant, through the SDK's Twirp client

Prints one JSON line: {"ok": true, "result": ...} or
{"ok": false, "error": ..., "code": ..., "status": ..., "message": ...}. Exit code 0 either way.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def permission_dict(p) -> dict:
    return {
        "can_subscribe": p.can_subscribe,
        "can_publish": p.can_publish,
        "can_publish_data": p.can_publish_data,
        "can_update_metadata": p.can_update_metadata,
        "hidden": p.hidden,
    }


def participant_dict(p) -> dict:
    from livekit import api

    return {
        "identity": p.identity,
        "sid": p.sid,
        "name": p.name,
        "metadata": p.metadata,
        "attributes": dict(p.attributes),
        "state": api.ParticipantInfo.State.Name(p.state),
        "version": p.version,
        "permission": permission_dict(p.permission),
        "tracks": [{"sid": t.sid, "name": t.name, "type": api.TrackType.Name(t.type)} for t in p.tracks],
    }


def _data(args: dict) -> bytes:
    if "data_b64" in args:
        return base64.b64decode(args["data_b64"])
    return str(args["text"]).encode("utf-8")


def _kind(args: dict) -> int:
    from livekit import api

    return api.DataPacket.Kind.Value(args.get("kind", "RELIABLE"))


async def call(url: str, key: str, secret: str, method: str, args: dict) -> None:
    from livekit import api
    from livekit.api.room_service import SVC

    lk = api.LiveKitAPI(url, key, secret)
    try:
        room = lk.room
        if method == "SendData":
            await room.send_data(
                api.SendDataRequest(
                    room=args["room"],
                    data=_data(args),
                    kind=_kind(args),
                    topic=args.get("topic"),
                    destination_identities=args.get("destination_identities", []),
                    # deprecated in the protocol, still sent by older callers
                    destination_sids=args.get("destination_sids", []),
                )
            )
            out({"ok": True, "result": {}})
        elif method == "SendDataRawNonce":
            req = api.SendDataRequest(
                room=args["room"],
                data=_data(args),
                kind=_kind(args),
                topic=args.get("topic"),
                nonce=bytes.fromhex(args["nonce_hex"]),
            )
            await room._client.request(
                SVC,
                "SendData",
                req,
                room._auth_header(api.VideoGrants(room_admin=True, room=req.room)),
                api.SendDataResponse,
            )
            out({"ok": True, "result": {}})
        elif method == "PerformRpc":
            # livekit-api 1.2 has no wrapper for it: the request goes through its Twirp client.
            req = api.PerformRpcRequest(
                room=args["room"],
                destination_identity=args["identity"],
                method=args["rpc_method"],
                payload=args.get("payload", ""),
                response_timeout_ms=int(args.get("response_timeout_ms", 0)),
            )
            res = await room._client.request(
                SVC,
                "PerformRpc",
                req,
                room._auth_header(api.VideoGrants(room_admin=True, room=req.room)),
                api.PerformRpcResponse,
            )
            out({"ok": True, "result": {"payload": res.payload}})
        elif method in ("MoveParticipant", "ForwardParticipant"):
            fields = dict(room=args["room"], identity=args["identity"], destination_room=args["destination_room"])
            if method == "MoveParticipant":
                await room.move_participant(api.MoveParticipantRequest(**fields))
            else:
                await room.forward_participant(api.ForwardParticipantRequest(**fields))
            out({"ok": True, "result": {}})
        elif method == "UpdateParticipant":
            req = api.UpdateParticipantRequest(room=args["room"], identity=args["identity"])
            if "metadata" in args:
                req.metadata = args["metadata"]
            if "name" in args:
                req.name = args["name"]
            if "attributes" in args:
                req.attributes.update(args["attributes"])
            if "permission" in args:
                req.permission.CopyFrom(api.ParticipantPermission(**args["permission"]))
            info = await room.update_participant(req)
            out({"ok": True, "result": participant_dict(info)})
        elif method == "UpdateRoomMetadata":
            r = await room.update_room_metadata(api.UpdateRoomMetadataRequest(room=args["room"], metadata=args["metadata"]))
            out({"ok": True, "result": {"name": r.name, "sid": r.sid, "metadata": r.metadata}})
        elif method == "ListParticipants":
            res = await room.list_participants(api.ListParticipantsRequest(room=args["room"]))
            out({"ok": True, "result": {"participants": [participant_dict(p) for p in res.participants]}})
        elif method == "GetParticipant":
            p = await room.get_participant(api.RoomParticipantIdentity(room=args["room"], identity=args["identity"]))
            out({"ok": True, "result": participant_dict(p)})
        else:
            out({"ok": False, "error": f"unknown method {method}"})
    except api.TwirpError as e:
        out({"ok": False, "error": str(e), "code": e.code, "status": e.status, "message": e.message})
    except Exception as e:  # noqa: BLE001 - reported to the test
        out({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        await lk.aclose()


def main() -> None:
    url, key, secret, method, args = sys.argv[1:6]
    asyncio.run(call(url, key, secret, method, json.loads(args)))


if __name__ == "__main__":
    main()
