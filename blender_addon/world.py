"""A finished output folder → the World's looping Environment Texture.

PanoLoop keeps one node of its own in the World (named :data:`ENV_NODE_NAME`) and
reuses it on every apply; the user's other world nodes stay. The loop is an image
sequence (``frames/``, float EXR or PNG, numbered from 0) or, when an output has no
frames, its ``panorama.mp4``.

Frame mapping, checked with Cycles renders in bpy 5.0.1: Blender shows sequence frame
``frame - frame_start + 1 + frame_offset`` (wrapped into 1..frame_duration when cyclic),
so with files numbered from 0, ``frame_offset = first number - 1 = -1`` puts file 0 on
the scene's first frame, and frame ``start + N`` shows file 0 again: the loop plays
without repeating a frame. A movie's frames count from 1, so its offset is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy

from . import contract
from .contract import ENV_NODE_NAME, MAPPING_NODE_NAME, PREVIEW_NAME
from .engine_env import AddonError

WORLD_NAME = "PanoLoop World"
#: The Texture Coordinate node feeding PanoLoop's Mapping node.
COORDS_NODE_NAME = "PanoLoop Coordinates"


def read_output(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """The validated manifest and the frame files (in order) of a panorama output folder.

    The manifest is untrusted input (:func:`engine.contract.read_manifest`); a folder
    without ``frames/`` (a movie-only output) has no frames.
    """
    folder = Path(folder)
    manifest = contract.read_manifest(folder)
    if manifest.get("projection") != "equirectangular":
        raise AddonError(
            f"{folder} holds {manifest.get('projection')!r} images, not an equirect panorama",
            "choose a folder written by Animate HDRI or Generate World",
        )
    frames_dir = contract.frames_folder(folder, manifest)
    frames = contract.list_frames(frames_dir) if frames_dir.is_dir() else []
    return manifest, frames


def world_environment_image(world: Any) -> Any:
    """The image of the World's environment texture: PanoLoop's node first, else the first
    Environment Texture node with an image; None if there is none."""
    if world is None or not world.use_nodes or world.node_tree is None:
        return None
    nodes = world.node_tree.nodes
    ours = nodes.get(ENV_NODE_NAME)
    if ours is not None and ours.image is not None:
        return ours.image
    for node in nodes:
        if node.bl_idname == "ShaderNodeTexEnvironment" and node.image is not None:
            return node.image
    return None


def _background_node(tree: Any) -> Any:
    """The Background shader feeding the active World Output (created when missing)."""
    nodes, links = tree.nodes, tree.links
    output = next(
        (n for n in nodes if n.bl_idname == "ShaderNodeOutputWorld" and n.is_active_output),
        None,
    ) or next((n for n in nodes if n.bl_idname == "ShaderNodeOutputWorld"), None)
    if output is None:
        output = nodes.new("ShaderNodeOutputWorld")
        output.location = (300, 0)
    surface = output.inputs["Surface"]
    if surface.is_linked and surface.links[0].from_node.bl_idname == "ShaderNodeBackground":
        return surface.links[0].from_node
    background = nodes.new("ShaderNodeBackground")
    background.location = (output.location.x - 250, output.location.y)
    links.new(background.outputs["Background"], surface)
    return background


def panoloop_env_node(world: Any) -> Any:
    """PanoLoop's Environment Texture node, reused if present, wired to the Background
    and driven by PanoLoop's own Mapping node (:func:`rotation_node`)."""
    world.use_nodes = True
    tree = world.node_tree
    node = tree.nodes.get(ENV_NODE_NAME)
    if node is None or node.bl_idname != "ShaderNodeTexEnvironment":
        node = tree.nodes.new("ShaderNodeTexEnvironment")
        node.name = node.label = ENV_NODE_NAME
    background = _background_node(tree)
    node.location = (background.location.x - 320, background.location.y)
    color = background.inputs["Color"]
    if not (color.is_linked and color.links[0].from_node == node):
        tree.links.new(node.outputs["Color"], color)
    node.projection = "EQUIRECTANGULAR"
    rotation_node(world, node)
    return node


def rotation_node(world: Any, env: Any) -> Any:
    """PanoLoop's Mapping node (type Point) feeding the environment's Vector from the
    Texture Coordinate's Generated output (the view direction, for a World).

    Its Z rotation is the World's rotation, ``scene.panoloop.world_rotation``: the
    texture is looked up at ``Rz(rotation) · d`` for a view direction ``d``; every
    engine command that maps panorama pixels to directions takes the same angle as
    ``--yaw`` (degrees).
    """
    tree = world.node_tree
    mapping = tree.nodes.get(MAPPING_NODE_NAME)
    if mapping is None or mapping.bl_idname != "ShaderNodeMapping":
        mapping = tree.nodes.new("ShaderNodeMapping")
        mapping.name = mapping.label = MAPPING_NODE_NAME
    mapping.vector_type = "POINT"
    mapping.location = (env.location.x - 200, env.location.y)
    coords = tree.nodes.get(COORDS_NODE_NAME)
    if coords is None or coords.bl_idname != "ShaderNodeTexCoord":
        coords = tree.nodes.new("ShaderNodeTexCoord")
        coords.name = coords.label = COORDS_NODE_NAME
    coords.location = (mapping.location.x - 200, mapping.location.y)
    vector = mapping.inputs["Vector"]
    if not (vector.is_linked and vector.links[0].from_socket == coords.outputs["Generated"]):
        tree.links.new(coords.outputs["Generated"], vector)
    env_vector = env.inputs["Vector"]
    if not (env_vector.is_linked and env_vector.links[0].from_node == mapping):
        tree.links.new(mapping.outputs["Vector"], env_vector)
    return mapping


def set_world_rotation(scene: Any) -> None:
    """Turn PanoLoop's Mapping node to ``scene.panoloop.world_rotation`` (radians about Z).

    Only a World that already has PanoLoop's node is touched; applying a loop wires it.
    """
    world = scene.world
    if world is None or not world.use_nodes or world.node_tree is None:
        return
    env = world.node_tree.nodes.get(ENV_NODE_NAME)
    if env is None:
        return
    mapping = rotation_node(world, env)
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, scene.panoloop.world_rotation)


def load_loop_image(manifest: dict[str, Any], frames: list[Path], folder: Path) -> Any:
    """The output's loop as an image datablock: a SEQUENCE of its frames, else the MOVIE."""
    if frames:
        image = bpy.data.images.load(str(frames[0]), check_existing=True)
        image.source = "SEQUENCE"
        return image
    movie = Path(folder) / PREVIEW_NAME
    if not movie.is_file():
        raise AddonError(f"{folder} has neither frames nor {PREVIEW_NAME}")
    image = bpy.data.images.load(str(movie), check_existing=True)
    image.source = "MOVIE"
    return image


def apply_panorama_steps(scene_name: str, folder: str | Path) -> Iterator[None]:
    """Make ``folder`` (a PanoLoop output) the looping environment of the scene's World,
    in small steps (read, load, wire, set): the runner runs one per timer tick.

    Between steps only names are kept (an undo may replace any Blender data). Creates
    a World if the scene has none.
    """
    folder = Path(folder)
    manifest, frames = read_output(folder)
    count = len(frames) or int(manifest.get("frames") or 0)
    if count < 1:
        raise AddonError(f"{folder} holds no frames")
    if frames and manifest.get("frames") not in (None, len(frames)):
        raise AddonError(
            f"{folder}: manifest says {manifest.get('frames')} frames, {len(frames)} are on disk"
        )
    yield
    image_name = load_loop_image(manifest, frames, folder).name
    yield
    scene = _scene(scene_name)
    if scene.world is None:
        scene.world = bpy.data.worlds.new(WORLD_NAME)
    panoloop_env_node(scene.world)
    yield
    scene = _scene(scene_name)
    node = panoloop_env_node(scene.world)
    node.image = bpy.data.images[image_name]
    user = node.image_user
    user.frame_duration = count
    user.frame_start = scene.frame_start
    user.frame_offset = contract.frame_number(frames[0]) - 1 if frames else 0
    user.use_cyclic = True
    user.use_auto_refresh = True
    set_world_rotation(scene)
    scene.panoloop.last_output = str(folder)
    yield


def _scene(name: str) -> Any:
    scene = bpy.data.scenes.get(name)
    if scene is None:
        raise AddonError(f"scene {name!r} is gone; the loop was not applied")
    return scene


def apply_panorama(scene: Any, folder: str | Path) -> Any:
    """:func:`apply_panorama_steps` all at once; returns the Environment Texture node."""
    for _ in apply_panorama_steps(scene.name, folder):
        pass
    return scene.world.node_tree.nodes[ENV_NODE_NAME]


def fps_mismatch(scene: Any, folder: str | Path) -> str:
    """A warning when the loop was made for another frame rate than the scene plays."""
    manifest, _ = read_output(Path(folder))
    fps = manifest.get("fps")
    scene_fps = scene.render.fps / scene.render.fps_base
    if fps and abs(float(fps) - scene_fps) > 1e-3:
        return (
            f"the loop was made at {fps:g} fps but the scene plays at {scene_fps:g} fps; "
            "set Output > Frame Rate to match"
        )
    return ""
