"""Steps the cluster tests share: two participants on two nodes publishing a tone and a camera
to each other, and the checks that media and data really cross between them."""

from __future__ import annotations

from typing import Dict, Tuple

from clusterhelpers import ClusterEnv, ClientProc
from mediahelpers import assert_tone, assert_video

# identity -> (tone Hz, camera colour)
MEDIA = {
    "alice": (440, [200, 60, 90]),
    "bob": (660, [40, 160, 220]),
    "carol": (550, [90, 200, 60]),
}


def join(cluster: ClusterEnv, identity: str, room: str, node: str, **kw) -> Tuple[ClientProc, Dict]:
    c = cluster.client(identity, room, node, **kw)
    ev = c.wait_for("connected", timeout=25)
    assert ev["sid"].startswith("PA_") and ev["room"] == room, ev
    return c, ev


def publish(c: ClientProc, identity: str, video: bool = True) -> Dict[str, Dict]:
    freq, color = MEDIA[identity]
    ids = {"audio": c.start("publish_audio", name=f"{identity}-tone", freq=freq)}
    if video:
        ids["video"] = c.start("publish_video", name=f"{identity}-cam", color=color, simulcast=True)
    out = {k: c.result(v, timeout=25) for k, v in ids.items()}
    for v in out.values():
        assert v["sid"].startswith("TR_"), out
    return out


def wait_subscribed(sub: ClientProc, pub_identity: str, tracks: Dict[str, Dict], after: int = 0) -> None:
    for kind, t in tracks.items():
        sub.wait_for("track_subscribed", participant=pub_identity, kind=kind, sid=t["sid"], timeout=25, after=after)


def check_audio(sub: ClientProc, pub_identity: str, what: str, seconds: float = 0.7, timeout: float = 15) -> Dict:
    res = sub.result(sub.start("analyze_audio", participant=pub_identity, seconds=seconds, timeout=timeout), timeout + 5)
    assert_tone(res, MEDIA[pub_identity][0], f"{what}: {sub.label} <- {pub_identity}")
    return res


def check_video(sub: ClientProc, pub_identity: str, what: str, frames: int = 30, timeout: float = 15) -> Dict:
    res = sub.result(sub.start("analyze_video", participant=pub_identity, frames=frames, timeout=timeout), timeout + 5)
    assert_video(res, MEDIA[pub_identity][1], f"{what}: {sub.label} <- {pub_identity}", min_frames=min(frames, 20))
    return res


def check_av_both_ways(x: ClientProc, xi: str, y: ClientProc, yi: str, what: str, video: bool = True) -> None:
    """Each side hears the other's tone (and sees its camera)."""
    ids = [
        (x, x.start("analyze_audio", participant=yi, seconds=0.7, timeout=15), "audio", yi),
        (y, y.start("analyze_audio", participant=xi, seconds=0.7, timeout=15), "audio", xi),
    ]
    if video:
        ids += [
            (x, x.start("analyze_video", participant=yi, frames=30, timeout=15), "video", yi),
            (y, y.start("analyze_video", participant=xi, frames=30, timeout=15), "video", xi),
        ]
    for c, cid, kind, who in ids:
        res = c.result(cid, timeout=25)
        if kind == "audio":
            assert_tone(res, MEDIA[who][0], f"{what}: {c.label} <- {who}")
        else:
            assert_video(res, MEDIA[who][1], f"{what}: {c.label} <- {who}")


def pair(cluster: ClusterEnv, room: str, node_x: str, node_y: str, video: bool = True, xi: str = "alice", yi: str = "bob"):
    """`xi` joins through node_x, `yi` through node_y; both publish and subscribe to each other."""
    x, _ = join(cluster, xi, room, node_x)
    y, _ = join(cluster, yi, room, node_y)
    tx = publish(x, xi, video)
    ty = publish(y, yi, video)
    wait_subscribed(y, xi, tx)
    wait_subscribed(x, yi, ty)
    return x, y, tx, ty
