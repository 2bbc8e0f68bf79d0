"""PanoLoop's add-on preferences, *Set Up Engine* and *Check Engine*.

The engine (torch, diffusers) cannot ship inside the extension zip, so it runs in its
own Python: ``engine_python``, by default a virtual environment in the extension's user
folder that *Set Up Engine* creates — only when Blender allows online access. What it
installs fits the platform (``setup_engine.plan_install``); *Install* "Animate Only"
installs no torch. The last device check (torch version and the device prompts will
use) is shown under the button.
"""

from __future__ import annotations

import json
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
    engine_setup: EnumProperty(
        name="Install",
        description="What Set Up Engine installs",
        items=(
            (
                "FULL",
                "Animate and Generate",
                "Everything: torch for this machine's GPU (CUDA, Apple MPS or CPU) and the "
                "video models' libraries; gigabytes to download",
            ),
            (
                "ANIMATE",
                "Animate Only",
                "Animate HDRI, Render All Cameras and Export VR, without torch "
                "(a small download); Generate World will not run",
            ),
        ),
        default="FULL",
    )
    engine_cluster: BoolProperty(
        name="Cluster (Ray)",
        description="Set Up Engine also installs Ray (the engine's cluster extra), which "
        "a Render Cluster needs",
        default=False,
    )
    render_cluster: StringProperty(
        name="Render Cluster",
        description="Where Render All Cameras and the 360° renders of Export VR run: empty = "
        "this machine; 'local' = a Ray cluster on this machine's CPUs; HOST:PORT = the Ray "
        "cluster whose head runs there (ray start --head). Needs Ray in the engine",
    )
    render_cluster_cpus: IntProperty(
        name="CPUs per Render",
        description="CPUs (Cycles threads) each render task of the cluster gets; 0 = half "
        "of the largest node's",
        default=0,
        min=0,
        max=4096,
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
        description=(
            "Frames the model sees per call; 0 = the model's own (AnimateDiff 16, Wan 81). "
            "Fewer is faster"
        ),
        default=0,
        min=0,
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
        col.prop(self, "engine_setup")
        col.prop(self, "engine_cluster")
        row = col.row()
        row.enabled = not runner.is_busy()
        row.operator(PANOLOOP_OT_setup_engine.bl_idname, icon="CONSOLE")
        row.operator(PANOLOOP_OT_check_engine.bl_idname, icon="CHECKMARK")
        if not bpy.app.online_access:
            col.label(text="Online access is off: Preferences > System > Network", icon="ERROR")
        draw_engine_state(col, context)
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
        col = layout.column(heading="Render")
        col.prop(self, "render_cluster")
        sub = col.row()
        sub.enabled = bool(self.render_cluster.strip())
        sub.prop(self, "render_cluster_cpus")
        layout.prop(self, "output_dir")


def draw_engine_state(layout: Any, context: Any) -> None:
    """A running setup's progress and pip's line; else the last device check."""
    job = runner.current()
    if job is not None and runner.is_busy() and job.label in (SETUP_LABEL, CHECK_LABEL):
        display = context.window_manager.panoloop_job
        text = f"{display.stage} {display.step}/{display.total}" if display.total else ""
        layout.progress(factor=display.progress, type="BAR", text=text or display.stage)
        if display.detail:
            layout.label(text=display.detail)
        return
    check = engine_env.engine_check()
    if check is None:
        layout.label(text="Device: not checked yet (Check Engine)", icon="QUESTION")
        return
    icon = "ERROR" if check.get("torch") and check.get("device") == "cpu" else "INFO"
    layout.label(text=f"Device: {check.get('summary', '?')}", icon=icon)
    for note in check.get("setup", {}).get("notes", []):
        for line in _wrap(str(note)):
            layout.label(text=line)


def _wrap(text: str, width: int = 90) -> list[str]:
    """Blender labels do not wrap: long notes as several lines."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


SETUP_LABEL = "Set up engine"
CHECK_LABEL = "Check engine"


class PANOLOOP_OT_setup_engine(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Create PanoLoop's engine environment and install its requirements (needs internet)"""

    bl_idname = "panoloop.setup_engine"
    bl_label = "Set Up Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        job = start_engine_job(self, setup_engine_job)
        if job is None:
            return {"CANCELLED"}
        self.report({"INFO"}, "Setting up the engine environment (see the PanoLoop panel)")
        return {"FINISHED"}


def start_engine_job(operator: Any, make_job: Any) -> runner.Job | None:
    """Build and start an engine set-up job (blocking in background mode); None after an
    ERROR report, when it could not be built or it failed."""
    try:
        job = make_job()
        runner.start(job, blocking=bpy.app.background)
    except AddonError as exc:
        operator.report({"ERROR"}, exc.report_text())
        return None
    if job.state == "ERROR":
        operator.report({"ERROR"}, f"{job.message} — {job.fix}")
        return None
    return job


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
    prefs = engine_env.preferences()
    mode = "animate" if prefs.engine_setup == "ANIMATE" else "full"
    cluster = ["--cluster"] if prefs.engine_cluster else []
    return runner.Job(
        label=SETUP_LABEL,
        command=[
            sys.executable,
            str(script),
            "--env",
            str(engine_env.default_env_dir()),
            "--pyproject",
            str(pyproject),
            "--mode",
            mode,
            *cluster,
            "--record",
            str(engine_env.engine_check_path()),
        ],  # fmt: skip
        env=env,
        job_dir=job_dir,
    )


class PANOLOOP_OT_check_engine(bpy.types.Operator):  # noqa: N801 (Blender naming)
    """Ask the engine Python which torch it has and which device prompts will use"""

    bl_idname = "panoloop.check_engine"
    bl_label = "Check Engine"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: Any) -> set[str]:
        job = start_engine_job(self, check_engine_job)
        if job is None:
            return {"CANCELLED"}
        if job.state == "DONE":
            self.report({"INFO"}, job.message)
        return {"FINISHED"}


def check_engine_job() -> runner.Job:
    """``python -m engine worker`` running the ``device`` check, recorded for the draw."""
    python = engine_env.checked_engine_python()
    job_dir = Path(tempfile.mkdtemp(prefix="check-", dir=engine_env.jobs_root()))
    record = engine_env.engine_check_path()
    job_file = job_dir / "job.json"
    job_file.write_text(json.dumps({"command": "device", "argv": ["--record", str(record)]}))

    def on_done(job: runner.Job) -> Any:
        check = engine_env.engine_check()
        job.message = f"engine: {check['summary']}" if check else "engine checked"
        yield

    return runner.Job(
        label=CHECK_LABEL,
        command=[str(python), "-m", "engine", "worker", "--job", str(job_file)],
        env=engine_env.worker_environment(online=False),
        job_dir=job_dir,
        on_done=on_done,
    )


CLASSES = (PanoLoopPreferences, PANOLOOP_OT_setup_engine, PANOLOOP_OT_check_engine)
