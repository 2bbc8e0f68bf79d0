"""``panoloop.export_vr``: export the scene for VR (360° MP4s, cubemaps, WebXR package).

bpy only; the work lives in :mod:`..blender_addon.package` and is imported inside
``execute`` so enabling the extension stays instant.
"""

from __future__ import annotations

import bpy


class PANOLOOP_OT_export_vr(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Export the looping world and the scene for VR headsets and the browser"""

    bl_idname = "panoloop.export_vr"
    bl_label = "Export for VR"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from ..blender_addon.package import export_vr_for_operator
        from ..blender_addon.render import RenderError

        try:
            out = export_vr_for_operator(context)
        except RenderError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"VR package written to {out}")
        return {"FINISHED"}
