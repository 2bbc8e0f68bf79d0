"""Real Blender renders for multicam and VR: every camera in sync, and the scene in 360°.

- :func:`render_cameras`: the scene (with its animated World) through every chosen
  perspective camera for the loop's frame range, Cycles or EEVEE as the scene is set.
  Every camera writes the same file numbers: ``<camera>/frame_000000.png`` is Blender
  frame ``frame_start``, i.e. loop frame 0, for all cameras; ``<camera>`` is the
  contract's safe name (recorded in the manifest).
- :func:`render_360`: a temporary Cycles equirectangular panoramic camera at a viewpoint,
  mono (2:1) or spherical stereo top-bottom (left eye on top, 1:1), over the same range.
  The panoramic camera's rotation (90°, 0, −90°) makes its image follow Blender's world
  convention (centre column = +X, row 0 = +Z), like every PanoLoop panorama.

Outputs are written to a temporary sibling and renamed into place whole; a cancel (the
``cancelled`` callback returning True between frames) removes them. Scene settings
touched here (camera, frame, output path and format, engine, multiview) are restored.
bpy and the contract only (never torch, never numpy). ``background.py`` runs these in a
background Blender for the UI.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import bpy

from . import contract
from .contract import BadInput, JobCancelled

#: ``progress(stage, step, total)``; ``cancelled() -> bool`` polled between frames.
Progress = Callable[[str, int, int], None]
Cancelled = Callable[[], bool]
#: Rotation that makes a Cycles equirect camera match the world texture (REFERENCE §1).
PANO_ROTATION = (math.radians(90.0), 0.0, math.radians(-90.0))
#: Eye separation for stereo 360 (metres): the average adult interpupillary distance.
DEFAULT_INTEROCULAR_M = 0.064


def _no_progress(stage: str, step: int, total: int) -> None:
    pass


def _never() -> bool:
    return False


# --------------------------------------------------------------------------- checks


def check_cameras(objects: list[Any]) -> list[Any]:
    """The chosen camera objects, refused unless there is at least one and all are perspective."""
    if not objects:
        raise BadInput("no cameras chosen", "add a camera, or change the PanoLoop camera scope")
    for obj in objects:
        if obj.type != "CAMERA":
            raise BadInput(f"object {obj.name!r} is a {obj.type}, not a camera")
        if obj.data.type != "PERSP":
            raise BadInput(
                f"camera {obj.name!r} is {obj.data.type}; multicam needs perspective cameras",
                "set its Type to Perspective, or leave it out of the camera scope",
            )
    contract.safe_names(obj.name for obj in objects)  # each gets its own folder
    return objects


def loop_length(scene: Any) -> int | None:
    """Frames of the loop on the scene's World (PanoLoop's node), or None if there is none."""
    world = scene.world
    if world is None or not world.use_nodes or world.node_tree is None:
        return None
    node = world.node_tree.nodes.get(contract.ENV_NODE_NAME)
    if node is None or node.image is None:
        return None
    return int(node.image_user.frame_duration)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def kept_settings(scene: Any) -> Iterator[None]:
    """Restore what the renders change on ``scene`` (camera, frame, output, engine, views)."""
    render = scene.render
    image = render.image_settings
    saved = {
        "camera": scene.camera,
        "frame": scene.frame_current,
        "filepath": render.filepath,
        "engine": render.engine,
        "res": (render.resolution_x, render.resolution_y, render.resolution_percentage),
        "format": (image.file_format, image.color_mode, image.color_depth),
        "multiview": (render.use_multiview, render.views_format, image.views_format),
        "stereo": image.stereo_3d_format.display_mode,
        "squeezed": image.stereo_3d_format.use_squeezed_frame,
        "extension": render.use_file_extension,
    }
    try:
        yield
    finally:
        scene.camera = saved["camera"]
        render.filepath = saved["filepath"]
        render.engine = saved["engine"]
        render.resolution_x, render.resolution_y, render.resolution_percentage = saved["res"]
        image.file_format, image.color_mode, image.color_depth = saved["format"]
        render.use_multiview, render.views_format, image.views_format = saved["multiview"]
        image.stereo_3d_format.display_mode = saved["stereo"]
        image.stereo_3d_format.use_squeezed_frame = saved["squeezed"]
        render.use_file_extension = saved["extension"]
        scene.frame_set(saved["frame"])


def _png_output(scene: Any) -> None:
    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = "RGB"
    image.color_depth = "8"
    scene.render.use_file_extension = True


def _render_frame(scene: Any, frame: int, path_stem: Path) -> None:
    scene.frame_set(frame)
    scene.render.filepath = str(path_stem)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    if not Path(f"{path_stem}.png").is_file():
        raise contract.PanoLoopError(f"Blender did not write {path_stem}.png")


def _part_of(part: tuple[int, int] | None, start: int, end: int) -> tuple[int, int]:
    """The frames to render: ``part`` (inclusive) when given, refused outside the range."""
    if part is None:
        return start, end
    first, last = (int(v) for v in part)
    if not start <= first <= last <= end:
        raise BadInput(f"frames {first}-{last} are not within the frame range {start}-{end}")
    return first, last


def _scene_fps(scene: Any) -> float:
    return scene.render.fps / scene.render.fps_base


# --------------------------------------------------------------------------- multicam


def render_cameras(
    scene: Any,
    camera_objects: list[Any],
    frame_range: tuple[int, int],
    out_dir: str | Path,
    *,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
    loop_frames: int | None = None,
    part: tuple[int, int] | None = None,
    only: Collection[str] | None = None,
) -> Path:
    """Render ``scene`` through every camera for ``frame_range`` (inclusive) into ``out_dir``.

    ``out_dir/<camera>/frame_NNNNNN.png`` where N = frame − start (loop frame N), the
    same numbers for every camera, plus ``manifest.json``. ``loop_frames`` (default: the
    World's PanoLoop loop) must equal the range's length. ``part`` (Blender frames,
    inclusive, within the range) and ``only`` (camera names) render only those frames of
    those cameras, with the same numbers, folders and manifest as the whole render: one
    task of a render split over a cluster. Returns ``out_dir``.
    """
    start, end = (int(v) for v in frame_range)
    cameras = check_cameras(list(camera_objects))
    contract.check_frame_range(
        start, end, loop_frames if loop_frames is not None else loop_length(scene)
    )
    first, last = _part_of(part, start, end)
    out_dir = Path(out_dir)
    folders = contract.safe_names(cam.name for cam in cameras)
    if only is not None and not set(only) <= set(folders):
        raise BadInput(f"cameras {sorted(set(only) - set(folders))} are not among those chosen")
    rendered = len(cameras) if only is None else len(set(only))
    total = rendered * (last - first + 1)
    with contract.atomic_output_dir(out_dir) as tmp, kept_settings(scene):
        _png_output(scene)
        scene.render.use_multiview = False
        step = 0
        for cam in [c for c in cameras if only is None or c.name in only]:
            scene.camera = cam
            (tmp / folders[cam.name]).mkdir()
            for frame in range(first, last + 1):
                if cancelled():
                    raise JobCancelled("cancelled; no renders were kept")
                stem = Path(contract.frame_name(frame - start, ""))
                _render_frame(scene, frame, tmp / folders[cam.name] / stem)
                step += 1
                progress("render", step, total)
        contract.write_manifest(
            tmp,
            {
                "kind": contract.KIND_BLENDER_RENDERS,
                "engine": scene.render.engine,
                "frame_range": [start, end],
                "frames": end - start + 1,
                "fps": _scene_fps(scene),
                "loop": True,
                "sync": "frame_N.png of every camera is Blender frame start + N",
                "cameras": [
                    {"name": c.name, "folder": folders[c.name], "type": c.data.type}
                    for c in cameras
                ],
            },
        )
    return out_dir


# --------------------------------------------------------------------------- 360°


def _pano_camera(scene: Any, viewpoint: tuple[float, float, float], stereo: bool) -> Any:
    data = bpy.data.cameras.new("PanoLoop 360")
    data.type = "PANO"
    data.panorama_type = "EQUIRECTANGULAR"
    data.clip_start = 0.01
    if stereo:
        data.stereo.use_spherical_stereo = True
        data.stereo.convergence_mode = "PARALLEL"
        data.stereo.interocular_distance = DEFAULT_INTEROCULAR_M
        data.stereo.use_pole_merge = True  # fade parallax out near the poles
    obj = bpy.data.objects.new("PanoLoop 360", data)
    obj.location = viewpoint
    obj.rotation_euler = PANO_ROTATION
    scene.collection.objects.link(obj)
    return obj


def render_360(
    scene: Any,
    viewpoint: tuple[float, float, float],
    frame_range: tuple[int, int],
    out_dir: str | Path,
    *,
    width: int = 1024,
    stereo: bool = False,
    interocular: float = DEFAULT_INTEROCULAR_M,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
    loop_frames: int | None = None,
    part: tuple[int, int] | None = None,
) -> Path:
    """Render the scene in 360° from ``viewpoint`` (Blender world coordinates) with Cycles.

    Mono: ``width``×``width/2`` equirect frames. Stereo: spherical stereo, top-bottom with
    the left eye on top, ``width``×``width`` frames. ``out_dir`` becomes a PanoLoop
    panorama folder (``frames/``, ``manifest.json`` with ``stereo``), which
    ``engine export`` turns into a tagged ``_360``/``_360_TB`` MP4. ``part`` as for
    :func:`render_cameras`.
    """
    start, end = (int(v) for v in frame_range)
    if width < 2 or width % 4:
        raise BadInput(f"360° width {width} must be a positive multiple of 4")
    if not interocular > 0:
        raise BadInput(f"interocular distance {interocular} must be positive")
    contract.check_frame_range(
        start, end, loop_frames if loop_frames is not None else loop_length(scene)
    )
    first, last = _part_of(part, start, end)
    out_dir = Path(out_dir)
    if not hasattr(scene, "cycles"):
        raise BadInput("360° renders need Cycles, which is not available in this Blender")
    camera = None
    with contract.atomic_output_dir(out_dir) as tmp, kept_settings(scene):
        try:
            camera = _pano_camera(scene, tuple(viewpoint), stereo)
            camera.data.stereo.interocular_distance = interocular
            scene.render.engine = "CYCLES"
            scene.camera = camera
            scene.render.resolution_x, scene.render.resolution_y = width, width // 2
            scene.render.resolution_percentage = 100
            _png_output(scene)
            _stereo_output(scene, stereo)
            frames = tmp / contract.FRAMES_DIR
            frames.mkdir()
            total = last - first + 1
            for frame in range(first, last + 1):
                if cancelled():
                    raise JobCancelled("cancelled; no 360° frames were kept")
                _render_frame(scene, frame, frames / Path(contract.frame_name(frame - start, "")))
                progress("render 360", frame - first + 1, total)
        finally:
            if camera is not None:
                data = camera.data
                bpy.data.objects.remove(camera)
                bpy.data.cameras.remove(data)
        contract.write_manifest(
            tmp,
            contract.panorama_manifest(
                width=width,
                height=width if stereo else width // 2,
                frames=end - start + 1,
                fps=_scene_fps(scene),
                loop=True,
                stereo="top-bottom" if stereo else "mono",
                stereo_layout="left eye on top" if stereo else None,
                interocular_m=interocular if stereo else None,
                viewpoint=list(viewpoint),
                frame_range=[start, end],
                source="blender",
                engine="CYCLES",
            ),
        )
    return out_dir


def _stereo_output(scene: Any, stereo: bool) -> None:
    render = scene.render
    render.use_multiview = stereo
    if not stereo:
        return
    render.views_format = "STEREO_3D"
    image = render.image_settings
    image.views_format = "STEREO_3D"
    image.stereo_3d_format.display_mode = "TOPBOTTOM"
    image.stereo_3d_format.use_squeezed_frame = False


def render_spec(
    scene: Any,
    spec: dict[str, Any],
    *,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
) -> Path:
    """Run a render step described as plain data (``plans.RenderStep.spec``).

    ``{"kind": "cameras", "cameras": [names], "frame_range": [s, e], "out": DIR}`` or
    ``{"kind": "360", "viewpoint": [x, y, z], "width": W, "stereo": bool, ...}``; an
    optional ``"part": [first, last]`` renders only those frames of the range, and
    ``"only": [names]`` only those of the cameras (a cluster task).
    """
    frame_range = tuple(spec["frame_range"])
    part = tuple(spec["part"]) if spec.get("part") else None
    if spec["kind"] == "cameras":
        cameras = [scene.objects[name] for name in spec["cameras"]]
        return render_cameras(
            scene, cameras, frame_range, Path(spec["out"]), progress=progress,
            cancelled=cancelled, part=part, only=spec.get("only"),
        )  # fmt: skip
    return render_360(
        scene, tuple(spec["viewpoint"]), frame_range, Path(spec["out"]),
        width=int(spec.get("width", 1024)), stereo=bool(spec.get("stereo")),
        progress=progress, cancelled=cancelled, part=part,
    )  # fmt: skip
