#!/usr/bin/env python3
"""A real-time LiveKit client (the unmodified Python `livekit` SDK) driven over stdin/stdout.

Run it inside the media test's network namespace:

    rtc_client.py --url ws://10.77.0.1:7880 --token JWT [--single-pc 1|0] [--max-seconds 60]

It connects at once, then reads one JSON command per line on stdin and reports everything as one
JSON object per line on stdout (`{"event": ..., ...}`), so the test can wait on events with
deadlines instead of sleeping. Commands (an optional "id" is echoed in the command's result):

    {"cmd": "publish_audio", "name": "tone", "freq": 440}          -> published
    {"cmd": "publish_video", "name": "cam", "color": [r, g, b], "simulcast": true} -> published
    {"cmd": "mute" | "unmute" | "unpublish", "name": "tone"}       -> muted / unmuted / unpublished
    {"cmd": "analyze_audio", "participant": "alice", "seconds": 1} -> audio_analysis
    {"cmd": "analyze_video", "participant": "alice", "frames": 30} -> video_analysis
    {"cmd": "disconnect"}                                          -> closed, then exit

Room events are reported as they happen: participant_connected, participant_disconnected,
track_published, track_subscribed, track_unsubscribed, track_muted, track_unmuted,
track_unpublished, disconnected (with the SDK's DisconnectReason name), connection_state.

The client exits on its own after `--max-seconds`, on stdin EOF, or when the room disconnects.
A connect failure is reported as `connect_error` (exit code 3).
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
TONE_AMPLITUDE = 12000
WIDTH, HEIGHT = 640, 480
FPS = 20
BAR_HEIGHT = 48
BAR_STEP = 6
BAR_RGB = (240, 240, 240)
SILENCE_PEAK = 800  # int16 peak below which a received frame counts as silence
KEEP_SECONDS = 5


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}) + "\n")
    sys.stdout.flush()


def kind_name(kind: int) -> str:
    return {rtc.TrackKind.KIND_AUDIO: "audio", rtc.TrackKind.KIND_VIDEO: "video"}.get(kind, str(kind))


def source_name(source: int) -> str:
    try:
        return rtc.TrackSource.Name(source)
    except ValueError:
        return str(source)


def reason_name(reason: Any) -> str:
    try:
        return rtc.DisconnectReason.Name(int(reason))
    except (ValueError, TypeError):
        return str(reason)


# ------------------------------------------------------------------------------ analysis


def analyze_tone(samples: np.ndarray, rate: int = RATE) -> Dict[str, Any]:
    x = samples.astype(np.float64)
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    if len(x) < 1024 or rms == 0.0:
        return {"freq": None, "rms": rms, "purity": 0.0, "samples": int(len(x))}
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    power = spec**2
    k = int(np.argmax(power[1:])) + 1
    # parabolic interpolation on the log magnitude around the peak bin
    if 1 <= k < len(spec) - 1:
        a, b, c = (np.log(spec[k - 1] + 1e-9), np.log(spec[k] + 1e-9), np.log(spec[k + 1] + 1e-9))
        denom = a - 2 * b + c
        delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        delta = 0.0
    bin_hz = rate / len(x)
    freq = (k + delta) * bin_hz
    half = max(2, int(np.ceil(15.0 / bin_hz)))
    band = float(power[max(1, k - half) : k + half + 1].sum())
    total = float(power[1:].sum())
    return {
        "freq": round(float(freq), 2),
        "rms": round(rms, 1),
        "purity": round(band / total, 4) if total else 0.0,
        "samples": int(len(x)),
    }


def analyze_frame(frame: rtc.VideoFrame) -> Dict[str, Any]:
    w, h = frame.width, frame.height
    a = np.frombuffer(frame.data, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]
    step = 4 if min(w, h) >= 200 else 2
    sub = a[::step, ::step].astype(np.int16)
    median = np.median(sub.reshape(-1, 3), axis=0)
    rows = sub.mean(axis=(1, 2))
    bar_rows = np.nonzero(rows > float(median.mean()) + 60.0)[0]
    bar = round(float(bar_rows.mean()) * step / h, 3) if len(bar_rows) else None
    return {"w": w, "h": h, "median": [float(v) for v in median], "bar": bar}


# ------------------------------------------------------------------------------ receivers


class AudioReceiver:
    def __init__(self, track: rtc.Track, participant: str) -> None:
        self.participant = participant
        self.track_sid = track.sid
        self.chunks: List[np.ndarray] = []
        self.kept = 0
        self.total = 0  # samples received since the tone started
        self.frames = 0
        self.started = False
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self.run(track))

    async def run(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        try:
            async for ev in stream:
                d = np.frombuffer(ev.frame.data, dtype=np.int16).copy()
                self.frames += 1
                if not self.started:
                    if len(d) == 0 or int(np.abs(d.astype(np.int32)).max()) < SILENCE_PEAK:
                        continue
                    self.started = True
                self.chunks.append(d)
                self.kept += len(d)
                self.total += len(d)
                while self.chunks and self.kept - len(self.chunks[0]) >= KEEP_SECONDS * RATE:
                    self.kept -= len(self.chunks.pop(0))
                self.changed.set()
        finally:
            await stream.aclose()

    async def collect(self, seconds: float, deadline: float) -> Optional[np.ndarray]:
        need = int(seconds * RATE)
        start = self.total
        while self.total < start + need:
            if time.monotonic() >= deadline:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        return np.concatenate(self.chunks)[-need:]


class VideoReceiver:
    def __init__(self, track: rtc.Track, participant: str) -> None:
        self.participant = participant
        self.track_sid = track.sid
        self.frames = 0
        self.watchers: List[Dict[str, Any]] = []
        self.task = asyncio.ensure_future(self.run(track))

    async def run(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
        try:
            async for ev in stream:
                self.frames += 1
                if not self.watchers:
                    continue
                info = analyze_frame(ev.frame)
                for w in list(self.watchers):
                    w["infos"].append(info)
                    if len(w["infos"]) >= w["need"]:
                        self.watchers.remove(w)
                        w["done"].set()
        finally:
            await stream.aclose()

    async def collect(self, frames: int, deadline: float) -> List[Dict[str, Any]]:
        w: Dict[str, Any] = {"need": frames, "infos": [], "done": asyncio.Event()}
        self.watchers.append(w)
        try:
            await asyncio.wait_for(w["done"].wait(), max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        finally:
            if w in self.watchers:
                self.watchers.remove(w)
        return w["infos"]


# ------------------------------------------------------------------------------ publishers


async def audio_loop(source: rtc.AudioSource, freq: float) -> None:
    n = RATE // 100
    t = 0
    while True:
        frame = rtc.AudioFrame.create(RATE, 1, n)
        d = np.frombuffer(frame.data, dtype=np.int16)
        s = np.sin(2 * np.pi * freq * (np.arange(n) + t) / RATE) * TONE_AMPLITUDE
        np.copyto(d, s.astype(np.int16))
        t += n
        await source.capture_frame(frame)


async def video_loop(source: rtc.VideoSource, color: List[int]) -> None:
    bg = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    bg[:, :, 0], bg[:, :, 1], bg[:, :, 2], bg[:, :, 3] = color[0], color[1], color[2], 255
    i = 0
    start = time.monotonic()
    while True:
        buf = bg.copy()
        y = (i * BAR_STEP) % (HEIGHT - BAR_HEIGHT)
        buf[y : y + BAR_HEIGHT, :, 0:3] = BAR_RGB
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, buf.tobytes()))
        i += 1
        await asyncio.sleep(max(0.0, start + i / FPS - time.monotonic()))


# ------------------------------------------------------------------------------ client


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.room = rtc.Room()
        self.local: Dict[str, Dict[str, Any]] = {}
        self.audio_rx: Dict[str, AudioReceiver] = {}  # by participant identity
        self.video_rx: Dict[str, VideoReceiver] = {}
        self.rx_changed = asyncio.Event()
        self.done = asyncio.Event()
        self.tasks: List[asyncio.Task] = []
        self.wire()

    def wire(self) -> None:
        room = self.room

        @room.on("participant_connected")
        def _pc(p: rtc.RemoteParticipant) -> None:
            emit("participant_connected", participant=p.identity, sid=p.sid)

        @room.on("participant_disconnected")
        def _pd(p: rtc.RemoteParticipant) -> None:
            emit("participant_disconnected", participant=p.identity, sid=p.sid)

        @room.on("track_published")
        def _tp(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            emit("track_published", participant=p.identity, sid=pub.sid, name=pub.name, kind=kind_name(pub.kind))

        @room.on("track_subscribed")
        def _ts(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            kind = kind_name(track.kind)
            emit(
                "track_subscribed",
                participant=p.identity,
                sid=pub.sid,
                name=pub.name,
                kind=kind,
                source=source_name(pub.source),
                simulcasted=pub.simulcasted,
                width=pub.width,
                height=pub.height,
                mime=pub.mime_type,
            )
            if kind == "audio":
                self.audio_rx[p.identity] = AudioReceiver(track, p.identity)
            elif kind == "video":
                self.video_rx[p.identity] = VideoReceiver(track, p.identity)
            self.rx_changed.set()

        @room.on("track_unsubscribed")
        def _tu(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            emit("track_unsubscribed", participant=p.identity, sid=pub.sid, name=pub.name, kind=kind_name(track.kind))

        @room.on("track_unpublished")
        def _tun(pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            emit("track_unpublished", participant=p.identity, sid=pub.sid, name=pub.name, kind=kind_name(pub.kind))

        def _mute_event(name: str, p: rtc.Participant, pub: rtc.TrackPublication) -> None:
            emit(
                name,
                participant=p.identity,
                local=p is self.room.local_participant,
                sid=pub.sid,
                name=pub.name,
                kind=kind_name(pub.kind),
                muted=pub.muted,
            )

        room.on("track_muted", lambda p, pub: _mute_event("track_muted", p, pub))
        room.on("track_unmuted", lambda p, pub: _mute_event("track_unmuted", p, pub))

        @room.on("connection_state_changed")
        def _cs(state: int) -> None:
            try:
                name = rtc.ConnectionState.Name(state)
            except ValueError:
                name = str(state)
            emit("connection_state", state=name)

        @room.on("disconnected")
        def _dc(reason: Any) -> None:
            emit("disconnected", reason=int(reason) if isinstance(reason, int) else str(reason), reason_name=reason_name(reason))
            self.done.set()

    # -------------------------------------------------------------- commands

    async def cmd_publish_audio(self, c: Dict[str, Any]) -> Dict[str, Any]:
        name = c.get("name", "tone")
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track(name, source)
        task = asyncio.ensure_future(audio_loop(source, float(c.get("freq", 440))))
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        pub = await self.room.local_participant.publish_track(track, opts)
        self.local[name] = {"track": track, "pub": pub, "source": source, "task": task}
        return {"name": name, "sid": pub.sid, "kind": "audio"}

    async def cmd_publish_video(self, c: Dict[str, Any]) -> Dict[str, Any]:
        name = c.get("name", "cam")
        source = rtc.VideoSource(WIDTH, HEIGHT)
        track = rtc.LocalVideoTrack.create_video_track(name, source)
        task = asyncio.ensure_future(video_loop(source, list(c.get("color", [200, 60, 90]))))
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=bool(c.get("simulcast", True)))
        pub = await self.room.local_participant.publish_track(track, opts)
        self.local[name] = {"track": track, "pub": pub, "source": source, "task": task}
        return {"name": name, "sid": pub.sid, "kind": "video"}

    def _local(self, c: Dict[str, Any]) -> Dict[str, Any]:
        name = c.get("name", "tone")
        if name not in self.local:
            raise KeyError(f"no local track named {name!r}")
        return self.local[name]

    async def cmd_mute(self, c: Dict[str, Any]) -> Dict[str, Any]:
        lt = self._local(c)
        lt["track"].mute()
        return {"name": c.get("name", "tone"), "sid": lt["pub"].sid}

    async def cmd_unmute(self, c: Dict[str, Any]) -> Dict[str, Any]:
        lt = self._local(c)
        lt["track"].unmute()
        return {"name": c.get("name", "tone"), "sid": lt["pub"].sid}

    async def cmd_unpublish(self, c: Dict[str, Any]) -> Dict[str, Any]:
        lt = self._local(c)
        sid = lt["pub"].sid
        await self.room.local_participant.unpublish_track(sid)
        lt["task"].cancel()
        self.local.pop(c.get("name", "tone"), None)
        return {"name": c.get("name", "tone"), "sid": sid}

    async def _receiver(self, table: Dict[str, Any], who: str, deadline: float) -> Optional[Any]:
        while who not in table:
            if time.monotonic() >= deadline:
                return None
            self.rx_changed.clear()
            try:
                await asyncio.wait_for(self.rx_changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        return table[who]

    async def cmd_analyze_audio(self, c: Dict[str, Any]) -> Dict[str, Any]:
        who = c["participant"]
        deadline = time.monotonic() + float(c.get("timeout", 15))
        rx = await self._receiver(self.audio_rx, who, deadline)
        if rx is None:
            return {"participant": who, "error": "no audio track subscribed from this participant"}
        x = await rx.collect(float(c.get("seconds", 1.0)), deadline)
        if x is None:
            return {
                "participant": who,
                "error": "not enough audio before the deadline",
                "frames": rx.frames,
                "tone_started": rx.started,
                "samples_since_tone": rx.total,
            }
        return {"participant": who, "frames": rx.frames, **analyze_tone(x)}

    async def cmd_analyze_video(self, c: Dict[str, Any]) -> Dict[str, Any]:
        who = c["participant"]
        deadline = time.monotonic() + float(c.get("timeout", 15))
        rx = await self._receiver(self.video_rx, who, deadline)
        if rx is None:
            return {"participant": who, "error": "no video track subscribed from this participant"}
        want = int(c.get("frames", 30))
        t0 = time.monotonic()
        infos = await rx.collect(want, deadline)
        elapsed = time.monotonic() - t0
        res: Dict[str, Any] = {
            "participant": who,
            "frames": len(infos),
            "wanted": want,
            "fps": round(len(infos) / elapsed, 1) if elapsed > 0 else None,
            "sizes": sorted({(i["w"], i["h"]) for i in infos}),
            "bars": [i["bar"] for i in infos],
        }
        if infos:
            res["median_rgb"] = [round(float(v), 1) for v in np.median(np.array([i["median"] for i in infos]), axis=0)]
        if len(infos) < want:
            res["error"] = f"only {len(infos)} of {want} frames before the deadline"
        return res

    async def cmd_disconnect(self, c: Dict[str, Any]) -> Dict[str, Any]:
        self.done.set()
        return {}

    async def handle(self, c: Dict[str, Any]) -> None:
        name = c.get("cmd", "")
        result_event = {
            "publish_audio": "published",
            "publish_video": "published",
            "mute": "muted",
            "unmute": "unmuted",
            "unpublish": "unpublished",
            "analyze_audio": "audio_analysis",
            "analyze_video": "video_analysis",
            "disconnect": "disconnecting",
        }.get(name)
        fn = getattr(self, f"cmd_{name}", None)
        if fn is None or result_event is None:
            emit("command_error", cmd=name, id=c.get("id"), error="unknown command")
            return
        try:
            res = await fn(c)
            emit(result_event, id=c.get("id"), **res)
        except Exception as e:  # reported, never fatal
            emit("command_error", cmd=name, id=c.get("id"), error=f"{type(e).__name__}: {e}", tb=traceback.format_exc())

    # -------------------------------------------------------------- main

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                line = line.strip()
                if line:
                    loop.call_soon_threadsafe(commands.put_nowait, line)
            loop.call_soon_threadsafe(commands.put_nowait, None)

        opts = rtc.RoomOptions(auto_subscribe=True, single_peer_connection=self.args.single_pc)
        try:
            await asyncio.wait_for(self.room.connect(self.args.url, self.args.token, opts), self.args.connect_timeout)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            emit("connect_error", error=str(e), type=type(e).__name__)
            return 3
        lp = self.room.local_participant
        emit(
            "connected",
            identity=lp.identity,
            sid=lp.sid,
            room=self.room.name,
            single_pc=self.args.single_pc,
            remote=sorted(self.room.remote_participants.keys()),
        )
        threading.Thread(target=read_stdin, daemon=True).start()

        async def pump() -> None:
            while True:
                line = await commands.get()
                if line is None:
                    emit("stdin_closed")
                    self.done.set()
                    return
                try:
                    c = json.loads(line)
                except ValueError:
                    emit("command_error", error=f"not JSON: {line[:200]}")
                    continue
                self.tasks.append(asyncio.ensure_future(self.handle(c)))

        pump_task = asyncio.ensure_future(pump())
        try:
            await asyncio.wait_for(self.done.wait(), self.args.max_seconds)
        except asyncio.TimeoutError:
            emit("lifetime_expired", seconds=self.args.max_seconds)
        pump_task.cancel()
        for t in self.tasks:
            t.cancel()
        for lt in self.local.values():
            lt["task"].cancel()
        try:
            await asyncio.wait_for(self.room.disconnect(), 5)
        except BaseException as e:  # noqa: BLE001
            emit("disconnect_error", error=f"{type(e).__name__}: {e}")
        emit("closed")
        return 0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--single-pc", type=lambda v: v not in ("0", "false", "False"), default=True)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--connect-timeout", type=float, default=15.0)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    rc = 1

    async def run() -> int:
        return await Client(args).main()

    try:
        rc = asyncio.run(run())
    except BaseException as e:  # noqa: BLE001
        emit("fatal", error=f"{type(e).__name__}: {e}", tb=traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native side sometimes aborts during interpreter teardown; leave without it.
    os._exit(rc)


if __name__ == "__main__":
    main()
