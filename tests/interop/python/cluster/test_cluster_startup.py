"""A node configured with `redis:` that cannot reach it at startup refuses to start, saying why
(rather than run alone as a cluster of one)."""

from __future__ import annotations

import signal

from clusterhelpers import ClusterEnv, wait_until


def test_a_node_without_its_redis_refuses_to_start(cluster: ClusterEnv):
    node = cluster.nodes["c"]
    for sig in (signal.SIGTERM, signal.SIGTERM):  # the second one ends a drain at once
        if node.alive():
            node.proc.send_signal(sig)
            wait_until(lambda: not node.alive(), timeout=5, interval=0.1)
    assert not node.alive(), node.log_tail()
    cluster.kill_redis()
    mark = len(node.log())
    cluster.start_node("c", wait=False)
    exited = wait_until(lambda: not node.alive(), timeout=20, interval=0.1)
    out = node.log()[mark:]
    assert exited, f"node c runs without its redis:\n{out}"
    assert node.proc.returncode not in (0, None), f"exit code {node.proc.returncode}\n{out}"
    assert "cannot reach the cluster's Redis" in out and "Connection refused" in out, out
