"""Headset-safe H.264 for 360° video: sizes, frame rates and the level that carries them.

A headset's hardware decoder refuses streams whose level it does not support, and
x264 picks a level from the size only when it is not told; we compute the level from
ITU-T H.264 Table A-1 (frame size in macroblocks, macroblocks per second, bit rate) and
pass it explicitly, with ``mvrange=511`` (the vertical motion-vector range Quest's
decoder accepts at big sizes, REFERENCE §3).

Headset limits (Meta Quest, REFERENCE §3): mono 2:1 up to 5760×2880 at 30 fps or
4096×2048 at 60 fps; top-bottom stereo (1:1) up to 3840×3840 at 30 fps or 2048×2048 at
60 fps. Nothing above 60 fps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput


@dataclass(frozen=True)
class Level:
    """One H.264 level: max frame size and rate (macroblocks), max bit rate and buffer."""

    name: str
    max_fs: int  # macroblocks per frame
    max_mbps: int  # macroblocks per second
    max_br_kbps: int  # Baseline/Main; High profile allows 1.25× (Table A-1, cpbBrVclFactor)
    max_cpb_kbit: int


#: ITU-T H.264 (08/2021) Table A-1, levels 3 to 6.2.
LEVELS = (
    Level("3", 1620, 40500, 10000, 10000),
    Level("3.1", 3600, 108000, 14000, 14000),
    Level("3.2", 5120, 216000, 20000, 20000),
    Level("4", 8192, 245760, 20000, 25000),
    Level("4.1", 8192, 245760, 50000, 62500),
    Level("4.2", 8704, 522240, 50000, 62500),
    Level("5", 22080, 589824, 135000, 135000),
    Level("5.1", 36864, 983040, 240000, 240000),
    Level("5.2", 36864, 2073600, 240000, 240000),
    Level("6", 139264, 4177920, 240000, 240000),
    Level("6.1", 139264, 8355840, 480000, 480000),
    Level("6.2", 139264, 16711680, 800000, 800000),
)
HIGH_PROFILE_BR_FACTOR = 1.25
#: (max width, max height, max fps) a Quest-class headset decodes, per stereo layout.
HEADSET_LIMITS = {
    "mono": ((5760, 2880, 30.0), (4096, 2048, 60.0)),
    "top-bottom": ((3840, 3840, 30.0), (2048, 2048, 60.0)),
}
MAX_FPS = 60.0
SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
#: Bit rate we aim for at most (kbit/s): Quest plays 360° H.264 up to about 100 Mbit/s.
HEADSET_MAX_KBPS = 100_000


def parse_size(text: str) -> tuple[int, int]:
    """``"4096x2048"`` → (4096, 2048); :class:`BadInput` naming the text otherwise."""
    match = SIZE_RE.match(text.strip())
    if not match:
        raise BadInput(f"size {text!r} is not WIDTHxHEIGHT (e.g. 4096x2048)")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise BadInput(f"size {text!r} must be positive")
    return width, height


def h264_level(width: int, height: int, fps: float) -> Level:
    """The lowest H.264 level whose frame size, macroblock rate and line length fit."""
    mb_w, mb_h = math.ceil(width / 16), math.ceil(height / 16)
    frame_mbs = mb_w * mb_h
    for level in LEVELS:
        side_limit = math.sqrt(8 * level.max_fs)  # Annex A: each side ≤ sqrt(8·MaxFS) MBs
        if (
            frame_mbs <= level.max_fs
            and frame_mbs * fps <= level.max_mbps
            and mb_w <= side_limit
            and mb_h <= side_limit
        ):
            return level
    raise BadInput(
        f"size {width}x{height} at {fps:g} fps is beyond H.264 level 6.2; "
        "lower the size or frame rate"
    )


def check_fps(fps: float) -> float:
    """A frame rate players accept: positive and at most 60."""
    if not math.isfinite(fps) or fps <= 0:
        raise BadInput(f"frame rate {fps!r} must be a positive number")
    if fps > MAX_FPS:
        raise BadInput(f"frame rate {fps:g} fps is above the {MAX_FPS:g} fps headsets play")
    return float(fps)


def check_headset_video(width: int, height: int, fps: float, stereo: str = "mono") -> Level:
    """Refuse a size/frame rate a headset cannot decode; return the H.264 level to use.

    ``stereo="mono"`` needs 2:1, ``"top-bottom"`` needs 1:1 (each eye 2:1, stacked).
    """
    check_fps(fps)
    if width % 2 or height % 2:
        raise BadInput(f"video size {width}x{height} must be even for H.264 4:2:0")
    aspect = {"mono": 2, "top-bottom": 1}.get(stereo)
    if aspect is None:
        raise BadInput(f"stereo layout {stereo!r} is not mono or top-bottom")
    if width != aspect * height:
        want = "2:1" if aspect == 2 else "1:1 (two 2:1 eyes stacked)"
        raise BadInput(f"{stereo} 360° video size {width}x{height} must be {want}")
    limits = HEADSET_LIMITS[stereo]
    if not any(width <= w and height <= h and fps <= f for w, h, f in limits):
        allowed = ", ".join(f"{w}x{h}@{f:g}" for w, h, f in limits)
        raise BadInput(
            f"{stereo} size {width}x{height} at {fps:g} fps is more than a headset decodes "
            f"(at most {allowed})"
        )
    return h264_level(width, height, fps)


def max_kbps(level: Level) -> int:
    """The highest bit rate (kbit/s) we let x264 use at ``level`` (the VBV maxrate)."""
    return min(int(level.max_br_kbps * HIGH_PROFILE_BR_FACTOR), HEADSET_MAX_KBPS)


def x264_params(level: Level, crf: int = 18) -> list[str]:
    """ffmpeg output options for a headset-safe High-profile stream at ``level``."""
    rate = max_kbps(level)
    buf_kbit = min(int(level.max_cpb_kbit * HIGH_PROFILE_BR_FACTOR), 2 * rate)
    return [
        "-profile:v",
        "high",
        "-level:v",
        level.name,
        "-maxrate",
        f"{rate}k",
        "-bufsize",
        f"{buf_kbit}k",
        "-x264-params",
        "mvrange=511",
    ]


def encode_360(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float,
    level: Level,
    *,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode 8-bit RGB frames as a headset-safe H.264 MP4 at ``level`` (no metadata yet)."""
    from ..media import encode_mp4

    extra = [p for p in x264_params(level, crf)]
    return encode_mp4(frames, path, fps, crf=crf, preset=preset, extra_params=extra)
