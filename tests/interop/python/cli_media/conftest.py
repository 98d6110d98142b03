"""pytest wiring for the livekit-cli media tests: one network namespace + livekit-server per
module (the harness of ../media), test clips made with ffmpeg, and livekit-cli processes run
inside the namespace.

The Python SDK gathers no loopback candidates, so these tests run everything in a private
namespace (10.77.0.1 <-> 10.77.0.2), like the SDK media tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "media"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cli_media_helpers  # noqa: E402
from mediafixtures import media, media_env, pytest_runtest_makereport  # noqa: E402,F401


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> cli_media_helpers.Clips:
    """An Ogg/Opus 440 Hz tone and a VP8 IVF clip (320x240, known colour, moving white bar)."""
    why = cli_media_helpers.ffmpeg_missing()
    if why:
        pytest.fail(why, pytrace=False)
    return cli_media_helpers.make_clips(tmp_path_factory.mktemp("clips"))
