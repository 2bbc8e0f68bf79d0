"""Benchmark: multicam reprojection throughput (camera-frames per second).

Ours (what ``engine views``/``engine multicam`` run per frame: one sampling map per camera
built once, the frame padded once for all cameras, ``cv2.remap`` per camera) against
py360convert's ``e2p`` (the usual baseline: it rebuilds its sampling grid on every call)
on the same frames and the same cameras, measured in the same run. Disk I/O is left out
of both; map building is timed separately (it is paid once per camera, not per frame).

    .venv/bin/python bench/multicam.py [--frames 16] [--width 2048]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cameras import BlenderCamera  # noqa: E402
from engine.projection import camera_map, pad_equirect, remap_equirect  # noqa: E402

CAMERA_SIZE = (640, 360)
LENS_MM, SENSOR_MM = 24.0, 36.0


def camera(name: str, yaw_deg: float, pitch_deg: float) -> BlenderCamera:
    """A horizontal-ish Blender camera looking along yaw/pitch (degrees from +X, Z up)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                        math.sin(pitch)])  # fmt: skip
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([right, up, -forward], axis=1)
    return BlenderCamera.from_dict(
        {
            "name": name, "matrix_world": matrix.tolist(), "lens": LENS_MM,
            "sensor_width": SENSOR_MM, "sensor_height": 24.0, "sensor_fit": "HORIZONTAL",
            "shift_x": 0.0, "shift_y": 0.0, "resolution_x": CAMERA_SIZE[0],
            "resolution_y": CAMERA_SIZE[1], "pixel_aspect_x": 1.0, "pixel_aspect_y": 1.0,
        }
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=int, default=2048)
    args = parser.parse_args()
    import py360convert

    rng = np.random.default_rng(0)
    height = args.width // 2
    frames = [rng.integers(0, 256, (height, args.width, 3), dtype=np.uint8)
              for _ in range(args.frames)]  # fmt: skip
    views = [(0.0, 0.0), (90.0, 10.0), (200.0, -20.0)]
    cameras = [camera(f"cam{i}", yaw, pitch) for i, (yaw, pitch) in enumerate(views)]
    hfov = math.degrees(2 * math.atan(SENSOR_MM / 2 / LENS_MM))
    vfov = math.degrees(2 * math.atan(math.tan(math.radians(hfov) / 2) * CAMERA_SIZE[1]
                                      / CAMERA_SIZE[0]))  # fmt: skip
    camera_frames = len(frames) * len(cameras)

    # Ours: maps once per camera, then pad once + remap per camera per frame.
    start = time.perf_counter()
    maps = [camera_map(c, args.width, height) for c in cameras]
    map_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for frame in frames:
        padded = pad_equirect(frame)
        for smap in maps:
            remap_equirect(padded, smap, padded=True)
    ours = time.perf_counter() - start

    # Baseline: py360convert.e2p per camera per frame (bilinear, same sizes and FOV).
    start = time.perf_counter()
    for frame in frames:
        for yaw, pitch in views:
            py360convert.e2p(frame, fov_deg=(hfov, vfov), u_deg=-yaw, v_deg=pitch,
                             out_hw=CAMERA_SIZE[::-1], mode="bilinear")  # fmt: skip
    baseline = time.perf_counter() - start

    print(f"panorama {args.width}x{height}, {len(frames)} frames x {len(cameras)} cameras "
          f"of {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]} = {camera_frames} camera-frames")  # fmt: skip
    print(
        f"ours (engine views: maps built once, cv2.remap): {camera_frames / ours:8.1f} "
        f"camera-frames/s  (+ {map_seconds:.2f} s building {len(maps)} maps once)"
    )
    print(
        f"py360convert.e2p (baseline, same run):          {camera_frames / baseline:8.1f} "
        "camera-frames/s"
    )
    print(
        f"ratio ours / py360convert: {baseline / ours:.1f}x "
        f"(with map building: {baseline / (ours + map_seconds):.1f}x)"
    )


if __name__ == "__main__":
    main()
