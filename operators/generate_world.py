"""``panoloop.generate_world``: a prompt → a looping 360° World, aware of the scene's cameras."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import commands
from ._launch import RUN_MODE, launch, poll_idle


class PANOLOOP_OT_generate_world(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Generate a seamless looping 360° world from the prompt and play it on the World"""

    bl_idname = "panoloop.generate_world"
    bl_label = "Generate World"
    bl_options = {"REGISTER"}

    run_mode: RUN_MODE

    @classmethod
    def poll(cls, context: Any) -> bool:
        return poll_idle(cls, context)

    def execute(self, context: Any) -> set[str]:
        scene = context.scene
        return launch(self, lambda: commands.generate_job(scene))
