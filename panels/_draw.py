"""The panel body shared by the World tab and the 3D viewport sidebar."""

from __future__ import annotations

from typing import Any

import bpy

from ..blender_addon import runner


def job_text(display: Any) -> str:
    """``render 12/96 · ~0:04 left``: the stage, its steps and the worker's time left."""
    text = f"{display.stage} {display.step}/{display.total}" if display.total else display.stage
    return f"{text} · {display.eta}" if display.eta else text


def draw_job(layout: Any, context: Any) -> None:
    """Progress bar and stage while a job runs; the last result or error with its fix."""
    display = context.window_manager.panoloop_job
    if runner.is_busy():
        box = layout.box()
        box.label(text=display.label, icon="TIME")
        text = job_text(display)
        box.progress(factor=display.progress, type="BAR", text=text)
        if display.detail:
            box.label(text=display.detail)
        box.operator("panoloop.cancel", icon="CANCEL")
    elif display.state == "ERROR":
        box = layout.box()
        box.alert = True
        _wrapped(box, display.message, icon="ERROR")
        if display.fix:
            _wrapped(box, f"Fix: {display.fix}", icon="INFO")
    elif display.state == "CANCELLED":
        layout.label(text="Cancelled; nothing was written", icon="CANCEL")
    elif display.state == "DONE":
        layout.label(text=f"Done: {display.output}", icon="CHECKMARK")


def _wrapped(layout: Any, text: str, icon: str = "NONE", width: int = 60) -> None:
    """Long messages as several labels (Blender labels do not wrap)."""
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            layout.label(text=line, icon=icon if first else "BLANK1")
            line, first = word, False
        else:
            line = f"{line} {word}" if line else word
    if line:
        layout.label(text=line, icon=icon if first else "BLANK1")


def draw_settings(layout: Any, context: Any) -> None:
    settings = context.scene.panoloop
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.row().prop(settings, "mode", expand=True)
    col = layout.column()
    if settings.mode == "PROMPT":
        col.prop(settings, "prompt")
        col.prop(settings, "negative_prompt")
        col.prop(settings, "size_preset")
        sub = col.column(align=True)
        sub.enabled = settings.size_preset == "CUSTOM"
        sub.prop(settings, "width")
        sub.prop(settings, "height")
        col.prop(settings, "steps")
        col.prop(settings, "guidance")
        col.prop(settings, "camera_scope")
        if settings.camera_scope == "COLLECTION":
            col.prop(settings, "camera_collection")
    else:
        col.prop(settings, "source_image")
        if not settings.source_image:
            col.label(text="Empty: the World's environment image", icon="WORLD")
        col.prop(settings, "motion_mask")
        row = col.row(align=True)
        row.prop(settings, "motion_map")
        row.operator("panoloop.create_motion_map", text="", icon="BRUSH_DATA")
        row = col.row(align=True)
        row.prop(settings, "drift_auto", text="", icon="AUTO")
        sub = row.row(align=True)
        sub.enabled = not settings.drift_auto
        sub.prop(settings, "drift_direction")
        col.prop(settings, "drift_speed")
        col.prop(settings, "strength")
    col.prop(settings, "seconds")
    col.prop(settings, "fps")
    col.prop(settings, "seed")
    frames = settings.seconds * settings.fps
    col.label(text=f"{frames:g} frames, looping", icon="FILE_REFRESH")
    col.prop(settings, "world_rotation")


def draw_actions(layout: Any, context: Any) -> None:
    settings = context.scene.panoloop
    col = layout.column(align=True)
    col.scale_y = 1.3
    if settings.mode == "PROMPT":
        col.operator("panoloop.generate_world", icon="WORLD")
    else:
        col.operator("panoloop.animate_hdri", icon="WORLD")
    row = layout.row(align=True)
    row.operator("panoloop.apply_world", icon="FILE_FOLDER")
    row = layout.row(align=True)
    row.operator("panoloop.render_multicam", icon="OUTLINER_OB_CAMERA")
    row.operator("panoloop.export_vr", icon="EXPORT")
    layout.operator("panoloop.serve_headset", icon="URL")
    draw_output_folder(layout)


def draw_output_folder(layout: Any) -> None:
    """Where outputs go (preference, ``//panoloop/`` beside the .blend, or the user
    folder), with an Open Folder button."""
    from ..blender_addon import engine_env

    row = layout.row(align=True)
    row.label(text=engine_env.output_root_text(), icon="FILE_FOLDER")
    row.operator("panoloop.open_output_folder", text="", icon="FOLDER_REDIRECT")


def draw_panel(layout: Any, context: Any) -> None:
    draw_settings(layout, context)
    layout.separator()
    draw_actions(layout, context)
    draw_job(layout, context)


def draw_status_bar(self: Any, context: Any) -> None:
    """Appended to the status bar: the running job's stage and progress."""
    if not runner.is_busy():
        return
    display = context.window_manager.panoloop_job
    row = self.layout.row(align=True)
    row.label(text="PanoLoop", icon="WORLD")
    text = job_text(display)
    row.progress(factor=display.progress, type="BAR", text=text)
    row.operator("panoloop.cancel", text="", icon="CANCEL", emboss=False)


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
