#!/usr/bin/env python3
"""A Python `livekit` SDK subscriber that decodes one publisher's video and audio and reports.

Run it inside the browser test's network namespace:

    py_subscriber.py --url ws://10.77.0.1:7880 --token JWT --publisher alice
                     [--single-pc 1|0] [--video-frames 30] [--audio-seconds 2] [--timeout 40]

It prints one JSON object per line: `connected`, `track_subscribed` (per track), then one
`result` with what it decoded from `--publisher` before the deadline:

    {"event": "result", "video": {"frames": N, "distinct": N, "sizes": [[w, h], ...], ...},
     "audio": {"samples": N, "peak": P, "rms": R, "loud_chunks": N, ...}, "complete": bool}

`complete` is true if it got `--video-frames` frames and `--audio-seconds` of audio containing
sound; the test judges the numbers. Exits 0 after `result` (3 if the connect failed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import hashlib
import json
import math
import os
import sys
import time
import traceback
from typing import Any, Dict, List

from livekit import rtc

RATE = 48000
LOUD_PEAK = 1000  # int16 peak above which a 10 ms chunk counts as sound (the fake mic beeps)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}) + "\n")
    sys.stdout.flush()


class Stats:
    def __init__(self) -> None:
        self.video_frames = 0
        self.video_hashes: set = set()
        self.video_sizes: set = set()
        self.video_first_at: float = 0.0
        self.audio_samples = 0
        self.audio_chunks = 0
        self.audio_loud_chunks = 0
        self.audio_loud_samples = 0
        self.audio_peak = 0
        self.audio_sq = 0.0
        self.changed = asyncio.Event()


async def read_video(track: rtc.Track, st: Stats, want: int) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
    try:
        async for ev in stream:
            f = ev.frame
            st.video_frames += 1
            if st.video_frames == 1:
                st.video_first_at = time.monotonic()
            st.video_sizes.add((f.width, f.height))
            if len(st.video_hashes) < 10 * want:
                st.video_hashes.add(hashlib.sha1(bytes(f.data)).hexdigest())
            st.changed.set()
    finally:
        await stream.aclose()


async def read_audio(track: rtc.Track, st: Stats) -> None:
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    try:
        async for ev in stream:
            a = array.array("h")
            a.frombytes(bytes(ev.frame.data))
            if not a:
                continue
            peak = max(abs(min(a)), abs(max(a)))
            st.audio_chunks += 1
            st.audio_samples += len(a)
            st.audio_peak = max(st.audio_peak, peak)
            st.audio_sq += float(sum(x * x for x in a))
            if peak >= LOUD_PEAK:
                st.audio_loud_chunks += 1
                st.audio_loud_samples += len(a)
            st.changed.set()
    finally:
        await stream.aclose()


async def run(args: argparse.Namespace) -> int:
    room = rtc.Room()
    st = Stats()
    tasks: List[asyncio.Task] = []
    kinds: Dict[str, str] = {}

    @room.on("track_subscribed")
    def _ts(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        kind = {rtc.TrackKind.KIND_AUDIO: "audio", rtc.TrackKind.KIND_VIDEO: "video"}.get(track.kind, str(track.kind))
        emit("track_subscribed", participant=p.identity, sid=pub.sid, kind=kind, mime=pub.mime_type,
             simulcasted=pub.simulcasted, width=pub.width, height=pub.height)
        if p.identity != args.publisher or kind in kinds.values():
            return
        kinds[pub.sid] = kind
        if kind == "video":
            tasks.append(asyncio.ensure_future(read_video(track, st, args.video_frames)))
        elif kind == "audio":
            tasks.append(asyncio.ensure_future(read_audio(track, st)))

    @room.on("participant_connected")
    def _pc(p: rtc.RemoteParticipant) -> None:
        emit("participant_connected", participant=p.identity)

    @room.on("disconnected")
    def _dc(reason: Any) -> None:
        emit("disconnected", reason=str(reason))

    opts = rtc.RoomOptions(auto_subscribe=True, single_peer_connection=args.single_pc)
    try:
        await asyncio.wait_for(room.connect(args.url, args.token, opts), 20)
    except BaseException as e:  # noqa: BLE001 - reported to the test
        emit("connect_error", error=f"{type(e).__name__}: {e}")
        return 3
    emit("connected", identity=room.local_participant.identity, sid=room.local_participant.sid,
         remote=sorted(room.remote_participants.keys()), single_pc=args.single_pc)

    deadline = time.monotonic() + args.timeout
    need_samples = int(args.audio_seconds * RATE)

    def complete() -> bool:
        return (st.video_frames >= args.video_frames and st.audio_samples >= need_samples
                and st.audio_loud_chunks > 0)

    last_progress = 0.0
    while not complete() and time.monotonic() < deadline:
        st.changed.clear()
        try:
            await asyncio.wait_for(st.changed.wait(), max(0.01, min(1.0, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            pass
        if time.monotonic() - last_progress >= 2:
            last_progress = time.monotonic()
            emit("progress", video_frames=st.video_frames, audio_samples=st.audio_samples,
                 loud_chunks=st.audio_loud_chunks)

    rms = math.sqrt(st.audio_sq / st.audio_samples) if st.audio_samples else 0.0
    emit(
        "result",
        complete=complete(),
        tracks=sorted(kinds.values()),
        video={
            "frames": st.video_frames,
            "distinct": len(st.video_hashes),
            "sizes": sorted(st.video_sizes),
        },
        audio={
            "samples": st.audio_samples,
            "seconds": round(st.audio_samples / RATE, 3),
            "chunks": st.audio_chunks,
            "loud_chunks": st.audio_loud_chunks,
            "peak": st.audio_peak,
            "rms": round(rms, 1),
        },
    )
    for t in tasks:
        t.cancel()
    try:
        await asyncio.wait_for(room.disconnect(), 5)
    except BaseException as e:  # noqa: BLE001
        emit("disconnect_error", error=f"{type(e).__name__}: {e}")
    emit("closed")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--publisher", required=True)
    ap.add_argument("--single-pc", type=lambda v: v not in ("0", "false", "False"), default=True)
    ap.add_argument("--video-frames", type=int, default=30)
    ap.add_argument("--audio-seconds", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=40.0)
    args = ap.parse_args()
    rc = 1
    try:
        rc = asyncio.run(run(args))
    except BaseException as e:  # noqa: BLE001
        emit("fatal", error=f"{type(e).__name__}: {e}", tb=traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native side sometimes aborts during interpreter teardown; leave without it.
    os._exit(rc)


if __name__ == "__main__":
    main()
