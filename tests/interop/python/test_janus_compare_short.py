"""The side-by-side comparison with Janus, short: benches/scripts/janus-compare.sh runs Janus
VideoRoom (Debian's `janus`) and our server in turn in a private network namespace, drives
each with one video publisher and ten subscribers from our own client stack for a few
seconds, ours a second time with the load tester's sockets reading segmented runs whole
(`--gro`: UDP_GRO), then the plain UDP relay with the same receivers and packet rate, then
the relay sealing and segmenting each copy (the floor), and prints the table. Checks the
whole pipeline against all of them: every subscriber joined, packets were forwarded, the CPU
per forwarded packet was measured for each, Janus negotiated AES-GCM SRTP, the relays got our
server's per-subscriber packet rate in frame-sized bursts, every sealed copy opened at its
receiver, and the ratio lines were printed. The full-length
figures are in the README ("Performance")."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import lkhelpers

SCRIPT = Path(__file__).resolve().parents[3] / "benches" / "scripts" / "janus-compare.sh"


@pytest.mark.timeout(180)
def test_janus_compare_short_runs_against_both_servers():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (it creates a network namespace)")
    assert shutil.which("janus"), "janus is not installed (scripts/test installs the Debian package)"
    cp = subprocess.run(
        [
            "bash", str(SCRIPT), "--server", lkhelpers.SERVER_BIN, "--cli", lkhelpers.CLI_BIN,
            "--scenarios", "v10", "--duration", "4s", "--resolution", "medium", "--gro",
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = cp.stdout
    assert cp.returncode == 0, (out[-3000:], cp.stderr[-3000:])
    assert "== 1 -> 10 video" in out, out
    assert "load test failed" not in out and "join failed" not in out, out
    assert "janus SRTP profile: AeadAes128Gcm" in out, out
    rows = {}
    for line in out.splitlines():
        m = re.match(
            r"^(janus|ours|ours-gro|relay|floor)\s+([0-9.]+)\s+([0-9.]+)\s+(\d+)\s+(\d+)\s+([0-9.]+)%\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)$",
            line,
        )
        if m:
            rows[m.group(1)] = [float(x) for x in m.groups()[1:]]
    assert set(rows) == {"janus", "ours", "ours-gro", "relay", "floor"}, out
    for name, (us, user_us, packets, lost, loss, p50, p99, rss) in rows.items():
        assert packets > 1000, (name, out)
        assert us > 0 and 0 <= user_us <= us and rss > 0, (name, out)
        assert p50 <= p99, (name, out)
    # Reading runs whole loses nothing: the subscribers got as many packets as with plain
    # sockets, none lost.
    assert rows["ours-gro"][3] == 0 and rows["ours-gro"][2] >= 0.9 * rows["ours"][2], out
    # Our load tester counts what its own sockets dropped, apart from the servers' loss.
    assert re.search(r"^load tester socket drops: janus \d+, ours \d+$", out, re.M), out
    assert re.search(r"^Janus spent [0-9.]+x the CPU per forwarded packet that we did \(", out, re.M), out
    # The relays were sent what our server forwarded to each subscriber: 1128-byte datagrams
    # at its packet rate (a medium-resolution stream: tens of packets a second), a frame's
    # worth back to back (30 frames a second).
    m = re.search(
        r"^\(relay, floor: 1128-byte datagrams, (\d+) a second to each of 10 receivers, (\d+) back to back; ",
        out,
        re.M,
    )
    assert m and 10 <= int(m.group(1)) <= 400, out
    assert int(m.group(2)) == max(1, round(int(m.group(1)) / 30)), out
    # The floor's receivers count only copies that opened under their own SRTP context: all
    # of them did.
    assert rows["floor"][3] == 0, out
    assert re.search(
        r"^The floor \(sealing, segmenting relay\) spent [0-9.]+ us per packet: Janus / floor = [0-9.]+x .*, ours / floor = [0-9.]+x$",
        out,
        re.M,
    ), out
    assert re.search(
        r"^The plain relay spent [0-9.]+ us per packet: Janus / relay = [0-9.]+x .*, ours / relay = [0-9.]+x$",
        out,
        re.M,
    ), out
    assert re.search(
        r"^With receivers reading runs whole \(UDP_GRO\): ours [0-9.]+ us per packet, [0-9.]+x the plain-receiver figure; Janus / ours-gro = [0-9.]+x",
        out,
        re.M,
    ), out
