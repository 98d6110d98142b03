"""pytest wiring for the livekit-cli media tests: one network namespace + livekit-server per
module (the harness of ../media), test clips made with ffmpeg, and livekit-cli processes run
inside the namespace.

The Python SDK gathers no loopback candidates, so these tests run everything in a private
namespace (10.77.0.1 <-> 10.77.0.2), like the SDK media tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "media"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cli_media_helpers  # noqa: E402
import mediahelpers  # noqa: E402
from mediahelpers import MediaEnv  # noqa: E402


@pytest.fixture(scope="module")
def media_env():
    if os.geteuid() != 0:
        pytest.skip("media tests need root: they create a network namespace")
    why = mediahelpers.netns_usable()
    if why:
        pytest.fail(why, pytrace=False)
    env = MediaEnv()
    try:
        env.start()
    except Exception as e:  # noqa: BLE001
        env.cleanup()
        pytest.fail(f"could not start the media environment: {e}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def media(media_env: MediaEnv):
    """The module's MediaEnv; the clients and CLI processes a test starts are closed after it."""
    if not media_env.server_alive():
        pytest.fail(
            "livekit-server in the media namespace is not running any more\n" + media_env.server_log_tail(),
            pytrace=False,
        )
    try:
        yield media_env
    finally:
        media_env.close_clients()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> cli_media_helpers.Clips:
    """An Ogg/Opus 440 Hz tone and a VP8 IVF clip (320x240, known colour, moving white bar)."""
    why = cli_media_helpers.ffmpeg_missing()
    if why:
        pytest.fail(why, pytrace=False)
    return cli_media_helpers.make_clips(tmp_path_factory.mktemp("clips"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    env = (getattr(item, "funcargs", {}) or {}).get("media")
    if isinstance(env, MediaEnv):
        for title, text in env.failure_sections():
            rep.sections.append((title, text))
