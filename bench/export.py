"""Benchmark: ``engine export`` time per minute of 360° video.

Times the export of a synthetic looping panorama folder (PNG frames) end to end —
reading frames, the headset-safe H.264 encode at the level for the size, our
spherical-metadata box writer, cubemaps and the WebXR package — and, in the same run,
the named baseline: the plain libx264 encode of the same frames already in memory
(``engine.media.encode_mp4``, same preset and CRF, no tagging, no reading). The box
writer is also timed alone. Seconds are scaled to one minute of video at the fps.

    .venv/bin/python bench/export.py [--frames 48] [--fps 24] [--size 2048x1024]
                                     [--preset veryfast]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import main as engine_main  # noqa: E402
from engine.export.spherical import inject_spherical  # noqa: E402
from engine.media import (  # noqa: E402
    encode_mp4,
    frame_path,
    panorama_manifest,
    write_image,
    write_manifest,
)


def synthetic_loop(width: int, height: int, frames: int) -> list[np.ndarray]:
    """Smooth moving pattern (compresses like a real panorama, unlike noise)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        r = (np.sin(xx / width * 2 * np.pi * 6 + phase) + 1) * 110
        g = (np.cos(yy / height * np.pi * 5 - phase) + 1) * 110
        b = (np.sin((xx + yy) / width * 2 * np.pi * 3 + 2 * phase) + 1) * 110
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--size", default="2048x1024")
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    per_minute = 60.0 * args.fps / args.frames

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = synthetic_loop(width, height, args.frames)
        pano = tmp / "loop"
        (pano / "frames").mkdir(parents=True)
        for index, frame in enumerate(frames):
            write_image(frame_path(pano / "frames", index, np.uint8), frame)
        manifest = panorama_manifest(
            width=width, height=height, frames=args.frames, fps=args.fps, loop=True
        )
        write_manifest(pano, manifest)

        start = time.perf_counter()
        encode_mp4(frames, tmp / "plain.mp4", args.fps, preset=args.preset)
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        inject_spherical(tmp / "plain.mp4", tmp / "tagged_360.mp4")
        tagging = time.perf_counter() - start

        argv = ["export", str(pano), "--preset", args.preset]
        start = time.perf_counter()
        assert engine_main([*argv, "--out", str(tmp / "video")]) == 0
        video_only = time.perf_counter() - start
        start = time.perf_counter()
        assert engine_main([*argv, "--out", str(tmp / "full"), "--cubemap", "--webxr"]) == 0
        full = time.perf_counter() - start
        size_mb = next((tmp / "video").glob("*_360.mp4")).stat().st_size / 1e6

    seconds = args.frames / args.fps
    print(f"{args.frames} frames {width}x{height} at {args.fps:g} fps = {seconds:.1f} s of "
          f"video; x264 preset {args.preset}; 360 MP4 {size_mb:.1f} MB")  # fmt: skip
    print(
        f"baseline plain encode (frames in memory): {baseline * per_minute:7.1f} s "
        "per minute of video"
    )
    print(
        f"export, 360 MP4 only (read + encode + tag): {video_only * per_minute:7.1f} s "
        f"per minute  ({video_only / baseline:.2f}x baseline)"
    )
    print(
        f"export + cubemaps + WebXR package:          {full * per_minute:7.1f} s "
        f"per minute  ({full / baseline:.2f}x baseline)"
    )
    print(
        f"spherical box writer alone: {tagging * 1000:.1f} ms for this file "
        f"({tagging / baseline * 100:.2f}% of the encode)"
    )


if __name__ == "__main__":
    main()
