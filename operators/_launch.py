"""What the job operators share: start a job, block in background mode, report errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import EnumProperty

from ..blender_addon import runner
from ..blender_addon.contract import JobCancelled
from ..blender_addon.engine_env import AddonError

#: ``run_mode`` of the job operators. AUTO blocks in background mode (no event loop,
#: nobody to drain the queue) and runs in the background of the UI otherwise.
RUN_MODE = EnumProperty(
    name="Run",
    items=(
        ("AUTO", "Auto", "Block in background mode, otherwise run without blocking Blender"),
        ("BLOCKING", "Blocking", "Run to completion before returning"),
        ("ASYNC", "Async", "Return at once; a timer follows the job"),
    ),
    default="AUTO",
    options={"HIDDEN", "SKIP_SAVE"},
)


def blocking(run_mode: str) -> bool:
    return run_mode == "BLOCKING" or (run_mode == "AUTO" and bpy.app.background)


def launch(operator: Any, make_job: Callable[[], runner.Job]) -> set[str]:
    """Build the job (all checks first), start it, and report the outcome.

    Returns FINISHED once a blocking job succeeded or an async job started; CANCELLED
    with an ERROR report (message and fix) otherwise.
    """
    job = None
    try:
        job = make_job()
        runner.start(job, blocking=blocking(operator.run_mode))
    except AddonError as exc:
        if job is not None and job.proc is None:  # never started: remove what it prepared
            runner.remove_partial_outputs(job.output)
        operator.report({"ERROR"}, exc.report_text())
        return {"CANCELLED"}
    if job.state == "RUNNING":
        operator.report({"INFO"}, f"PanoLoop: {job.label} started")
        return {"FINISHED"}
    if job.state == "DONE":
        operator.report({"INFO"}, f"PanoLoop: {job.message}")
        return {"FINISHED"}
    if job.state == "CANCELLED":
        operator.report({"WARNING"}, f"PanoLoop: {job.message}")
        return {"CANCELLED"}
    operator.report({"ERROR"}, f"{job.message} — {job.fix}" if job.fix else job.message)
    return {"CANCELLED"}


def launch_plan(operator: Any, make_plan: Callable[[], Any], done: str) -> set[str]:
    """Run a :class:`plans.Plan` (multicam, VR export): in place in background mode
    (blocking, the renders in this Blender), else as one runner job. ``done`` is the
    report's text before the output path."""
    from ..blender_addon import plans

    if not (blocking(operator.run_mode) and bpy.app.background):
        return launch(operator, lambda: plans.runner_job(make_plan()))
    wm = bpy.context.window_manager

    def progress(stage: str, step: int, total: int) -> None:
        if wm is not None and total:
            wm.progress_update(int(100 * step / total))

    if wm is not None:
        wm.progress_begin(0, 100)
    try:
        out = plans.run_in_place(make_plan(), progress=progress)
    except JobCancelled as exc:
        operator.report({"WARNING"}, str(exc))
        return {"CANCELLED"}
    except AddonError as exc:
        operator.report({"ERROR"}, exc.report_text())
        return {"CANCELLED"}
    finally:
        if wm is not None:
            wm.progress_end()
    operator.report({"INFO"}, f"PanoLoop: {done} {out}")
    return {"FINISHED"}


def poll_idle(cls: Any, context: Any) -> bool:
    if runner.is_busy():
        cls.poll_message_set("a PanoLoop job is running; wait for it or cancel it")
        return False
    return context.scene is not None
