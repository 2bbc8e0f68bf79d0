"""``panoloop.animate_hdri``: a still 360° image → a seamless loop on the World."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import commands
from ._launch import RUN_MODE, launch, poll_idle


class PANOLOOP_OT_animate_hdri(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Animate Source Image (or the World's environment image) into a seamless loop and
    play it on the World"""

    bl_idname = "panoloop.animate_hdri"
    bl_label = "Animate HDRI"
    bl_options = {"REGISTER"}

    run_mode: RUN_MODE

    @classmethod
    def poll(cls, context: Any) -> bool:
        return poll_idle(cls, context)

    def execute(self, context: Any) -> set[str]:
        scene = context.scene
        return launch(self, lambda: commands.animate_job(scene))
