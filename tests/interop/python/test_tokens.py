"""Tokens: livekit-cli makes them, the Python SDK verifies them (and vice versa)."""

from __future__ import annotations

import re
import time

import pytest
from livekit import api

from lkhelpers import API_KEY, API_SECRET, decode_jwt_payload, describe, run_cli

TOKEN_LINE = re.compile(r"^Access token: (\S+)\s*$", re.MULTILINE)


def cli_token(*extra: str) -> str:
    cp = run_cli(
        [
            "token",
            "create",
            "--api-key",
            API_KEY,
            "--api-secret",
            API_SECRET,
            *extra,
        ]
    )
    assert cp.returncode == 0, describe(cp)
    m = TOKEN_LINE.search(cp.stdout)
    assert m, f"no 'Access token: <jwt>' line\n{describe(cp)}"
    token = m.group(1)
    assert token.count(".") == 2, token
    return token


JOIN_ARGS = ("--room", "r1", "--identity", "alice", "--join", "--name", "Alice", "--metadata", "m", "--valid-for", "10m")


def test_cli_join_token_verifies_with_python_sdk():
    token = cli_token(*JOIN_ARGS)
    claims = api.TokenVerifier(API_KEY, API_SECRET).verify(token)
    assert claims.identity == "alice"
    assert claims.name == "Alice"
    assert claims.metadata == "m"
    assert claims.video is not None
    assert claims.video.room_join is True
    assert claims.video.room == "r1"
    # A join token is not an admin token.
    assert not claims.video.room_admin
    assert not claims.video.room_create


def test_cli_join_token_claims_and_lifetime():
    before = int(time.time())
    token = cli_token(*JOIN_ARGS)
    after = int(time.time())
    payload = decode_jwt_payload(token)
    assert payload["iss"] == API_KEY
    assert payload["sub"] == "alice"
    assert isinstance(payload["exp"], int)
    # --valid-for 10m
    assert before + 600 - 5 <= payload["exp"] <= after + 600 + 5, payload
    if "nbf" in payload:
        assert payload["nbf"] <= after + 1
    assert payload["video"]["roomJoin"] is True
    assert payload["video"]["room"] == "r1"


def test_cli_token_is_signed_with_the_given_secret():
    token = cli_token(*JOIN_ARGS)
    with pytest.raises(Exception):
        api.TokenVerifier(API_KEY, "some-other-secret").verify(token)

