"""The idle comparison, short: benches/scripts/idle-compare.sh connects 100 participants to our
server (`livekit-server --dev` on 127.0.0.1, `livekit-cli perf load-test --subscribers N`) and
reads its threads' CPU while they are idle, then runs `ws-floor` (a bare WebSocket server with a
UDP echo, then plain epoll echoing TCP and UDP) with as many connections pinging, and sending a
consent-check-sized datagram, at the same rates. Checks the whole pipeline, not a performance
figure: everyone joined, each of the three was measured and printed, and each floor's clients
had their messages and datagrams answered. The
full-length figures are in the README ("Performance")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import lkhelpers

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benches" / "scripts" / "idle-compare.sh"
FLOOR_BIN = str(Path(lkhelpers.CLI_BIN).parent / "ws-floor")


@pytest.mark.timeout(150)
def test_idle_compare_short_measures_ours_and_both_floors():
    port = lkhelpers.free_tcp_port()
    cp = subprocess.run(
        [
            "bash", str(SCRIPT), "--server", lkhelpers.SERVER_BIN, "--cli", lkhelpers.CLI_BIN,
            "--floor", FLOOR_BIN, "--participants", "100", "--measure", "8", "--pairs", "1",
            "--port", str(port),
        ],
        capture_output=True,
        text=True,
        timeout=140,
    )
    out, err = cp.stdout, cp.stderr
    assert cp.returncode == 0, (out[-3000:], err[-3000:])
    assert "not everyone joined" not in err, err[-3000:]
    num = r"([0-9]+\.[0-9])"
    ours = re.search(
        rf"^ours\s+{num} us/s per participant \(signalling workers {num}, media thread {num}, other {num}\)$",
        out,
        re.M,
    )
    assert ours, out
    total, workers, media, other = (float(x) for x in ours.groups())
    assert total > 0 and abs(total - (workers + media + other)) <= 0.2, out
    for what in ("bare WebSocket server, tokio UDP echo", "raw epoll, TCP and UDP echo"):
        m = re.search(
            rf"^floor\s+{num} us/s per connection \({what}; answered (\d+) messages, (\d+) datagrams\)$",
            out,
            re.M,
        )
        assert m, (what, out)
        # 100 connections over 8 s: a message every 5 s and a datagram every 4 s each.
        messages, datagrams = int(m.group(2)), int(m.group(3))
        assert 140 <= messages <= 180 and 180 <= datagrams <= 220, (what, out)
