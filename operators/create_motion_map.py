"""``panoloop.create_motion_map``: a black map at the source's size to paint motion on."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import commands
from ..blender_addon.engine_env import AddonError


class PANOLOOP_OT_create_motion_map(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Create a black motion map at the source image's size (red = drift, green = sway,
    blue = ripple; black stays still), open it for painting and use it on the next run"""

    bl_idname = "panoloop.create_motion_map"
    bl_label = "Create Motion Map"
    bl_options = {"REGISTER"}

    def execute(self, context: Any) -> set[str]:
        try:
            image = commands.create_motion_map(context.scene)
        except AddonError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not bpy.app.background:
            open_for_painting(context, image)
        self.report({"INFO"}, f"Motion map {image.filepath_raw}: paint it, then animate")
        return {"FINISHED"}


def open_for_painting(context: Any, image: Any) -> None:
    """Show ``image`` in an Image Editor in paint mode: the largest non-3D-view area of
    the window becomes one (a new window if there is no screen to borrow)."""
    screen = context.screen
    areas = [a for a in screen.areas if a.type != "VIEW_3D"] if screen else []
    if not areas:
        bpy.ops.wm.window_new()
        areas = list(context.window_manager.windows[-1].screen.areas)
    area = max(areas, key=lambda a: a.width * a.height)
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    space.image = image
    space.ui_mode = "PAINT"
