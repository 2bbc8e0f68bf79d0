"""Render Blender's own reference images for the geometry tests (run in a fresh process).

``python tests/blender_reference_scene.py OUT_DIR [HDRI]`` builds a world-only scene lit
by a bundled studio-light HDRI and renders, with Cycles at one sample through the pixel
centre (filter width 0.01 px, no denoising), scene-linear float EXRs:

- ``panorama.exr``: a Cycles equirectangular panoramic camera at rotation (90°, 0, −90°),
  the camera that reproduces the world texture's own layout;
- ``<camera>.exr`` for every perspective camera of :data:`CAMERAS`, with
  ``cameras.json`` written by the add-on's own ``scene_io`` from Blender's values.

A separate process keeps bpy's global state away from the test process.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_addon import world as addon_world  # noqa: E402
from blender_addon.scene_io import write_cameras_json  # noqa: E402

PANORAMA_SIZE = (1024, 512)
# name, rotation_euler in degrees (XYZ), lens mm, sensor_fit, sensor (w, h) mm,
# resolution (x, y), shift (x, y), pixel aspect (x, y)
CAMERAS = [
    ("front", (90, 0, -90), 35, "AUTO", (36, 24), (160, 120), (0, 0), (1, 1)),
    ("up", (0, 0, 0), 24, "AUTO", (36, 24), (128, 128), (0, 0), (1, 1)),
    ("down", (180, 0, 30), 24, "AUTO", (36, 24), (120, 96), (0, 0), (1, 1)),
    ("seam", (80, 0, 90), 28, "HORIZONTAL", (36, 24), (150, 90), (0, 0), (1, 1)),
    ("tall_vertical", (95, 5, 20), 50, "VERTICAL", (30, 40), (90, 160), (0.1, -0.05), (1, 1)),
    ("auto_tall", (60, -10, 160), 30, "AUTO", (36, 24), (96, 150), (0, 0.2), (1, 1)),
    ("wide_shift", (110, 0, -150), 18, "HORIZONTAL", (36, 24), (200, 80), (-0.15, 0.1), (1, 1)),
    ("tilted_pole", (20, 15, 200), 16, "AUTO", (36, 24), (140, 100), (0, 0), (1, 1)),
    ("pixel_aspect", (90, 0, 45), 35, "AUTO", (36, 24), (160, 90), (0.05, 0), (1, 1.5)),
]


def bundled_hdri(name: str = "forest.exr") -> Path:
    """A CC0 studio-light HDRI shipped with Blender (1024×512)."""
    return Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world")) / name


def render_one_centred_sample(scene: bpy.types.Scene) -> None:
    """Cycles on the CPU, one sample through each pixel centre, no denoising: a render
    that is a plain texture lookup per pixel, comparable with our reprojection."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01


def setup_world_scene(hdri: Path) -> bpy.types.Scene:
    """An empty scene whose World is the HDRI, rendered by Cycles at one centred sample."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    render_one_centred_sample(scene)
    scene.render.film_transparent = False
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.image_settings.exr_codec = "ZIP"
    world = bpy.data.worlds.new("ReferenceWorld")
    world.use_nodes = True
    nodes = world.node_tree.nodes
    nodes.clear()
    env = nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(str(hdri))
    env.interpolation = "Linear"
    env.projection = "EQUIRECTANGULAR"
    background = nodes.new("ShaderNodeBackground")
    output = nodes.new("ShaderNodeOutputWorld")
    world.node_tree.links.new(env.outputs["Color"], background.inputs["Color"])
    world.node_tree.links.new(background.outputs["Background"], output.inputs["Surface"])
    scene.world = world
    return scene


def add_camera(scene: bpy.types.Scene, name: str, rotation_deg: tuple) -> bpy.types.Object:
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    obj.rotation_euler = [math.radians(a) for a in rotation_deg]
    return obj


def render(
    scene: bpy.types.Scene, camera: bpy.types.Object, size: tuple, aspect: tuple, path: Path
) -> None:
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def main(out: Path, hdri: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    scene = setup_world_scene(hdri)

    pano = add_camera(scene, "Panorama", (90, 0, -90))
    pano.data.type = "PANO"
    pano.data.panorama_type = "EQUIRECTANGULAR"
    render(scene, pano, PANORAMA_SIZE, (1, 1), out / "panorama.exr")

    for spec in CAMERAS:
        render_reference_camera(scene, spec, out)
    print("rendered", len(CAMERAS), "cameras into", out)


def render_reference_camera(scene: bpy.types.Scene, spec: tuple, out: Path) -> None:
    """Render one camera of :data:`CAMERAS` to ``out/<name>.exr`` with its cameras.json."""
    name, rot, lens, fit, sensor, size, shift, aspect = spec
    obj = add_camera(scene, name, rot)
    obj.data.lens = lens
    obj.data.sensor_fit = fit
    obj.data.sensor_width, obj.data.sensor_height = sensor
    obj.data.shift_x, obj.data.shift_y = shift
    render(scene, obj, size, aspect, out / f"{name}.exr")
    # cameras.json is written per camera: resolution lives on the scene.
    write_cameras_json([obj], scene, out / f"{name}.json")


#: Cameras of the turned-World check (a subset: straight ahead, up, across the seam, a
#: shifted wide one), each rendered with the World turned by PanoLoop's Mapping node.
TURNED_CAMERAS = ("front", "up", "seam", "wide_shift")


def main_turned(out: Path, hdri: Path, yaw_degrees: float) -> None:
    """Renders with the World turned: PanoLoop's own Mapping node (``world.rotation_node``)
    at Z = ``yaw_degrees``, the unturned HDRI on the environment node."""
    out.mkdir(parents=True, exist_ok=True)
    scene = setup_world_scene(hdri)
    env = next(n for n in scene.world.node_tree.nodes if n.bl_idname == "ShaderNodeTexEnvironment")
    mapping = addon_world.rotation_node(scene.world, env)
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(yaw_degrees))
    for spec in CAMERAS:
        if spec[0] in TURNED_CAMERAS:
            render_reference_camera(scene, spec, out)


if __name__ == "__main__":
    if "--yaw" in sys.argv:
        at = sys.argv.index("--yaw")
        main_turned(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[at + 1]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else bundled_hdri())
