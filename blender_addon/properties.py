"""``scene.panoloop`` (the scripting API users rely on) and the job display.

Scene settings live in one ``PropertyGroup`` on the scene. The running job's display
(stage, progress, last error) lives on the window manager instead: it is not saved with
the file, and a job that is cancelled leaves the scene exactly as it was.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .contract import FPS, SECONDS, SEED, STRENGTH

#: 2:1 sizes offered as presets. 4096×2048 plays on every current headset (H.264/H.265
#: at 60 fps on Quest); 5760×2880 is Quest's largest H.264 mono size at 30 fps.
SIZE_PRESETS = (
    ("1024x512", "1024 × 512", "Quick previews"),
    ("2048x1024", "2048 × 1024", "Standard"),
    ("4096x2048", "4096 × 2048", "Headset-safe 4K (Quest: H.264/H.265 up to 60 fps)"),
    ("5760x2880", "5760 × 2880", "Quest's largest H.264 mono size, 30 fps"),
    ("CUSTOM", "Custom", "Width and height set by hand (must stay 2:1)"),
)


def _scene_fps(settings: Any) -> int:
    render = settings.id_data.render
    return min(max(int(FPS.low), round(render.fps / render.fps_base)), int(FPS.high))


def _get_fps(self: Any) -> int:
    # Until set, fps follows the scene's frame rate, so the loop plays at its own speed.
    return self.get("fps", _scene_fps(self))


def _set_fps(self: Any, value: int) -> None:
    self["fps"] = value


def _apply_world_rotation(self: Any, _context: Any) -> None:
    from .world import set_world_rotation

    set_world_rotation(self.id_data)


def _apply_size_preset(self: Any, _context: Any) -> None:
    if self.size_preset != "CUSTOM":
        width, height = (int(v) for v in self.size_preset.split("x"))
        self.width, self.height = width, height


class PanoLoopSettings(bpy.types.PropertyGroup):
    """Everything a PanoLoop job reads from the scene (``scene.panoloop``)."""

    mode: EnumProperty(
        name="Mode",
        items=(
            ("PROMPT", "Prompt", "Generate a looping 360° world from a text prompt"),
            ("ANIMATE", "Animate HDRI", "Bring a still 360° image to life as a seamless loop"),
        ),
        default="ANIMATE",
    )
    prompt: StringProperty(name="Prompt", description="What the 360° world shows")
    negative_prompt: StringProperty(name="Negative Prompt", description="What to avoid")
    source_image: StringProperty(
        name="Source Image",
        description="2:1 equirect image to animate; empty = the World's current environment image",
        subtype="FILE_PATH",
    )
    motion_mask: StringProperty(
        name="Motion Mask",
        description="Optional mask of the same size: white moves, black stays exactly still",
        subtype="FILE_PATH",
    )
    motion_map: StringProperty(
        name="Motion Map",
        description="Optional painted RGB map of the source's size: red = one-way drift, "
        "green = sway, blue = ripple, value = how much; black = exactly still",
        subtype="FILE_PATH",
    )
    drift_auto: BoolProperty(
        name="Auto Drift Direction",
        description="Let the seed choose the wind heading the sky drifts with",
        default=True,
    )
    drift_direction: FloatProperty(
        name="Drift Direction",
        description="Wind heading in degrees in the world: 0 = toward +X, 90 = toward +Y",
        default=0.0,
        min=-360.0,
        max=360.0,
    )
    drift_speed: FloatProperty(
        name="Drift Speed",
        description="One-way drift overhead, degrees of arc per second (0 = none)",
        default=2.0,
        min=0.0,
        max=90.0,
        soft_max=20.0,
    )
    size_preset: EnumProperty(
        name="Size", items=SIZE_PRESETS, default="2048x1024", update=_apply_size_preset
    )
    width: IntProperty(
        name="Width", description="Panorama width in pixels (2 × height)", default=2048, min=64
    )
    height: IntProperty(
        name="Height", description="Panorama height in pixels", default=1024, min=32
    )
    # Ranges are the engine's own (engine.contract), so the panel cannot ask for a loop
    # the engine would refuse.
    seconds: FloatProperty(
        name="Seconds",
        description="Loop length",
        default=4.0,
        min=0.05,
        max=SECONDS.high,
        soft_max=30.0,
    )
    fps: IntProperty(
        name="FPS",
        description="Frames per second of the loop (defaults to the scene's frame rate)",
        min=int(FPS.low),
        max=int(FPS.high),
        get=_get_fps,
        set=_set_fps,
    )
    steps: IntProperty(name="Steps", description="Denoising steps", default=25, min=1, max=200)
    guidance: FloatProperty(
        name="Guidance", description="Classifier-free guidance scale", default=7.5, min=0.0
    )
    strength: FloatProperty(
        name="Motion Strength",
        description="Scale of the motion when animating (0 = still)",
        default=1.0,
        min=STRENGTH.low,
        max=STRENGTH.high,
        soft_max=3.0,
    )
    seed: IntProperty(
        name="Seed",
        description="Same seed, same result",
        default=0,
        min=int(SEED.low),
        max=int(SEED.high),
    )
    camera_scope: EnumProperty(
        name="Cameras",
        description="Cameras the generation pays attention to (and multicam renders)",
        items=(
            ("ALL", "All", "Every camera of the scene"),
            ("SELECTED", "Selected", "Selected cameras only"),
            ("COLLECTION", "Collection", "Cameras in the chosen collection"),
        ),
        default="ALL",
    )
    camera_collection: PointerProperty(
        name="Camera Collection", type=bpy.types.Collection, description="For scope Collection"
    )
    world_rotation: FloatProperty(
        name="World Rotation",
        description="Turns the loop on the World about the vertical axis (PanoLoop's Mapping "
        "node, Z); renders, reprojections and exports all follow it",
        subtype="ANGLE",
        unit="ROTATION",
        default=0.0,
        update=_apply_world_rotation,
    )
    last_vr_package: StringProperty(
        name="Last VR Package",
        description="The folder Export for VR wrote last (Serve to Headset serves it)",
        subtype="DIR_PATH",
    )
    last_output: StringProperty(
        name="Last Output", description="The output folder applied last", subtype="DIR_PATH"
    )


class PanoLoopJobDisplay(bpy.types.PropertyGroup):
    """What the panels and the status bar show of the current job (window manager)."""

    label: StringProperty()
    state: StringProperty(default="IDLE")
    stage: StringProperty()
    step: IntProperty()
    total: IntProperty()
    #: The current stage's time left, as the worker estimates it ("~1:05 left").
    eta: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    detail: StringProperty()
    message: StringProperty()
    fix: StringProperty()
    output: StringProperty()
    show_details: BoolProperty(name="Details", default=False)


CLASSES = (PanoLoopSettings, PanoLoopJobDisplay)


def register() -> None:
    bpy.types.Scene.panoloop = PointerProperty(type=PanoLoopSettings)
    bpy.types.WindowManager.panoloop_job = PointerProperty(type=PanoLoopJobDisplay)


def unregister() -> None:
    del bpy.types.WindowManager.panoloop_job
    del bpy.types.Scene.panoloop
