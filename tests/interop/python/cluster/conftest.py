"""pytest wiring for the cluster tests: one network namespace with redis-server and three
livekit-server nodes per test module (`cluster_env`), brought back to full strength before each
test (`cluster`: redis and any node an earlier test killed are restarted), the test's clients
closed after it, and every node's log, the redis log and the clients' output attached to a
failing report.
"""

from __future__ import annotations

import os

import pytest

import clusterhelpers
import lkhelpers
import mediahelpers
from clusterhelpers import ClusterEnv


@pytest.fixture(scope="module")
def cluster_env():
    if os.geteuid() != 0:
        pytest.skip("these tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    if clusterhelpers.redis_bin() is None:
        pytest.fail("redis-server is not installed (Debian package redis-server; scripts/test installs it)", pytrace=False)
    env = ClusterEnv()
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the cluster: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def cluster(cluster_env: ClusterEnv):
    """The module's cluster with redis and all three nodes running; the test's clients are
    closed when it ends."""
    cluster_env.ensure()
    try:
        yield cluster_env
    finally:
        cluster_env.close_clients()


pytest_runtest_makereport = lkhelpers.failure_report_hook("cluster", ClusterEnv)
