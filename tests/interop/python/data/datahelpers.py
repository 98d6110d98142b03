"""Helpers for the data-channel / RPC / stream / participant-state tests.

They reuse the media harness (../media/mediahelpers.py): one network namespace with
livekit-server inside per test module, real SDK clients as processes driven over stdin/stdout
(../media/rtc_client.py for Python, node_data_client.mjs here for `@livekit/rtc-node`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
MEDIA_DIR = HERE.parent / "media"
if str(MEDIA_DIR) not in sys.path:
    sys.path.insert(0, str(MEDIA_DIR))

import mediahelpers  # noqa: E402
from mediahelpers import API_KEY, API_SECRET, HTTP_URL, ClientProc, MediaEnv, _run, python_bin  # noqa: E402

NS_DATA_ADMIN = HERE / "ns_data_admin.py"
NODE_DATA_CLIENT = HERE / "node_data_client.mjs"

MODES = ("single_pc", "dual_pc")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_digest(text: str) -> Tuple[int, str]:
    b = text.encode("utf-8")
    return len(b), sha256(b)


def twirp(env: MediaEnv, method: str, timeout: float = 20, **args: Any) -> Dict[str, Any]:
    """A RoomService call made by `livekit-api` from inside the namespace (see ns_data_admin.py)."""
    cp = _run(
        env.ns.argv([python_bin(), str(NS_DATA_ADMIN), HTTP_URL, API_KEY, API_SECRET, method, json.dumps(args)]),
        timeout=timeout,
        check=False,
    )
    try:
        return json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(
            f"ns_data_admin {method} printed no JSON: rc={cp.returncode} {cp.stdout!r} {cp.stderr[-2000:]!r}"
        )


def twirp_ok(env: MediaEnv, method: str, **args: Any) -> Dict[str, Any]:
    res = twirp(env, method, **args)
    assert res.get("ok"), f"{method} {args} failed: {res}"
    return res["result"]


def participants(env: MediaEnv, room: str) -> Dict[str, Dict[str, Any]]:
    return {p["identity"]: p for p in twirp_ok(env, "ListParticipants", room=room)["participants"]}


def join(
    env: MediaEnv, room: str, identities: List[str], single_pc: bool, timeout: float = 25, **token_grants: Any
) -> List[ClientProc]:
    """Connects Python clients one after another and waits until every one sees all the others."""
    clients: List[ClientProc] = []
    for ident in identities:
        tok = env.token(ident, room, **token_grants) if token_grants else None
        c = env.python_client(ident, room, single_pc=single_pc, token=tok, max_seconds=120)
        c.wait_for("connected", timeout=timeout)
        clients.append(c)
    wait_all_see_each_other(clients, timeout)
    wait_data_ready(clients)
    return clients


def wait_all_see_each_other(clients: List[ClientProc], timeout: float = 20) -> None:
    idents = [identity_of(c) for c in clients]
    for c, me in zip(clients, idents):
        conn = c.wait_for("connected", timeout=timeout)
        for other in idents:
            if other == me or other in conn.get("remote", []):
                continue
            c.wait_for("participant_connected", participant=other, timeout=timeout)


def identity_of(c: ClientProc) -> str:
    return c.label.split(":", 1)[1]


PROBE_TOPIC = "_probe"


def wait_data_ready(clients: List[ClientProc], timeout: float = 10) -> None:
    """Until every client has received a reliable packet from every other one.

    A client's "connected" does not mean its data channels are open at the server yet: a packet
    forwarded to it before then is dropped (the Go server drops it too: PCTransport
    SendDataMessage without a channel). So each client sends numbered probes on topic
    "_probe" until all the others have one of its probes, within `timeout`.
    """
    deadline = time.monotonic() + timeout
    for c in clients:
        me = identity_of(c)
        others = [o for o in clients if o is not c]
        n = 0
        while True:
            c.request("publish_data", text=f"{PROBE_TOPIC} {me} {n}", topic=PROBE_TOPIC, reliable=True, timeout=10)
            n += 1
            step = min(time.monotonic() + 0.3, deadline)
            missing = others
            while missing and time.monotonic() < step:
                missing = [o for o in others if not o.find("data_received", topic=PROBE_TOPIC, participant=me)]
                if missing:
                    with missing[0].cond:
                        missing[0].cond.wait(0.05)
            if not missing:
                break
            assert time.monotonic() < deadline, (
                f"data from {me} did not reach {[identity_of(o) for o in missing]} within {timeout}s "
                f"({n} probes sent)\n" + "\n".join(o.describe() for o in missing)
            )


def register(c: ClientProc, cmd: str, **fields: Any) -> Dict[str, Any]:
    return c.request(cmd, timeout=10, **fields)


def assert_none(c: ClientProc, event: str, after: int = 0, **match: Any) -> None:
    got = c.find(event, after=after, **match)
    assert not got, f"[{c.label}] unexpected {event} {match}: {got}\n{c.describe()}"


def sdk_error(res: Dict[str, Any]) -> str:
    """The error a `set_metadata` / `set_name` / `set_attributes` result carries, or ""."""
    return res.get("raised") or res.get("ffi_error") or ""


def is_sdk_timeout(res: Dict[str, Any]) -> bool:
    return "timeout" in sdk_error(res).lower()


def answered_update(c: ClientProc, cmd: str, field: str, value_for, attempts: int = 4) -> Tuple[Any, List[Dict[str, Any]]]:
    """Runs a local-participant update until the SDK reports the server's answer instead of its
    5 s "request timeout"; returns (the answered result or None, every result).

    Why retry: the Rust SDK (livekit/src/room/participant/local_participant.rs) sends the
    update_metadata request and only then registers the waiter for its request_response
    (rtc_session.rs get_response), so an answer that comes back quickly enough is dropped and
    the call times out. Against this server on a veth link that happens to ~1 call in 5.
    A server that never answers times out every time.
    """
    results: List[Dict[str, Any]] = []
    for i in range(attempts):
        res = c.request(cmd, timeout=20, **{field: value_for(i)})
        results.append(res)
        if not is_sdk_timeout(res):
            return res, results
    return None, results
