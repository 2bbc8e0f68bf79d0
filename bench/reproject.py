"""Benchmark: 16 frames of a 2048×1024 equirect into 6 cameras of 512×512.

Ours (one OpenCV fixed-point map per camera, built once, seam and poles exact) against
py360convert's ``e2p`` on its default scipy path and py360convert with OpenCV, all in one
run on the same frames. Prints seconds and the ratios.

    .venv/bin/python bench/reproject.py [--frames 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cameras import BlenderCamera  # noqa: E402
from engine.projection import camera_map, pad_equirect, remap_equirect  # noqa: E402

WIDTH, HEIGHT, VIEW, FOV = 2048, 1024, 512, 90.0
# (yaw, pitch) in degrees of six views: four around the horizon, up and down.
VIEWS = [(0, 0), (90, 0), (180, 0), (-90, 0), (0, 89.9), (0, -89.9)]


def blender_camera(yaw: float, pitch: float) -> BlenderCamera:
    """A 90° FOV square camera looking at yaw (towards +Y) and pitch (up) from +X."""
    yaw_r, pitch_r = np.radians(yaw), np.radians(pitch)
    forward = np.array(
        [np.cos(pitch_r) * np.cos(yaw_r), np.cos(pitch_r) * np.sin(yaw_r), np.sin(pitch_r)]
    )
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([right, up, -forward], axis=1)
    lens = 18.0 / np.tan(np.radians(FOV / 2))
    return BlenderCamera(
        name=f"y{yaw}p{pitch}",
        matrix_world=tuple(map(tuple, matrix)),
        lens=lens,
        resolution_x=VIEW,
        resolution_y=VIEW,
    )


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    import cv2

    big = cv2.resize(base, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    return [np.roll(big, 8 * i, axis=1) for i in range(count)]


def run_ours(images: list[np.ndarray]) -> float:
    start = time.perf_counter()
    cameras = [blender_camera(y, p) for y, p in VIEWS]
    maps = [camera_map(c, WIDTH, HEIGHT) for c in cameras]
    padded = None
    for image in images:
        padded = pad_equirect(image, out=padded)
        for smap in maps:
            remap_equirect(padded, smap, padded=True)
    return time.perf_counter() - start


def run_py360(images: list[np.ndarray], use_opencv: bool) -> float:
    import py360convert
    import py360convert.utils as utils

    saved = utils.cv2
    # py360convert caches its samplers (its maps are built once too); start each
    # variant from an empty cache so the OpenCV/scipy choice is made afresh.
    utils.EquirecSampler.__dict__["from_perspective"].__func__.cache_clear()
    if not use_opencv:
        utils.cv2 = None  # py360convert's own switch: without cv2 it samples with scipy
    try:
        start = time.perf_counter()
        for image in images:
            for yaw, pitch in VIEWS:
                py360convert.e2p(image, FOV, yaw, pitch, (VIEW, VIEW), mode="bilinear")
        return time.perf_counter() - start
    finally:
        utils.cv2 = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    images = frames(args.frames)
    run_ours(images[:1])  # warm up OpenCV's thread pool
    ours = run_ours(images)
    py_cv = run_py360(images, use_opencv=True)
    py_scipy = run_py360(images, use_opencv=False)
    views = args.frames * len(VIEWS)
    print(f"{args.frames} frames {WIDTH}x{HEIGHT} -> {len(VIEWS)} cameras {VIEW}x{VIEW}")
    print(f"ours (maps built once, exact seam/poles): {ours:.3f} s  ({views / ours:.0f} views/s)")
    print(f"py360convert + OpenCV:                    {py_cv:.3f} s")
    print(f"py360convert (scipy, default):            {py_scipy:.3f} s")
    print(f"ratio vs py360convert (scipy):  {py_scipy / ours:.1f}x  (target >= 15x)")
    print(f"ratio vs py360convert + OpenCV: {py_cv / ours:.1f}x  (target >= 4x)")


if __name__ == "__main__":
    main()
