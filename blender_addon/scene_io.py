"""Scene → plain values: Blender cameras as ``cameras.json`` entries (the engine's format).

Imports bpy only inside functions that need it, so the conversion rules can be read
and unit-tested without Blender. No torch, no numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class SceneError(Exception):
    """A scene the engine cannot use (e.g. no camera); the message names the object."""


def camera_to_dict(obj: Any, scene: Any) -> dict[str, Any]:
    """One ``cameras.json`` entry from a Blender camera object, with Blender's own names.

    ``resolution_x/y`` are the rendered size (resolution × percentage); ``matrix_world``
    is evaluated at the current frame. Only perspective cameras can be reprojected:
    an orthographic or panoramic camera raises :class:`SceneError` naming it.
    """
    data = obj.data
    if obj.type != "CAMERA":
        raise SceneError(f"object {obj.name!r} is a {obj.type}, not a camera")
    if data.type != "PERSP":
        raise SceneError(
            f"camera {obj.name!r} is {data.type}; PanoLoop renders perspective cameras "
            "(set its Type to Perspective)"
        )
    render = scene.render
    scale = render.resolution_percentage / 100.0
    return {
        "name": obj.name,
        "matrix_world": [list(row) for row in obj.matrix_world],
        "lens": data.lens,
        "sensor_width": data.sensor_width,
        "sensor_height": data.sensor_height,
        "sensor_fit": data.sensor_fit,
        "shift_x": data.shift_x,
        "shift_y": data.shift_y,
        "resolution_x": max(1, int(render.resolution_x * scale)),
        "resolution_y": max(1, int(render.resolution_y * scale)),
        "pixel_aspect_x": render.pixel_aspect_x,
        "pixel_aspect_y": render.pixel_aspect_y,
    }


def write_cameras_json(objects: list[Any], scene: Any, path: str | Path) -> Path:
    """Write ``cameras.json`` for ``objects`` (camera objects) of ``scene``."""
    if not objects:
        raise SceneError("no cameras chosen: add a camera or change the camera scope")
    entries = [camera_to_dict(obj, scene) for obj in objects]
    path = Path(path)
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path


def cameras_in_scope(scene: Any, scope: str, collection: Any = None) -> list[Any]:
    """The perspective cameras of ``scene`` chosen by ``scope`` (``scene.panoloop.camera_scope``).

    ``ALL``: every camera object in the scene; ``SELECTED``: the selected ones (in the
    active view layer); ``COLLECTION``: those in ``collection`` and its children. Sorted
    by name so ``cameras.json`` is stable; non-perspective cameras are left out.
    """
    if scope == "ALL":
        objects = scene.objects
    elif scope == "SELECTED":
        objects = [obj for obj in scene.objects if obj.select_get()]
    elif scope == "COLLECTION":
        if collection is None:
            raise SceneError("camera scope is Collection but no collection is chosen")
        objects = collection.all_objects
    else:
        raise SceneError(f"unknown camera scope {scope!r} (use ALL, SELECTED or COLLECTION)")
    cameras = [obj for obj in objects if obj.type == "CAMERA" and obj.data.type == "PERSP"]
    return sorted(cameras, key=lambda obj: obj.name)
