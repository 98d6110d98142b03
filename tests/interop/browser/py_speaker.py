#!/usr/bin/env python3
"""A Python `livekit` SDK participant for the active-speaker tests (adaptive.test.mjs).

Run it inside the browser test's network namespace:

    py_speaker.py --url ws://10.77.0.1:7880 --token JWT [--single-pc 1|0] [--max-seconds 120]

It connects at once and reports `connected`, then reads one JSON command per line on stdin:

    {"id": "x", "cmd": "publish_tone", "freq": 440}   a loud sine tone as a microphone track
    {"id": "x", "cmd": "mute"} / {"cmd": "unmute"}     mutes the tone track (LocalTrack.mute())
    {"id": "x", "cmd": "speakers"}                     the last reported active speakers
    {"id": "x", "cmd": "exit"}                         disconnects and exits

and answers each with {"event": "result", "id": ..., "ok": true, "value": ...} (or "error").
Room events, one JSON object per line: `active_speakers_changed` (speakers: [{identity}]),
participant_connected, track_subscribed, track_muted, track_unmuted, disconnected.
Exits on stdin EOF, on `exit`, after --max-seconds, or when the room disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

import numpy as np
from livekit import rtc

RATE = 48000
TONE_AMPLITUDE = 16000  # about -6 dBFS: loud enough to be an active speaker


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": round(time.time(), 3), **fields}) + "\n")
    sys.stdout.flush()


async def tone_loop(source: rtc.AudioSource, freq: float) -> None:
    n = RATE // 100
    t = 0
    while True:
        frame = rtc.AudioFrame.create(RATE, 1, n)
        d = np.frombuffer(frame.data, dtype=np.int16)
        s = np.sin(2 * np.pi * freq * (np.arange(n) + t) / RATE) * TONE_AMPLITUDE
        np.copyto(d, s.astype(np.int16))
        t += n
        await source.capture_frame(frame)


def speakers_of(speakers: List[rtc.Participant]) -> List[Dict[str, Any]]:
    # the Python SDK reports identities only (no levels)
    return [{"identity": p.identity} for p in speakers]


class Speaker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.room = rtc.Room()
        self.track: Optional[rtc.LocalAudioTrack] = None
        self.task: Optional[asyncio.Task] = None
        self.done = asyncio.Event()
        self.speakers: List[Dict[str, Any]] = []
        room = self.room

        @room.on("active_speakers_changed")
        def _as(speakers: List[rtc.Participant]) -> None:
            self.speakers = speakers_of(speakers)
            emit("active_speakers_changed", speakers=self.speakers)

        @room.on("participant_connected")
        def _pc(p: rtc.RemoteParticipant) -> None:
            emit("participant_connected", participant=p.identity)

        @room.on("track_subscribed")
        def _ts(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            emit("track_subscribed", participant=p.identity, sid=pub.sid, kind=int(track.kind))

        room.on("track_muted", lambda p, pub: emit("track_muted", participant=p.identity, sid=pub.sid))
        room.on("track_unmuted", lambda p, pub: emit("track_unmuted", participant=p.identity, sid=pub.sid))

        @room.on("disconnected")
        def _dc(reason: Any) -> None:
            emit("disconnected", reason=str(reason))
            self.done.set()

    async def publish_tone(self, c: Dict[str, Any]) -> Dict[str, Any]:
        source = rtc.AudioSource(RATE, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        self.task = asyncio.ensure_future(tone_loop(source, float(c.get("freq", 440))))
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        pub = await self.room.local_participant.publish_track(self.track, opts)
        return {"sid": pub.sid}

    async def handle(self, c: Dict[str, Any]) -> Any:
        cmd = c.get("cmd")
        if cmd == "publish_tone":
            return await self.publish_tone(c)
        if cmd in ("mute", "unmute"):
            if self.track is None:
                raise RuntimeError("no tone track published")
            self.track.mute() if cmd == "mute" else self.track.unmute()
            return {"muted": cmd == "mute"}
        if cmd == "speakers":
            return self.speakers
        if cmd == "exit":
            self.done.set()
            return True
        raise ValueError(f"unknown command {cmd!r}")

    async def command(self, c: Dict[str, Any]) -> None:
        try:
            value = await self.handle(c)
            emit("result", id=c.get("id"), ok=True, value=value)
        except Exception as e:  # noqa: BLE001 - reported to the test
            emit("result", id=c.get("id"), ok=False, error=f"{type(e).__name__}: {e}")

    async def commands(self) -> None:
        # stdin is read by a thread (as tests/interop/python/media/rtc_client.py does); each
        # command runs as its own task
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                line = line.strip()
                if line:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read_stdin, daemon=True).start()
        tasks: List[asyncio.Task] = []
        while not self.done.is_set():
            line = await queue.get()
            if line is None:
                self.done.set()
                return
            try:
                c = json.loads(line)
            except ValueError:
                emit("result", ok=False, error=f"not JSON: {line[:200]!r}")
                continue
            tasks.append(asyncio.ensure_future(self.command(c)))

    async def run(self) -> int:
        opts = rtc.RoomOptions(auto_subscribe=True, single_peer_connection=self.args.single_pc)
        try:
            await asyncio.wait_for(self.room.connect(self.args.url, self.args.token, opts), 20)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            emit("connect_error", error=f"{type(e).__name__}: {e}")
            return 3
        lp = self.room.local_participant
        emit("connected", identity=lp.identity, sid=lp.sid, remote=sorted(self.room.remote_participants.keys()))
        cmds = asyncio.ensure_future(self.commands())
        try:
            await asyncio.wait_for(self.done.wait(), self.args.max_seconds)
        except asyncio.TimeoutError:
            emit("lifetime_expired", seconds=self.args.max_seconds)
        cmds.cancel()
        if self.task:
            self.task.cancel()
        try:
            await asyncio.wait_for(self.room.disconnect(), 5)
        except BaseException as e:  # noqa: BLE001
            emit("disconnect_error", error=f"{type(e).__name__}: {e}")
        emit("closed")
        return 0


async def amain(args: argparse.Namespace) -> int:
    # rtc.Room must be created inside the running event loop (it binds to the current loop)
    return await Speaker(args).run()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--single-pc", type=lambda v: v not in ("0", "false", "False"), default=True)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args()
    rc = 1
    try:
        rc = asyncio.run(amain(args))
    except BaseException as e:  # noqa: BLE001
        emit("fatal", error=f"{type(e).__name__}: {e}", tb=traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native side sometimes aborts during interpreter teardown; leave without it.
    os._exit(rc)


if __name__ == "__main__":
    main()
