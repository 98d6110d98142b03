"""TURN servers of the operator's own (`rtc.turn_servers`): Debian's coturn runs in the
namespace with one static user, and the server, whose embedded TURN is off, lists it in every
join response. The Python SDK, forced to relay and given no ICE servers of its own, can reach
the server only through a coturn allocation it learnt of from the join response: the clients
exchange a tone, in both signalling modes, and nftables lets the server's media port take UDP
only from coturn's relay ports (and counts it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import lkhelpers
import mediahelpers
from mediafixtures import media_env_with
from mediahelpers import MediaEnv, nft
from test_media_turn import MODES, exchange, only_relayed_rules, relayed_packets

COTURN_PORT = 3479
RELAY = (31000, 31099)
USER, PASSWORD = "lkturn", "lkturn-secret"
CONFIG = (
    "rtc:\n"
    "  turn_servers:\n"
    f"    - host: {mediahelpers.SERVER_IP}\n"
    f"      port: {COTURN_PORT}\n"
    "      protocol: udp\n"
    f"      username: {USER}\n"
    f"      credential: {PASSWORD}\n"
)
ONLY_RELAYED = only_relayed_rules("lknet_coturn", RELAY)


# Inside the namespace: a STUN binding request to coturn, answered within 0.2 s, or an error.
STUN_PROBE = f"""
import os, socket, sys, time
deadline = time.monotonic() + 10
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    tid = os.urandom(12)
    s.sendto(bytes.fromhex("000100002112a442") + tid, ("{mediahelpers.SERVER_IP}", {COTURN_PORT}))
    try:
        data = s.recv(2048)
        if data[:2] == bytes.fromhex("0101") and data[8:20] == tid:
            sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("coturn did not answer a STUN binding request within 10 s")
"""


@pytest.fixture(scope="module")
def media_env():
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.fail("coturn is not installed (scripts/test installs the Debian package)", pytrace=False)
    env = media_env_with(["--config-body", CONFIG])
    logdir = tempfile.TemporaryDirectory(prefix="lk-coturn-")
    log = Path(logdir.name) / "coturn.log"
    coturn = subprocess.Popen(
        env.ns.argv(
            [
                turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint", "--lt-cred-mech",
                "--realm", "lknet.test", "--user", f"{USER}:{PASSWORD}",
                "--listening-ip", mediahelpers.SERVER_IP, "--relay-ip", mediahelpers.SERVER_IP,
                "--listening-port", str(COTURN_PORT), "--min-port", str(RELAY[0]), "--max-port", str(RELAY[1]),
                "--log-file", str(log), "--simple-log", "--pidfile", str(Path(logdir.name) / "pid"),
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = subprocess.run(
        env.ns.argv([mediahelpers.python_bin(), "-c", STUN_PROBE]), text=True, capture_output=True
    )
    try:
        if ready.returncode != 0:
            pytest.fail(ready.stderr.strip()[-500:], pytrace=False)
        yield env
    finally:
        coturn.terminate()
        try:
            coturn.wait(timeout=5)
        except subprocess.TimeoutExpired:
            coturn.kill()
            coturn.wait()
        env.cleanup()
        # Shown when a test of this module fails (pytest prints a fixture's output then).
        text = log.read_text(errors="replace") if log.exists() else "<no log>"
        print("coturn's log (tail):\n" + text[-3000:])
        logdir.cleanup()


@pytest.mark.parametrize("single_pc", MODES)
def test_clients_reach_the_server_through_a_configured_turn_server(media: MediaEnv, single_pc: bool):
    nft(media, ONLY_RELAYED)
    try:
        exchange(media, lkhelpers.unique("coturn"), single_pc)
        assert relayed_packets(media, "lknet_coturn") > 0
    finally:
        media.close_clients()
        subprocess.run(media.ns.argv(["nft", "delete", "table", "inet", "lknet_coturn"]), capture_output=True)
