"""``panoloop.serve_headset``: the last VR package over HTTPS, for a headset's browser.

Runs ``engine serve`` in the engine's worker (a self-signed certificate made on the
spot; WebXR needs HTTPS). The panel shows the URL while it serves; Cancel stops it.
By default only this computer can connect (use ``adb reverse`` with a Quest on USB);
*On the LAN* is the user's explicit choice to let the headset connect over Wi-Fi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, IntProperty

from ._launch import RUN_MODE, launch, poll_idle


class PANOLOOP_OT_serve_headset(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Serve the last VR export over HTTPS so a headset's browser can enter VR (Cancel stops)"""

    bl_idname = "panoloop.serve_headset"
    bl_label = "Serve to Headset"
    bl_options = {"REGISTER"}

    run_mode: RUN_MODE
    lan: BoolProperty(
        name="On the LAN",
        description="Let other devices on the network (the headset over Wi-Fi) connect; "
        "off: this computer only (with a Quest on USB, use adb reverse)",
        default=False,
    )
    port: IntProperty(name="Port", default=8443, min=1, max=65535)

    @classmethod
    def poll(cls, context: Any) -> bool:
        if not poll_idle(cls, context):
            return False
        if not context.scene.panoloop.last_vr_package:
            cls.poll_message_set("export for VR first")
            return False
        return True

    def execute(self, context: Any) -> set[str]:
        from ..blender_addon import commands

        folder = Path(bpy.path.abspath(context.scene.panoloop.last_vr_package))
        argv = [str(folder), "--host", "0.0.0.0" if self.lan else "127.0.0.1"]
        argv += ["--port", str(self.port)]
        return launch(self, lambda: commands.serve_job(argv))
