"""Benchmark: multicam reprojection throughput (camera-frames per second).

Ours (what ``engine views``/``engine multicam`` run per frame: one sampling map per camera
built once, the frame padded once for all cameras, ``cv2.remap`` per camera) against
py360convert's ``e2p`` (the usual baseline: it rebuilds its sampling grid on every call)
on the same frames and the same cameras, measured in the same run. Disk I/O is left out
of both; map building is timed separately (it is paid once per camera, not per frame).

    .venv/bin/python bench/multicam.py [--frames 16] [--width 2048]

``--parts ray`` measures instead the Cycles renders of ``render-cluster`` on a local Ray
cluster of 2 CPUs against 1 CPU (one CPU = one Cycles thread per task, the same tasks
in both), in one run, on a small scene built here with the bpy module; the cluster's
start-up and the packing are left out (the ``tasks`` time of each run).

    .venv/bin/python bench/multicam.py --parts ray [--frames 8] [--size 160 120] [--samples 16]
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


SCENE_SCRIPT = """
import math, sys
from pathlib import Path
import bpy
out, frames, size, samples = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:5], int(sys.argv[5])
bpy.ops.wm.read_factory_settings()  # the default cube, light and camera
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = samples
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = map(int, size)
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, frames
cube = scene.objects["Cube"]
cube.rotation_euler = (0, 0, 0)
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler = (0, 0, math.radians(90))
cube.keyframe_insert("rotation_euler", frame=frames)
data = bpy.data.cameras.new("Side")
side = bpy.data.objects.new("Side", data)
side.location, side.rotation_euler = (0, -8, 1), (math.radians(85), 0, 0)
scene.collection.objects.link(side)
bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"))
"""


def bench_ray(args: argparse.Namespace) -> None:
    """Cycles renders through ``render-cluster``: a local cluster of 2 CPUs vs 1 CPU."""
    import subprocess
    import tempfile

    from engine.cluster.connect import parse_cluster
    from engine.cluster.renders import render_on_cluster
    from engine.progress import JobContext

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        (root / "scene.py").write_text(SCENE_SCRIPT)
        size = [str(v) for v in args.size]
        subprocess.run([sys.executable, str(root / "scene.py"), str(root), str(args.frames),
                        *size, str(args.samples)], check=True, capture_output=True)  # fmt: skip
        spec = {"scene": "Scene", "kind": "cameras", "cameras": ["Camera", "Side"],
                "frame_range": [1, args.frames]}  # fmt: skip
        seconds = {}
        for cpus in (1, 2):
            ctx = JobContext()
            start = time.perf_counter()
            render_on_cluster(
                blend=root / "scene.blend", spec=spec, out=root / f"renders-{cpus}",
                address=parse_cluster("local"), blender={"python": sys.executable},
                cpus_per_task=1, frames_per_task=args.frames // 2, local_cpus=cpus, ctx=ctx,
            )  # fmt: skip
            seconds[cpus] = ctx.timings["tasks"]
            whole = time.perf_counter() - start
            print(f"local cluster, {cpus} CPU: tasks {seconds[cpus]:.1f} s (job {whole:.1f} s)")
    camera_frames = 2 * args.frames
    print(f"{camera_frames} camera-frames {args.size[0]}x{args.size[1]}, {args.samples} samples, "
          f"4 tasks of {args.frames // 2} frames, 1 Cycles thread per task")  # fmt: skip
    print(f"ratio 2 workers / 1 worker (speed-up): {seconds[1] / seconds[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", choices=("reproject", "ray"), default="reproject")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120))
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    if args.parts == "ray":
        args.frames = args.frames or 8
        bench_ray(args)
        return
    args.frames = args.frames or 16
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
