"""The churn soak, short: 3 minutes of participants joining and leaving with media (our own
client as load), with the server's memory and open fds flat after a first minute of heavier rounds (20
subscribers instead of 6) that bring its buffer pools to their working size. The hour-
long run and its figures are in the README (`tests/soak/soak.py --minutes 60`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lkhelpers

SOAK = Path(__file__).resolve().parents[2] / "soak" / "soak.py"


@pytest.mark.timeout(600)
def test_churn_keeps_memory_and_fds_flat():
    cp = subprocess.run(
        [
            sys.executable, str(SOAK), "--minutes", "3", "--warmup", "0.34", "--warmup-subscribers", "20",
            "--server", lkhelpers.SERVER_BIN, "--cli", lkhelpers.CLI_BIN,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(l) for l in cp.stdout.splitlines() if l.startswith("{")]
    summary = next((l["summary"] for l in lines if "summary" in l), None)
    assert summary is not None, f"no summary: {cp.stdout[-2000:]} {cp.stderr[-2000:]}"
    rounds = [l for l in lines if "round" in l]
    assert summary["rounds"] >= 8, summary
    assert summary["failed_rounds"] == 0, (summary, rounds)
    assert summary["fds_max_deviation"] <= 0.05, (summary, rounds)
    assert summary["rss_max_deviation"] <= 0.05, (summary, rounds)
    assert cp.returncode == 0, (summary, cp.stderr[-2000:])
