"""Twirp RoomService.SendData, called by `livekit-api` (`room.send_data`) from inside the
namespace, received by real Python SDK clients (spec §3.3 rule 11, §4.2): every participant gets
the payload with its topic and kind and no sender; destination identities (and the deprecated
destination sids, which LiveKit still routes on) restrict delivery; a
nonce that is not 16 bytes is refused with invalid_argument and delivers nothing.

Negative checks use a barrier: a later broadcast SendData; the server sends API packets to a
participant in order on its reliable channel, so whoever has the barrier would have had the
earlier packet.
"""

from __future__ import annotations

import base64
import hashlib

import lkhelpers
from datahelpers import assert_none, join, text_digest, twirp, twirp_ok


def _barrier(media, room, receivers, tag: str) -> None:
    text = f"api barrier {tag}"
    twirp_ok(media, "SendData", room=room, text=text, kind="RELIABLE", topic="barrier")
    for r in receivers:
        r.wait_for("data_received", text=text, topic="barrier", timeout=10)


def test_send_data_api(media, single_pc):
    room = lkhelpers.unique("apidata")
    clients = join(media, room, ["alice", "bob", "carol"], single_pc)
    alice, bob, carol = clients

    # reliable, to everyone, with a topic
    twirp_ok(media, "SendData", room=room, text="hello from the server", kind="RELIABLE", topic="announcements")
    size, digest = text_digest("hello from the server")
    for rx in clients:
        ev = rx.wait_for("data_received", text="hello from the server", timeout=10)
        assert ev["topic"] == "announcements" and ev["kind"] == "reliable", ev
        assert ev["participant"] is None, f"a server-sent packet was attributed to a participant: {ev}"
        assert (ev["size"], ev["sha256"]) == (size, digest), ev

    # lossy
    twirp_ok(media, "SendData", room=room, text="lossy from the server", kind="LOSSY", topic="ticks")
    for rx in clients:
        ev = rx.wait_for("data_received", text="lossy from the server", timeout=10)
        assert (ev["kind"], ev["topic"], ev["participant"]) == ("lossy", "ticks", None), ev

    # binary payload, 60,000 bytes
    blob = bytes((i * 7 + 3) & 0xFF for i in range(60000))
    twirp_ok(media, "SendData", room=room, data_b64=base64.b64encode(blob).decode(), kind="RELIABLE", topic="blob")
    for rx in clients:
        ev = rx.wait_for("data_received", topic="blob", timeout=15)
        assert (ev["size"], ev["sha256"]) == (60000, hashlib.sha256(blob).hexdigest()), ev

    # destination identities
    twirp_ok(media, "SendData", room=room, text="only bob", kind="RELIABLE", topic="dm", destination_identities=["bob"])
    ev = bob.wait_for("data_received", text="only bob", timeout=10)
    assert ev["topic"] == "dm", ev
    twirp_ok(
        media, "SendData", room=room, text="alice and carol", kind="RELIABLE", topic="dm",
        destination_identities=["alice", "carol"],
    )
    for rx in (alice, carol):
        rx.wait_for("data_received", text="alice and carol", timeout=10)

    # destination sids (deprecated, routed as LiveKit does), alone and with identities
    sid_of = {c: c.wait_for("connected", timeout=10)["sid"] for c in clients}
    twirp_ok(media, "SendData", room=room, text="carol by sid", kind="RELIABLE", topic="dm", destination_sids=[sid_of[carol]])
    carol.wait_for("data_received", text="carol by sid", timeout=10)
    twirp_ok(
        media, "SendData", room=room, text="sid and identity", kind="RELIABLE", topic="dm",
        destination_sids=[sid_of[alice]], destination_identities=["bob"],
    )
    for rx in (alice, bob):
        rx.wait_for("data_received", text="sid and identity", timeout=10)

    # a nonce that is not 16 bytes: invalid_argument, and nothing is delivered
    bad = twirp(media, "SendDataRawNonce", room=room, text="bad nonce", nonce_hex="0102030405", topic="nonce")
    assert not bad.get("ok"), f"SendData with a 5-byte nonce succeeded: {bad}"
    assert (bad.get("code"), bad.get("status")) == ("invalid_argument", 400), bad
    # a 16-byte nonce, and no nonce at all, are fine
    good = twirp(media, "SendDataRawNonce", room=room, text="good nonce", nonce_hex="00112233445566778899aabbccddeeff", topic="nonce")
    assert good.get("ok"), good
    absent = twirp(media, "SendDataRawNonce", room=room, text="no nonce", nonce_hex="", topic="nonce")
    assert absent.get("ok"), absent
    for rx in clients:
        rx.wait_for("data_received", text="good nonce", timeout=10)
        rx.wait_for("data_received", text="no nonce", timeout=10)

    _barrier(media, room, clients, "end")
    assert_none(alice, "data_received", text="only bob")
    assert_none(carol, "data_received", text="only bob")
    assert_none(bob, "data_received", text="alice and carol")
    assert_none(alice, "data_received", text="carol by sid")
    assert_none(bob, "data_received", text="carol by sid")
    assert_none(carol, "data_received", text="sid and identity")
    for rx in clients:
        assert_none(rx, "data_received", text="bad nonce")
        assert len(rx.find("data_received", text="hello from the server")) == 1, rx.describe()

