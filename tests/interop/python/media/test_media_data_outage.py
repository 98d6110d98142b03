"""Reliable data across an outage of the whole network (Python SDK, both signalling modes, a
room with no media): what was sent during the outage arrives after it, in order, and new data
flows again soon after the network returns."""

from __future__ import annotations

import subprocess
import time

import pytest

import lkhelpers
from mediahelpers import MediaEnv

OUTAGE_S = 10
MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


def nft(media: MediaEnv, script: str) -> None:
    subprocess.run(media.ns.argv(["nft", "-f", "-"]), input=script, text=True, check=True, capture_output=True)


def received(client, prefix: str):
    return [e["text"] for e in client.find("data_received") if str(e.get("text", "")).startswith(prefix)]


@pytest.mark.parametrize("single_pc", MODES)
def test_reliable_data_sent_during_an_outage_arrives_after_it(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("dataout")
    a = media.python_client("a", room, single_pc=single_pc)
    a.wait_for("connected", timeout=20)
    b = media.python_client("b", room, single_pc=single_pc)
    b.wait_for("connected", timeout=20)
    a.wait_for("participant_connected", participant="b", timeout=20)
    a.request("publish_data", text="before", timeout=10)
    b.wait_for("data_received", text="before", timeout=10)

    # Every packet in the namespace is dropped (shorter than the 15 s ping timeout: the
    # signal connections survive, so the data path has only ICE and SCTP to come back by).
    nft(media, "table inet outage {\n chain out {\n  type filter hook output priority 0;\n  meta l4proto {tcp, udp} drop\n }\n}\n")
    during = [f"during{i}" for i in range(5)]
    for text in during:
        a.request("publish_data", text=text, timeout=10)
        time.sleep(1)
    time.sleep(OUTAGE_S - len(during))
    assert not received(b, "during"), "data crossed the outage"
    nft(media, "delete table inet outage\n")
    restored = time.monotonic()

    a.request("publish_data", text="after", timeout=10)
    b.wait_for("data_received", text="after", timeout=20)
    back = time.monotonic() - restored
    print(f"\n# data back {back:.2f} s after the network returned")
    assert received(b, "during") == during, b.describe()
    assert back <= 3.0, f"data flowed again {back:.2f} s after the network returned"
