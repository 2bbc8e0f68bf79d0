"""``panoloop.export_vr``: the World's loop and the scene, ready for headsets and browsers.

Writes the scene as glTF (Blender's exporter), the loop as a 360° MP4 with spherical
metadata, cubemaps and a WebXR package; optionally Cycles 360° renders of the composed
scene, mono and spherical stereo (top-bottom, left eye on top). In the UI the renders
run in a background Blender and the engine in its worker (progress, Cancel); in
background mode it blocks.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import BoolProperty, IntProperty

from ._launch import RUN_MODE, launch_plan, poll_idle


class PANOLOOP_OT_export_vr(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Export the looping World and the scene for VR headsets and the browser (360° MP4
    with spherical metadata, cubemaps, WebXR package with the scene as glTF)"""

    bl_idname = "panoloop.export_vr"
    bl_label = "Export for VR"
    bl_options = {"REGISTER"}

    run_mode: RUN_MODE
    mono_360: BoolProperty(
        name="Scene 360°",
        description="Also render the composed scene in 360° from the active camera (Cycles)",
        default=False,
    )
    stereo_360: BoolProperty(
        name="Stereo 360°",
        description="Also render spherical stereo, top-bottom with the left eye on top (Cycles)",
        default=False,
    )
    width_360: IntProperty(
        name="360° Width", description="Width of the scene 360° renders", default=2048, min=64
    )

    @classmethod
    def poll(cls, context: Any) -> bool:
        return poll_idle(cls, context)

    def execute(self, context: Any) -> set[str]:
        from ..blender_addon import commands, plans

        scene = context.scene
        width = self.width_360 // 4 * 4
        return launch_plan(
            self,
            lambda: plans.vr_export_plan(
                scene,
                commands.new_output_path(scene, "vr"),
                mono_360_width=width if self.mono_360 else 0,
                stereo_360_width=width if self.stereo_360 else 0,
            ),
            "VR package written to",
        )
