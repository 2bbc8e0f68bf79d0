"""PanoLoop's main job, end to end on this machine (no GPU, no model weights).

    .venv/bin/python tools/demo.py [--out demo-output/NAME] [--seconds 4] [--fps 12]

What a user does, through the real extension:

1. builds the extension zip with Blender's own tool and installs it into the bpy module
   under a demo Blender profile (``OUT/blender_home``; the user's own Blender is untouched),
   with this repository's Python as the engine;
2. takes Blender's bundled CC0 forest HDRI and runs ``bpy.ops.panoloop.animate_hdri``:
   a seamless loop (``OUT/outputs/*-animate-*``) that then plays on the World;
3. builds a scene — a chrome sphere, a monkey, a floor, three cameras — and saves it
   as ``OUT/scene.blend``;
4. ``bpy.ops.panoloop.render_multicam``: every camera rendered by Cycles over the loop,
   frame-synchronised, beside the loop reprojected into each camera; a contact sheet;
5. ``bpy.ops.panoloop.export_vr``: a 360° MP4 with spherical metadata, cubemaps, and a
   WebXR package (glTF of the scene + the loop, offline three.js viewer);
6. prints where everything went.

Everything lands in a new folder (default ``demo-output/<time>``); nothing is overwritten.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bl_ext.user_default.panoloop"
#: Camera name, location (m), rotation (degrees XYZ Euler), lens (mm).
DEMO_CAMERAS = [
    ("Front", (7.0, -1.0, 1.6), (85, 0, 82), 35.0),
    ("Side", (0.5, -7.0, 1.8), (82, 0, 4), 28.0),
    ("Overview", (-5.5, 5.5, 6.0), (55, 0, 225), 24.0),
]
#: Small and short on purpose: the CPU renders 3 cameras × every loop frame.
RENDER_SIZE = (192, 108)
RENDER_SAMPLES = 16


def main() -> None:
    parser = argparse.ArgumentParser(description="PanoLoop demo (no GPU, no weights)")
    parser.add_argument("--out", type=Path, default=None, help="a new folder for everything")
    parser.add_argument("--seconds", type=float, default=4.0, help="loop length")
    parser.add_argument("--fps", type=int, default=12, help="loop and scene frame rate")
    parser.add_argument("--hdri", default="forest.exr", help="a bundled studio-light HDRI")
    args = parser.parse_args()
    out = (args.out or REPO / "demo-output" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    if out.exists():
        raise SystemExit(f"{out} already exists; choose a new --out")
    out.mkdir(parents=True)

    sys.path.insert(0, str(REPO / "tools"))
    from build_extension import build

    started = time.perf_counter()
    zip_path = build(out / "extension")
    print(f"extension zip (Blender's tool): {zip_path}")
    config = {"out": str(out), "seconds": args.seconds, "fps": args.fps, "hdri": args.hdri}
    config["zip"] = str(zip_path)
    # bpy reads HOME when it is imported: a fresh process with a demo profile.
    env = dict(os.environ, HOME=str(out / "blender_home"), PYTHONPATH="")
    done = subprocess.run([sys.executable, __file__, "--in-blender", json.dumps(config)], env=env)
    if done.returncode != 0:
        raise SystemExit(f"the Blender part of the demo failed (exit {done.returncode})")
    print(f"done in {time.perf_counter() - started:.0f} s; everything is in {out}")


# ------------------------------------------------------------------ inside bpy


def in_blender(config: dict) -> None:
    import bpy

    out = Path(config["out"])
    install_extension(bpy, Path(config["zip"]), out / "outputs")
    scene = build_scene(bpy)
    hdri = Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world")) / config["hdri"]
    print(f"input HDRI: {hdri}")

    # 2. Still HDRI → seamless loop on the World (the operator blocks in background mode).
    settings = scene.panoloop
    settings.mode = "ANIMATE"
    settings.source_image = str(hdri)
    settings.seconds = config["seconds"]
    settings.fps = config["fps"]
    check("animate_hdri", bpy.ops.panoloop.animate_hdri())
    loop = Path(settings.last_output)
    frames = json.loads((loop / "manifest.json").read_text())["frames"]
    scene.frame_start, scene.frame_end = 1, frames
    # The World's image changes every frame; Cycles would rebuild its importance map for
    # each one (seconds per frame here). Plain sampling is fine for a bright, soft sky.
    scene.world.cycles.sampling_method = "NONE"
    print(f"looping panorama ({frames} frames at {config['fps']} fps): {loop}")
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"))
    print(f"scene: {out / 'scene.blend'}")

    # 4. Every camera, rendered in sync, beside the loop reprojected into it.
    settings.camera_scope = "ALL"
    check("render_multicam", bpy.ops.panoloop.render_multicam())
    multicam = newest(out / "outputs", "*-multicam-*")
    print(f"multicam (per-camera clips, MP4s, cameras.json): {multicam}")
    print(f"contact sheet: {multicam / 'contact_sheet.png'}")

    # 5. VR: 360° MP4 with spherical metadata, cubemaps, WebXR package with the scene.
    check("export_vr", bpy.ops.panoloop.export_vr())
    vr = newest(out / "outputs", "*-vr-*")
    for mp4 in sorted(vr.rglob("*_360*.mp4")):
        print(f"360° video: {mp4}")
    print(f"WebXR viewer: {next(vr.rglob('index.html'))}")
    print(f"to a headset: python -m engine serve {vr}  (HTTPS; see the README)")


def install_extension(bpy, zip_path: Path, outputs: Path) -> None:
    """Install and enable the zip; the engine runs in this Python, outputs go to ``outputs``."""
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    check("install the extension", result)
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.engine_python = sys.executable
    outputs.mkdir()
    prefs.output_dir = str(outputs)


def build_scene(bpy):
    """A chrome sphere, a monkey and a floor seen by three cameras; Cycles, small and quick."""
    scene = bpy.context.scene
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(0, 0, 1), segments=48, ring_count=24)
    bpy.ops.object.shade_smooth()
    bpy.context.object.data.materials.append(material(bpy, "Chrome", metallic=1.0, roughness=0.05))
    bpy.ops.mesh.primitive_monkey_add(size=1.2, location=(1.8, 1.6, 0.8), rotation=(0, 0, 2.4))
    bpy.ops.object.shade_smooth()
    bpy.context.object.data.materials.append(material(bpy, "Clay", metallic=0.0, roughness=0.6))
    bpy.ops.mesh.primitive_plane_add(size=8.0, location=(0, 0, 0))
    bpy.context.object.data.materials.append(
        material(bpy, "Floor", metallic=0.0, roughness=0.9, grey=0.15)
    )
    for name, location, rotation, lens in DEMO_CAMERAS:
        camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        camera.location = location
        camera.rotation_euler = [math.radians(a) for a in rotation]
        camera.data.lens = lens
        scene.collection.objects.link(camera)
    scene.camera = bpy.data.objects[DEMO_CAMERAS[0][0]]
    scene.render.engine = "CYCLES"
    scene.cycles.samples = RENDER_SAMPLES
    scene.cycles.use_denoising = True  # OpenImageDenoise on the CPU: clean at 16 samples
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.render.resolution_x, scene.render.resolution_y = RENDER_SIZE
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()
    return scene


def material(bpy, name: str, *, metallic: float, roughness: float, grey: float = 0.8):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (grey, grey, grey, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def check(what: str, result: set[str]) -> None:
    if "FINISHED" not in result:
        raise SystemExit(f"{what} returned {sorted(result)}")


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_mtime)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--in-blender":
        in_blender(json.loads(sys.argv[2]))
    else:
        main()
