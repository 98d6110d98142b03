"""Helpers for the livekit-cli media tests: clips made with ffmpeg, livekit-cli processes in the
media namespace (their `--json` event lines read like an SDK client's), ffprobe, and a pitch
check of decoded audio.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import lkhelpers
from mediahelpers import API_KEY, API_SECRET, HTTP_URL, ClientProc, MediaEnv

TONE_HZ = 440
CLIP_W, CLIP_H = 320, 240
CLIP_COLOR = [200, 60, 90]
CLIP_SECONDS = 4


@dataclass
class Clips:
    ogg: Path
    ivf: Path


def ffmpeg_missing() -> Optional[str]:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test installs the ffmpeg package)"
    return None


def _ffmpeg(args: List[str]) -> None:
    cp = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {cp.stderr[-2000:]}")


def make_clips(dir: Path) -> Clips:
    ogg = dir / "tone.ogg"
    ivf = dir / "clip.ivf"
    _ffmpeg(
        [
            "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=48000:duration={CLIP_SECONDS},volume=3",
            "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", str(ogg),
        ]
    )
    r, g, b = CLIP_COLOR
    rate = f"rate=20:duration={CLIP_SECONDS}"
    _ffmpeg(
        [
            "-f", "lavfi", "-i", f"color=c=0x{r:02x}{g:02x}{b:02x}:size={CLIP_W}x{CLIP_H}:{rate}",
            "-f", "lavfi", "-i", f"color=c=white:size={CLIP_W}x24:{rate}",
            "-filter_complex", "[0][1]overlay=x=0:y='mod(t*120,200)':shortest=1",
            "-c:v", "libvpx", "-b:v", "600k", "-g", "20", "-pix_fmt", "yuv420p", str(ivf),
        ]
    )
    return Clips(ogg=ogg, ivf=ivf)


def make_video_clip(dir: Path, codec: str) -> Path:
    """A 320x240 IVF clip of the test colour with a moving bar, in `vp9` or `av1`."""
    r, g, b = CLIP_COLOR
    rate = f"rate=20:duration={CLIP_SECONDS}"
    enc = {
        "vp9": ["-c:v", "libvpx-vp9", "-b:v", "600k", "-deadline", "realtime", "-cpu-used", "8"],
        "av1": ["-c:v", "libaom-av1", "-b:v", "400k", "-cpu-used", "8", "-usage", "realtime"],
    }[codec]
    out = dir / f"clip-{codec}.ivf"
    _ffmpeg(
        [
            "-f", "lavfi", "-i", f"color=c=0x{r:02x}{g:02x}{b:02x}:size={CLIP_W}x{CLIP_H}:{rate}",
            "-f", "lavfi", "-i", f"color=c=white:size={CLIP_W}x24:{rate}",
            "-filter_complex", "[0][1]overlay=x=0:y='mod(t*120,200)':shortest=1",
            *enc, "-g", "20", "-pix_fmt", "yuv420p", str(out),
        ]
    )
    return out


def cli_argv(media: MediaEnv, *args: str) -> List[str]:
    return media.ns.argv([lkhelpers.CLI_BIN, "--url", HTTP_URL, "--api-key", API_KEY, "--api-secret", API_SECRET, *args])


def run_cli(media: MediaEnv, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A livekit-cli command run to completion inside the namespace."""
    return subprocess.run(cli_argv(media, *args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def spawn_cli(media: MediaEnv, label: str, *args: str) -> ClientProc:
    """A long-running livekit-cli (`--json`: one event object per line) inside the namespace."""
    return media._spawn(f"cli:{label}", cli_argv(media, "--json", *args))


def wait_exit(proc: ClientProc, timeout: float) -> int:
    try:
        return proc.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"[{proc.label}] did not exit within {timeout}s\n{proc.describe()}")


def ffprobe(path: Path) -> Dict[str, Any]:
    cp = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, f"ffprobe {path} failed: {cp.stderr}"
    info = json.loads(cp.stdout)
    assert info.get("streams"), f"ffprobe found no stream in {path}: {info}"
    return info


def decode_errors(path: Path) -> str:
    """What the decoder reports while decoding every frame of the file (empty when clean).

    ffprobe decodes (`-count_frames`) without muxing the frames anywhere, so the recording's
    own timestamps are all that matter; the frame intervals of a real publisher vary with its
    capture timing, which a constant-rate output of `ffmpeg -f null` would complain about.
    """
    cp = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return (cp.stderr if cp.returncode == 0 else f"exit {cp.returncode}: {cp.stderr}").strip()


def decoded_tone(path: Path) -> Dict[str, Any]:
    """Decodes an audio file to 48 kHz mono and finds its main frequency and loudness."""
    cp = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
        timeout=120,
    )
    assert cp.returncode == 0, f"decoding {path} failed: {cp.stderr[-2000:]!r}"
    x = np.frombuffer(cp.stdout, dtype=np.int16).astype(np.float64)
    # Skip the first half second (decoder start-up, the publisher's first packets).
    x = x[24000:]
    if len(x) < 4800:
        return {"freq": None, "rms": 0.0, "samples": int(len(x))}
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:])) + 1
    return {
        "freq": round(k * 48000 / len(x), 1),
        "rms": round(float(np.sqrt(np.mean(x**2))), 1),
        "samples": int(len(x)),
    }
