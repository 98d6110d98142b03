"""Address migration with the Python SDK, in both signalling modes: the clients' address changes
mid-call (a NAT rebinding) and they keep their session, with no resume and no rejoin.

The clients run in a namespace of their own (`lknetc…`, 10.77.1.2), joined to the server's by a
veth pair (10.77.1.1 on the server's side) and routed to 10.77.0.1. Mid-call, nftables in the
server's namespace rewrites the clients' media to come from 10.77.1.3 (and the server's answers
to 10.77.1.3 back to 10.77.1.2), as a NAT that picked a new external address would, and drops
whatever the server still sends to the old address. The clients know nothing of it; the next
consent check they send arrives from the new address, and media must follow it (RFC 7675)."""

from __future__ import annotations

import itertools
import os
import subprocess
import time

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import MediaEnv, NetNs, assert_tone

FREQ = 659
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]
CLIENT_IP = "10.77.1.2"
NEW_IP = "10.77.1.3"
_counter = itertools.count(1)

REBIND = f"""table ip lknet_rebind {{
 counter moved_in {{}}
 counter moved_out {{}}
 counter to_old {{}}
 chain pre {{
  type filter hook prerouting priority -300;
  iifname "w0" ip saddr {CLIENT_IP} udp dport {mediahelpers.UDP_PORT} ip saddr set {NEW_IP} counter name moved_in
 }}
 chain out {{
  type route hook output priority -300;
  ip daddr {CLIENT_IP} udp sport {mediahelpers.UDP_PORT} counter name to_old drop
  ip daddr {NEW_IP} udp sport {mediahelpers.UDP_PORT} ip daddr set {CLIENT_IP} counter name moved_out
 }}
}}
"""


def run(argv):
    return subprocess.run(argv, text=True, check=True, capture_output=True)


class ClientNs:
    """A namespace for the clients, linked to the server's namespace by a veth pair."""

    def __init__(self, server_ns: NetNs) -> None:
        self.name = f"lknetc{os.getpid()}x{next(_counter)}"
        self.server_ns = server_ns
        self.created = False

    def create(self) -> "ClientNs":
        run(["ip", "netns", "add", self.name])
        self.created = True
        s, c = self.server_ns.name, self.name
        for argv in (
            ["ip", "-n", c, "link", "set", "lo", "up"],
            ["ip", "-n", s, "link", "add", "w0", "type", "veth", "peer", "name", "w1", "netns", c],
            ["ip", "-n", s, "addr", "add", "10.77.1.1/24", "dev", "w0"],
            ["ip", "-n", c, "addr", "add", f"{CLIENT_IP}/24", "dev", "w1"],
            ["ip", "-n", s, "link", "set", "w0", "up"],
            ["ip", "-n", c, "link", "set", "w1", "up"],
            ["ip", "-n", c, "route", "add", "10.77.0.0/24", "via", "10.77.1.1"],
        ):
            run(argv)
        return self

    def argv(self, cmd):
        return ["ip", "netns", "exec", self.name, *cmd]

    def destroy(self) -> None:
        if not self.created:
            return
        pids = subprocess.run(["ip", "netns", "pids", self.name], text=True, capture_output=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self.created = False


@pytest.fixture(scope="module")
def media_env():
    env = MediaEnv()
    env.ns = NetNs(prefix="lknet")
    if why := mediahelpers.netns_usable():
        pytest.fail(why, pytrace=False)
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def clients_ns(media: MediaEnv):
    ns = ClientNs(media.ns).create()
    try:
        yield ns
    finally:
        media.close_clients()
        subprocess.run(media.ns.argv(["nft", "delete", "table", "ip", "lknet_rebind"]), capture_output=True)
        ns.destroy()


def client(media: MediaEnv, ns: ClientNs, identity: str, room: str, single_pc: bool):
    argv = ns.argv(
        [
            mediahelpers.python_bin(),
            str(mediahelpers.PY_CLIENT),
            "--url",
            mediahelpers.WS_URL,
            "--token",
            media.token(identity, room),
            "--single-pc",
            "1" if single_pc else "0",
            "--max-seconds",
            "90",
        ]
    )
    return media._spawn(f"py:{identity}", argv)


def counter(media: MediaEnv, name: str) -> int:
    out = run(media.ns.argv(["nft", "list", "counter", "ip", "lknet_rebind", name])).stdout.split()
    return int(out[out.index("packets") + 1])


@pytest.mark.parametrize("single_pc", MODES)
def test_a_client_whose_address_changes_keeps_its_session(media: MediaEnv, clients_ns: ClientNs, single_pc: bool):
    room = lkhelpers.unique("migrate")
    pub = client(media, clients_ns, "pub", room, single_pc)
    pub_sid = pub.wait_for("connected", timeout=30)["sid"]
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=30)
    sub = client(media, clients_ns, "sub", room, single_pc)
    sub_sid = sub.wait_for("connected", timeout=30)["sid"]
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=30)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=0.5, timeout=20), FREQ, "before")

    subprocess.run(media.ns.argv(["nft", "-f", "-"]), input=REBIND, text=True, check=True, capture_output=True)
    moved_at = time.monotonic()
    # Both directions now use the new address: the clients' media arrives from it, and the
    # server sends to it (what it sends to the old address is dropped).
    mediahelpers.wait_until(lambda: counter(media, "moved_in") > 0, timeout=10)
    followed = mediahelpers.wait_until(lambda: counter(media, "moved_out") > 50, timeout=20)
    assert followed, f"the server never sent to the new address (to the old: {counter(media, 'to_old')})"
    took = time.monotonic() - moved_at
    print(f"media followed the new address within {took:.2f} s")
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=20), FREQ, "after the move")
    # Once moved, nothing more goes to the old address.
    before = counter(media, "to_old")
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=20), FREQ, "later")
    assert counter(media, "to_old") == before, "the old address still receives"

    # No resume, no rejoin: same SIDs, no reconnection, nobody left.
    for c in (pub, sub):
        assert not c.find("reconnecting"), c.describe()
        assert not c.find("reconnected"), c.describe()
        assert not c.find("participant_disconnected"), c.describe()
    r = media.twirp("ListParticipants", room=room)
    assert sorted((p["identity"], p["sid"]) for p in r["result"]["participants"]) == sorted(
        [("pub", pub_sid), ("sub", sub_sid)]
    ), r
