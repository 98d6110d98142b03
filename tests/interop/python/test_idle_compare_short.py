"""The idle comparison, short: benches/scripts/idle-compare.sh connects 100 participants to our
server (`livekit-server --dev` on 127.0.0.1, `livekit-cli perf load-test --subscribers N`) and
reads its threads' CPU while they are idle, then runs `ws-floor` (a bare WebSocket server, then
plain epoll) with as many connections pinging at the same rate. Checks the whole pipeline, not
a performance figure: everyone joined, each of the three was measured and printed. The
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
    assert re.search(rf"^floor\s+{num} us/s per connection \(bare WebSocket server\)$", out, re.M), out
    assert re.search(rf"^floor\s+{num} us/s per connection \(raw epoll, no WebSocket\)$", out, re.M), out
