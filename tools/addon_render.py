"""A headless render of a scene lit by a PanoLoop World, made through the extension.

    python tools/addon_render.py [--out docs/addon_render.png] [--hdri forest.exr]

Builds the zip with Blender's tool, installs it into the bpy module under a temporary
HOME, animates a bundled HDRI with ``bpy.ops.panoloop.animate_hdri`` (background mode:
the operator blocks until the World plays the loop), then renders a chrome sphere and a
matte monkey with Cycles at the loop's first frame. The engine runs in this Python.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from build_extension import build  # noqa: E402

PACKAGE = "bl_ext.user_default.panoloop"


def build_scene(bpy, hdri: Path, outputs: Path):
    scene = bpy.context.scene
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(0, 0, 1), segments=64, ring_count=32)
    sphere = bpy.context.object
    bpy.ops.object.shade_smooth()
    chrome = bpy.data.materials.new("Chrome")
    chrome.use_nodes = True
    bsdf = chrome.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Metallic"].default_value = 1.0
    bsdf.inputs["Roughness"].default_value = 0.04
    sphere.data.materials.append(chrome)
    bpy.ops.mesh.primitive_monkey_add(size=1.3, location=(2.2, 1.4, 0.9), rotation=(0, 0, 0.9))
    monkey = bpy.context.object
    bpy.ops.object.shade_smooth()
    clay = bpy.data.materials.new("Clay")
    clay.use_nodes = True
    clay.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.6
    monkey.data.materials.append(clay)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (6.5, -5.0, 2.2)
    camera.rotation_euler = (math.radians(82), 0, math.radians(52))
    camera.data.lens = 30
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 64
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    scene.render.image_settings.file_format = "PNG"
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.engine_python = sys.executable
    prefs.output_dir = str(outputs)
    settings = scene.panoloop
    settings.mode = "ANIMATE"
    settings.source_image = str(hdri)
    settings.seconds, settings.fps = 1, 8
    return scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "addon_render.png")
    parser.add_argument("--hdri", default="forest.exr", help="bundled studio-light HDRI")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zip_path = build(tmp / "zip")
        os.environ["HOME"] = str(tmp / "home")  # before bpy: a throwaway Blender profile
        import bpy

        bpy.ops.extensions.package_install_files(
            filepath=str(zip_path), repo="user_default", enable_on_install=True
        )
        hdri = Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world")) / args.hdri
        (tmp / "outputs").mkdir()
        scene = build_scene(bpy, hdri, tmp / "outputs")
        print("animate_hdri:", bpy.ops.panoloop.animate_hdri())
        scene.frame_set(scene.frame_start)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(args.out.resolve())
        bpy.ops.render.render(write_still=True)
    print(args.out)


if __name__ == "__main__":
    main()
