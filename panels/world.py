"""The PanoLoop panel in the World properties tab."""

from __future__ import annotations

from typing import Any

import bpy

from ._draw import draw_panel


class PANOLOOP_PT_world(bpy.types.Panel):  # noqa: N801 (Blender naming)
    bl_label = "PanoLoop"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "world"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None

    def draw(self, context: Any) -> None:
        draw_panel(self.layout, context)
