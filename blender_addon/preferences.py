"""PanoLoop's add-on preferences and the *Set Up Engine* button.

The engine (torch, diffusers) cannot ship inside the extension zip, so it runs in its
own Python: ``engine_python``, by default a virtual environment in the extension's user
folder that *Set Up Engine* creates — only when Blender allows online access.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import engine_env, runner
from .engine_env import ADDON_PACKAGE, EXTENSION_DIR, AddonError


class PanoLoopPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    engine_python: StringProperty(
        name="Engine Python",
        description="Python interpreter with the engine's requirements (torch, diffusers); "
        "empty = PanoLoop's own environment in the extension's user folder",
        subtype="FILE_PATH",
    )
    model: StringProperty(
        name="Model",
        description="Video model for prompts: a Hugging Face hub id or a local folder "
        "(AnimateDiff pipeline with model_index.json, safetensors weights)",
    )
    motion_adapter: StringProperty(
        name="Motion Adapter",
        description="Optional AnimateDiff motion adapter (hub id or folder) paired with an "
        "SD 1.5 base model",
    )
    device: EnumProperty(
        name="Device",
        items=(
            ("AUTO", "Auto", "CUDA, then Apple MPS, then CPU"),
            ("CUDA", "CUDA", "NVIDIA GPU"),
            ("MPS", "Apple MPS", "Apple silicon GPU"),
            ("CPU", "CPU", "Slow, for tests"),
        ),
        default="AUTO",
    )
    precision: EnumProperty(
        name="Precision",
        items=(
            ("AUTO", "Auto", "float16 on GPU, float32 on CPU"),
            ("FP16", "float16", "Half precision (GPU)"),
            ("BF16", "bfloat16", "Brain float (recent GPUs)"),
            ("FP32", "float32", "Full precision"),
        ),
        default="AUTO",
    )
    cpu_offload: BoolProperty(
        name="CPU Offload",
        description="Keep model parts on the CPU until needed (less GPU memory, slower)",
    )
    vae_slicing: BoolProperty(
        name="VAE Slicing",
        description="VAE batch slicing (frames are already decoded one by one)",
        default=False,
    )
    vae_tiling: BoolProperty(
        name="VAE Tiling",
        description="Decode each frame in blended tiles (less GPU memory at 4K, slower)",
        default=False,
    )
    window_frames: IntProperty(
        name="Window Frames",
        description="Frames the model sees per call (AnimateDiff: 16; fewer is faster)",
        default=16,
        min=1,
        max=64,
    )
    schedule: EnumProperty(
        name="Schedule",
        items=(
            ("dynamic", "Dynamic", "Sphere views, shifted windows, coarse-to-fine (best)"),
            ("windows", "Windows", "Shifted windows only (faster)"),
            ("fixed", "Fixed Tiling", "Plain tiles: a baseline that shows seams"),
        ),
        default="dynamic",
    )
    output_dir: StringProperty(
        name="Output Folder",
        description="Where finished loops are written; empty = the extension's user folder",
        subtype="DIR_PATH",
    )

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.use_property_split = True
        col = layout.column(heading="Engine")
        col.prop(self, "engine_python")
        col.label(text=f"Using: {engine_env.engine_python()}", icon="INFO")
        row = col.row()
        row.enabled = not runner.is_busy()
        row.operator(PANOLOOP_OT_setup_engine.bl_idname, icon="CONSOLE")
        if not bpy.app.online_access:
            col.label(text="Online access is off: Preferences > System > Network", icon="ERROR")
        col = layout.column(heading="Model")
        col.prop(self, "model")
        col.prop(self, "motion_adapter")
        col.prop(self, "device")
        col.prop(self, "precision")
        col.prop(self, "cpu_offload")
        col.prop(self, "vae_slicing")
        col.prop(self, "vae_tiling")
        col.prop(self, "window_frames")
        col.prop(self, "schedule")
        layout.prop(self, "output_dir")


class PANOLOOP_OT_setup_engine(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Create PanoLoop's engine environment and install its requirements (needs internet)"""

    bl_idname = "panoloop.setup_engine"
    bl_label = "Set Up Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        try:
            job = setup_engine_job()
            runner.start(job, blocking=bpy.app.background)
        except AddonError as exc:
            self.report({"ERROR"}, exc.report_text())
            return {"CANCELLED"}
        if job.state == "ERROR":
            self.report({"ERROR"}, f"{job.message} — {job.fix}")
            return {"CANCELLED"}
        self.report({"INFO"}, "Setting up the engine environment (see the PanoLoop panel)")
        return {"FINISHED"}


def setup_engine_job() -> runner.Job:
    """The job creating the default environment; refused while online access is off."""
    if not bpy.app.online_access:
        raise AddonError(
            "setting up the engine downloads packages, but online access is off",
            "allow Online Access in Preferences > System > Network, or set Engine Python "
            "to an existing environment",
        )
    pyproject = EXTENSION_DIR / "pyproject.toml"
    if not pyproject.is_file():
        raise AddonError(f"{pyproject} is missing from the extension; reinstall PanoLoop")
    job_dir = Path(tempfile.mkdtemp(prefix="setup-", dir=engine_env.jobs_root()))
    script = Path(__file__).with_name("setup_engine.py")
    env = engine_env.worker_environment(online=True)
    return runner.Job(
        label="Set up engine",
        command=[
            sys.executable,
            str(script),
            "--env",
            str(engine_env.default_env_dir()),
            "--pyproject",
            str(pyproject),
        ],  # fmt: skip
        env=env,
        job_dir=job_dir,
    )


CLASSES = (PanoLoopPreferences, PANOLOOP_OT_setup_engine)
