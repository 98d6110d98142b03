"""SIGTERM with redis configured drains a node: it stays up serving the room it holds while a
participant is in it, takes no new room (a room joined through it lands on another node), and
exits with code 0 once its room is empty."""

from __future__ import annotations

import signal
import time

import lkhelpers
from clusterflows import check_audio, join, publish, wait_subscribed
from clusterhelpers import DEPARTURE_TIMEOUT_S, ClusterEnv, wait_until

# After the last participant leaves, the room closes after departure_timeout; the node then exits.
EXIT_BOUND_S = DEPARTURE_TIMEOUT_S + 12.0


def test_sigterm_drains_the_node(cluster: ClusterEnv):
    room = lkhelpers.unique("clu-drain")
    alice, _ = join(cluster, "alice", room, "a")
    node = cluster.owner(room)
    proc = cluster.nodes[node].proc
    # a listener on another node, to hear the drained node's room keep working
    other = next(n for n in cluster.nodes if n != node)
    bob, _ = join(cluster, "bob", room, other)
    ta = publish(alice, "alice", video=False)
    wait_subscribed(bob, "alice", ta)

    proc.send_signal(signal.SIGTERM)
    termed = time.monotonic()

    # New rooms go elsewhere, also when joined through the draining node itself: six fresh
    # rooms (a selector ignoring the drain would put one on it with odds 1 - (2/3)^6 = 91%).
    fresh = [(lkhelpers.unique(f"clu-new{i}"), f"new{i}") for i in range(6)]
    newcomers = [cluster.client(ident, r, node) for r, ident in fresh]
    for c in newcomers:
        c.wait_for("connected", timeout=25)
    placed = {r: cluster.owners(r) for r, _ in fresh}
    for c in newcomers:
        c.close()
    print(f"rooms joined through draining node {node}: {placed}")
    for r, owners in placed.items():
        assert len(owners) == 1 and owners[0] != node, f"new room {r} joined through draining {node} is held by {owners}"

    # Still serving its own room: the process is up and the tone still reaches bob.
    assert proc.poll() is None, f"node {node} exited while its room had participants\n{cluster.nodes[node].log_tail()}"
    check_audio(bob, "alice", "while draining")
    assert cluster.owner(room) == node
    assert not alice.find("disconnected") and not bob.find("disconnected")
    assert proc.poll() is None

    # Once its room is empty it finishes: exit code 0 within the bound.
    alice.close()
    bob.close()
    left = time.monotonic()
    rc = wait_until(lambda: proc.poll() is not None, timeout=EXIT_BOUND_S, interval=0.2)
    took = time.monotonic() - left
    assert rc, f"draining node {node} still running {took:.1f}s after its room emptied\n{cluster.nodes[node].log_tail()}"
    print(f"node {node}: exit {proc.returncode} {took:.1f}s after its last participant left ({time.monotonic() - termed:.1f}s after SIGTERM)")
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{cluster.nodes[node].log_tail()}"


def test_a_second_sigterm_ends_the_drain_at_once(cluster: ClusterEnv):
    room = lkhelpers.unique("clu-drain2")
    alice, _ = join(cluster, "alice", room, "b")
    node = cluster.owner(room)
    proc = cluster.nodes[node].proc
    proc.send_signal(signal.SIGTERM)
    # Draining: its record says so (the node has taken the first signal: a second one sent
    # before it had would merge with it, as pending signals of one kind do), and it is still
    # up with its participant (the room still answers through another node).
    url = cluster.nodes[node].url
    assert wait_until(
        lambda: cluster.registered().get(url, {}).get("state") == "draining", timeout=5, interval=0.1
    ), f"node {node} not draining after SIGTERM: {cluster.registered().get(url)}"
    other = next(n for n in cluster.nodes if n != node)
    assert wait_until(lambda: cluster.identities(other, room) == ["alice"], timeout=5, interval=0.3)
    assert proc.poll() is None, f"node {node} exited on the first SIGTERM with a participant in its room"
    second = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = wait_until(lambda: proc.poll() is not None, timeout=5, interval=0.1)
    took = time.monotonic() - second
    assert rc, f"node {node} still running {took:.1f}s after the second SIGTERM"
    print(f"node {node}: exit {proc.returncode} {took:.2f}s after the second SIGTERM")
    alice.wait_for("disconnected", timeout=15)
