"""PanoLoop's main job, end to end on this machine (no GPU, no model weights).

    .venv/bin/python tools/demo.py [--out demo-output/NAME] [--seconds 4] [--fps 24]

1. takes Blender's bundled CC0 forest HDRI (real input);
2. animates it into a seamless loop (``engine animate``) when the still-to-loop engine
   is present, else uses the still panorama as a one-frame "loop";
3. builds a Blender scene with three cameras (one across the 360° seam, one looking
   straight up) and writes ``cameras.json`` from Blender's own camera values;
4. renders every camera from the panorama, frame-synchronised (``engine views``);
5. writes a contact sheet PNG (cameras × instants) and prints where everything went.

Every step writes into a new folder (default ``demo-output/<timestamp>``); nothing that
exists is overwritten.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from engine.cli import available_commands  # noqa: E402
from engine.cli import main as engine_main  # noqa: E402
from engine.media import (  # noqa: E402
    list_frames,
    read_image,
    read_manifest,
    to_display_uint8,
    write_image,
)

# name, rotation (degrees, XYZ Euler), lens (mm); Front faces +X (the panorama's centre),
# Seam faces −X (the 360° wrap), Sky looks 30° off the zenith.
DEMO_CAMERAS = [
    ("Front", (90, 0, -90), 24.0),
    ("Seam", (85, 0, 90), 20.0),
    ("Sky", (150, 0, 200), 14.0),
]
#: The scene's render size (Blender has one per scene), pixels.
DEMO_RESOLUTION = (320, 180)


def bundled_hdri(name: str = "forest.exr") -> Path:
    """A CC0 HDRI shipped inside the bpy module (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("the bpy module is missing: run the README's setup command first")
    (folder,) = sorted(Path(spec.origin).parent.glob("*/datafiles/studiolights/world"))[-1:]
    return folder / name


def write_demo_cameras(path: Path) -> Path:
    """Build a Blender scene with the demo cameras and write cameras.json from it."""
    import bpy

    from blender_addon.scene_io import write_cameras_json

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    objects = []
    for name, rotation, lens in DEMO_CAMERAS:
        data = bpy.data.cameras.new(name)
        data.lens = lens
        obj = bpy.data.objects.new(name, data)
        obj.rotation_euler = [math.radians(a) for a in rotation]
        scene.collection.objects.link(obj)
        objects.append(obj)
    scene.render.resolution_x, scene.render.resolution_y = DEMO_RESOLUTION
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()
    return write_cameras_json(objects, scene, path)


def run_engine(*argv: str) -> None:
    code = engine_main(list(argv))
    if code != 0:
        raise SystemExit(f"engine {argv[0]} failed with exit code {code}")


def contact_sheet(views_dir: Path, out: Path, instants: int = 4) -> Path:
    """A grid: one row per camera, ``instants`` columns spread over the loop (8-bit PNG)."""
    import cv2

    manifest = read_manifest(views_dir)
    rows = []
    tile_h = 135
    for cam in manifest["cameras"]:
        frames = list_frames(views_dir / cam["folder"])
        picks = np.linspace(0, len(frames) - 1, min(instants, len(frames))).round().astype(int)
        tiles = []
        for i in picks:
            tile = to_display_uint8(read_image(frames[i]))
            scale = tile_h / tile.shape[0]
            tiles.append(cv2.resize(tile, (round(tile.shape[1] * scale), tile_h)))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])
    return write_image(out, sheet)


def main() -> None:
    parser = argparse.ArgumentParser(description="PanoLoop demo (no GPU, no weights)")
    parser.add_argument("--out", type=Path, default=None, help="new folder for everything")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=float, default=24.0)
    args = parser.parse_args()
    out = args.out or REPO / "demo-output" / time.strftime("%Y%m%d-%H%M%S")
    if out.exists():
        raise SystemExit(f"{out} already exists; choose a new --out")
    out.mkdir(parents=True)
    hdri = bundled_hdri()
    print(f"input HDRI: {hdri}")

    panorama: Path = hdri
    if "animate" in available_commands():
        panorama = out / "loop"
        run_engine(
            "animate", str(hdri), "--out", str(panorama),
            "--seconds", str(args.seconds), "--fps", str(args.fps),
        )  # fmt: skip
        print(f"looping panorama: {panorama}")
    else:
        print("engine animate is not in this build: using the still panorama")

    cameras = write_demo_cameras(out / "cameras.json")
    print(f"cameras.json from Blender: {cameras}")
    views = out / "views"
    run_engine("views", "--panorama", str(panorama), "--cameras", str(cameras), "--out", str(views))
    sheet = contact_sheet(views, out / "contact_sheet.png")
    print(f"camera views: {views}")
    print(f"contact sheet: {sheet}")
    print(f"everything is in {out}")


if __name__ == "__main__":
    main()
