"""A raw TURN client (RFC 8656) for the bad-input tests: allocates with the credentials it is
given, then asks for a permission and a channel to a peer, and prints the response codes as
one JSON line: {"allocate": 200|401|..., "permission": ..., "channel_bind": ...}.

    turn_probe.py SERVER:PORT API_KEY API_SECRET EXPIRY PASSWORD_OR_EMPTY PEER:PORT
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys

COOKIE = 0x2112A442
ALLOCATE, CREATE_PERMISSION, CHANNEL_BIND = 0x003, 0x008, 0x009
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, REALM, NONCE = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015
XOR_PEER_ADDRESS, REQUESTED_TRANSPORT, CHANNEL_NUMBER = 0x0012, 0x0019, 0x000C


def attr(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def xor_addr(hostport: str) -> bytes:
    host, port = hostport.rsplit(":", 1)
    ip = socket.inet_aton(host)
    xport = int(port) ^ (COOKIE >> 16)
    xip = bytes(a ^ b for a, b in zip(ip, struct.pack("!I", COOKIE)))
    return struct.pack("!BBH", 0, 1, xport) + xip


def message(method: int, attrs: bytes, key: bytes | None) -> bytes:
    tid = os.urandom(12)
    if key is not None:
        # MESSAGE-INTEGRITY covers the header with a length that already counts itself.
        header = struct.pack("!HHI", method, len(attrs) + 24, COOKIE) + tid
        mac = hmac.new(key, header + attrs, hashlib.sha1).digest()
        attrs += attr(MESSAGE_INTEGRITY, mac)
    return struct.pack("!HHI", method, len(attrs), COOKIE) + tid + attrs


def parse(data: bytes) -> dict:
    _, length = struct.unpack("!HH", data[:4])
    out = {"attrs": {}}
    at = 20
    while at + 4 <= 20 + length:
        t, n = struct.unpack("!HH", data[at : at + 4])
        out["attrs"].setdefault(t, data[at + 4 : at + 4 + n])
        at += 4 + n + (4 - n % 4) % 4
    return out


def code(resp: dict) -> int:
    """200 for a success response, else the ERROR-CODE (class and number)."""
    e = resp["attrs"].get(ERROR_CODE)
    return e[2] * 100 + e[3] if e else 200


def main() -> int:
    server, api_key, secret, expiry, password, peer = sys.argv[1:7]
    host, port = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    sock.connect((host, int(port)))

    def ask(msg: bytes) -> dict:
        sock.send(msg)
        return parse(sock.recv(4096))

    username = f"{expiry}:{api_key}:PA_probe"
    if not password:
        password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha256).digest()).decode()
    transport = attr(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
    first = ask(message(ALLOCATE, transport, None))
    realm, nonce = first["attrs"][REALM], first["attrs"][NONCE]
    key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
    auth = attr(USERNAME, username.encode()) + attr(REALM, realm) + attr(NONCE, nonce)
    result = {"allocate": code(ask(message(ALLOCATE, transport + auth, key)))}
    if result["allocate"] == 200:
        result["permission"] = code(ask(message(CREATE_PERMISSION, attr(XOR_PEER_ADDRESS, xor_addr(peer)) + auth, key)))
        bind = attr(CHANNEL_NUMBER, struct.pack("!HH", 0x4000, 0)) + attr(XOR_PEER_ADDRESS, xor_addr(peer))
        result["channel_bind"] = code(ask(message(CHANNEL_BIND, bind + auth, key)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
