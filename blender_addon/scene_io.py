"""Scene → plain values: Blender cameras as ``cameras.json`` entries (the engine's format),
and the one camera-scope rule.

Imports no bpy, so the conversion rules can be read and unit-tested without Blender.
No torch, no numpy. A scene the engine cannot use raises the contract's
:class:`~engine.contract.BadInput` naming the object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .contract import BadInput


def camera_to_dict(obj: Any, scene: Any) -> dict[str, Any]:
    """One ``cameras.json`` entry from a Blender camera object, with Blender's own names.

    ``resolution_x/y`` are the rendered size (resolution × percentage); ``matrix_world``
    is evaluated at the current frame. Only perspective cameras can be reprojected:
    an orthographic or panoramic camera raises :class:`BadInput` naming it.
    """
    data = obj.data
    if obj.type != "CAMERA":
        raise BadInput(f"object {obj.name!r} is a {obj.type}, not a camera")
    if data.type != "PERSP":
        raise BadInput(
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
        raise BadInput(
            "no perspective cameras chosen", "add a camera or change the PanoLoop camera scope"
        )
    entries = [camera_to_dict(obj, scene) for obj in objects]
    path = Path(path)
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path


def cameras_in_scope(scene: Any, scope: str | None = None, collection: Any = None) -> list[Any]:
    """The perspective cameras of ``scene`` chosen by ``scope`` — the one camera-scope rule.

    ``scope`` defaults to ``scene.panoloop.camera_scope`` (and ``collection`` to its
    ``camera_collection``). ``ALL``: every camera object in the scene; ``SELECTED``: the
    selected ones (in the active view layer); ``COLLECTION``: those in the collection and
    its children. Only perspective cameras can be reprojected, so orthographic and
    panoramic cameras are left out, everywhere (generation and multicam alike); see
    :func:`left_out_cameras`. Sorted by name so ``cameras.json`` is stable.
    """
    return sorted(
        (obj for obj in _scope_objects(scene, scope, collection) if obj.data.type == "PERSP"),
        key=lambda obj: obj.name,
    )


def left_out_cameras(scene: Any, scope: str | None = None, collection: Any = None) -> list[str]:
    """Names of the non-perspective cameras in scope (the rule leaves them out)."""
    return sorted(
        obj.name for obj in _scope_objects(scene, scope, collection) if obj.data.type != "PERSP"
    )


def _scope_objects(scene: Any, scope: str | None, collection: Any) -> list[Any]:
    if scope is None:
        scope, collection = scene.panoloop.camera_scope, scene.panoloop.camera_collection
    if scope == "ALL":
        objects = scene.objects
    elif scope == "SELECTED":
        objects = [obj for obj in scene.objects if obj.select_get()]
    elif scope == "COLLECTION":
        if collection is None:
            raise BadInput(
                "camera scope is Collection but no collection is chosen",
                "choose a Camera Collection in the PanoLoop panel",
            )
        objects = collection.all_objects
    else:
        raise BadInput(f"unknown camera scope {scope!r} (use ALL, SELECTED or COLLECTION)")
    return [obj for obj in objects if obj.type == "CAMERA"]
