"""livekit-server key configuration: generate-keys, --key-file, refusing to start without keys."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from livekit import api

import lkhelpers
from lkhelpers import (
    HOST,
    SERVER_BIN,
    expect_twirp,
    free_tcp_port,
    free_udp_port,
    lk,
    run,
    unique,
)

KEY_LINE = re.compile(r"^API Key:  (\S+)\s*$", re.MULTILINE)
SECRET_LINE = re.compile(r"^API Secret:  (\S+)\s*$", re.MULTILINE)


def generate_keys() -> tuple[str, str]:
    cp = subprocess.run([SERVER_BIN, "generate-keys"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
    k = KEY_LINE.search(cp.stdout)
    s = SECRET_LINE.search(cp.stdout)
    assert k and s, f"expected 'API Key:  <key>' and 'API Secret:  <secret>' lines, got:\n{cp.stdout}"
    return k.group(1), s.group(1)


def write_key_file(tmp_path: Path, key: str, secret: str, mode: int) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(f"{key}: {secret}\n")
    os.chmod(path, mode)
    return path


def run_refusing_server(args: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    """Runs a server that is expected to refuse to start; fails if it keeps running."""
    port, udp = free_tcp_port(), free_udp_port()
    env = dict(os.environ)
    for var in ("LIVEKIT_KEYS", "LIVEKIT_CONFIG", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        env.pop(var, None)
    argv = [SERVER_BIN, *args, "--bind", HOST, "--port", str(port), "--udp-port", str(udp)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        # subprocess.run has already killed the child.
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"server kept running for {timeout}s instead of refusing to start\nargv: {argv}\nstdout:\n{out}\nstderr:\n{err}")


def test_generate_keys_format():
    key, secret = generate_keys()
    assert len(key) >= 3, key
    assert len(secret) >= 32, f"secret too short: {secret!r}"
    key2, secret2 = generate_keys()
    assert (key2, secret2) != (key, secret), "generate-keys must produce fresh random keys"
    assert secret2 != secret


def test_key_file_with_generated_keys(tmp_path):
    key, secret = generate_keys()
    key_file = write_key_file(tmp_path, key, secret, 0o600)
    try:
        srv = lkhelpers.start_server(["--key-file", str(key_file)])
    except lkhelpers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        name = unique("kf")

        async def body():
            async with lk(srv.url, key, secret) as lkapi:
                room = await lkapi.room.create_room(api.CreateRoomRequest(name=name))
                assert room.name == name and room.sid.startswith("RM_")
                res = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
                assert [r.name for r in res.rooms] == [name]
            # Only the generated key is configured: the dev key must not work.
            async with lk(srv.url, "devkey", "secret") as other:
                await expect_twirp(other.room.list_rooms(api.ListRoomsRequest()), "unauthenticated", 401)
            # Nor the right key with the wrong secret.
            async with lk(srv.url, key, secret + "x") as other:
                await expect_twirp(other.room.list_rooms(api.ListRoomsRequest()), "unauthenticated", 401)

        try:
            run(body())
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- server log ---\n{srv.log_tail()}") from e
    finally:
        srv.cleanup()


def test_key_file_readable_by_others_is_refused(tmp_path):
    key, secret = generate_keys()
    key_file = write_key_file(tmp_path, key, secret, 0o644)
    cp = run_refusing_server(["--key-file", str(key_file)])
    assert cp.returncode != 0, f"server exited 0 with a world-readable key file\nstderr:\n{cp.stderr}"
    err = cp.stderr.lower()
    assert any(w in err for w in ("key file", "key-file", "key_file", "permission")), (
        f"stderr should explain the key file permission problem:\n{cp.stderr}\nstdout:\n{cp.stdout}"
    )


def test_no_keys_without_dev_is_refused():
    cp = run_refusing_server([])
    assert cp.returncode != 0, f"server started without keys\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
    combined = cp.stdout + cp.stderr
    assert "generate-keys" in combined, f"message should tell how to make keys (generate-keys):\n{combined}"
