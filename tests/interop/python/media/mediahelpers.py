"""Harness for the media interop tests: a private network namespace, the server inside it, and
real-time SDK clients (Python `livekit`, Node `@livekit/rtc-node`) as processes inside it.

libwebrtc gathers no loopback candidates, so each test module gets its own namespace with a veth
pair (10.77.0.1 <-> 10.77.0.2); the server binds and advertises 10.77.0.1 and every client runs
in the namespace. Nothing here sends traffic anywhere but 127.0.0.0/8 and the namespace's own
addresses. Clients talk JSON lines (see rtc_client.py); tests wait on their events with deadlines.

Set LK_MEDIA_RUST_LOG (e.g. `debug`) to run the server with that RUST_LOG; its log is attached
to failing tests either way.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
PY_DIR = HERE.parent
sys.path.insert(0, str(PY_DIR))

import lkhelpers  # noqa: E402

INTEROP_DIR = PY_DIR.parent
PY_CLIENT = HERE / "rtc_client.py"
NS_ADMIN = HERE / "ns_admin.py"
NODE_CLIENT = INTEROP_DIR / "node" / "media" / "rtc_client.mjs"

SERVER_IP = "10.77.0.1"
PEER_IP = "10.77.0.2"
PORT = 7880
UDP_PORT = 7882
WS_URL = f"ws://{SERVER_IP}:{PORT}"
HTTP_URL = f"http://{SERVER_IP}:{PORT}"
API_KEY = lkhelpers.API_KEY
API_SECRET = lkhelpers.API_SECRET
LOG_TAIL_CHARS = 15000

_ns_counter = itertools.count(1)


def python_bin() -> str:
    return sys.executable


def node_bin() -> Optional[str]:
    return shutil.which("node")


def _run(argv: List[str], timeout: float = 15, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def netns_usable() -> Optional[str]:
    """None if we can create network namespaces here, else why not."""
    if os.geteuid() != 0:
        return "media tests need root (they create a network namespace)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


class NetNs:
    """A private network namespace with lo up and a veth pair v0 (10.77.0.1) <-> v1 (10.77.0.2)."""

    def __init__(self, prefix: str = "lkmedia") -> None:
        self.name = f"{prefix}{os.getpid()}x{next(_ns_counter)}"
        self.created = False

    def create(self) -> "NetNs":
        n = self.name
        _run(["ip", "netns", "add", n])
        self.created = True
        try:
            for cmd in (
                ["link", "set", "lo", "up"],
                ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                ["addr", "add", f"{SERVER_IP}/24", "dev", "v0"],
                ["addr", "add", f"{PEER_IP}/24", "dev", "v1"],
                ["link", "set", "v0", "up"],
                ["link", "set", "v1", "up"],
            ):
                _run(["ip", "-n", n, *cmd])
        except BaseException:
            self.destroy()
            raise
        return self

    def argv(self, cmd: List[str]) -> List[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def pids(self) -> List[int]:
        cp = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(x) for x in cp.stdout.split() if x.strip().isdigit()]

    def destroy(self) -> None:
        if not self.created:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and self.pids():
                time.sleep(0.05)
        _run(["ip", "netns", "del", self.name], check=False)
        self.created = False


class ClientProc:
    """One SDK client process in the namespace; its stdout JSON lines become `events`."""

    def __init__(self, label: str, argv: List[str], stderr_path: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.label = label
        self.argv = argv
        self.stderr_path = stderr_path
        self.events: List[Dict[str, Any]] = []
        self.raw: List[str] = []
        self.cond = threading.Condition()
        self.eof = False
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.cond:
                self.raw.append(line)
                try:
                    ev = json.loads(line)
                    if isinstance(ev, dict) and "event" in ev:
                        self.events.append(ev)
                except ValueError:
                    pass
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    # ---------------------------------------------------------------- commands

    def send(self, cmd: str, **fields: Any) -> None:
        line = json.dumps({"cmd": cmd, **fields}) + "\n"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            raise AssertionError(f"[{self.label}] cannot send {cmd}: client is gone ({e})\n{self.describe()}")

    # ---------------------------------------------------------------- events

    @staticmethod
    def _matches(ev: Dict[str, Any], event: str, match: Dict[str, Any]) -> bool:
        if ev.get("event") != event:
            return False
        return all(ev.get(k) == v for k, v in match.items())

    def find(self, event: str, after: int = 0, **match: Any) -> List[Dict[str, Any]]:
        with self.cond:
            return [e for e in self.events[after:] if self._matches(e, event, match)]

    def index_of(self, ev: Dict[str, Any]) -> int:
        with self.cond:
            for i, e in enumerate(self.events):
                if e is ev:
                    return i
        return -1

    def wait_for(
        self,
        event: str,
        timeout: float = 20,
        after: int = 0,
        fail_on: tuple = ("fatal", "connect_error"),
        **match: Any,
    ) -> Dict[str, Any]:
        """The first event named `event` with the given fields (from index `after` on)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events[after:]:
                    if self._matches(e, event, match):
                        return e
                    if e.get("event") in fail_on and event not in fail_on:
                        raise AssertionError(
                            f"[{self.label}] got {e.get('event')} while waiting for {event} {match}: {e}\n{self.describe()}"
                        )
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and not any(self._matches(e, event, match) for e in self.events[after:])):
                    why = "client exited" if self.eof else f"no such event within {timeout}s"
                    raise AssertionError(f"[{self.label}] waiting for {event} {match}: {why}\n{self.describe()}")
                self.cond.wait(min(left, 0.5))

    def start(self, cmd: str, **fields: Any) -> str:
        """Sends a command with a fresh id (see `result`)."""
        cid = f"{cmd}-{time.monotonic_ns()}"
        self.send(cmd, id=cid, **fields)
        return cid

    def result(self, cid: str, timeout: float = 30) -> Dict[str, Any]:
        """The result event of the command sent as `cid`; a command_error fails the test."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("id") == cid:
                        if e.get("event") == "command_error":
                            raise AssertionError(f"[{self.label}] {cid} failed: {e}\n{self.describe()}")
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    why = "client exited" if self.eof else f"no result within {timeout}s"
                    raise AssertionError(f"[{self.label}] {cid}: {why}\n{self.describe()}")
                self.cond.wait(min(left, 0.5))

    def request(self, cmd: str, timeout: float = 30, **fields: Any) -> Dict[str, Any]:
        """Sends a command and waits for its result."""
        return self.result(self.start(cmd, **fields), timeout)

    # ---------------------------------------------------------------- lifecycle

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 10) -> Optional[int]:
        """Asks the client to disconnect and exit; kills it if it does not within `timeout`."""
        self.ask_to_leave()
        if self.alive():
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.finish()

    def ask_to_leave(self) -> None:
        """Writes the SDK clients' `disconnect` command and closes stdin (a process that reads
        no commands, such as livekit-cli or an agent worker, ignores both)."""
        if self.alive():
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "disconnect"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def signal_group(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def finish(self) -> Optional[int]:
        """After the process exited: its output read to the end and its stderr file closed."""
        self._reader.join(timeout=2)
        try:
            self._stderr.close()
        except OSError:
            pass
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            self.signal_group(signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-chars:]

    def describe(self, lines: int = 40) -> str:
        with self.cond:
            raw = self.raw[-lines:]
        out = "\n".join(r if len(r) < 600 else r[:600] + "..." for r in raw)
        return (
            f"--- [{self.label}] exit={self.proc.poll()} last stdout lines ---\n{out}\n"
            f"--- [{self.label}] stderr tail ---\n{self.stderr_tail(2000)}"
        )


def close_all(clients: List[ClientProc], timeout: float = 4, term_after: float = 2) -> None:
    """Closes processes together at the end of a test: each is asked to leave (SDK clients
    disconnect), those still running after `term_after` seconds get SIGTERM (livekit-cli
    leaves on it), and those still running after `timeout` SIGKILL (an agent worker drains
    its jobs on SIGTERM, which may take long)."""
    for c in clients:
        c.ask_to_leave()
    start = time.monotonic()
    termed = False
    while any(c.alive() for c in clients):
        waited = time.monotonic() - start
        if waited >= timeout:
            break
        if not termed and waited >= term_after:
            termed = True
            for c in clients:
                c.signal_group(signal.SIGTERM)
        time.sleep(0.05)
    for c in clients:
        c.kill()
        c.finish()


class MediaEnv:
    """One namespace + one livekit-server inside it (module scope), plus the clients of a test."""

    def __init__(self, rust_log: Optional[str] = None, extra_args: Optional[List[str]] = None) -> None:
        self.extra_args = list(extra_args or [])
        self.ns = NetNs()
        self._tmp = tempfile.TemporaryDirectory(prefix="lk-media-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "livekit-server.log"
        self.server: Optional[subprocess.Popen] = None
        self.clients: List[ClientProc] = []
        self.rust_log = rust_log if rust_log is not None else os.environ.get("LK_MEDIA_RUST_LOG")
        self._seq = itertools.count(1)

    # ---------------------------------------------------------------- server

    def server_argv(self) -> List[str]:
        return [
            lkhelpers.SERVER_BIN,
            "--keys",
            f"{API_KEY}: {API_SECRET}",
            "--bind",
            SERVER_IP,
            "--node-ip",
            SERVER_IP,
            "--port",
            str(PORT),
            "--udp-port",
            str(UDP_PORT),
            *self.extra_args,
        ]

    def start(self) -> "MediaEnv":
        if not os.path.exists(lkhelpers.SERVER_BIN):
            raise RuntimeError(f"server binary not found: {lkhelpers.SERVER_BIN} (run `cargo build --bins`)")
        self.ns.create()
        try:
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            env["NO_COLOR"] = "1"
            for var in ("LIVEKIT_KEYS", "LIVEKIT_CONFIG", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
                env.pop(var, None)
            if self.rust_log:
                env["RUST_LOG"] = self.rust_log
            with open(self.log_path, "wb") as logf:
                self.server = subprocess.Popen(
                    self.ns.argv(self.server_argv()),
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            cp = _run(self.ns.argv([python_bin(), str(NS_ADMIN), "wait_ready", HTTP_URL, "20"]), timeout=30, check=False)
            try:
                res = json.loads(cp.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res = {"ok": False, "last": f"wait_ready printed {cp.stdout!r} {cp.stderr[-500:]!r}"}
            if not res.get("ok"):
                rc = self.server.poll()
                raise RuntimeError(
                    f"livekit-server in netns {self.ns.name} not ready (exit={rc}, last={res.get('last')})\n"
                    f"argv: {self.server_argv()}\n--- server output ---\n{self.server_log_tail()}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def server_log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.server_log()
        return text if len(text) <= chars else "...\n" + text[-chars:]

    def server_alive(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def stop(self) -> None:
        self.close_clients()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=5)
        self.ns.destroy()

    def cleanup(self) -> None:
        self.stop()
        self._tmp.cleanup()

    # ---------------------------------------------------------------- tokens / admin

    @staticmethod
    def token(identity: str, room: str, secret: str = API_SECRET, key: str = API_KEY, **grants: Any) -> str:
        from livekit import api

        return (
            api.AccessToken(key, secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room, **grants))
            .to_jwt()
        )

    def twirp(self, method: str, timeout: float = 20, **args: Any) -> Dict[str, Any]:
        """A RoomService call made by the Python `livekit-api` SDK from inside the namespace."""
        cp = _run(
            self.ns.argv([python_bin(), str(NS_ADMIN), "twirp", HTTP_URL, API_KEY, API_SECRET, method, json.dumps(args)]),
            timeout=timeout,
            check=False,
        )
        try:
            return json.loads(cp.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"ns_admin {method} printed no JSON: rc={cp.returncode} {cp.stdout!r} {cp.stderr[-2000:]!r}")

    # ---------------------------------------------------------------- clients

    def process(self, label: str, cmd: List[str]) -> ClientProc:
        """Any helper process inside the namespace, read like a client (JSON lines)."""
        return self._spawn(label, self.ns.argv(cmd))

    def _client_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "RUST_LOG"):
            env.pop(var, None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def python_client(
        self,
        identity: str,
        room: str,
        *,
        single_pc: bool = True,
        token: Optional[str] = None,
        max_seconds: float = 60,
    ) -> ClientProc:
        tok = token or self.token(identity, room)
        argv = self.ns.argv(
            [
                python_bin(),
                str(PY_CLIENT),
                "--url",
                WS_URL,
                "--token",
                tok,
                "--single-pc",
                "1" if single_pc else "0",
                "--max-seconds",
                str(max_seconds),
            ]
        )
        return self._spawn(f"py:{identity}", argv)

    def node_client(
        self,
        identity: str,
        room: str,
        *,
        token: Optional[str] = None,
        max_seconds: float = 60,
        script: Optional[Path] = None,
        single_pc: Optional[bool] = None,
    ) -> ClientProc:
        """A Node client; `script` replaces the default rtc_client.mjs (same argv and protocol);
        `single_pc` adds `--single-pc 1|0` for a script that understands it."""
        node = node_bin()
        if node is None:
            raise AssertionError("node is not installed")
        tok = token or self.token(identity, room)
        cmd = [node, str(script or NODE_CLIENT), "--url", WS_URL, "--token", tok, "--max-seconds", str(max_seconds)]
        if single_pc is not None:
            cmd += ["--single-pc", "1" if single_pc else "0"]
        argv = self.ns.argv(cmd)
        return self._spawn(f"node:{identity}", argv)

    def _spawn(self, label: str, argv: List[str]) -> ClientProc:
        n = next(self._seq)
        safe = "".join(ch if ch.isalnum() else "_" for ch in label)
        c = ClientProc(label, argv, self.dir / f"client-{n}-{safe}.stderr", env=self._client_env())
        self.clients.append(c)
        return c

    def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        close_all(clients)

    def failure_sections(self) -> List[tuple]:
        sections = [(f"livekit-server log (netns {self.ns.name})", self.server_log_tail() or "<empty>")]
        for c in self.clients:
            sections.append((f"client {c.label}", c.describe(80)))
        return sections


def scrape_metrics(media: "MediaEnv", port: int) -> str:
    """The server's /metrics (`lkhelpers.prometheus_config(port)`), read from inside the namespace."""
    code = (
        "import base64, sys, urllib.request\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        "req.add_header('Authorization', 'Basic ' + base64.b64encode(sys.argv[2].encode()).decode())\n"
        "sys.stdout.write(urllib.request.urlopen(req, timeout=10).read().decode())\n"
    )
    url = f"http://{SERVER_IP}:{port}/metrics"
    cp = subprocess.run(
        media.ns.argv([python_bin(), "-c", code, url, f"{lkhelpers.METRICS_USER}:{lkhelpers.METRICS_PASSWORD}"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    return cp.stdout


def nft(media: "MediaEnv", script: str) -> subprocess.CompletedProcess:
    """Runs an nftables script inside the namespace (`nft -f -`); fails on its error."""
    return subprocess.run(media.ns.argv(["nft", "-f", "-"]), input=script, text=True, check=True, capture_output=True)


# Every TCP and UDP packet leaving anything in the namespace dropped (a total outage), and
# the rule removed again.
OUTAGE = "table inet outage {\n chain out {\n  type filter hook output priority 0;\n  meta l4proto {tcp, udp} drop\n }\n}\n"
OUTAGE_END = "delete table inet outage\n"


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Polls pred() until it returns something truthy or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ------------------------------------------------------------------------------ media checks

VIDEO_W, VIDEO_H = 640, 480


def assert_tone(res: Dict[str, Any], freq: float, who: str = "") -> None:
    """An audio_analysis result is the published sine: right pitch, loud, and nearly pure."""
    where = f"{who}: " if who else ""
    assert "error" not in res, f"{where}audio analysis failed: {res}"
    assert res.get("freq") is not None, f"{where}no tone found: {res}"
    assert abs(res["freq"] - freq) <= 10, f"{where}expected a {freq} Hz tone, decoded {res['freq']} Hz: {res}"
    # the publisher sends amplitude 12000 (RMS ~8500); silence or comfort noise is far below this
    assert res["rms"] > 1500, f"{where}decoded audio is too quiet for the published tone: {res}"
    # garbage (noise, wrong codec, mixed-up packets) spreads energy over the spectrum
    assert res["purity"] > 0.6, f"{where}decoded audio is not a clean {freq} Hz tone: {res}"


def assert_video(res: Dict[str, Any], color: List[int], who: str = "", min_frames: int = 20) -> None:
    """A video_analysis result shows the published picture: size, colour and a moving bar."""
    where = f"{who}: " if who else ""
    assert "error" not in res, f"{where}video analysis failed: {res}"
    assert res["frames"] >= min_frames, f"{where}too few frames: {res}"
    for w, h in res["sizes"]:
        assert 0 < w <= VIDEO_W and 0 < h <= VIDEO_H, f"{where}frame size {w}x{h} exceeds the published 640x480: {res}"
        assert abs(w * VIDEO_H - h * VIDEO_W) <= 4 * VIDEO_W, f"{where}frame size {w}x{h} is not 4:3: {res}"
        assert w >= 160, f"{where}frame size {w}x{h} is smaller than any layer we publish: {res}"
    med = res["median_rgb"]
    assert all(abs(m - c) <= 25 for m, c in zip(med, color)), (
        f"{where}frames do not show the published colour {color}: median RGB {med}: {res}"
    )
    bars = res["bars"]
    seen = [b for b in bars if b is not None]
    assert len(seen) >= 0.8 * len(bars), f"{where}the published white bar is missing from most frames: {res}"
    assert len({round(b, 2) for b in seen}) >= 3, f"{where}the bar does not move: frames are frozen or repeated: {res}"
