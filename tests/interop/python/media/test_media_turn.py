"""The embedded TURN server with the Python SDK forced to relay (its relay ICE transport type),
in both signalling modes: the clients get TURN servers with time-limited credentials in the
JoinResponse and exchange a tone through a relay allocation, over TURN/UDP and over TURN/TCP.
(TURN/TLS is proven with Chromium in tests/interop/browser/net.test.mjs: the SDK's native
libwebrtc checks the TURN certificate against its built-in roots, which a test's self-signed
certificate cannot join; the TLS handshake fails with UnknownCA from the client.)

nftables makes the relay the only way: the server's media port takes UDP only from the relay
port range, and TURN/UDP is dropped for the TCP case. A raw TURN client (in the namespace) then
checks the bad input: wrong and expired credentials get 401, a permission or channel for any
address other than the node's media address gets 403, and the SDK clients carry on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import UDP_PORT, MediaEnv, NetNs, assert_tone, nft

FREQ = 587
TURN_PORT = 3478
TLS_PORT = 5349
RELAY = (30000, 30099)
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]
RAW_CLIENT = Path(__file__).resolve().parent / "turn_probe.py"



def only_relayed_rules(table: str, relay: tuple) -> str:
    """nftables table `table`: the server's media port takes UDP only from the `relay` port
    range, counted in its `relayed` counter (see relayed_packets)."""
    return f"""table inet {table} {{
 counter relayed {{}}
 chain out {{
  type filter hook output priority 0;
  udp dport {UDP_PORT} udp sport {relay[0]}-{relay[1]} counter name relayed accept
  udp dport {UDP_PORT} drop
 }}
}}
"""


ONLY_RELAYED = only_relayed_rules("lknet_relay", RELAY)
NO_TURN_UDP = f"""table inet lknet_noturnudp {{
 chain out {{
  type filter hook output priority 0;
  udp dport {TURN_PORT} drop
 }}
}}
"""


def turn_config(directory: Path) -> str:
    cert, key = directory / "turn.crt", directory / "turn.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=turn.lknet.test",
            "-addext", f"subjectAltName=DNS:turn.lknet.test,IP:{mediahelpers.SERVER_IP}",
        ],
        check=True,
        capture_output=True,
    )
    return (
        "turn:\n"
        "  enabled: true\n"
        f"  udp_port: {TURN_PORT}\n"
        f"  tls_port: {TLS_PORT}\n"
        f"  domain: {mediahelpers.SERVER_IP}\n"
        f"  cert_file: {cert}\n"
        f"  key_file: {key}\n"
        f"  relay_range_start: {RELAY[0]}\n"
        f"  relay_range_end: {RELAY[1]}\n"
    )


@pytest.fixture(scope="module")
def media_env(tmp_path_factory):
    if why := mediahelpers.netns_usable():
        pytest.fail(why, pytrace=False)
    body = turn_config(tmp_path_factory.mktemp("turn"))
    env = MediaEnv(extra_args=["--config-body", body])
    env.ns = NetNs(prefix="lknet")
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


def relayed_packets(media: MediaEnv, table: str = "lknet_relay") -> int:
    """The `relayed` counter of nftables table `table` (what reached the media port from a relay)."""
    out = subprocess.run(
        media.ns.argv(["nft", "list", "counter", "inet", table, "relayed"]),
        text=True, check=True, capture_output=True,
    ).stdout.split()
    return int(out[out.index("packets") + 1])


def relay_client(media: MediaEnv, identity: str, room: str, single_pc: bool):
    argv = media.ns.argv(
        [
            mediahelpers.python_bin(), str(mediahelpers.PY_CLIENT),
            "--url", mediahelpers.WS_URL,
            "--token", media.token(identity, room),
            "--single-pc", "1" if single_pc else "0",
            "--max-seconds", "90",
            "--connect-timeout", "30",
            "--relay",
        ]
    )
    return media._spawn(f"py:{identity}", argv)


def exchange(media: MediaEnv, room: str, single_pc: bool) -> None:
    pub = relay_client(media, "pub", room, single_pc)
    pub.wait_for("connected", timeout=40)
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=40)
    sub = relay_client(media, "sub", room, single_pc)
    sub.wait_for("connected", timeout=40)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=40)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=30), FREQ, "relayed")


@pytest.fixture
def only_relayed(media: MediaEnv):
    nft(media, ONLY_RELAYED)
    try:
        yield
    finally:
        media.close_clients()
        subprocess.run(media.ns.argv(["nft", "delete", "table", "inet", "lknet_relay"]), capture_output=True)


@pytest.mark.parametrize("single_pc", MODES)
def test_relayed_over_turn_udp(media: MediaEnv, only_relayed, single_pc: bool):
    exchange(media, lkhelpers.unique("turnudp"), single_pc)
    assert relayed_packets(media) > 0


@pytest.mark.parametrize("single_pc", MODES)
def test_relayed_over_turn_tcp(media: MediaEnv, only_relayed, single_pc: bool):
    nft(media, NO_TURN_UDP)
    try:
        exchange(media, lkhelpers.unique("turntcp"), single_pc)
        assert relayed_packets(media) > 0
        conns = subprocess.run(
            media.ns.argv(["ss", "-Htn", "state", "established", "(", "sport", "=", f":{TURN_PORT}", ")"]),
            text=True, check=True, capture_output=True,
        ).stdout
        assert len([line for line in conns.splitlines() if line.strip()]) >= 2, conns
    finally:
        subprocess.run(media.ns.argv(["nft", "delete", "table", "inet", "lknet_noturnudp"]), capture_output=True)


def probe(media: MediaEnv, *args: str) -> dict:
    cp = subprocess.run(
        media.ns.argv([sys.executable, str(RAW_CLIENT), *args]),
        text=True, capture_output=True, timeout=30,
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout.strip().splitlines()[-1])


def test_bad_credentials_and_other_peers_are_refused(media: MediaEnv):
    room = lkhelpers.unique("turnbad")
    # A relayed participant keeps its tone through all of it.
    nft(media, ONLY_RELAYED)
    try:
        pub = relay_client(media, "pub", room, True)
        pub.wait_for("connected", timeout=40)
        tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=40)
        sub = relay_client(media, "sub", room, True)
        sub.wait_for("connected", timeout=40)
        sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=40)
        key, secret = mediahelpers.API_KEY, mediahelpers.API_SECRET
        now = int(time.time())
        server = f"{mediahelpers.SERVER_IP}:{TURN_PORT}"
        media_addr = f"{mediahelpers.SERVER_IP}:{UDP_PORT}"
        r = probe(media, server, key, secret, str(now + 600), "wrong-password", media_addr)
        assert r["allocate"] == 401, r
        r = probe(media, server, key, secret, str(now - 5), "", media_addr)
        assert r["allocate"] == 401, r
        r = probe(media, server, "otherkey", secret, str(now + 600), "", media_addr)
        assert r["allocate"] == 401, r
        # Valid credentials: an allocation, but only the media address may be reached.
        for other in ("10.77.0.2:9", "127.0.0.1:7880", f"{mediahelpers.SERVER_IP}:22", "192.0.2.1:7882"):
            r = probe(media, server, key, secret, str(now + 600), "", other)
            assert r["allocate"] == 200, r
            assert r["channel_bind"] == 403, r
            if not other.startswith(mediahelpers.SERVER_IP):
                assert r["permission"] == 403, r
        r = probe(media, server, key, secret, str(now + 600), "", media_addr)
        assert (r["allocate"], r["permission"], r["channel_bind"]) == (200, 200, 200), r
        assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=30), FREQ, "unaffected")
    finally:
        media.close_clients()
        subprocess.run(media.ns.argv(["nft", "delete", "table", "inet", "lknet_relay"]), capture_output=True)
