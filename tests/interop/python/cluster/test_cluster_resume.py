"""Resume through a relaying node: bob's signal connection goes to a node that does not hold
the room (it relays to the room's node). When the connection between bob and that node is
cut, or the relay's own connection to the room's node, the SDK reports reconnecting /
reconnected, keeps bob's SID, nobody sees anyone leave, and the tone flows again."""

from __future__ import annotations

import subprocess

import pytest

import lkhelpers
from clusterflows import check_audio, join, publish, wait_subscribed
from clusterhelpers import ClusterEnv


def cut(cluster: ClusterEnv, port: int) -> None:
    """Aborts every TCP connection in the namespace whose destination port is `port`."""
    subprocess.run(cluster.ns.argv(["ss", "-K", "dport", "=", f":{port}"]), capture_output=True, check=True)


@pytest.mark.parametrize("leg", ["client", "relay"])
def test_a_relayed_client_resumes(cluster: ClusterEnv, leg: str):
    room = lkhelpers.unique(f"clu-resume-{leg}")
    alice, a_conn = join(cluster, "alice", room, "a")
    owner = cluster.owner(room)
    via = next(n for n in cluster.nodes if n != owner)
    bob, b_conn = join(cluster, "bob", room, via)
    assert cluster.owners(room) == [owner] and cluster.local_participants(owner, room) == ["alice", "bob"]
    ta = publish(alice, "alice", video=False)
    tb = publish(bob, "bob", video=False)
    wait_subscribed(bob, "alice", ta)
    wait_subscribed(alice, "bob", tb)
    check_audio(bob, "alice", "before the cut")
    marks = {c.label: len(c.events) for c in (alice, bob)}

    # client: bob <-> its node; relay: that node (and anyone else) <-> the room's node
    cut(cluster, cluster.nodes[via if leg == "client" else owner].port)
    bob.wait_for("reconnecting", timeout=15, after=marks[bob.label])
    back = bob.wait_for("reconnected", timeout=20, after=marks[bob.label])
    assert back["sid"] == b_conn["sid"], f"bob came back as a new participant: {back} (was {b_conn['sid']})"
    if alice.find("reconnecting", after=marks[alice.label]):
        assert alice.wait_for("reconnected", timeout=20, after=marks[alice.label])["sid"] == a_conn["sid"]
    for c in (alice, bob):
        assert not c.find("participant_disconnected", after=marks[c.label]), c.describe()
        assert not c.find("disconnected", after=marks[c.label]), c.describe()
    check_audio(bob, "alice", f"after the {leg} cut")
    check_audio(alice, "bob", f"after the {leg} cut")
    assert cluster.owners(room) == [owner]
    assert cluster.identities(via, room) == ["alice", "bob"]
