"""``panoloop.render_multicam``: render every chosen camera of the scene in sync.

For each camera in the PanoLoop camera scope: Blender's own render of the scene with
the animated World over the loop's frame range (the scene's render engine), and the
engine's reprojection of the loop into the same camera; per-camera clips and MP4s, a
contact sheet and ``cameras.json``. In the UI the renders run in a background Blender
and the engine in its worker (progress, Cancel); in background mode it blocks.
"""

from __future__ import annotations

from typing import Any

import bpy

from ._launch import RUN_MODE, launch_plan, poll_idle


class PANOLOOP_OT_render_multicam(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Render every chosen camera over the loop's frame range, frame-synchronised, plus the
    loop reprojected into each camera, MP4s and a contact sheet"""

    bl_idname = "panoloop.render_multicam"
    bl_label = "Render All Cameras"
    bl_options = {"REGISTER"}

    run_mode: RUN_MODE

    @classmethod
    def poll(cls, context: Any) -> bool:
        return poll_idle(cls, context)

    def execute(self, context: Any) -> set[str]:
        from ..blender_addon import commands, plans

        scene = context.scene
        return launch_plan(
            self,
            lambda: plans.multicam_plan(scene, commands.new_output_path(scene, "multicam")),
            "multicam written to",
        )
