#!/usr/bin/env python3
"""Writes fuzz seeds from captures of real LiveKit clients.

    python3 fuzz/seeds/from_captures.py CAPTURE_DIR

CAPTURE_DIR holds `.jsonl` captures (one JSON object per HTTP request or WebSocket frame, binary
payloads as hex or base64). Seeds go to fuzz/seeds/<target>/, named by content hash; the layout
of each input (its first byte) is the one the target documents.
"""
import base64
import glob
import hashlib
import json
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TWIRP_METHODS = ["CreateRoom", "ListRooms", "DeleteRoom", "ListParticipants", "GetParticipant",
                 "MutePublishedTrack", "UpdateParticipant", "UpdateSubscriptions", "SendData",
                 "UpdateRoomMetadata"]
# twirp target: method index by request type (GetParticipant and RemoveParticipant share one).
TWIRP_INDEX = {"CreateRoom": 0, "ListRooms": 1, "DeleteRoom": 2, "ListParticipants": 3,
               "GetParticipant": 4, "RemoveParticipant": 4, "MutePublishedTrack": 5,
               "UpdateParticipant": 6, "UpdateSubscriptions": 7, "SendData": 8,
               "UpdateRoomMetadata": 9}
MAX_SEEDS = 12


def write(target, data):
    if target.startswith("sdp") and len(data) < 64:
        return
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if len(os.listdir(d)) >= MAX_SEEDS:
        return
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sdp_texts(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "sdp" and isinstance(v, str):
                yield v
            else:
                yield from sdp_texts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from sdp_texts(v)


def main(capture_dir):
    for path in sorted(glob.glob(os.path.join(capture_dir, "*.jsonl"))):
        for line in open(path):
            e = json.loads(line)
            raw_path = e.get("raw_path", "")
            if e.get("ev") == "ws_upgrade" and "?" in raw_path:
                query = raw_path.split("?", 1)[1]
                params = urllib.parse.parse_qs(query)
                for tok in params.get("access_token", []):
                    write("jwt", b"\x00" + tok.encode())
                for jr in params.get("join_request", []):
                    write("join_request", b"\x00" + jr.encode())
                    raw = base64.urlsafe_b64decode(jr + "=" * (-len(jr) % 4))
                    # WrappedJoinRequest: field 2 (bytes) holds the (gzip) JoinRequest.
                    gz = wrapped_body(raw)
                    write("join_request", b"\x02" + gz)
                    inner = gunzip(gz)
                    write("join_request", b"\x01" + inner)
                    sdp = embedded_sdp(inner)
                    if sdp:
                        write("sdp", sdp)
                        write("sdp_answer", sdp)
                rest = "&".join(p for p in query.split("&") if not p.startswith("access_token="))
                write("join_request", b"\x03" + rest.encode())
            if e.get("ev") == "ws_frame":
                if e.get("kind") == "binary" and "hex" in e:
                    body = bytes.fromhex(e["hex"])
                    if len(body) == int(e.get("len", len(body))):
                        write("signal_request", b"\x00" + body)
                elif e.get("kind") == "text" and "text" in e:
                    write("signal_request", b"\x01" + e["text"].encode())
                if isinstance(e.get("as_SignalRequest"), dict):
                    write("signal_request", b"\x01" + json.dumps(e["as_SignalRequest"]).encode())
                for sdp in sdp_texts(e.get("as_SignalRequest", {})):
                    write("sdp", sdp.encode())
                    write("sdp_answer", sdp.encode())
            if e.get("ev") == "http" and raw_path.startswith("/twirp/"):
                method = raw_path.rsplit("/", 1)[1]
                if method not in TWIRP_INDEX:
                    continue
                sel = TWIRP_INDEX[method] << 1
                if "body_hex" in e:
                    write("twirp", bytes([sel]) + bytes.fromhex(e["body_hex"]))
                elif "body_text" in e:
                    write("twirp", bytes([sel | 1]) + e["body_text"].encode())
                auth = e.get("headers", {}).get("Authorization", "")
                if auth.startswith("Bearer "):
                    write("jwt", b"\x00" + auth[7:].encode())
                    head, payload, _ = auth[7:].split(".")
                    unb = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
                    write("jwt", b"\x01" + unb(head) + b"\xff" + unb(payload))


def embedded_sdp(msg):
    """An SDP text inside protobuf bytes: the string field that starts with `v=0`."""
    at = msg.find(b"v=0\r\n")
    if at < 2:
        return None
    # The length varint ends right before the string; it is at most 3 bytes for these.
    for width in (3, 2, 1):
        var = msg[at - width:at]
        n = 0
        for i, b in enumerate(var):
            n |= (b & 0x7F) << (7 * i)
        if all(b & 0x80 for b in var[:-1]) and not var[-1] & 0x80 and at + n <= len(msg):
            return msg[at:at + n]
    return None


def gunzip(data):
    import gzip
    try:
        return gzip.decompress(data)
    except OSError:
        return data


def wrapped_body(raw):
    """The (gzip) JoinRequest bytes inside a WrappedJoinRequest."""
    i = 0
    inner = b""
    while i < len(raw):
        key = raw[i]
        i += 1
        if key & 7 == 0:
            while raw[i] & 0x80:
                i += 1
            i += 1
        elif key & 7 == 2:
            n, shift = 0, 0
            while True:
                b = raw[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            inner = raw[i:i + n]
            i += n
        else:
            break
    return inner


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fixtures/client-captures")
