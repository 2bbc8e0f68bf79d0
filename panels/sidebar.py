"""The PanoLoop tab in the 3D viewport sidebar (N panel)."""

from __future__ import annotations

from typing import Any

import bpy

from ._draw import draw_panel


class PANOLOOP_PT_sidebar(bpy.types.Panel):  # noqa: N801 (Blender naming)
    bl_label = "PanoLoop"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PanoLoop"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None

    def draw(self, context: Any) -> None:
        draw_panel(self.layout, context)
