"""``panoloop.open_output_folder``: show PanoLoop's output folder in the file browser."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import engine_env
from ..blender_addon.engine_env import AddonError


class PANOLOOP_OT_open_output_folder(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Open the folder PanoLoop writes its outputs to"""

    bl_idname = "panoloop.open_output_folder"
    bl_label = "Open Folder"
    bl_options = {"REGISTER"}

    def execute(self, context: Any) -> set[str]:
        try:
            folder = engine_env.output_root()
        except AddonError as exc:
            self.report({"ERROR"}, exc.report_text())
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=str(folder))
        return {"FINISHED"}
