"""pytest wiring: one livekit-server per test module, its log attached to failures."""

from __future__ import annotations

import pytest

import lkhelpers
from lkhelpers import LiveKitServer


@pytest.fixture(scope="module")
def server():
    """A livekit-server started with `--keys "devkey: secret"` on free loopback ports."""
    try:
        srv = lkhelpers.start_server()
    except lkhelpers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def url(server: LiveKitServer) -> str:
    return server.url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    for value in funcargs.values():
        if isinstance(value, LiveKitServer):
            rep.sections.append((f"livekit-server log (port {value.port})", value.log_tail() or "<empty>"))
