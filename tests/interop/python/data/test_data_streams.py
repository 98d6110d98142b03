"""Data streams between real Python SDK clients: text streams (`send_text`, `stream_text`) and
byte streams (`stream_bytes`, `send_file`, `send_bytes`), read by handlers registered with
`register_text_stream_handler` / `register_byte_stream_handler`. Streams are sequences of
stream_header / stream_chunk / stream_trailer DataPackets on the reliable channel, so a 60 KB
stream needs many packets forwarded complete and in order; destination identities apply to
every packet of the stream.

Negative checks use a barrier: a later broadcast stream from the same sender. The SDK opens a
reader (the `stream_opened` event) when a header arrives, in channel order, so a participant that
has opened the barrier stream would already have opened the earlier one.
"""

from __future__ import annotations

import lkhelpers
from datahelpers import assert_none, join, register


def _opened_barrier(sender, receivers, tag: str) -> None:
    info = sender.request("send_text", text=f"barrier {tag}", topic="chat", timeout=15)
    for r in receivers:
        r.wait_for("stream_opened", stream_id=info["stream_id"], timeout=15)


def test_text_streams(media, single_pc):
    room = lkhelpers.unique("text")
    alice, bob, carol = join(media, room, ["alice", "bob", "carol"], single_pc)
    for c in (bob, carol):
        register(c, "register_text_stream", topic="chat")
        register(c, "register_text_stream", topic="other")

    # a short message to everyone, with attributes
    sent = alice.request("send_text", text="hello, text stream", topic="chat", attributes={"lang": "en"}, timeout=15)
    for rx in (bob, carol):
        ev = rx.wait_for("text_stream_received", stream_id=sent["stream_id"], timeout=15)
        assert ev["participant"] == "alice", ev
        assert ev["topic"] == "chat", ev
        assert ev["text"] == "hello, text stream", ev
        assert ev["attributes"].get("lang") == "en", ev

    # 60 KB through send_text, only to bob
    big = alice.request("send_text", size=60000, seed=1, topic="chat", destination_identities=["bob"], timeout=30)
    assert big["size"] == 60000, big
    ev = bob.wait_for("text_stream_received", stream_id=big["stream_id"], timeout=30)
    assert ev["participant"] == "alice", ev
    assert (ev["size"], ev["sha256"]) == (big["size"], big["sha256"]), f"60 KB text stream arrived damaged: {ev} vs {big}"

    # 60 KB written in 7,000-character pieces through a stream writer (bob -> everyone, topic "other")
    register(alice, "register_text_stream", topic="other")
    streamed = bob.request("stream_text", size=60000, seed=2, chunk=7000, topic="other", timeout=30)
    for rx in (alice, carol):
        ev = rx.wait_for("text_stream_received", stream_id=streamed["stream_id"], timeout=30)
        assert ev["participant"] == "bob" and ev["topic"] == "other", ev
        assert (ev["size"], ev["sha256"]) == (streamed["size"], streamed["sha256"]), f"streamed text damaged: {ev} vs {streamed}"
        assert ev["chunks"] >= 2, f"a 60 KB stream written in pieces came as {ev['chunks']} chunk(s): {ev}"

    # carol never opened the stream addressed to bob alone
    _opened_barrier(alice, [bob, carol], "text")
    assert_none(carol, "stream_opened", stream_id=big["stream_id"])
    assert_none(alice, "stream_opened", participant="alice")
    assert_none(bob, "stream_opened", participant="bob")
    assert not [e for e in (bob.find("stream_error") + carol.find("stream_error"))], bob.describe() + carol.describe()


def test_byte_streams(media, single_pc):
    room = lkhelpers.unique("bytes")
    alice, bob, carol = join(media, room, ["alice", "bob", "carol"], single_pc)
    for c in (bob, carol):
        register(c, "register_byte_stream", topic="files")
        register(c, "register_text_stream", topic="chat")

    # stream_bytes: 60,000 bytes written in 16,000-byte pieces, to everyone
    sent = alice.request("stream_bytes", size=60000, seed=5, chunk=16000, name="blob.bin", topic="files", timeout=30)
    for rx in (bob, carol):
        ev = rx.wait_for("byte_stream_received", stream_id=sent["stream_id"], timeout=30)
        assert ev["participant"] == "alice" and ev["topic"] == "files", ev
        assert ev["name"] == "blob.bin" and ev["mime_type"] == "application/octet-stream", ev
        assert (ev["size"], ev["sha256"]) == (60000, sent["sha256"]), f"byte stream arrived damaged: {ev} vs {sent}"

    # send_file: a 60 KB file, only to carol
    f = alice.request("send_file", size=61440, seed=6, name="photo.dat", topic="files", destination_identities=["carol"], timeout=30)
    ev = carol.wait_for("byte_stream_received", stream_id=f["stream_id"], timeout=30)
    assert ev["participant"] == "alice" and ev["name"] == "photo.dat", ev
    assert (ev["size"], ev["sha256"]) == (61440, f["sha256"]), f"file arrived damaged: {ev} vs {f}"

    # send_bytes: a small in-memory buffer, bob -> carol
    small = bob.request("send_bytes", text="tiny bytes", name="tiny.txt", mime_type="text/plain", topic="files", timeout=15)
    ev = carol.wait_for("byte_stream_received", stream_id=small["stream_id"], timeout=15)
    assert ev["participant"] == "bob" and ev["text"] == "tiny bytes" and ev["mime_type"] == "text/plain", ev
    assert (ev["size"], ev["sha256"]) == (small["size"], small["sha256"]), ev

    # bob never opened the file addressed to carol alone
    _opened_barrier(alice, [bob, carol], "bytes")
    assert_none(bob, "stream_opened", stream_id=f["stream_id"])
    assert not bob.find("stream_error") and not carol.find("stream_error"), bob.describe() + carol.describe()
    # each stream arrived once
    assert len(carol.find("byte_stream_received", stream_id=sent["stream_id"])) == 1, carol.describe()

