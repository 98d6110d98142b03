"""pytest wiring for the data tests: the media harness (network namespace + livekit-server,
SDK client processes) imported from ../media, one environment per test module.

On a failure the server log and every client's last output are attached to the report.
"""

from __future__ import annotations

import pytest

import datahelpers  # noqa: F401 - puts ../media on sys.path
from mediafixtures import media, media_env, pytest_runtest_makereport  # noqa: F401


@pytest.fixture(params=[True, False], ids=["single_pc", "dual_pc"])
def single_pc(request) -> bool:
    """Every data test runs with one peer connection (/rtc/v1) and with two (/rtc)."""
    return request.param
