"""pytest wiring for the LiveKit Agents tests: one network namespace + livekit-server per test
module (the media fixtures' shape), agent workers and SDK clients closed after each test, and
the server log plus every worker's and client's output attached to failures."""

from __future__ import annotations

import pytest

import lkhelpers
from agenthelpers import AgentEnv, agent_env_with


@pytest.fixture(scope="module")
def agent_env():
    env = agent_env_with()
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def agents(agent_env: AgentEnv):
    """The module's AgentEnv; the workers and clients a test starts are closed when it ends."""
    if not agent_env.server_alive():
        pytest.fail("livekit-server is not running any more\n" + agent_env.server_log_tail(), pytrace=False)
    try:
        yield agent_env
    finally:
        agent_env.close_clients()


pytest_runtest_makereport = lkhelpers.failure_report_hook("agents", AgentEnv)
