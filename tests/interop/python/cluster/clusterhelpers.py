"""Harness for the cluster interop tests: one private network namespace holding Debian's
`redis-server` and three `livekit-server` nodes that share it, plus real SDK clients.

Everything runs inside the namespace (`lkclu<pid>x<n>`, veth 10.77.0.1 <-> 10.77.0.2, no route
out): redis on 10.77.0.1:6379, node a on 7880 (UDP 7882), b on 7884 (7886), c on 7890 (7892),
each with `--bind 10.77.0.1 --node-ip 10.77.0.1` and `redis.address: 10.77.0.1:6379`. Twirp
calls and `/node/stats` go through one long-lived `cluster_admin.py` process in the namespace.

Set LK_CLUSTER_RUST_LOG (e.g. `debug`) to run the nodes with that RUST_LOG; every node's log, the
redis log and the clients' output are attached to failing tests either way.
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
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
MEDIA_DIR = HERE.parent / "media"
sys.path.insert(0, str(MEDIA_DIR))

import mediahelpers  # noqa: E402  (puts tests/interop/python on sys.path too)
import lkhelpers  # noqa: E402
from mediahelpers import API_KEY, API_SECRET, PY_CLIENT, SERVER_IP, ClientProc, MediaEnv, NetNs, close_all, python_bin  # noqa: E402

ADMIN = HERE / "cluster_admin.py"
REDIS_PORT = 6379
REDIS_ADDR = f"{SERVER_IP}:{REDIS_PORT}"
# name -> (HTTP/WebSocket port, UDP media port)
NODE_PORTS = {"a": (7880, 7882), "b": (7884, 7886), "c": (7890, 7892)}
# Node records expire 5 s after their last refresh (the server's documented bound).
NODE_EXPIRY_S = 5.0
# Each node re-reads the other nodes' records every second.
VIEW_REFRESH_S = 1.0
NODE_KEY_PREFIX = "{lkr}:node:"
# Rooms stay this long after their last participant leaves (shortened from LiveKit's 20 s so a
# draining node finishes quickly).
DEPARTURE_TIMEOUT_S = 3
LOG_TAIL_CHARS = 8000

_seq = itertools.count(1)


def redis_bin() -> Optional[str]:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def cluster_config() -> str:
    return (
        "redis:\n"
        f"  address: {REDIS_ADDR}\n"
        "node_selector:\n"
        "  kind: any\n"
        "  sort_by: random\n"
        "rtc:\n"
        "  tcp_port: 0\n"
        "room:\n"
        f"  departure_timeout: {DEPARTURE_TIMEOUT_S}\n"
    )


def _read_tail(path: Path, chars: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text if len(text) <= chars else "...\n" + text[-chars:]


class Node:
    """One livekit-server process of the cluster (restartable: its log keeps every run)."""

    def __init__(self, name: str, port: int, udp_port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.udp_port = udp_port
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.runs = 0
        self.killed_at: Optional[float] = None

    @property
    def url(self) -> str:
        return f"http://{SERVER_IP}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{SERVER_IP}:{self.port}"

    def argv(self) -> List[str]:
        return [
            lkhelpers.SERVER_BIN,
            "--keys",
            f"{API_KEY}: {API_SECRET}",
            "--bind",
            SERVER_IP,
            "--node-ip",
            SERVER_IP,
            "--port",
            str(self.port),
            "--udp-port",
            str(self.udp_port),
            "--config-body",
            cluster_config(),
        ]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return _read_tail(self.log_path, chars)


class ClusterEnv:
    """Namespace + redis-server + three nodes (module scope), and the clients of a test."""

    def __init__(self, rust_log: Optional[str] = None) -> None:
        self.ns = NetNs(prefix="lkclu")
        self._tmp = tempfile.TemporaryDirectory(prefix="lk-cluster-")
        self.dir = Path(self._tmp.name)
        self.redis_dir = self.dir / "redis"
        self.redis_dir.mkdir()
        self.redis_log = self.dir / "redis.log"
        self.redis: Optional[subprocess.Popen] = None
        self.nodes: Dict[str, Node] = {
            n: Node(n, p, u, self.dir / f"node-{n}.log") for n, (p, u) in NODE_PORTS.items()
        }
        self.admin: Optional[ClientProc] = None
        self.clients: List[ClientProc] = []
        self.rust_log = rust_log if rust_log is not None else os.environ.get("LK_CLUSTER_RUST_LOG")

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "ClusterEnv":
        if not os.path.exists(lkhelpers.SERVER_BIN):
            raise RuntimeError(f"server binary not found: {lkhelpers.SERVER_BIN} (run `cargo build --bins`)")
        if redis_bin() is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.ns.create()
        try:
            self.admin = ClientProc(
                "admin",
                self.ns.argv([python_bin(), str(ADMIN), "--key", API_KEY, "--secret", API_SECRET]),
                self.dir / "admin.stderr",
                env=self._client_env(),
            )
            self.admin.wait_for("started", timeout=30)
            self.start_redis()
            for n in self.nodes:
                self.start_node(n, wait=False)
            for n in self.nodes:
                self.wait_node_ready(n)
            self.wait_converged()
        except BaseException:
            self.stop()
            raise
        return self

    def registered(self) -> Dict[str, Dict[str, Any]]:
        """http_url -> live node record, as redis holds them."""
        out = {}
        for k in self.redis_call("KEYS", NODE_KEY_PREFIX + "*"):
            v = self.redis_call("GET", k)
            if v:
                rec = json.loads(v)
                out[rec.get("http_url")] = rec
        return out

    def wait_converged(self, timeout: float = 10) -> None:
        """Until every running node has a serving record in redis, then one view refresh, so
        that each node's selector sees all of them (right after a start a node knows only
        itself, and every new room would open where it is asked)."""
        want = {node.url for node in self.nodes.values() if node.alive()}

        def ok():
            recs = self.registered()
            return all(u in recs and recs[u].get("state") == "serving" for u in want)

        if not wait_until(ok, timeout=timeout, interval=0.1):
            raise RuntimeError(f"the nodes did not all register in redis within {timeout}s: {self.registered()}")
        time.sleep(VIEW_REFRESH_S + 0.2)

    def ensure(self) -> None:
        """Brings back whatever an earlier test killed: redis, then every node; a node that was
        SIGKILLed is restarted only once its old record has expired (NODE_EXPIRY_S), so the
        selector cannot place a new room on the dead incarnation."""
        if self.admin is None or not self.admin.alive():
            raise AssertionError("the cluster admin process is gone\n" + (self.admin.describe() if self.admin else ""))
        restarted_redis = self.redis is None or self.redis.poll() is not None
        if restarted_redis:
            self.start_redis()
        started = []
        for n, node in self.nodes.items():
            if not node.alive():
                self.start_node(n, wait=False)
                started.append(n)
        for n in started:
            self.wait_node_ready(n)
        latest_kill = max((node.killed_at or 0.0) for node in self.nodes.values())
        left = latest_kill + NODE_EXPIRY_S + 1.0 - time.monotonic()
        if left > 0:
            time.sleep(left)
        if started or restarted_redis:
            self.wait_converged()

    def stop(self) -> None:
        self.close_clients()
        for node in self.nodes.values():
            self._terminate(node.proc, hard=False)
        self._terminate(self.redis, hard=True)
        if self.admin is not None:
            self.admin.close(timeout=5)
        self.ns.destroy()

    def cleanup(self) -> None:
        self.stop()
        self._tmp.cleanup()

    @staticmethod
    def _terminate(proc: Optional[subprocess.Popen], hard: bool) -> None:
        if proc is None or proc.poll() is not None:
            return
        # Two signals: with redis configured, the first SIGTERM only starts draining.
        for sig in ([signal.SIGKILL] if hard else [signal.SIGTERM, signal.SIGTERM, signal.SIGKILL]):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=3)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.wait(timeout=5)

    # ---------------------------------------------------------------- redis

    def start_redis(self) -> None:
        argv = [
            redis_bin() or "redis-server",
            "--bind",
            SERVER_IP,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            # Bound to the namespace address without a password, redis would refuse every
            # client not on loopback; the namespace is private.
            "--protected-mode",
            "no",
            "--dir",
            str(self.redis_dir),
        ]
        with open(self.redis_log, "ab") as logf:
            logf.write(f"==== redis-server start at {time.monotonic():.3f}\n".encode())
            logf.flush()
            self.redis = subprocess.Popen(
                self.ns.argv(argv), stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        res = self.admin_call("redis_ping", host=SERVER_IP, port=REDIS_PORT, deadline=10)
        if not res.get("ok"):
            raise RuntimeError(f"redis-server not answering PING: {res}\n{_read_tail(self.redis_log, 3000)}")

    def kill_redis(self) -> None:
        assert self.redis is not None and self.redis.poll() is None, "redis-server is not running"
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait(timeout=5)

    # ---------------------------------------------------------------- nodes

    def start_node(self, name: str, wait: bool = True) -> Node:
        node = self.nodes[name]
        assert not node.alive(), f"node {name} is already running"
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        for var in ("LIVEKIT_KEYS", "LIVEKIT_CONFIG", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
            env.pop(var, None)
        if self.rust_log:
            env["RUST_LOG"] = self.rust_log
        node.runs += 1
        with open(node.log_path, "ab") as logf:
            logf.write(f"==== node {name} run {node.runs} at {time.monotonic():.3f}\n".encode())
            logf.flush()
            node.proc = subprocess.Popen(
                self.ns.argv(node.argv()),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if wait:
            self.wait_node_ready(name)
        return node

    def wait_node_ready(self, name: str) -> None:
        node = self.nodes[name]
        res = self.admin_call("ready", url=node.url, deadline=20, wait=30)
        if not res.get("ok"):
            raise RuntimeError(
                f"node {name} not ready (exit={node.proc.poll() if node.proc else None}, last={res.get('last')})\n"
                f"argv: {node.argv()}\n--- node log ---\n{node.log_tail()}"
            )

    def kill_node(self, name: str) -> float:
        """SIGKILLs a node; returns the monotonic time of the kill."""
        node = self.nodes[name]
        assert node.alive(), f"node {name} is not running"
        node.proc.send_signal(signal.SIGKILL)
        t = time.monotonic()
        node.proc.wait(timeout=5)
        node.killed_at = t
        return t

    # ---------------------------------------------------------------- admin

    def admin_call(self, cmd: str, wait: float = 30, **fields: Any) -> Dict[str, Any]:
        assert self.admin is not None
        return self.admin.request(cmd, timeout=wait, **fields)

    def twirp(self, node: str, method: str, **args: Any) -> Dict[str, Any]:
        """A RoomService call through `node`, made by the `livekit-api` SDK inside the namespace."""
        return self.admin_call("twirp", url=self.nodes[node].url, method=method, args=args)

    def twirp_ok(self, node: str, method: str, **args: Any) -> Dict[str, Any]:
        res = self.twirp(node, method, **args)
        assert res.get("ok"), f"{method} {args} through node {node} failed: {res}"
        return res["result"]

    def room_names(self, node: str) -> List[str]:
        return sorted(r["name"] for r in self.twirp_ok(node, "ListRooms")["rooms"])

    def identities(self, node: str, room: str) -> List[str]:
        return sorted(p["identity"] for p in self.twirp_ok(node, "ListParticipants", room=room)["participants"])

    def stats(self, node: str) -> Dict[str, Any]:
        res = self.admin_call("stats", url=self.nodes[node].url)
        assert res.get("ok"), f"GET /node/stats on node {node} failed: {res}"
        return res["body"]

    def local_rooms(self) -> Dict[str, List[str]]:
        """node -> the rooms its /node/stats lists (the rooms it holds itself), live nodes only."""
        return {n: sorted(r["name"] for r in self.stats(n)["rooms"]) for n, node in self.nodes.items() if node.alive()}

    def owners(self, room: str) -> List[str]:
        return [n for n, rooms in self.local_rooms().items() if room in rooms]

    def owner(self, room: str) -> str:
        """The one node holding `room` (fails if none or several do)."""
        seen = self.local_rooms()
        holders = [n for n, rooms in seen.items() if room in rooms]
        assert len(holders) == 1, f"room {room} should live on exactly one node, /node/stats shows: {seen}"
        return holders[0]

    def local_participants(self, node: str, room: str) -> List[str]:
        for r in self.stats(node)["rooms"]:
            if r["name"] == room:
                return sorted(p["identity"] for p in r["participants"])
        return []

    # ---------------------------------------------------------------- clients

    def _client_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "RUST_LOG"):
            env.pop(var, None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def client(self, identity: str, room: str, node: str, *, single_pc: bool = True, max_seconds: float = 90) -> ClientProc:
        """A Python SDK client whose signal connection goes to `node`."""
        argv = self.ns.argv(
            [
                python_bin(),
                str(PY_CLIENT),
                "--url",
                self.nodes[node].ws_url,
                "--token",
                MediaEnv.token(identity, room),
                "--single-pc",
                "1" if single_pc else "0",
                "--max-seconds",
                str(max_seconds),
            ]
        )
        n = next(_seq)
        safe = "".join(ch if ch.isalnum() else "_" for ch in identity)
        c = ClientProc(f"py:{identity}@{node}", argv, self.dir / f"client-{n}-{safe}.stderr", env=self._client_env())
        self.clients.append(c)
        return c

    def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        close_all(clients)

    def redis_call(self, *args: Any) -> Any:
        res = self.admin_call("redis", host=SERVER_IP, port=REDIS_PORT, args=list(args), wait=10)
        assert res.get("ok"), f"redis {args}: {res}"
        return res["reply"]

    def redis_dump(self) -> str:
        """Every key in redis with its TTL and value (for the failure report)."""
        if self.redis is None or self.redis.poll() is not None or self.admin is None or not self.admin.alive():
            return "<redis-server not running>"
        try:
            lines = []
            for k in sorted(self.redis_call("KEYS", "*"))[:200]:
                kind = self.redis_call("TYPE", k)
                ttl = self.redis_call("PTTL", k)
                val = self.redis_call("GET", k) if kind == "string" else self.redis_call("SMEMBERS", k) if kind == "set" else kind
                lines.append(f"{k} (pttl {ttl} ms): {val}")
            return "\n".join(lines) or "<no keys>"
        except AssertionError as e:
            return f"<could not read redis: {e}>"

    def failure_sections(self) -> List[tuple]:
        sections = [("redis keys", self.redis_dump())]
        for n, node in self.nodes.items():
            sections.append((f"node {n} ({node.url}, runs={node.runs}, alive={node.alive()})", node.log_tail() or "<empty>"))
        sections.append(("redis-server log", _read_tail(self.redis_log, 3000) or "<empty>"))
        for n, node in self.nodes.items():
            if node.alive() and self.admin is not None and self.admin.alive():
                try:
                    res = self.admin_call("stats", url=node.url, wait=10)
                    sections.append((f"node {n} /node/stats", json.dumps(res.get("body") or res)[:4000]))
                except AssertionError as e:
                    sections.append((f"node {n} /node/stats", f"<not answered: {e}>"[:1000]))
        for c in self.clients:
            sections.append((f"client {c.label}", c.describe(60)))
        if self.admin is not None:
            sections.append(("cluster admin", self.admin.describe(30)))
        return sections


def wait_until(pred, timeout: float, interval: float = 0.2):
    return mediahelpers.wait_until(pred, timeout, interval)
