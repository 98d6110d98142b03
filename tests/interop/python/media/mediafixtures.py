"""The pytest fixtures every namespace-based suite shares (media, data, CLI media): one
network namespace + livekit-server per test module, the clients a test starts closed after it,
and the server log and clients' output attached to failing reports.

A suite's conftest.py imports them: `from mediafixtures import media, media_env,
pytest_runtest_makereport`.
"""

from __future__ import annotations

import os

import pytest

import lkhelpers
import mediahelpers
from mediahelpers import MediaEnv


def media_env_with(extra_args=None):
    """A started MediaEnv whose server gets `extra_args`, for a module's own fixture."""
    if os.geteuid() != 0:
        pytest.skip("these tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    env = MediaEnv(extra_args=extra_args)
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    return env


@pytest.fixture(scope="module")
def media_env():
    env = media_env_with()
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def media(media_env: MediaEnv):
    """The module's MediaEnv; the clients a test starts are closed when it ends."""
    if not media_env.server_alive():
        pytest.fail(
            "livekit-server in the media namespace is not running any more\n" + media_env.server_log_tail(),
            pytrace=False,
        )
    try:
        yield media_env
    finally:
        media_env.close_clients()


pytest_runtest_makereport = lkhelpers.failure_report_hook("media", MediaEnv)
