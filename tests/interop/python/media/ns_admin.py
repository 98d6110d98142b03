#!/usr/bin/env python3
"""Small helpers that must run inside the media test's network namespace.

    ns_admin.py wait_ready URL DEADLINE_S
        polls GET URL/ until it answers 200 "OK"; prints {"ok": true} or {"ok": false, "last": ...}
    ns_admin.py twirp URL KEY SECRET METHOD JSON_ARGS
        one RoomService call (ListParticipants, RemoveParticipant, MutePublishedTrack,
        ListRooms) through the unmodified `livekit-api` SDK (LiveKitAPI);
        prints {"ok": true, "result": ...} or {"ok": false, "error": ..., "code": ..., "status": ...}

Output is one JSON line on stdout; the exit code is 0 either way (judge by the JSON).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def wait_ready(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/", timeout=2) as resp:
                body = resp.read().decode(errors="replace")
                if resp.status == 200 and body.strip() == "OK":
                    out({"ok": True})
                    return
                last = f"{resp.status} {body[:200]!r}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    out({"ok": False, "last": last})


def participant_dict(p) -> dict:
    from livekit import api

    return {
        "identity": p.identity,
        "sid": p.sid,
        "state": api.ParticipantInfo.State.Name(p.state),
        "kind": api.ParticipantInfo.Kind.Name(p.kind),
        "tracks": [
            {
                "sid": t.sid,
                "name": t.name,
                "type": api.TrackType.Name(t.type),
                "source": api.TrackSource.Name(t.source),
                "muted": t.muted,
                "width": t.width,
                "height": t.height,
                "simulcast": t.simulcast,
                "mime_type": t.mime_type,
            }
            for t in p.tracks
        ],
    }


async def twirp(url: str, key: str, secret: str, method: str, args: dict) -> None:
    from livekit import api

    lk = api.LiveKitAPI(url, key, secret)
    try:
        if method == "ListParticipants":
            res = await lk.room.list_participants(api.ListParticipantsRequest(room=args["room"]))
            out({"ok": True, "result": {"participants": [participant_dict(p) for p in res.participants]}})
        elif method == "RemoveParticipant":
            await lk.room.remove_participant(api.RoomParticipantIdentity(room=args["room"], identity=args["identity"]))
            out({"ok": True, "result": {}})
        elif method == "MutePublishedTrack":
            req = api.MuteRoomTrackRequest(
                room=args["room"], identity=args["identity"], track_sid=args["track_sid"], muted=args["muted"]
            )
            res = await lk.room.mute_published_track(req)
            out({"ok": True, "result": {"track": {"sid": res.track.sid, "muted": res.track.muted}}})
        elif method == "ListRooms":
            res = await lk.room.list_rooms(api.ListRoomsRequest(names=args.get("names", [])))
            out({"ok": True, "result": {"rooms": [{"name": r.name, "num_participants": r.num_participants} for r in res.rooms]}})
        else:
            out({"ok": False, "error": f"unknown method {method}"})
    except api.TwirpError as e:
        out({"ok": False, "error": str(e), "code": e.code, "status": e.status})
    except Exception as e:  # noqa: BLE001 - reported to the test
        out({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        await lk.aclose()


def main() -> None:
    op = sys.argv[1]
    if op == "wait_ready":
        wait_ready(sys.argv[2], float(sys.argv[3]))
    elif op == "twirp":
        url, key, secret, method, args = sys.argv[2:7]
        asyncio.run(twirp(url, key, secret, method, json.loads(args)))
    else:
        out({"ok": False, "error": f"unknown op {op}"})


if __name__ == "__main__":
    main()
