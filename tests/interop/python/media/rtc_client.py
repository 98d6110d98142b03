#!/usr/bin/env python3
"""A real-time LiveKit client (the unmodified Python `livekit` SDK) driven over stdin/stdout.

Run it inside the media test's network namespace:

    rtc_client.py --url ws://10.77.0.1:7880 --token JWT [--single-pc 1|0] [--max-seconds 60]

It connects at once, then reads one JSON command per line on stdin and reports everything as one
JSON object per line on stdout (`{"event": ..., ...}`), so the test can wait on events with
deadlines instead of sleeping. Commands (an optional "id" is echoed in the command's result):

    {"cmd": "publish_audio", "name": "tone", "freq": 440, "amplitude": 12000}  -> published
        (amplitude: the sine's int16 peak; the default is about -12 dBov)
    {"cmd": "publish_video", "name": "cam", "color": [r, g, b], "simulcast": true,
     "width": 640, "height": 480, "noise": 0}                       -> published
    {"cmd": "video_send_stats", "name": "cam"}                      -> the SDK's outbound RTP streams of
        that track (rid, ssrc, frame size, bytes sent, target bitrate), for per-layer checks
    {"cmd": "set_video_quality", "participant": "alice", "quality": "low" | "medium" | "high"}
        -> quality_set (the SDK asks the server for that simulcast layer of alice's video)
    {"cmd": "mute" | "unmute" | "unpublish", "name": "tone"}       -> muted / unmuted / unpublished
    {"cmd": "analyze_audio", "participant": "alice", "seconds": 1} -> audio_analysis
    {"cmd": "audio_peak", "participant": "alice", "frames": 100} -> audio_peak: once that many
        frames of alice's audio arrived (quiet ones included), how many did and the largest
        int16 sample of the last 50
    {"cmd": "analyze_video", "participant": "alice", "frames": 30} -> video_analysis
    {"cmd": "disconnect"}                                          -> closed, then exit
    {"cmd": "ice_stats"} -> ice_stats: the SDK's candidate pairs (state, nominated, STUN requests
        sent and responses received), over both peer connections, and the ports of its
        local UDP candidates

Data, RPC, streams and participant state (results carry "size"/"sha256" of what was sent, so a
test can compare them with what the other side reports; "text" or "size"+"seed" give the payload):

    {"cmd": "publish_data", "text": "hi" | "size": 60000, "seed": 1, "reliable": true,
     "topic": "t", "destination_identities": ["bob"]}               -> data_published
    {"cmd": "register_rpc", "method": "m", "behavior": "echo" | "error" | "crash" | "sleep" | "size",
     "code": 2001, "message": "...", "data": "...", "seconds": 3}   -> rpc_registered
    {"cmd": "perform_rpc", "destination": "bob", "method": "m", "payload": "p",
     "response_timeout": 10}                                        -> rpc_result (ok, or code/message/data)
    {"cmd": "register_text_stream" | "register_byte_stream", "topic": "t"} -> stream_handler_registered
    {"cmd": "send_text", "text" | "size"+"seed", "topic", "destination_identities", "attributes"}
                                                                    -> text_sent
    {"cmd": "stream_text", "text" | "size"+"seed", "chunk": 10000, "topic", ...} -> text_sent
    {"cmd": "stream_bytes" | "send_file" | "send_bytes", "size", "seed", "name", "topic",
     "chunk", "destination_identities"}                             -> bytes_sent
    {"cmd": "set_metadata", "metadata": "m"} / {"cmd": "set_name", "name": "n"} /
    {"cmd": "set_attributes", "attributes": {"k": "v"}}             -> local_update (raised, ffi_error)
    {"cmd": "state"}                                                -> state (local, remote, room_metadata)
    {"cmd": "set_permissions", "all": false, "allow": [{"identity": "bob", "tracks": ["TR_x"]}]}
        -> permissions_set (who may subscribe to this participant's tracks; no "tracks": all)

and reported as data_received (participant, kind, topic, size, sha256, text),
rpc_invoked / rpc_handled, stream_opened, text_stream_received / byte_stream_received (or stream_error),
participant_metadata_changed, participant_name_changed, participant_attributes_changed,
participant_permissions_changed, room_metadata_changed.

Room events are reported as they happen: participant_connected, participant_disconnected,
track_published, track_subscribed, track_unsubscribed, track_muted, track_unmuted,
track_unpublished, disconnected (with the SDK's DisconnectReason name), connection_state,
reconnecting, reconnected (with the participant sid after it), active_speakers_changed (the
SDK's list of active speakers, loudest first, as identities).

The client exits on its own after `--max-seconds`, on stdin EOF, or when the room disconnects.
A connect failure is reported as `connect_error` (exit code 3).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

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


def make_payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes whose every position matters: truncation, reordering or corruption
    changes the hash."""
    block = bytes(((i * 131 + seed * 17 + (i >> 8)) & 0xFF) for i in range(4096))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def make_text(size: int, seed: int = 0) -> str:
    """Deterministic ASCII text of `size` characters made of numbered lines."""
    parts: List[str] = []
    n = 0
    i = 0
    while n < size:
        line = f"{seed:03d}:{i:07d}:the quick brown fox jumps over the lazy dog\n"
        parts.append(line)
        n += len(line)
        i += 1
    return "".join(parts)[:size]


def digest(data: bytes) -> Dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def preview(data: bytes, limit: int = 1000) -> Optional[str]:
    return data.decode("utf-8", errors="replace") if len(data) <= limit else None


def payload_of(c: Dict[str, Any]) -> bytes:
    if "text" in c:
        return str(c["text"]).encode("utf-8")
    return make_payload(int(c["size"]), int(c.get("seed", 0)))


def text_of(c: Dict[str, Any]) -> str:
    if "text" in c:
        return str(c["text"])
    return make_text(int(c["size"]), int(c.get("seed", 0)))


def permission_dict(perm: Any) -> Dict[str, Any]:
    return {
        "can_subscribe": perm.can_subscribe,
        "can_publish": perm.can_publish,
        "can_publish_data": perm.can_publish_data,
        "can_update_metadata": perm.can_update_metadata,
        "hidden": perm.hidden,
    }


def participant_state(p: rtc.Participant) -> Dict[str, Any]:
    return {
        "identity": p.identity,
        "sid": p.sid,
        "name": p.name,
        "metadata": p.metadata,
        "attributes": dict(p.attributes),
        "permission": permission_dict(p.permissions),
        "tracks": sorted(p.track_publications.keys()),
    }


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


async def wait_event_until(event: asyncio.Event, cond: Any, deadline: float) -> bool:
    """Waits until `cond()` holds, looking again each time `event` is set; False if the
    deadline (monotonic) passes first."""
    while not cond():
        if time.monotonic() >= deadline:
            return False
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    return True


class AudioReceiver:
    def __init__(self, track: rtc.Track, participant: str) -> None:
        self.participant = participant
        self.track_sid = track.sid
        self.chunks: List[np.ndarray] = []
        self.kept = 0
        self.total = 0  # samples received since the tone started
        self.frames = 0
        self.peaks: List[int] = []  # the largest sample of each of the last 50 frames
        self.started = False
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self.run(track))

    async def run(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        try:
            async for ev in stream:
                d = np.frombuffer(ev.frame.data, dtype=np.int16).copy()
                self.frames += 1
                self.peaks.append(int(np.abs(d.astype(np.int32)).max()) if len(d) else 0)
                del self.peaks[:-50]
                if not self.started:
                    if len(d) == 0 or int(np.abs(d.astype(np.int32)).max()) < SILENCE_PEAK:
                        self.changed.set()  # for audio_peak, which counts quiet frames too
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
        if not await wait_event_until(self.changed, lambda: self.total >= start + need, deadline):
            return None
        return np.concatenate(self.chunks)[-need:]


class VideoReceiver:
    def __init__(self, track: rtc.Track, participant: str) -> None:
        self.participant = participant
        self.track = track
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


async def audio_loop(source: rtc.AudioSource, freq: float, amplitude: float = TONE_AMPLITUDE) -> None:
    n = RATE // 100
    t = 0
    while True:
        frame = rtc.AudioFrame.create(RATE, 1, n)
        d = np.frombuffer(frame.data, dtype=np.int16)
        s = np.sin(2 * np.pi * freq * (np.arange(n) + t) / RATE) * amplitude
        np.copyto(d, s.astype(np.int16))
        t += n
        await source.capture_frame(frame)


async def video_loop(
    source: rtc.VideoSource, color: List[int], width: int = WIDTH, height: int = HEIGHT, noise: int = 0
) -> None:
    """Frames of `color` with a moving white bar; with `noise`, each pixel of the background
    off by up to that much, afresh every frame (frames the encoder cannot shrink to a packet)."""
    bg = np.zeros((height, width, 4), dtype=np.uint8)
    bg[:, :, 0], bg[:, :, 1], bg[:, :, 2], bg[:, :, 3] = color[0], color[1], color[2], 255
    bar_height = max(2, BAR_HEIGHT * height // HEIGHT)
    rng = np.random.default_rng(1)
    base = bg.astype(np.int16)
    i = 0
    start = time.monotonic()
    while True:
        if noise:
            jitter = rng.integers(-noise, noise + 1, size=(height, width, 1), dtype=np.int16)
            buf = base.copy()
            buf[:, :, 0:3] += jitter
            buf = np.clip(buf, 0, 255).astype(np.uint8)
        else:
            buf = bg.copy()
        y = (i * BAR_STEP * height // HEIGHT) % (height - bar_height)
        buf[y : y + bar_height, :, 0:3] = BAR_RGB
        source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, buf.tobytes()))
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
        # Sids of tracks whose subscription ended (for a resubscription to wait on).
        self.unsubscribed: set = set()
        # How many times a subscription was asked for again (see `_resubscribe`).
        self.subscribe_resent = 0
        self.rx_changed = asyncio.Event()
        # Data tracks: ours by name; others' by (publisher identity, name), as announced.
        self.local_data_tracks: Dict[str, Any] = {}
        self.remote_data_tracks: Dict[Tuple[str, str], Any] = {}
        self.done = asyncio.Event()
        self.tasks: List[asyncio.Task] = []
        self.wire()

    def wire(self) -> None:
        room = self.room

        @room.on("participant_connected")
        def _pc(p: rtc.RemoteParticipant) -> None:
            kind = rtc.ParticipantKind.Name(p.kind).removeprefix("PARTICIPANT_KIND_")
            emit("participant_connected", participant=p.identity, sid=p.sid, kind=kind)

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
            self.unsubscribed.add(pub.sid)
            self.rx_changed.set()

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

        @room.on("data_received")
        def _data(pkt: rtc.DataPacket) -> None:
            emit(
                "data_received",
                participant=pkt.participant.identity if pkt.participant is not None else None,
                kind={rtc.DataPacketKind.KIND_RELIABLE: "reliable", rtc.DataPacketKind.KIND_LOSSY: "lossy"}.get(
                    pkt.kind, str(pkt.kind)
                ),
                topic=pkt.topic,
                text=preview(pkt.data),
                **digest(pkt.data),
            )

        def _who(p: Optional[rtc.Participant]) -> Dict[str, Any]:
            if p is None:
                return {"participant": None, "local": False}
            return {"participant": p.identity, "local": p is self.room.local_participant}

        @room.on("participant_metadata_changed")
        def _pmc(p: rtc.Participant, old: str, new: str) -> None:
            emit("participant_metadata_changed", **_who(p), old=old, new=new)

        @room.on("participant_name_changed")
        def _pnc(p: rtc.Participant, old: str, new: str) -> None:
            emit("participant_name_changed", **_who(p), old=old, new=new)

        @room.on("participant_attributes_changed")
        def _pac(changed: Dict[str, str], p: rtc.Participant) -> None:
            emit(
                "participant_attributes_changed",
                **_who(p),
                changed=dict(changed),
                attributes=dict(p.attributes) if p is not None else None,
            )

        @room.on("participant_permissions_changed")
        def _ppc(p: rtc.Participant, perm: Any) -> None:
            emit("participant_permissions_changed", **_who(p), permission=permission_dict(perm))

        @room.on("room_metadata_changed")
        def _rmc(old: str, new: str) -> None:
            emit("room_metadata_changed", old=old, new=new)

        @room.on("data_track_published")
        def _dtp(track: Any) -> None:
            self.remote_data_tracks[(track.publisher_identity, track.info.name)] = track
            self.rx_changed.set()
            emit("data_track_published", participant=track.publisher_identity, sid=track.info.sid, name=track.info.name)

        @room.on("data_track_unpublished")
        def _dtu(sid: str) -> None:
            emit("data_track_unpublished", sid=sid)

        @room.on("local_track_unpublished")
        def _ltu(pub: rtc.LocalTrackPublication) -> None:
            emit("local_track_unpublished", sid=pub.sid, name=pub.name, kind=kind_name(pub.kind))

        @room.on("connection_state_changed")
        def _cs(state: int) -> None:
            try:
                name = rtc.ConnectionState.Name(state)
            except ValueError:
                name = str(state)
            emit("connection_state", state=name)

        @room.on("reconnecting")
        def _reconnecting() -> None:
            emit("reconnecting")

        @room.on("reconnected")
        def _reconnected() -> None:
            emit("reconnected", sid=room.local_participant.sid)

        @room.on("active_speakers_changed")
        def _asc(speakers: List[rtc.Participant]) -> None:
            emit("active_speakers_changed", speakers=[p.identity for p in speakers])

        @room.on("disconnected")
        def _dc(reason: Any) -> None:
            emit("disconnected", reason=int(reason) if isinstance(reason, int) else str(reason), reason_name=reason_name(reason))
            self.done.set()

    # -------------------------------------------------------------- commands

    async def cmd_publish_audio(self, c: Dict[str, Any]) -> Dict[str, Any]:
        name = c.get("name", "tone")
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track(name, source)
        amplitude = float(c.get("amplitude", TONE_AMPLITUDE))
        task = asyncio.ensure_future(audio_loop(source, float(c.get("freq", 440)), amplitude))
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        pub = await self.room.local_participant.publish_track(track, opts)
        self.local[name] = {"track": track, "pub": pub, "source": source, "task": task}
        return {"name": name, "sid": pub.sid, "kind": "audio"}

    async def cmd_publish_video(self, c: Dict[str, Any]) -> Dict[str, Any]:
        name = c.get("name", "cam")
        width, height = int(c.get("width", WIDTH)), int(c.get("height", HEIGHT))
        source = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track(name, source)
        color = list(c.get("color", [200, 60, 90]))
        task = asyncio.ensure_future(video_loop(source, color, width, height, int(c.get("noise", 0))))
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=bool(c.get("simulcast", True)))
        if c.get("codec"):
            # "vp8", "vp9", "av1", "h264": the SDK's video_codec
            opts.video_codec = getattr(rtc.VideoCodec, str(c["codec"]).upper())
        pub = await self.room.local_participant.publish_track(track, opts)
        self.local[name] = {"track": track, "pub": pub, "source": source, "task": task}
        return {"name": name, "sid": pub.sid, "kind": "video"}

    async def cmd_video_send_stats(self, c: Dict[str, Any]) -> Dict[str, Any]:
        lt = self._local(c)
        streams = []
        for st in await lt["track"].get_stats():
            if not st.HasField("outbound_rtp") or st.outbound_rtp.stream.kind != "video":
                continue
            o = st.outbound_rtp
            streams.append(
                {
                    "rid": o.outbound.rid,
                    "ssrc": o.stream.ssrc,
                    "width": o.outbound.frame_width,
                    "height": o.outbound.frame_height,
                    "bytes_sent": o.sent.bytes_sent,
                    "frames_sent": o.outbound.frames_sent,
                    "target_bitrate": o.outbound.target_bitrate,
                    "active": o.outbound.active,
                    "at": time.monotonic(),
                }
            )
        return {"name": c.get("name", "cam"), "streams": sorted(streams, key=lambda x: x["rid"])}

    async def cmd_set_video_quality(self, c: Dict[str, Any]) -> Dict[str, Any]:
        who = c["participant"]
        qualities = {
            "low": rtc.VideoQuality.VIDEO_QUALITY_LOW,
            "medium": rtc.VideoQuality.VIDEO_QUALITY_MEDIUM,
            "high": rtc.VideoQuality.VIDEO_QUALITY_HIGH,
        }
        p = self.room.remote_participants.get(who)
        if p is None:
            raise KeyError(f"no remote participant {who!r}")
        pubs = [x for x in p.track_publications.values() if x.kind == rtc.TrackKind.KIND_VIDEO]
        if not pubs:
            raise KeyError(f"{who!r} publishes no video")
        for x in pubs:
            x.set_video_quality(qualities[c.get("quality", "high")])
        return {"participant": who, "quality": c.get("quality", "high"), "sids": [x.sid for x in pubs]}

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

    async def _until(self, cond: Any, deadline: float) -> bool:
        """Waits until `cond()` holds, looking again at each subscription change; False if the
        deadline (monotonic) passes first."""
        return await wait_event_until(self.rx_changed, cond, deadline)

    async def _receiver(self, table: Dict[str, Any], who: str, deadline: float) -> Optional[Any]:
        return table[who] if await self._until(lambda: who in table, deadline) else None

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

    async def cmd_set_permissions(self, c: Dict[str, Any]) -> Dict[str, Any]:
        perms = [
            rtc.ParticipantTrackPermission(
                participant_identity=a["identity"],
                allow_all="tracks" not in a,
                allowed_track_sids=a.get("tracks", []),
            )
            for a in c.get("allow", [])
        ]
        self.room.local_participant.set_track_subscription_permissions(
            allow_all_participants=bool(c.get("all", False)), participant_permissions=perms
        )
        return {"all": bool(c.get("all", False)), "allow": c.get("allow", [])}

    async def cmd_audio_peak(self, c: Dict[str, Any]) -> Dict[str, Any]:
        who = c["participant"]
        deadline = time.monotonic() + float(c.get("timeout", 15))
        rx = await self._receiver(self.audio_rx, who, deadline)
        if rx is None:
            return {"participant": who, "error": "no audio track subscribed from this participant"}
        # the frames it asks for, quiet ones included, before the deadline
        want = int(c.get("frames", 0))
        await wait_event_until(rx.changed, lambda: rx.frames >= want, deadline)
        return {"participant": who, "frames": rx.frames, "peak": max(rx.peaks, default=0)}

    async def cmd_analyze_video(self, c: Dict[str, Any]) -> Dict[str, Any]:
        who = c["participant"]
        deadline = time.monotonic() + float(c.get("timeout", 15))
        rx = await self._receiver(self.video_rx, who, deadline)
        if rx is None:
            return {"participant": who, "error": "no video track subscribed from this participant"}
        want = int(c.get("frames", 30))
        t0 = time.monotonic()
        # A first window; a stream that has yielded nothing in it while the SDK decodes the
        # track is stuck inside the SDK (seen with livekit 1.2.1 under load, after no frame or
        # after the first one, see cluster/README.md): the track is subscribed to afresh, which
        # gives a new track object, and analysed again within the same deadline; the report of
        # the stuck one stays in the result.
        yielded_before = rx.frames
        infos = await rx.collect(want, min(deadline, t0 + 5.0))
        stalled = rx.frames == yielded_before
        if len(infos) < want and stalled and not c.get("retried") and time.monotonic() < deadline:
            stuck = await self._video_receiver_report(rx, stalled)
            left = deadline - time.monotonic()
            if self._decodes(stuck) and left > 1 and await self._resubscribe(who, rx, left):
                res = await self.cmd_analyze_video({**c, "retried": True, "timeout": max(1.0, deadline - time.monotonic())})
                res["resubscribed_after"] = stuck
                return res
        if len(infos) < want:
            infos += await rx.collect(want - len(infos), deadline)
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
            res["receiver"] = await self._video_receiver_report(rx, rx.frames == yielded_before)
        return res

    @staticmethod
    def _decodes(report: Dict[str, Any]) -> bool:
        """Whether a receiver report shows the SDK decoding frames of the track."""
        after = report.get("track_inbound_after")
        before = report.get("track_inbound")
        if not isinstance(after, list) or not isinstance(before, list) or not after:
            return False
        return sum(i["frames_decoded"] for i in after) > sum(i["frames_decoded"] for i in before)

    async def _resubscribe(self, who: str, rx: "VideoReceiver", timeout: float) -> bool:
        """Unsubscribes from `who`'s track of `rx` and subscribes again; True once a new
        receiver for it is in place."""
        p = self.room.remote_participants.get(who)
        pub = p.track_publications.get(rx.track_sid) if p else None
        if pub is None:
            return False
        rx.task.cancel()
        if self.video_rx.get(who) is rx:
            del self.video_rx[who]
        self.unsubscribed.discard(rx.track_sid)
        pub.set_subscribed(False)
        if not await self._until(lambda: rx.track_sid in self.unsubscribed, time.monotonic() + timeout):
            return False
        self.video_rx.pop(who, None)
        # The SDK reports the track unsubscribed as soon as it is asked, and sends each
        # set_subscribed on its own: the two requests can reach the server in either order
        # (seen in the server's log: subscribe=true, then subscribe=false, the same
        # millisecond), which leaves the track unsubscribed. Asking again once, when the
        # track has not come back in 3 s, is what an app would do; it is reported.
        deadline = time.monotonic() + timeout
        pub.set_subscribed(True)
        fresh = await self._receiver(self.video_rx, who, min(deadline, time.monotonic() + 3.0))
        if fresh is None and time.monotonic() < deadline:
            self.subscribe_resent += 1
            pub.set_subscribed(True)
            fresh = await self._receiver(self.video_rx, who, deadline)
        return fresh is not None

    async def _video_receiver_report(self, rx: "VideoReceiver", stalled: bool) -> Dict[str, Any]:
        """Where the frames of a short video analysis stopped, for its failure report (at most
        about 4.5 s): the frames this track's stream ever yielded, the SDK peer connection's
        inbound video counters (do packets arrive, on which SSRC and mid, are keyframes asked
        for and decoded), and, when the stream yielded nothing during the analysis (`stalled`),
        a second stream opened on the same track for a moment next to the decoder's progress
        meanwhile (frames decoded but handed to no stream point at the SDK's track, not at the
        server)."""

        def inbound(stats: Any) -> List[Dict[str, Any]]:
            out = []
            for st in stats:
                if not st.HasField("inbound_rtp") or st.inbound_rtp.stream.kind != "video":
                    continue
                i = st.inbound_rtp
                out.append(
                    {
                        "ssrc": i.stream.ssrc,
                        "mid": i.inbound.mid,
                        "packets": i.received.packets_received,
                        "lost": i.received.packets_lost,
                        "frames_received": i.inbound.frames_received,
                        "frames_decoded": i.inbound.frames_decoded,
                        "key_frames_decoded": i.inbound.key_frames_decoded,
                        "pli": i.inbound.pli_count,
                        "nack": i.inbound.nack_count,
                    }
                )
            return out

        async def track_inbound() -> Any:
            try:
                return inbound(await asyncio.wait_for(rx.track.get_stats(), 1.0))
            except Exception as e:  # noqa: BLE001
                return repr(e)

        report: Dict[str, Any] = {"stream_frames_ever": rx.frames, "track_inbound": await track_inbound()}
        try:
            s = await asyncio.wait_for(self.room.get_rtc_stats(), 1.0)
            report["session_inbound"] = inbound(list(s.publisher_stats) + list(s.subscriber_stats))
        except Exception as e:  # noqa: BLE001
            report["session_inbound"] = repr(e)
        if stalled:
            probe = VideoReceiver(rx.track, rx.participant)
            await asyncio.sleep(1.5)
            report["second_stream_frames_in_1.5s"] = probe.frames
            report["track_inbound_after"] = await track_inbound()
            probe.task.cancel()
        return report

    async def cmd_ice_stats(self, c: Dict[str, Any]) -> Dict[str, Any]:
        s = await asyncio.wait_for(self.room.get_rtc_stats(), 5.0)
        pairs = []
        local_udp_ports = set()
        for st in list(s.publisher_stats) + list(s.subscriber_stats):
            if st.WhichOneof("stats") == "local_candidate" and st.local_candidate.candidate.protocol == "udp":
                local_udp_ports.add(int(st.local_candidate.candidate.port))
            if st.WhichOneof("stats") != "candidate_pair":
                continue
            p = st.candidate_pair.candidate_pair
            pairs.append(
                {
                    "state": int(p.state),
                    "nominated": p.nominated,
                    "requests_sent": p.requests_sent,
                    "responses_received": p.responses_received,
                    "consent_requests_sent": p.consent_requests_sent,
                }
            )
        return {"pairs": pairs, "local_udp_ports": sorted(local_udp_ports)}

    # -------------------------------------------------------------- data, RPC, streams, state

    async def cmd_publish_data(self, c: Dict[str, Any]) -> Dict[str, Any]:
        data = payload_of(c)
        await self.room.local_participant.publish_data(
            data,
            reliable=bool(c.get("reliable", True)),
            destination_identities=list(c.get("destination_identities", [])),
            topic=str(c.get("topic", "")),
        )
        return digest(data)

    async def cmd_register_rpc(self, c: Dict[str, Any]) -> Dict[str, Any]:
        method = c["method"]
        behavior = c.get("behavior", "echo")

        async def handler(inv: rtc.RpcInvocationData) -> str:
            emit(
                "rpc_invoked",
                method=method,
                caller=inv.caller_identity,
                payload=inv.payload if len(inv.payload) <= 1000 else None,
                payload_size=len(inv.payload.encode("utf-8")),
                payload_sha256=hashlib.sha256(inv.payload.encode("utf-8")).hexdigest(),
                request_id=inv.request_id,
                response_timeout=inv.response_timeout,
            )
            if behavior == "error":
                raise rtc.RpcError(int(c.get("code", 2001)), str(c.get("message", "handler failed")), c.get("data"))
            if behavior == "crash":
                raise RuntimeError("handler crashed on purpose")
            if behavior == "sleep":
                await asyncio.sleep(float(c.get("seconds", 5)))
            if behavior == "size":
                resp = make_text(int(c["size"]), int(c.get("seed", 0)))
            else:
                resp = json.dumps({"echo": inv.payload, "caller": inv.caller_identity, "by": self.room.local_participant.identity})
            b = resp.encode("utf-8")
            emit("rpc_handled", method=method, caller=inv.caller_identity, request_id=inv.request_id, response_size=len(b), response_sha256=hashlib.sha256(b).hexdigest())
            return resp

        self.room.local_participant.register_rpc_method(method, handler)
        return {"method": method, "behavior": behavior}

    async def cmd_perform_rpc(self, c: Dict[str, Any]) -> Dict[str, Any]:
        payload = c["payload"] if "payload" in c else make_text(int(c["size"]), int(c.get("seed", 0)))
        request = {"request_size": len(payload.encode("utf-8")), "request_sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest()}
        t0 = time.monotonic()
        kwargs: Dict[str, Any] = {}
        if c.get("response_timeout") is not None:
            kwargs["response_timeout"] = float(c["response_timeout"])
        try:
            resp = await self.room.local_participant.perform_rpc(
                destination_identity=c["destination"], method=c["method"], payload=payload, **kwargs
            )
        except rtc.RpcError as e:
            return {
                "ok": False,
                "code": int(e.code),
                "message": e.message,
                "data": e.data,
                "elapsed": round(time.monotonic() - t0, 3),
                **request,
            }
        b = resp.encode("utf-8")
        return {
            "ok": True,
            "response": resp if len(b) <= 1000 else None,
            "response_size": len(b),
            "response_sha256": hashlib.sha256(b).hexdigest(),
            "elapsed": round(time.monotonic() - t0, 3),
            **request,
        }

    def _stream_info(self, info: Any) -> Dict[str, Any]:
        out = {
            "stream_id": info.stream_id,
            "topic": info.topic,
            "mime_type": info.mime_type,
            "info_size": info.size,
            "attributes": dict(info.attributes or {}),
        }
        if hasattr(info, "name"):
            out["name"] = info.name
        return out

    async def cmd_publish_data_track(self, c: Dict[str, Any]) -> Dict[str, Any]:
        """Publishes a data track; a refusal is returned, not raised, for the test to check."""
        name = str(c["name"])
        try:
            track = await self.room.local_participant.publish_data_track(name=name)
        except Exception as e:  # noqa: BLE001 - reported to the test
            return {"name": name, "error": type(e).__name__, "message": str(e)}
        self.local_data_tracks[name] = track
        return {"name": name, "sid": track.info.sid}

    async def cmd_push_data_frames(self, c: Dict[str, Any]) -> Dict[str, Any]:
        """Pushes frames on a published data track, `interval_ms` apart: frame i is
        `sizes[i]` bytes whose first four say i, then deterministic bytes; each frame's user
        timestamp is 1e12 + i. Returns what was pushed (index, size, sha256)."""
        track = self.local_data_tracks[str(c["name"])]
        sent = []
        for i, size in enumerate(c["sizes"]):
            body = i.to_bytes(4, "big") + make_payload(max(0, int(size) - 4), seed=i)
            track.try_push(rtc.DataTrackFrame(payload=body, user_timestamp=10**12 + i))
            sent.append({"index": i, **digest(body)})
            await asyncio.sleep(float(c.get("interval_ms", 20)) / 1000)
        return {"sent": sent}

    async def cmd_unpublish_data_track(self, c: Dict[str, Any]) -> Dict[str, Any]:
        track = self.local_data_tracks.pop(str(c["name"]))
        await track.unpublish()
        return {"sid": track.info.sid}

    async def cmd_subscribe_data_track(self, c: Dict[str, Any]) -> Dict[str, Any]:
        """Subscribes to `participant`'s data track `name` once announced; every frame read is
        a `data_track_frame` event (index, size, sha256, user timestamp), the stream's end a
        `data_track_ended` event."""
        key = (str(c["participant"]), str(c["name"]))
        deadline = time.monotonic() + float(c.get("timeout", 15))
        if not await self._until(lambda: key in self.remote_data_tracks, deadline):
            return {"error": f"data track {key} was never announced"}
        track = self.remote_data_tracks[key]
        stream = track.subscribe()

        async def read() -> None:
            try:
                async for f in stream:
                    data = bytes(f.payload)
                    emit(
                        "data_track_frame",
                        sid=track.info.sid,
                        index=int.from_bytes(data[:4], "big") if len(data) >= 4 else None,
                        user_timestamp=f.user_timestamp,
                        **digest(data),
                    )
            except Exception as e:  # noqa: BLE001 - reported to the test
                emit("data_track_ended", sid=track.info.sid, error=f"{type(e).__name__}: {e}")
                return
            emit("data_track_ended", sid=track.info.sid, error=None)

        self.tasks.append(asyncio.ensure_future(read()))
        return {"sid": track.info.sid}

    async def cmd_register_text_stream(self, c: Dict[str, Any]) -> Dict[str, Any]:
        topic = str(c.get("topic", ""))

        async def read(reader: rtc.TextStreamReader, sender: str) -> None:
            chunks = 0
            parts: List[str] = []
            try:
                async for chunk in reader:
                    chunks += 1
                    parts.append(chunk)
            except Exception as e:  # noqa: BLE001 - reported to the test
                emit("stream_error", kind="text", participant=sender, error=f"{type(e).__name__}: {e}", **self._stream_info(reader.info))
                return
            text = "".join(parts)
            b = text.encode("utf-8")
            emit(
                "text_stream_received",
                participant=sender,
                chunks=chunks,
                chars=len(text),
                text=preview(b),
                **digest(b),
                **self._stream_info(reader.info),
            )

        def handler(reader: rtc.TextStreamReader, sender: str) -> None:
            emit("stream_opened", kind="text", participant=sender, **self._stream_info(reader.info))
            self.tasks.append(asyncio.ensure_future(read(reader, sender)))

        self.room.register_text_stream_handler(topic, handler)
        return {"kind": "text", "topic": topic}

    async def cmd_register_byte_stream(self, c: Dict[str, Any]) -> Dict[str, Any]:
        topic = str(c.get("topic", ""))

        async def read(reader: rtc.ByteStreamReader, sender: str) -> None:
            chunks = 0
            buf = bytearray()
            try:
                async for chunk in reader:
                    chunks += 1
                    buf += chunk
            except Exception as e:  # noqa: BLE001 - reported to the test
                emit("stream_error", kind="bytes", participant=sender, error=f"{type(e).__name__}: {e}", **self._stream_info(reader.info))
                return
            emit(
                "byte_stream_received",
                participant=sender,
                chunks=chunks,
                text=preview(bytes(buf), 200),
                **digest(bytes(buf)),
                **self._stream_info(reader.info),
            )

        def handler(reader: rtc.ByteStreamReader, sender: str) -> None:
            emit("stream_opened", kind="bytes", participant=sender, **self._stream_info(reader.info))
            self.tasks.append(asyncio.ensure_future(read(reader, sender)))

        self.room.register_byte_stream_handler(topic, handler)
        return {"kind": "bytes", "topic": topic}

    @staticmethod
    def _dest(c: Dict[str, Any]) -> Optional[List[str]]:
        d = c.get("destination_identities")
        return list(d) if d else None

    async def cmd_send_text(self, c: Dict[str, Any]) -> Dict[str, Any]:
        text = text_of(c)
        info = await self.room.local_participant.send_text(
            text,
            topic=str(c.get("topic", "")),
            destination_identities=self._dest(c),
            attributes=c.get("attributes"),
        )
        return {"stream_id": info.stream_id, "chars": len(text), **digest(text.encode("utf-8"))}

    async def cmd_stream_text(self, c: Dict[str, Any]) -> Dict[str, Any]:
        text = text_of(c)
        step = int(c.get("chunk", 10000))
        writer = await self.room.local_participant.stream_text(
            topic=str(c.get("topic", "")),
            destination_identities=self._dest(c),
            attributes=c.get("attributes"),
        )
        for i in range(0, len(text), step):
            await writer.write(text[i : i + step])
        await writer.aclose()
        return {"stream_id": writer.info.stream_id, "chars": len(text), **digest(text.encode("utf-8"))}

    async def cmd_stream_bytes(self, c: Dict[str, Any]) -> Dict[str, Any]:
        data = payload_of(c)
        step = int(c.get("chunk", 16000))
        writer = await self.room.local_participant.stream_bytes(
            str(c.get("name", "blob.bin")),
            total_size=len(data),
            mime_type=str(c.get("mime_type", "application/octet-stream")),
            topic=str(c.get("topic", "")),
            destination_identities=self._dest(c),
            attributes=c.get("attributes"),
        )
        for i in range(0, len(data), step):
            await writer.write(data[i : i + step])
        await writer.aclose()
        return {"stream_id": writer.info.stream_id, **digest(data)}

    async def cmd_send_file(self, c: Dict[str, Any]) -> Dict[str, Any]:
        data = payload_of(c)
        with tempfile.TemporaryDirectory(prefix="lk-send-file-") as d:
            path = os.path.join(d, str(c.get("name", "payload.bin")))
            with open(path, "wb") as f:
                f.write(data)
            info = await self.room.local_participant.send_file(
                path, topic=str(c.get("topic", "")), destination_identities=self._dest(c), attributes=c.get("attributes")
            )
        return {"stream_id": info.stream_id, "name": info.name, "mime_type": info.mime_type, **digest(data)}

    async def cmd_send_bytes(self, c: Dict[str, Any]) -> Dict[str, Any]:
        data = payload_of(c)
        info = await self.room.local_participant.send_bytes(
            data,
            topic=str(c.get("topic", "")),
            name=c.get("name"),
            mime_type=c.get("mime_type"),
            destination_identities=self._dest(c),
            attributes=c.get("attributes"),
        )
        return {"stream_id": info.stream_id, "name": info.name, "mime_type": info.mime_type, **digest(data)}

    async def _local_update(self, field: str, op: Any, timeout: float) -> Dict[str, Any]:
        """Runs a set_* call and reports what the SDK did: whether the Python call raised, and the
        error string in the FFI callback (the Python wrapper does not raise on it)."""
        from livekit.rtc._ffi_client import FfiClient

        q = FfiClient.instance.queue.subscribe(filter_fn=lambda e: e.WhichOneof("message") == field)
        t0 = time.monotonic()
        raised: Optional[str] = None
        try:
            await asyncio.wait_for(op, timeout)
        except Exception as e:  # noqa: BLE001 - reported to the test
            raised = f"{type(e).__name__}: {e}"
        elapsed = round(time.monotonic() - t0, 3)
        ffi_error: Optional[str] = None
        callbacks = 0
        try:
            await asyncio.sleep(0)  # let a callback scheduled with call_soon_threadsafe land
            while not q.empty():
                ev = q.get_nowait()
                callbacks += 1
                cb = getattr(ev, field)
                if cb.HasField("error") and cb.error:
                    ffi_error = cb.error
        finally:
            FfiClient.instance.queue.unsubscribe(q)
        return {
            "raised": raised,
            "ffi_error": ffi_error,
            "callbacks": callbacks,
            "elapsed": elapsed,
            "local": participant_state(self.room.local_participant),
        }

    async def cmd_set_metadata(self, c: Dict[str, Any]) -> Dict[str, Any]:
        op = self.room.local_participant.set_metadata(str(c["metadata"]))
        return {"op": "set_metadata", **await self._local_update("set_local_metadata", op, float(c.get("timeout", 15)))}

    async def cmd_set_name(self, c: Dict[str, Any]) -> Dict[str, Any]:
        op = self.room.local_participant.set_name(str(c["name"]))
        return {"op": "set_name", **await self._local_update("set_local_name", op, float(c.get("timeout", 15)))}

    async def cmd_set_attributes(self, c: Dict[str, Any]) -> Dict[str, Any]:
        op = self.room.local_participant.set_attributes({str(k): str(v) for k, v in dict(c["attributes"]).items()})
        return {"op": "set_attributes", **await self._local_update("set_local_attributes", op, float(c.get("timeout", 15)))}

    async def cmd_state(self, c: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "local": participant_state(self.room.local_participant),
            "remote": {i: participant_state(p) for i, p in self.room.remote_participants.items()},
            "room_metadata": self.room.metadata,
        }

    async def cmd_disconnect(self, c: Dict[str, Any]) -> Dict[str, Any]:
        self.done.set()
        return {}

    async def cmd_resubscribe_video(self, c: Dict[str, Any]) -> Dict[str, Any]:
        """Unsubscribes from a participant's video (RemoteTrackPublication.set_subscribed)
        and subscribes again; answers once the new track is subscribed."""
        who = c["participant"]
        timeout = float(c.get("timeout", 15))
        rx = await self._receiver(self.video_rx, who, time.monotonic() + timeout)
        if rx is None:
            return {"participant": who, "error": "no video track subscribed from this participant"}
        resent = self.subscribe_resent
        ok = await self._resubscribe(who, rx, timeout)
        return {"participant": who, "sid": rx.track_sid, "ok": ok, "subscribe_resent": self.subscribe_resent > resent}

    async def handle(self, c: Dict[str, Any]) -> None:
        name = c.get("cmd", "")
        result_event = {
            "publish_audio": "published",
            "publish_video": "published",
            "mute": "muted",
            "unmute": "unmuted",
            "unpublish": "unpublished",
            "analyze_audio": "audio_analysis",
            "audio_peak": "audio_peak",
            "set_permissions": "permissions_set",
            "analyze_video": "video_analysis",
            "disconnect": "disconnecting",
            "resubscribe_video": "resubscribed",
            "publish_data": "data_published",
            "register_rpc": "rpc_registered",
            "perform_rpc": "rpc_result",
            "register_text_stream": "stream_handler_registered",
            "register_byte_stream": "stream_handler_registered",
            "send_text": "text_sent",
            "stream_text": "text_sent",
            "stream_bytes": "bytes_sent",
            "send_file": "bytes_sent",
            "send_bytes": "bytes_sent",
            "set_metadata": "local_update",
            "set_name": "local_update",
            "set_attributes": "local_update",
            "state": "state",
            "video_send_stats": "video_send_stats",
            "set_video_quality": "quality_set",
            "ice_stats": "ice_stats",
            "publish_data_track": "data_track_publish_result",
            "push_data_frames": "data_frames_pushed",
            "unpublish_data_track": "data_track_unpublish_result",
            "subscribe_data_track": "data_track_subscribe_result",
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
        if self.args.relay:
            # Relay candidates only: every packet goes through the TURN servers the SFU
            # handed out in the JoinResponse.
            opts.rtc_config = rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY)
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
    ap.add_argument("--relay", action="store_true", help="ICE transport policy relay (TURN only)")
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
