"""ICE-TCP with the Python SDK, in both signalling modes: with every UDP packet in the namespace
dropped by nftables, clients still join and exchange a tone, over the server's passive TCP
candidate (`rtc.tcp_port`, default 7881). With UDP open, UDP is chosen: closing 7881 then changes nothing."""

from __future__ import annotations

import subprocess

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import MediaEnv, NetNs, assert_tone, nft

FREQ = 523
TCP_PORT = 7881
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]

NO_UDP = """table inet lknet_noudp {
 counter dropped {}
 chain out {
  type filter hook output priority 0;
  meta l4proto udp counter name dropped drop
 }
}
"""

NO_TCP = f"""table inet lknet_notcp {{
 chain out {{
  type filter hook output priority 0;
  tcp sport {TCP_PORT} drop
  tcp dport {TCP_PORT} drop
 }}
}}
"""


@pytest.fixture(scope="module")
def media_env():
    """The module's server, in a namespace of our own prefix."""
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


def udp_dropped(media: MediaEnv) -> int:
    cp = subprocess.run(
        media.ns.argv(["nft", "list", "counter", "inet", "lknet_noudp", "dropped"]),
        text=True,
        check=True,
        capture_output=True,
    )
    words = cp.stdout.split()
    return int(words[words.index("packets") + 1])


def tcp_media_connections(media: MediaEnv) -> int:
    """Established connections to the ICE-TCP port, counted on the server side."""
    cp = subprocess.run(
        media.ns.argv(["ss", "-Htn", "state", "established", "(", "sport", "=", f":{TCP_PORT}", ")"]),
        text=True,
        check=True,
        capture_output=True,
    )
    return len([line for line in cp.stdout.splitlines() if line.strip()])


def exchange(media: MediaEnv, room: str, single_pc: bool) -> None:
    pub = media.python_client("pub", room, single_pc=single_pc)
    pub.wait_for("connected", timeout=30)
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=30)
    sub = media.python_client("sub", room, single_pc=single_pc)
    sub.wait_for("connected", timeout=30)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=30)
    assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=30), FREQ, "over ICE-TCP")


@pytest.mark.parametrize("single_pc", MODES)
def test_media_flows_over_ice_tcp_when_udp_is_dropped(media: MediaEnv, single_pc: bool):
    nft(media, NO_UDP)
    try:
        exchange(media, lkhelpers.unique("icetcp"), single_pc)
        # The clients did try UDP, and their media now rides TCP connections to 7881.
        assert udp_dropped(media) > 0
        assert tcp_media_connections(media) >= 2, "publisher and subscriber on ICE-TCP"
    finally:
        nft(media, "delete table inet lknet_noudp\n")


def test_udp_wins_when_it_works(media: MediaEnv):
    room = lkhelpers.unique("udpwins")
    pub = media.python_client("pub", room)
    pub.wait_for("connected", timeout=30)
    tone = pub.request("publish_audio", name="tone", freq=FREQ, timeout=30)
    sub = media.python_client("sub", room)
    sub.wait_for("connected", timeout=30)
    sub.wait_for("track_subscribed", participant="pub", sid=tone["sid"], timeout=30)
    # With the ICE-TCP port now closed to everyone, the tone goes on: it was never on TCP.
    nft(media, NO_TCP)
    try:
        assert_tone(sub.request("analyze_audio", participant="pub", seconds=1.0, timeout=30), FREQ, "on UDP")
        assert not sub.find("reconnecting"), sub.describe()
    finally:
        nft(media, "delete table inet lknet_notcp\n")
