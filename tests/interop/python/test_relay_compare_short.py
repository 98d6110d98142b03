"""The comparison with a plain UDP relay, short: benches/scripts/relay-compare.sh runs our
server (`livekit-server --dev` on 127.0.0.1, loaded by `livekit-cli perf load-test` with one
audio publisher) and `livekit-cli perf udp-relay` (loaded by `livekit-cli perf
relay-load-test` with datagrams of the same size and rate) in turn, with the same number of
receivers, and prints the table. Checks the whole pipeline, not a performance figure: both
runs forwarded packets, the CPU per forwarded packet was measured for both, and the ratio
was printed. The full-length figures are in the README ("Performance")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import lkhelpers

SCRIPT = Path(__file__).resolve().parents[3] / "benches" / "scripts" / "relay-compare.sh"


@pytest.mark.timeout(150)
def test_relay_compare_short_measures_both():
    port = lkhelpers.free_tcp_port()
    cp = subprocess.run(
        [
            "bash", str(SCRIPT), "--server", lkhelpers.SERVER_BIN, "--cli", lkhelpers.CLI_BIN,
            "--subscribers", "50", "--duration", "5s", "--pairs", "1", "--port", str(port),
        ],
        capture_output=True,
        text=True,
        timeout=140,
    )
    out = cp.stdout
    assert cp.returncode == 0, (out[-3000:], cp.stderr[-3000:])
    assert "== 1 audio -> 50 subscribers" in out, out
    assert "load test failed" not in out, out
    rows = {}
    for line in out.splitlines():
        m = re.match(
            r"^(ours|relay)\s+([0-9.]+)\s+([0-9.]+)\s+(\d+)\s+(\d+)\s+([0-9.]+)%\s+(\d+)$",
            line,
        )
        if m:
            rows[m.group(1)] = [float(x) for x in m.groups()[1:]]
    assert set(rows) == {"ours", "relay"}, out
    for name, (us, user_us, packets, _lost, _loss, _drops) in rows.items():
        assert packets > 0, (name, out)
        assert us > 0 and 0 <= user_us <= us, (name, out)
    # The relay counted what it forwarded and refused nobody.
    m = re.search(r"^relay counters: received (\d+) datagrams \((\d+) registrations, (\d+) refused\); forwarded (\d+) to 50 receivers", out, re.M)
    assert m and int(m.group(4)) > 0 and int(m.group(3)) == 0, out
    assert re.search(r"^ours/relay: [0-9.]+x CPU per forwarded packet \(user space alone: ([0-9.]+x\)|-, .*)$", out, re.M), out
    assert re.search(r"^50\s+1\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+x\s+(?:[0-9.]+x|-)\s+[0-9.]+%\s+[0-9.]+%$", out, re.M), out
