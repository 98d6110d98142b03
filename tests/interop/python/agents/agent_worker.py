#!/usr/bin/env python3
"""A LiveKit Agents worker (the unmodified `livekit-agents` framework) that needs no AI service.

Run it (inside the test's network namespace) as the framework's CLI runs any agent:

    agent_worker.py start --url ws://10.77.0.1:7880 --api-key devkey --api-secret secret

Environment: AGENT_NAME (empty: dispatched automatically), WORKER_LABEL (reported back),
TONE_HZ (the tone the agent publishes, default 660), JOB_TYPE (room | publisher), ON_REQUEST
(accept | decline | terminate | slow, see below).

Each job's agent joins the room, publishes a sine tone as track "agent-tone", and answers
two RPC methods: "whoami" (JSON: the worker label, job id, room, dispatch metadata, its own
identity and kind) and "echo" (the payload back). Jobs run in threads of the worker process,
which keeps the worker light; nothing here reaches any network service but the server.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys

from livekit import rtc
from livekit.agents import AgentServer, JobContext, JobExecutorType, JobRequest, WorkerType, cli

AGENT_NAME = os.environ.get("AGENT_NAME", "")
LABEL = os.environ.get("WORKER_LABEL", "worker")
TONE_HZ = float(os.environ.get("TONE_HZ", "660"))
# "room": one agent per room; "publisher": one per participant that publishes.
# How job offers are answered: "accept" (default), "decline" (not available: the server asks
# another worker), "terminate" (rejected for good), "slow" (accepted after 12 s, past the
# server's 10 s availability timeout).
ON_REQUEST = os.environ.get("ON_REQUEST", "accept")
JOB_TYPE = {"room": WorkerType.ROOM, "publisher": WorkerType.PUBLISHER}[os.environ.get("JOB_TYPE", "room")]
SAMPLE_RATE = 48000
FRAME = 480  # 10 ms


def emit(event: str, **fields) -> None:
    """One JSON line for the test harness (`{"event": ...}`); the framework logs are other lines."""
    sys.stdout.write(json.dumps({"event": event, "worker": LABEL, **fields}) + "\n")
    sys.stdout.flush()


def _load(server: AgentServer) -> float:
    # One job is a tenth of this worker: load follows the jobs it runs, not the machine's CPU
    # (which other tests share), so the server's choice by load is what the test sees.
    return min(1.0, 0.1 * len(server.active_jobs))


server = AgentServer(
    job_executor_type=JobExecutorType.THREAD,
    num_idle_processes=0,
    load_fnc=_load,
    load_threshold=0.95,
    host="127.0.0.1",
    port=0,
)

server.on("worker_registered", lambda worker_id, _info: emit("registered", worker_id=worker_id))


async def _tone(source: rtc.AudioSource) -> None:
    n = 0
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    while True:
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME)
        data = frame.data
        for i in range(FRAME):
            data[i] = int(12000 * math.sin(step * (n + i)))
        n += FRAME
        await source.capture_frame(frame)


async def on_request(req: JobRequest) -> None:
    emit("job_request", job_id=req.id, room=req.room.name)
    if ON_REQUEST == "decline":
        await req.reject(terminate=False)
    elif ON_REQUEST == "terminate":
        await req.reject(terminate=True)
    else:
        if ON_REQUEST == "slow":
            await asyncio.sleep(12)
        await req.accept()


@server.rtc_session(agent_name=AGENT_NAME, type=JOB_TYPE, on_request=on_request)
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    room = ctx.room
    me = room.local_participant

    @me.register_rpc_method("whoami")
    async def whoami(data: rtc.RpcInvocationData) -> str:
        return json.dumps(
            {
                "worker": LABEL,
                "job_id": ctx.job.id,
                "room": room.name,
                "metadata": ctx.job.metadata,
                "identity": me.identity,
                "kind": int(me.kind),
                "caller": data.caller_identity,
                "job_type": int(ctx.job.type),
                "for_participant": ctx.job.participant.identity if ctx.job.HasField("participant") else None,
            }
        )

    @me.register_rpc_method("echo")
    async def echo(data: rtc.RpcInvocationData) -> str:
        return data.payload

    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-tone", source)
    await me.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    task = asyncio.create_task(_tone(source))
    emit("job_started", job_id=ctx.job.id, room=room.name, identity=me.identity)

    async def _stop(reason: str = "") -> None:
        task.cancel()
        emit("job_ended", job_id=ctx.job.id, room=room.name, reason=str(reason))

    ctx.add_shutdown_callback(_stop)


if __name__ == "__main__":
    cli.run_app(server)
