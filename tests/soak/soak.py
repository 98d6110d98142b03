#!/usr/bin/env python3
"""Churn soak: participants join and leave with media, over and over, while the server's memory
and open file descriptors are sampled; after a warm-up both must stay flat.

    tests/soak/soak.py --minutes 60 [--server BIN] [--cli BIN] [--json]

Each round is one `livekit-cli perf load-test` in a fresh room (1 video publisher with three
simulcast layers, 1 audio publisher, 6 subscribers, joined at 10 per second, 10 s of media),
after which every participant leaves and the room closes (departure_timeout 1 s). The server
runs on loopback with its own ports. Samples of RSS and fds are taken between rounds, once the
previous round's room has closed. The first quarter of the run (`--warmup`) is warm-up; after
it, every sample must lie within +-TOLERANCE (default 5%) of the first sample after warm-up.

Prints one JSON line per round and a summary; exits 1 if a round lost its participants, or
memory or fds drifted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rooms(url: str, cli: str) -> int:
    cp = subprocess.run(
        [cli, "--url", url, "--dev", "--json", "room", "list"], capture_output=True, text=True, timeout=20
    )
    try:
        return len(json.loads(cp.stdout).get("rooms", []))
    except ValueError:
        return -1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--server", default=os.environ.get("LIVEKIT_SERVER_BIN", str(ROOT / "target/release/livekit-server")))
    ap.add_argument("--cli", default=os.environ.get("LIVEKIT_CLI_BIN", str(ROOT / "target/release/livekit-cli")))
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of the run that is warm-up")
    ap.add_argument(
        "--warmup-subscribers",
        type=int,
        default=0,
        help="during warm-up, rounds with this many subscribers (a heavier load brings the "
        "server's buffer pools and allocator to their working size sooner)",
    )
    ap.add_argument("--subscribers", type=int, default=6)
    ap.add_argument("--media-seconds", type=int, default=10)
    args = ap.parse_args()

    port, udp = free_port(), free_port(socket.SOCK_DGRAM)
    url = f"http://127.0.0.1:{port}"
    logdir = Path(tempfile.mkdtemp(prefix="lk-soak-"))
    log = open(logdir / "server.log", "wb")
    config = "room:\n  departure_timeout: 1\n  empty_timeout: 5\nlogging:\n  level: info\n"
    server = subprocess.Popen(
        [args.server, "--dev", "--port", str(port), "--udp-port", str(udp), "--config-body", config],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print(json.dumps({"error": "server did not start", "log": str(logdir / "server.log")}))
                return 1
            time.sleep(0.1)

        end = time.monotonic() + args.minutes * 60
        warmup_end = time.monotonic() + args.minutes * 60 * args.warmup
        samples = []  # (t, rss, fds, after_warmup)
        failures = []
        start = time.monotonic()
        n = 0
        while time.monotonic() < end:
            n += 1
            room = f"soak-{n}"
            warming = time.monotonic() < warmup_end
            subscribers = (
                args.warmup_subscribers if warming and args.warmup_subscribers else args.subscribers
            )
            cp = subprocess.run(
                [
                    args.cli, "--url", url, "--dev", "--json", "perf", "load-test",
                    "--room", room, "--duration", f"{args.media_seconds}s",
                    "--video-publishers", "1", "--audio-publishers", "1",
                    "--subscribers", str(subscribers), "--num-per-second", "10",
                    "--identity-prefix", f"r{n}-",
                ],
                capture_output=True,
                text=True,
                timeout=args.media_seconds + 120,
            )
            try:
                report = json.loads(cp.stdout)
            except ValueError:
                report = {"unparsed": cp.stdout[-500:], "stderr": cp.stderr[-500:]}
            joined = report.get("joined")
            want = subscribers + 2
            ok = (
                cp.returncode == 0
                and joined == want
                and report.get("subscriptions") == report.get("expected_subscriptions")
            )
            if not ok:
                failures.append(
                    {"round": n, "rc": cp.returncode, "joined": joined, "report": str(report)[:400], "stderr": cp.stderr[-300:]}
                )
            # Wait for the room to close, so every round is sampled in the same state.
            closed_by = time.monotonic() + 15
            while rooms(url, args.cli) > 0 and time.monotonic() < closed_by:
                time.sleep(0.2)
            now = time.monotonic()
            # The fewest fds of three looks, so that a request still closing is not counted.
            open_fds = []
            for _ in range(3):
                open_fds.append(fds(server.pid))
                time.sleep(0.3)
            sample = (now - start, rss_bytes(server.pid), min(open_fds), now >= warmup_end)
            samples.append(sample)
            print(
                json.dumps(
                    {
                        "round": n,
                        "t_s": round(sample[0], 1),
                        "ok": ok,
                        "joined": joined,
                        "loss_percent": report.get("loss_percent"),
                        "rss_mb": round(sample[1] / 1e6, 2),
                        "fds": sample[2],
                        "rooms_left": rooms(url, args.cli),
                    }
                ),
                flush=True,
            )
        warm = [s for s in samples if not s[3]]
        steady = [s for s in samples if s[3]]
        if not warm or not steady:
            print(json.dumps({"error": "run too short for a warm-up and a steady part"}))
            return 1
        ref_rss, ref_fds = steady[0][1], steady[0][2]
        rss_dev = max(abs(s[1] - ref_rss) / ref_rss for s in steady)
        fd_dev = max(abs(s[2] - ref_fds) / ref_fds for s in steady)
        summary = {
            "minutes": args.minutes,
            "rounds": n,
            "failed_rounds": len(failures),
            "rss_mb_after_warmup": round(ref_rss / 1e6, 2),
            "rss_mb_min": round(min(s[1] for s in steady) / 1e6, 2),
            "rss_mb_max": round(max(s[1] for s in steady) / 1e6, 2),
            "rss_max_deviation": round(rss_dev, 4),
            "fds_after_warmup": ref_fds,
            "fds_min": min(s[2] for s in steady),
            "fds_max": max(s[2] for s in steady),
            "fds_max_deviation": round(fd_dev, 4),
            "tolerance": args.tolerance,
            "server_log": str(logdir / "server.log"),
        }
        good = not failures and rss_dev <= args.tolerance and fd_dev <= args.tolerance and server.poll() is None
        summary["pass"] = good
        if failures:
            summary["failures"] = failures[:5]
        print(json.dumps({"summary": summary}), flush=True)
        return 0 if good else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if os.environ.get("SOAK_KEEP_LOG") != "1":
            shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
