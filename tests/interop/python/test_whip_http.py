"""WHIP (/whip/v1) and WHEP (/whep/v1) over plain HTTP: the statuses the drafts name for bad
input, CORS preflight, the caps on sessions and trickled candidates, the connect timeout, and
that refused requests leave nothing behind (no room, no participant) while good sessions go on.

Offers here are synthetic (valid SDP with made-up ICE credentials and fingerprint): these
tests run on 127.0.0.1 (ports 18310/18311), where nothing answers ICE, so the sessions never
carry media. Media through WHIP/WHEP is proven by tests/interop/browser/whip.test.mjs."""

from __future__ import annotations

import http.client
import time
from typing import Dict, Optional, Tuple

import pytest

import lkhelpers
from lkhelpers import API_KEY, API_SECRET, api_token, run, unique

TCP_PORT, UDP_PORT = 18310, 18311  # and 18312/18313 for the server with STUN servers
FP = "sha-256 11:17:5E:9E:C8:A8:D7:60:78:46:72:FD:EB:C7:A5:A1:ED:4B:62:44:56:58:22:D8:32:8D:7B:ED:BE:93:D0:44"


def offer(direction: str = "sendonly", video_rids: Tuple[str, ...] = ()) -> str:
    s = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
    )
    common = (
        "c=IN IP4 0.0.0.0\r\na=ice-ufrag:cliU\r\na=ice-pwd:clientpasswordclientpass\r\n"
        f"a=fingerprint:{FP}\r\na=setup:actpass\r\n"
    )
    s += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + common + f"a=mid:0\r\na={direction}\r\na=msid:s mic\r\n"
    s += "a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    if direction == "sendonly":
        s += "a=ssrc:1000 cname:c\r\n"
    s += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + common + f"a=mid:1\r\na={direction}\r\na=msid:s cam\r\n"
    s += "a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\n"
    s += "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
    for r in video_rids:
        s += f"a=rid:{r} send\r\n"
    if video_rids:
        s += "a=simulcast:send " + ";".join(video_rids) + "\r\n"
    return s


def token(identity: str, room: str, **grants) -> str:
    video = {"roomJoin": True, "room": room, **grants}
    return api_token(video, identity=identity)


class Reply:
    def __init__(self, status: int, headers: Dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers}, {self.body[:300]!r})"


def request(
    method: str,
    path: str,
    body: Optional[str] = None,
    tok: Optional[str] = None,
    ctype: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
) -> Reply:
    h = dict(headers or {})
    if tok:
        h["Authorization"] = f"Bearer {tok}"
    if ctype:
        h["Content-Type"] = ctype
    c = http.client.HTTPConnection("127.0.0.1", TCP_PORT, timeout=20)
    try:
        c.request(method, path, body=body.encode() if body is not None else None, headers=h)
        r = c.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace"))
    finally:
        c.close()


def whip(tok: str, sdp: Optional[str] = None) -> Reply:
    return request("POST", "/whip/v1", sdp if sdp is not None else offer(), tok, "application/sdp")


def participants(room: str):
    from livekit import api

    async def go():
        lk = api.LiveKitAPI(f"http://127.0.0.1:{TCP_PORT}", API_KEY, API_SECRET)
        try:
            return (await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants
        except api.TwirpError:
            return []
        finally:
            await lk.aclose()

    return run(go())


def rooms():
    from livekit import api

    async def go():
        lk = api.LiveKitAPI(f"http://127.0.0.1:{TCP_PORT}", API_KEY, API_SECRET)
        try:
            return [r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms]
        finally:
            await lk.aclose()

    return run(go())


@pytest.fixture(scope="module")
def server():
    # The ports of this suite's block, not random ones.
    saved = (lkhelpers.free_tcp_port, lkhelpers.free_udp_port)
    lkhelpers.free_tcp_port = lambda: TCP_PORT
    lkhelpers.free_udp_port = lambda avoid=(): UDP_PORT
    try:
        srv = lkhelpers.start_server(["--keys", f"{API_KEY}: {API_SECRET}"])
    except lkhelpers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        lkhelpers.free_tcp_port, lkhelpers.free_udp_port = saved
    try:
        yield srv
    finally:
        srv.cleanup()


def test_preflight_allows_other_origins(server):
    r = request(
        "OPTIONS",
        "/whip/v1",
        headers={
            "Origin": "http://page.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status == 204, r
    assert r.headers["access-control-allow-origin"] == "*"
    assert "PATCH" in r.headers["access-control-allow-methods"] and "DELETE" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    # a wildcard would not cover Authorization: it must be named
    for h in ("authorization", "content-type", "if-match"):
        assert h in allowed, r
    assert r.headers["accept-post"] == "application/sdp"
    for h in ("location", "etag", "link"):
        assert h in r.headers["access-control-expose-headers"].lower(), r
    r = request("OPTIONS", "/whep/v1/sessions/PA_x")
    assert r.status == 204 and r.headers["accept-patch"] == "application/trickle-ice-sdpfrag", r


def test_whip_refusals_name_the_drafts_statuses_and_leave_nothing(server):
    room = unique("whip-bad")
    tok = token("pub", room)
    cases = [
        ("wrong content type", request("POST", "/whip/v1", offer(), tok, "text/plain"), 415, "application/sdp"),
        ("no content type", request("POST", "/whip/v1", offer(), tok), 415, "application/sdp"),
        ("no token", whip("", offer()), 401, "no access token"),
        ("bad signature", whip(token("pub", room).rsplit(".", 1)[0] + ".AAAA"), 401, ""),
        ("wrong secret", whip(api_token({"roomJoin": True, "room": room}, identity="pub", secret="other-secret-xx")), 401, ""),
        ("no roomJoin", whip(api_token({"room": room}, identity="pub")), 401, "roomJoin"),
        ("malformed SDP", whip(tok, "hello, this is not SDP"), 400, "malformed SDP"),
        ("empty body", whip(tok, ""), 400, "malformed SDP"),
        ("nothing sent", whip(tok, offer("recvonly")), 400, "sends no audio or video"),
        ("may not publish", whip(token("pub", room, canPublish=False)), 403, "publishing"),
        ("too large", whip(tok, offer() + "a=x-pad:" + "x" * 70000 + "\r\n"), 413, "too large"),
    ]
    for what, r, status, text in cases:
        assert r.status == status, f"{what}: {r}"
        assert text in r.body, f"{what}: {r}"
        assert r.headers.get("access-control-allow-origin") == "*", f"{what}: refusals are readable cross-origin: {r}"
    assert room not in rooms(), "a refused WHIP request must not create its room"
    # a microphone-only token cannot publish the offer's video: refused, nothing kept
    r = whip(token("pub", room, canPublishSources=["microphone"]))
    assert r.status == 403, r
    assert participants(room) == [], "a refused publisher must not stay in the room"


def test_a_whip_session_lives_and_its_patch_and_delete_are_checked(server):
    room = unique("whip-ok")
    tok = token("pub", room)
    r = whip(tok)
    assert r.status == 201, r
    assert r.headers["content-type"] == "application/sdp"
    loc = r.headers["location"]
    assert loc.startswith("/whip/v1/PA_"), r
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, r
    assert f"a=ice-ufrag:{etag.strip(chr(34))}" in r.body, "the ETag is the server's ICE ufrag"
    assert "a=recvonly" in r.body and "a=candidate:" in r.body, r.body
    [p] = participants(room)
    assert p.identity == "pub" and p.sid == loc.rsplit("/", 1)[1]
    assert p.kind == 0, "a WHIP publisher is a STANDARD participant unless it says it is an ingress"
    assert sorted(t.name for t in p.tracks) == ["cam", "mic"], p
    frag = "a=candidate:1 1 udp 2130706431 10.1.2.3 5000 typ host\r\n"
    patch_ct = "application/trickle-ice-sdpfrag"

    def patch(body, if_match: Optional[str] = etag, t: Optional[str] = tok, ct: Optional[str] = patch_ct, path=loc):
        headers = {"If-Match": if_match} if if_match is not None else {}
        return request("PATCH", path, body, t, ct, headers)

    assert patch(frag, ct="text/plain").status == 415
    assert patch(frag, if_match=None).status == 428
    assert patch(frag, if_match='"not-the-etag"').status == 412
    assert patch(frag, t=None).status == 401
    assert patch(frag, t=token("someone-else", room)).status == 403
    assert patch(frag, t=token("pub", "another-room")).status == 403
    assert patch("this is not a fragment").status == 400
    assert patch("a=candidate:garbage\r\n").status == 400
    assert patch(frag, path="/whip/v1/PA_nosuchsession").status == 404
    assert patch(frag, path=loc.replace("/whip/v1/", "/whep/v1/sessions/")).status == 404
    assert patch("a=ice-ufrag:x\r\n", if_match="*").status == 400, "an ICE restart needs ufrag and pwd"
    assert patch(frag).status == 204
    # trickled candidates are capped per session
    many = "".join(f"a=candidate:{i} 1 udp 1 10.1.2.{i % 250} {5000 + i} typ host\r\n" for i in range(63))
    assert patch(many).status == 204
    r = patch(frag + frag)
    assert r.status == 429 and "candidates" in r.body, r
    # ICE restart: new credentials, new ETag; trickle then needs the new one
    r = patch("a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpasswordnn\r\n", if_match="*")
    assert r.status == 200 and r.headers["content-type"] == "application/trickle-ice-sdpfrag", r
    new_etag = r.headers["etag"]
    assert new_etag != etag and f"a=ice-ufrag:{new_etag.strip(chr(34))}" in r.body, r
    assert "a=candidate:" in r.body and "a=mid:0" in r.body, r
    assert patch(frag).status == 412
    assert patch(frag, if_match=new_etag).status == 204
    # DELETE: someone else's token may not; the owner's ends it; then it is gone
    assert request("DELETE", loc, tok=token("pub", "another-room")).status == 403
    assert request("DELETE", "/whip/v1/PA_nosuchsession", tok=tok).status == 404
    assert request("DELETE", loc, tok=tok).status == 200
    assert lkhelpers.wait_until(lambda: participants(room) == [], 5), "DELETE removes the participant"
    assert request("DELETE", loc, tok=tok).status == 404
    assert patch(frag, if_match=new_etag).status == 404


def test_whep_refusals(server):
    room = unique("whep-bad")
    pub = whip(token("pub", room))
    assert pub.status == 201, pub
    [p] = participants(room)
    video = next(t.sid for t in p.tracks if t.name == "cam")
    recv = offer("recvonly")
    viewer = token("viewer", room)

    def whep(path: str, t: Optional[str] = viewer, sdp: str = recv, ct: str = "application/sdp") -> Reply:
        return request("POST", path, sdp, t, ct)

    cases = [
        ("wrong content type", whep(f"/whep/v1/{room}/pub", ct="application/json"), 415),
        ("no token", whep(f"/whep/v1/{room}/pub", t=None), 401),
        ("token for another room", whep(f"/whep/v1/{room}/pub", t=token("viewer", "another-room")), 403),
        ("may not subscribe", whep(f"/whep/v1/{room}/pub", t=token("viewer", room, canSubscribe=False)), 403),
        ("unknown participant", whep(f"/whep/v1/{room}/nobody"), 404),
        ("unknown track", whep(f"/whep/v1/{room}/pub/TR_nosuchtrack"), 404),
        ("malformed SDP", whep(f"/whep/v1/{room}/pub", sdp="v=0\r\nnonsense"), 400),
        ("an offer that sends", whep(f"/whep/v1/{room}/pub", sdp=offer()), 400),
        ("unknown quality", whep(f"/whep/v1/{room}/pub?quality=ultra"), 400),
        ("bad path", whep(f"/whep/v1/{room}"), 404),
    ]
    for what, r, status in cases:
        assert r.status == status, f"{what}: {r}"
    assert [x.identity for x in participants(room)] == ["pub"], "refused players leave nothing in the room"
    # a good one: one track, low layer
    r = whep(f"/whep/v1/{room}/pub/{video}?quality=low")
    assert r.status == 201, r
    assert r.headers["location"].startswith("/whep/v1/sessions/PA_"), r
    assert "a=sendonly" in r.body, r.body
    assert sorted(x.identity for x in participants(room)) == ["pub", "viewer"]
    assert request("DELETE", r.headers["location"], tok=viewer).status == 200
    assert lkhelpers.wait_until(lambda: [x.identity for x in participants(room)] == ["pub"], 5)
    # the publisher was never disturbed
    r = request("GET", "/")
    assert r.status == 200 and r.body == "OK"
    assert request("DELETE", pub.headers["location"], tok=token("pub", room)).status == 200


def test_sessions_are_capped_per_room_and_per_node(server):
    rooms_used = []
    created = []

    def open_in(room: str, n: int) -> Reply:
        r = whip(token(f"p{n}", room))
        if r.status == 201:
            created.append((r.headers["location"], token(f"p{n}", room)))
        return r

    try:
        room = unique("whip-cap")
        rooms_used.append(room)
        for i in range(64):
            assert open_in(room, i).status == 201, i
        r = open_in(room, 64)
        assert r.status == 503 and "maximum of 64" in r.body, r
        assert len(participants(room)) == 64
        # the node holds at most 256: three more rooms of 64 fill it
        for k in range(3):
            room_k = unique("whip-cap")
            rooms_used.append(room_k)
            for i in range(64):
                assert open_in(room_k, i).status == 201, (k, i)
        r = open_in(unique("whip-cap"), 0)
        assert r.status == 503 and "maximum of 256" in r.body, r
        # one ends: one more fits
        loc, tok = created.pop()
        assert request("DELETE", loc, tok=tok).status == 200
        assert lkhelpers.wait_until(lambda: open_in(unique("whip-cap"), 1).status == 201, 5)
    finally:
        for loc, tok in created:
            request("DELETE", loc, tok=tok)


def test_a_session_whose_media_never_connects_is_ended(server):
    room = unique("whip-idle")
    tok = token("pub", room)
    r = whip(tok)
    assert r.status == 201, r
    loc = r.headers["location"]
    t0 = time.monotonic()
    assert len(participants(room)) == 1
    # nothing answers ICE here: the session ends after the 30 s connect (consent) timeout
    gone = lkhelpers.wait_until(lambda: participants(room) == [], 45, 0.5)
    waited = time.monotonic() - t0
    assert gone, "a session without media must be ended"
    assert 25 <= waited <= 45, f"ended after {waited:.1f} s, expected about 30 s"
    r = request("PATCH", loc, "a=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\n", tok, "application/trickle-ice-sdpfrag", {"If-Match": "*"})
    assert r.status == 404, r


def test_an_ingress_header_makes_an_ingress_participant(server):
    room = unique("whip-ingress")
    tok = token("ingest", room)
    r = request("POST", "/whip/v1", offer(), tok, "application/sdp", {"X-LiveKit-Ingress": "true"})
    assert r.status == 201, r
    [p] = participants(room)
    from livekit import api

    assert p.kind == api.ParticipantInfo.Kind.INGRESS, p
    assert request("DELETE", r.headers["location"], tok=tok).status == 200


def test_ice_servers_are_offered_as_link_headers():
    """The ICE servers a join response lists become `Link` headers on the 201, as RFC 9725
    writes them: `rtc.turn_servers` with their credentials, then `rtc.stun_servers` (its own
    server)."""
    saved = (lkhelpers.free_tcp_port, lkhelpers.free_udp_port)
    lkhelpers.free_tcp_port = lambda: TCP_PORT + 2
    lkhelpers.free_udp_port = lambda avoid=(): UDP_PORT + 2
    config = (
        "rtc:\n"
        '  stun_servers: ["stun.example.net:3478", "stun:198.51.100.7:19302"]\n'
        "  turn_servers:\n"
        '    - {host: turn.example.net, port: 3478, protocol: udp, username: "u 1", credential: \'p"w\'}\n'
        "    - {host: \"2001:db8::7\", port: 443, protocol: tls, username: u2, credential: c2}\n"
    )
    try:
        srv = lkhelpers.start_server(["--keys", f"{API_KEY}: {API_SECRET}", "--config-body", config])
    except lkhelpers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    finally:
        lkhelpers.free_tcp_port, lkhelpers.free_udp_port = saved
    try:
        room = unique("whip-link")
        tok = token("pub", room)
        c = http.client.HTTPConnection("127.0.0.1", TCP_PORT + 2, timeout=20)
        c.request("POST", "/whip/v1", body=offer().encode(), headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/sdp"})
        r = c.getresponse()
        links = r.headers.get_all("Link") or []
        r.read()
        c.close()
        assert r.status == 201
        assert links == [
            '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u 1"; credential="p\\"w"; credential-type="password"',
            '<turns:[2001:db8::7]:443?transport=tcp>; rel="ice-server"; username="u2"; credential="c2"; credential-type="password"',
            '<stun:stun.example.net:3478>; rel="ice-server"',
            '<stun:198.51.100.7:19302>; rel="ice-server"',
        ], links
        unsupported = [
            l for l in srv.log_text().splitlines() if "not yet supported" in l and ("stun_servers" in l or "turn_servers" in l)
        ]
        assert unsupported == [], "rtc.stun_servers and rtc.turn_servers are acted on, not logged as unsupported"
    finally:
        srv.cleanup()
