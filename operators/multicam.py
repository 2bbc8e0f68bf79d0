"""``panoloop.render_multicam``: render every chosen camera of the scene in sync.

Blender side of multicam: a real render of the scene (with the animated World) through
each camera for the loop's frame range, every camera writing the same frame numbers.
bpy only; the work itself lives in :mod:`..blender_addon.render` and is imported inside
``execute`` so enabling the extension stays instant.
"""

from __future__ import annotations

import bpy


class PANOLOOP_OT_render_multicam(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Render every chosen camera over the loop's frame range, frame-synchronised"""

    bl_idname = "panoloop.render_multicam"
    bl_label = "Render All Cameras"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from ..blender_addon.render import RenderError, render_multicam_for_operator

        try:
            out = render_multicam_for_operator(context)
        except RenderError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Multicam renders written to {out}")
        return {"FINISHED"}
