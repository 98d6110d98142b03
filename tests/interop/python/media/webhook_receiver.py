#!/usr/bin/env python3
"""A webhook endpoint that checks every POST with the Python `livekit-api` WebhookReceiver.

    webhook_receiver.py --port P --key K --secret S [--stall]

Each request becomes one JSON line on stdout:
    {"event": "webhook", "name": "room_started", "room": "r", "participant": "alice",
     "track": "TR_..", "egress_id": "EG_..", "egress_status": "EGRESS_ACTIVE", "id": "EV_..",
     "content_type": "application/webhook+json"}
    {"event": "webhook_error", "error": "..."}      (the receiver refused it; answered 401)
With --stall the endpoint accepts requests and never answers. Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiohttp import web
from livekit import api


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--stall", action="store_true")
    args = ap.parse_args()
    receiver = api.WebhookReceiver(api.TokenVerifier(args.key, args.secret))

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        if args.stall:
            emit(event="stalled_request")
            await asyncio.sleep(3600)
        try:
            ev = receiver.receive(body, request.headers.get("Authorization", ""))
        except Exception as e:  # noqa: BLE001 - any refusal is reported
            emit(event="webhook_error", error=str(e))
            return web.Response(status=401)
        emit(
            event="webhook",
            name=ev.event,
            room=ev.room.name,
            room_sid=ev.room.sid,
            participant=ev.participant.identity,
            track=ev.track.sid,
            egress_id=ev.egress_info.egress_id,
            egress_status=api.EgressStatus.Name(ev.egress_info.status) if ev.HasField("egress_info") else "",
            id=ev.id,
            created_at=ev.created_at,
            content_type=request.headers.get("Content-Type", ""),
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    emit(event="listening", port=args.port)
    loop = asyncio.get_running_loop()
    # Until stdin closes (or says disconnect).
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or "disconnect" in line:
            break
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
