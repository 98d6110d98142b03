"""`LocalParticipant.publish_data` between real Python SDK clients (spec §3.3): the others
receive the payload with the sender's identity, the topic and the channel kind; destination
identities restrict delivery; the sender never gets its own packet back; a 60,000-byte packet
arrives intact; a burst of reliable packets arrives complete, once each, in order.

Negative checks ("X did not get it") use a barrier instead of a sleep: the same sender then
sends a broadcast packet on the same reliable (ordered) channel, and once X has that one, X
would already have had the earlier one.
"""

from __future__ import annotations

import lkhelpers
from datahelpers import assert_none, join, text_digest


def _barrier(sender, receivers, tag: str, **fields):
    """Sends a reliable broadcast from `sender`; returns each receiver's event for it."""
    text = f"barrier-{tag}"
    sender.request("publish_data", text=text, reliable=True, topic="barrier", timeout=10)
    return {
        r.label: r.wait_for("data_received", text=text, topic="barrier", timeout=10, **fields) for r in receivers
    }


def test_publish_data_reliable_lossy_topic_and_sender(media, single_pc):
    room = lkhelpers.unique("data")
    alice, bob, carol = join(media, room, ["alice", "bob", "carol"], single_pc)

    sent = alice.request("publish_data", text="hello reliable", reliable=True, topic="chat", timeout=10)
    size, digest = text_digest("hello reliable")
    assert (sent["size"], sent["sha256"]) == (size, digest), sent
    for rx in (bob, carol):
        ev = rx.wait_for("data_received", text="hello reliable", timeout=10)
        assert ev["participant"] == "alice", f"sender identity not stamped: {ev}"
        assert ev["topic"] == "chat", ev
        assert ev["kind"] == "reliable", ev
        assert (ev["size"], ev["sha256"]) == (size, digest), ev

    # lossy: on this loss-free veth link every packet must arrive, on the lossy channel
    lossy = [f"lossy #{i}" for i in range(5)]
    for text in lossy:
        alice.request("publish_data", text=text, reliable=False, topic="telemetry", timeout=10)
    for rx in (bob, carol):
        for text in lossy:
            ev = rx.wait_for("data_received", text=text, timeout=10)
            assert (ev["participant"], ev["kind"], ev["topic"]) == ("alice", "lossy", "telemetry"), ev

    # no topic: an empty / absent topic is not turned into something else
    bob.request("publish_data", text="no topic", reliable=True, timeout=10)
    for rx in (alice, carol):
        ev = rx.wait_for("data_received", text="no topic", timeout=10)
        assert ev["participant"] == "bob" and ev["kind"] == "reliable", ev
        assert ev["topic"] in ("", None), f"a packet sent without a topic arrived with topic {ev['topic']!r}"

    # the senders never hear themselves (alice sent 6 packets, bob 1; checked after the others got them)
    _barrier(carol, [alice, bob], "self")
    assert_none(alice, "data_received", participant="alice")
    assert_none(alice, "data_received", participant=None)
    assert_none(bob, "data_received", participant="bob")
    assert_none(bob, "data_received", participant=None)
    for rx in (alice, bob, carol):
        mine = rx.label.split(":", 1)[1]
        assert all(e["participant"] != mine for e in rx.find("data_received")), rx.describe()

    # each packet exactly once
    for rx in (bob, carol):
        assert len(rx.find("data_received", text="hello reliable")) == 1, rx.describe()
        for text in lossy:
            assert len(rx.find("data_received", text=text)) == 1, rx.describe()


def test_publish_data_destination_identities(media, single_pc):
    room = lkhelpers.unique("dest")
    alice, bob, carol = join(media, room, ["alice", "bob", "carol"], single_pc)

    alice.request("publish_data", text="for carol only", topic="dm", destination_identities=["carol"], timeout=10)
    ev = carol.wait_for("data_received", text="for carol only", timeout=10)
    assert (ev["participant"], ev["topic"], ev["kind"]) == ("alice", "dm", "reliable"), ev

    alice.request(
        "publish_data", text="for bob and carol", topic="dm", destination_identities=["bob", "carol"], timeout=10
    )
    for rx in (bob, carol):
        ev = rx.wait_for("data_received", text="for bob and carol", timeout=10)
        assert ev["participant"] == "alice", ev

    # an unknown identity in the list does not widen delivery, and does not stop it for the rest
    alice.request(
        "publish_data", text="for bob and a ghost", topic="dm", destination_identities=["ghost", "bob"], timeout=10
    )
    bob.wait_for("data_received", text="for bob and a ghost", timeout=10)

    # lossy with destinations too
    carol.request("publish_data", text="lossy to alice", reliable=False, destination_identities=["alice"], timeout=10)
    ev = alice.wait_for("data_received", text="lossy to alice", timeout=10)
    assert (ev["participant"], ev["kind"]) == ("carol", "lossy"), ev

    # barrier: a broadcast from alice after the directed ones; whoever has it would have had those
    _barrier(alice, [bob, carol], "dest-a", participant="alice")
    _barrier(carol, [alice, bob], "dest-c", participant="carol")
    assert_none(bob, "data_received", text="for carol only")
    assert_none(carol, "data_received", text="for bob and a ghost")
    assert_none(bob, "data_received", text="lossy to alice")
    assert_none(alice, "data_received", text="for carol only")
    assert_none(alice, "data_received", text="for bob and carol")
    assert len(carol.find("data_received", text="for carol only")) == 1, carol.describe()


def test_publish_data_60kb_and_ordered_burst(media, single_pc):
    room = lkhelpers.unique("big")
    alice, bob = join(media, room, ["alice", "bob"], single_pc)

    sent = alice.request("publish_data", size=60000, seed=7, reliable=True, topic="big", timeout=20)
    assert sent["size"] == 60000, sent
    ev = bob.wait_for("data_received", topic="big", timeout=20)
    assert ev["participant"] == "alice" and ev["kind"] == "reliable", ev
    assert ev["size"] == 60000, f"60,000-byte packet arrived with {ev['size']} bytes: {ev}"
    assert ev["sha256"] == sent["sha256"], f"60,000-byte packet arrived corrupted: {ev}"

    # a second, different large packet in the other direction (a stale or repeated buffer fails)
    sent2 = bob.request("publish_data", size=59999, seed=8, reliable=True, topic="big2", timeout=20)
    ev2 = alice.wait_for("data_received", topic="big2", timeout=20)
    assert (ev2["size"], ev2["sha256"]) == (59999, sent2["sha256"]) and sent2["sha256"] != sent["sha256"], ev2

    # 40 reliable packets, sent one after the other: all arrive, once, in order
    n = 40
    for i in range(n):
        alice.request("publish_data", text=f"seq {i:03d}", reliable=True, topic="burst", timeout=10)
    bob.wait_for("data_received", text=f"seq {n - 1:03d}", timeout=15)
    got = [e["text"] for e in bob.find("data_received", topic="burst")]
    assert got == [f"seq {i:03d}" for i in range(n)], f"reliable burst arrived as {got}"
