"""pytest wiring for the media tests: one network namespace + livekit-server per test module.

On a failure the server log and every client's last output are attached to the report.
"""

from __future__ import annotations

from mediafixtures import media, media_env, pytest_runtest_makereport  # noqa: E402,F401
