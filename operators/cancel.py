"""``panoloop.cancel``: stop the running job; its output folder is never left behind."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import runner


class PANOLOOP_OT_cancel(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Stop the running PanoLoop job (nothing of it is kept)"""

    bl_idname = "panoloop.cancel"
    bl_label = "Cancel PanoLoop Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: Any) -> bool:
        if not runner.is_busy():
            cls.poll_message_set("no PanoLoop job is running")
            return False
        return True

    def execute(self, context: Any) -> set[str]:
        runner.cancel()
        self.report({"INFO"}, "PanoLoop: cancelling…")
        return {"FINISHED"}
