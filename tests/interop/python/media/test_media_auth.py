"""A real-time client with a token signed by the wrong secret is refused at connect."""

from __future__ import annotations

import pytest

import lkhelpers
from mediahelpers import MediaEnv

MODES = [pytest.param(True, id="single_pc"), pytest.param(False, id="dual_pc")]


@pytest.mark.parametrize("single_pc", MODES)
def test_wrong_secret_is_refused(media: MediaEnv, single_pc: bool):
    room = lkhelpers.unique("auth")
    bad = media.python_client(
        "mallory", room, single_pc=single_pc, token=MediaEnv.token("mallory", room, secret="not-the-secret")
    )
    err = bad.wait_for("connect_error", timeout=30)
    # seen from livekit 1.2.1: "engine: signal failure: client error: 401 Unauthorized - invalid
    # authorization token: ..." (the SDK reads the body of GET /rtc[/v1]/validate after the 401)
    assert err["type"] == "ConnectError", err
    assert "401" in err["error"] and "unauthorized" in err["error"].lower(), err
    assert not bad.find("connected"), bad.describe()
    bad.proc.wait(timeout=15)

    # the refused client left no trace, and the server still admits a proper token
    good = media.python_client("alice", room, single_pc=single_pc)
    ok = good.wait_for("connected", timeout=20)
    res = media.twirp("ListParticipants", room=room)
    assert res.get("ok"), res
    assert [p["identity"] for p in res["result"]["participants"]] == ["alice"], res
    assert ok["sid"].startswith("PA_"), ok
