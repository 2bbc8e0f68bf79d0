"""``panoloop.apply_world``: load a finished output folder as the World's looping texture."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import StringProperty

from ..blender_addon import world
from ..blender_addon.engine_env import AddonError


class PANOLOOP_OT_apply_world(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Play a PanoLoop output folder on the World as a looping Environment Texture"""

    bl_idname = "panoloop.apply_world"
    bl_label = "Apply Loop to World"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(
        name="Output Folder", description="A PanoLoop output folder", subtype="DIR_PATH"
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None

    def invoke(self, context: Any, event: Any) -> set[str]:
        if not self.directory:
            self.directory = context.scene.panoloop.last_output
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: Any) -> set[str]:
        folder = self.directory or context.scene.panoloop.last_output
        if not folder:
            self.report({"ERROR"}, "no output folder given — choose a PanoLoop output folder")
            return {"CANCELLED"}
        folder = bpy.path.abspath(folder)
        try:
            node = world.apply_panorama(context.scene, folder)
            warning = world.fps_mismatch(context.scene, folder)
        except AddonError as exc:
            self.report({"ERROR"}, exc.report_text())
            return {"CANCELLED"}
        if warning:
            self.report({"WARNING"}, warning)
        frames = node.image_user.frame_duration
        self.report({"INFO"}, f"World plays {frames} looping frames from {folder}")
        return {"FINISHED"}
