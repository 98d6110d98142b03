"""Shared helpers for the Python interop suite.

Everything here talks to a real `livekit-server` process over 127.0.0.1 only.
The server/CLI binaries default to the workspace's debug build and can be
overridden with LIVEKIT_SERVER_BIN / LIVEKIT_CLI_BIN.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVER_BIN = os.environ.get("LIVEKIT_SERVER_BIN") or str(REPO_ROOT / "target" / "debug" / "livekit-server")
CLI_BIN = os.environ.get("LIVEKIT_CLI_BIN") or str(REPO_ROOT / "target" / "debug" / "livekit-cli")

HOST = "127.0.0.1"
API_KEY = "devkey"
API_SECRET = "secret"

READY_DEADLINE_S = 20.0
LOG_TAIL_CHARS = 12000


# --------------------------------------------------------------------------------------
# ports


def failure_report_hook(fixture: str, env_type: type):
    """A `pytest_runtest_makereport` hook for a conftest: a failed test that used the fixture
    `fixture` (an `env_type`) gets that env's `failure_sections()` in its report (server logs,
    client output). Use: `pytest_runtest_makereport = failure_report_hook("media", MediaEnv)`."""
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        rep = outcome.get_result()
        if not rep.failed:
            return
        env = (getattr(item, "funcargs", {}) or {}).get(fixture)
        if isinstance(env, env_type):
            for title, text in env.failure_sections():
                rep.sections.append((title, text))

    return pytest_runtest_makereport


METRICS_USER, METRICS_PASSWORD = "scraper", "s3cret"


def prometheus_config(port: int) -> str:
    """A config body's `prometheus:` section: /metrics on `port`, behind basic auth with
    METRICS_USER / METRICS_PASSWORD."""
    return f"prometheus:\n  port: {port}\n  username: {METRICS_USER}\n  password: {METRICS_PASSWORD}\n"


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_udp_port(avoid: Iterable[int] = ()) -> int:
    avoid = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError("could not find a free UDP port")


# --------------------------------------------------------------------------------------
# server process


class ServerStartError(RuntimeError):
    pass


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class LiveKitServer:
    """A livekit-server child process listening on 127.0.0.1:port."""

    extra_args: List[str]
    port: int = 0
    udp_port: int = 0
    proc: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None
    env: Optional[Dict[str, str]] = None
    _logdir: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def argv(self) -> List[str]:
        return [
            SERVER_BIN,
            *self.extra_args,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--udp-port",
            str(self.udp_port),
        ]

    def log_text(self) -> str:
        return _read_text(self.log_path) if self.log_path else ""

    def log_tail(self) -> str:
        text = self.log_text()
        if len(text) > LOG_TAIL_CHARS:
            text = "...\n" + text[-LOG_TAIL_CHARS:]
        return text

    def _spawn(self) -> None:
        self._logdir = self._logdir or tempfile.TemporaryDirectory(prefix="lk-interop-")
        self.port = free_tcp_port()
        self.udp_port = free_udp_port(avoid=[self.port])
        self.log_path = Path(self._logdir.name) / f"livekit-server-{self.port}.log"
        logf = open(self.log_path, "wb")
        try:
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            env.setdefault("NO_COLOR", "1")
            # Make sure no ambient configuration changes what we test.
            for var in ("LIVEKIT_KEYS", "LIVEKIT_CONFIG", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
                env.pop(var, None)
            if self.env:
                env.update(self.env)
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            logf.close()

    def start(self, attempts: int = 3) -> "LiveKitServer":
        if not os.path.exists(SERVER_BIN):
            raise ServerStartError(f"server binary not found: {SERVER_BIN} (run `cargo build --bins`)")
        last_err = None
        for _ in range(attempts):
            self._spawn()
            try:
                self.wait_ready()
                return self
            except ServerStartError as e:
                last_err = e
                self.stop()
                # Only retry on what looks like a port race with another process.
                if "in use" not in self.log_text().lower():
                    break
        raise last_err  # type: ignore[misc]

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        last = "no attempt yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(
                    f"livekit-server exited with code {rc} before becoming ready\n"
                    f"argv: {self.argv()}\n--- server output ---\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    body = resp.read().decode(errors="replace")
                    if resp.status == 200 and body.strip() == "OK":
                        return
                    last = f"GET / -> {resp.status} {body[:200]!r}"
            except urllib.error.HTTPError as e:
                last = f"GET / -> {e.code}"
            except OSError as e:
                last = f"GET / -> {e}"
            time.sleep(0.1)
        raise ServerStartError(
            f"livekit-server not ready within {deadline_s}s (last: {last})\n"
            f"argv: {self.argv()}\n--- server output ---\n{self.log_tail()}"
        )

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._logdir is not None:
            self._logdir.cleanup()
            self._logdir = None


def start_server(extra_args: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None) -> LiveKitServer:
    if extra_args is None:
        extra_args = ["--keys", f"{API_KEY}: {API_SECRET}"]
    srv = LiveKitServer(extra_args=list(extra_args), env=env)
    try:
        return srv.start()
    except BaseException:
        srv.cleanup()
        raise


# --------------------------------------------------------------------------------------
# running things


def run(coro: Awaitable[Any]) -> Any:
    """Run one coroutine on a fresh event loop (the SDK needs a running loop)."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the Prometheus samples of `name` in `text` whose labels include `labels`;
    fails when there is none."""
    total = None
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total = (total or 0) + float(m.group(4))
    assert total is not None, f"{name} {labels} not in metrics:\n{text}"
    return total


def unique(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(pred: Callable[[], bool], deadline_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return pred()


def run_cli(args: List[str], timeout: float = 30, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        full_env.pop(var, None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [CLI_BIN, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def describe(cp: subprocess.CompletedProcess) -> str:
    return f"argv={cp.args}\nexit={cp.returncode}\n--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"


# --------------------------------------------------------------------------------------
# JWTs made by hand (for tokens the SDKs refuse to make: expired, wrong room, ...)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: Dict[str, Any], secret: str, header: Optional[Dict[str, Any]] = None) -> str:
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    if header.get("alg") == "none":
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


def api_token(
    video: Optional[Dict[str, Any]] = None,
    *,
    key: str = API_KEY,
    secret: str = API_SECRET,
    ttl_s: int = 600,
    nbf_offset_s: int = 0,
    identity: str = "",
    include_exp: bool = True,
    header: Optional[Dict[str, Any]] = None,
) -> str:
    now = int(time.time())
    claims: Dict[str, Any] = {"iss": key, "sub": identity, "nbf": now + nbf_offset_s}
    if include_exp:
        claims["exp"] = now + ttl_s
    if video is not None:
        claims["video"] = video
    return make_jwt(claims, secret, header)


def decode_jwt_payload(token: str) -> Dict[str, Any]:
    part = token.split(".")[1]
    part += "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(part))


# --------------------------------------------------------------------------------------
# raw HTTP / Twirp


@dataclass
class HttpResponse:
    status: int
    headers: Dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def __str__(self) -> str:
        return f"HTTP {self.status} content-type={self.content_type!r} body={self.text[:500]!r}"


def http_request(
    method: str,
    url: str,
    body: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 10,
) -> HttpResponse:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def twirp_url(base: str, method: str, service: str = "livekit.RoomService") -> str:
    return f"{base}/twirp/{service}/{method}"


def twirp_post(
    base: str,
    method: str,
    body: bytes,
    *,
    token: Optional[str] = None,
    content_type: str = "application/json",
    service: str = "livekit.RoomService",
    http_method: str = "POST",
    extra_headers: Optional[Dict[str, str]] = None,
) -> HttpResponse:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if extra_headers:
        headers.update(extra_headers)
    return http_request(http_method, twirp_url(base, method, service), body if http_method != "GET" else None, headers)


def twirp_json(base: str, method: str, payload: Dict[str, Any], token: Optional[str], **kw: Any) -> HttpResponse:
    return twirp_post(base, method, json.dumps(payload).encode(), token=token, **kw)


def assert_twirp_error(resp: HttpResponse, code: str, status: int) -> Dict[str, Any]:
    """Checks a Twirp error response: HTTP status, JSON body with code and msg."""
    assert resp.status == status, f"expected HTTP {status} ({code}), got {resp}"
    assert resp.content_type.startswith("application/json"), f"Twirp errors must be JSON: {resp}"
    try:
        body = resp.json()
    except ValueError as e:  # pragma: no cover - reported as a failure
        raise AssertionError(f"error body is not JSON: {resp}") from e
    assert isinstance(body, dict), f"error body is not a JSON object: {resp}"
    assert body.get("code") == code, f"expected Twirp code {code!r}, got {resp}"
    assert isinstance(body.get("msg"), str), f"Twirp error without a string msg: {resp}"
    return body


def find_named(obj: Any, name: str) -> List[Dict[str, Any]]:
    """All JSON objects anywhere inside obj whose "name" equals name."""
    found: List[Dict[str, Any]] = []
    if isinstance(obj, dict):
        if obj.get("name") == name:
            found.append(obj)
        for v in obj.values():
            found.extend(find_named(v, name))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(find_named(v, name))
    return found


# --------------------------------------------------------------------------------------
# SDK helpers


def lk(url: str, key: str = API_KEY, secret: str = API_SECRET):
    """A Python-SDK LiveKitAPI client (must be created inside a running event loop)."""
    from livekit import api

    return api.LiveKitAPI(url, key, secret)


def lk_with_token(url: str, token: str):
    """A Python-SDK client that sends `token` verbatim on every call."""
    from livekit import api

    return api.LiveKitAPI.with_token(token, url=url)


async def expect_twirp(coro: Awaitable[Any], code: str, status: int, msg_contains: Optional[str] = None):
    """Awaits an SDK call that must fail with the given Twirp code and HTTP status."""
    from livekit import api

    try:
        res = await coro
    except api.TwirpError as e:
        assert e.code == code, f"expected code {code!r} (HTTP {status}), got {e}"
        assert e.status == status, f"expected HTTP {status}, got {e}"
        if msg_contains is not None:
            assert msg_contains.lower() in (e.message or "").lower(), f"message should mention {msg_contains!r}: {e}"
        return e
    raise AssertionError(f"expected Twirp error {code!r}, but the call succeeded: {res!r}")
