#!/usr/bin/env python3
"""Twirp `livekit.Egress` calls made inside the media test's network namespace.

    egress_admin.py URL KEY SECRET METHOD JSON_ARGS
        METHOD is StartTrackEgress, ListEgress or StopEgress, made through the unmodified
        `livekit-api` SDK (LiveKitAPI.egress); or Raw, a POST of JSON_ARGS["body"] to
        /twirp/livekit.Egress/JSON_ARGS["method"] with a token carrying only the grants in
        JSON_ARGS["grants"] (for refusals the SDK cannot produce).
        Prints {"ok": true, "result": ...} or {"ok": false, "error": ..., "code": ..., "status": ...}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def info_dict(i) -> dict:
    from livekit import api

    return {
        "egress_id": i.egress_id,
        "room_id": i.room_id,
        "room_name": i.room_name,
        "status": api.EgressStatus.Name(i.status),
        "started_at": i.started_at,
        "ended_at": i.ended_at,
        "updated_at": i.updated_at,
        "error": i.error,
        "track_id": i.track.track_id if i.HasField("track") else "",
        "files": [
            {
                "filename": f.filename,
                "location": f.location,
                "size": f.size,
                "duration": f.duration,
                "started_at": f.started_at,
                "ended_at": f.ended_at,
            }
            for f in i.file_results
        ],
    }


async def call(url: str, key: str, secret: str, method: str, args: dict) -> None:
    from livekit import api

    lk = api.LiveKitAPI(url, key, secret)
    try:
        if method == "StartTrackEgress":
            req = api.TrackEgressRequest(
                room_name=args["room"],
                track_id=args["track"],
                file=api.DirectFileOutput(filepath=args.get("filepath", "")),
            )
            out({"ok": True, "result": info_dict(await lk.egress.start_track_egress(req))})
        elif method == "ListEgress":
            res = await lk.egress.list_egress(
                api.ListEgressRequest(
                    room_name=args.get("room", ""), egress_id=args.get("egress_id", ""), active=args.get("active", False)
                )
            )
            out({"ok": True, "result": [info_dict(i) for i in res.items]})
        elif method == "StopEgress":
            res = await lk.egress.stop_egress(api.StopEgressRequest(egress_id=args["egress_id"]))
            out({"ok": True, "result": info_dict(res)})
        else:
            out({"ok": False, "error": f"unknown method {method}"})
    except api.TwirpError as e:
        out({"ok": False, "error": e.message, "code": e.code, "status": e.status})
    except Exception as e:  # noqa: BLE001 - reported to the test
        out({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        await lk.aclose()


def raw(url: str, key: str, secret: str, args: dict) -> None:
    from livekit import api

    token = api.AccessToken(key, secret).with_grants(api.VideoGrants(**args.get("grants", {}))).to_jwt()
    req = urllib.request.Request(
        f"{url}/twirp/{args.get('service', 'livekit.Egress')}/{args['method']}",
        data=json.dumps(args.get("body", {})).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            out({"ok": True, "status": resp.status, "result": json.loads(resp.read() or b"{}")})
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        out({"ok": False, "status": e.code, "code": body.get("code"), "error": body.get("msg")})


def node_stats(url: str, key: str, secret: str) -> None:
    from livekit import api

    token = api.AccessToken(key, secret).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    req = urllib.request.Request(f"{url}/node/stats", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        out({"ok": True, "result": json.loads(resp.read())})


def main() -> None:
    url, key, secret, method, args = sys.argv[1:6]
    if method == "NodeStats":
        node_stats(url, key, secret)
    elif method == "Raw":
        raw(url, key, secret, json.loads(args))
    else:
        asyncio.run(call(url, key, secret, method, json.loads(args)))


if __name__ == "__main__":
    main()
