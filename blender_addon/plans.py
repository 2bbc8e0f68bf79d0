"""Multicam and VR export, each built once as a plan of steps, run two ways.

A :class:`Plan` is what a feature does, as data: main-thread preparations (cameras.json,
the glTF; fast), then :class:`RenderStep` s (Blender renders) and a last
:class:`EngineStep` (the engine writes the final output folder, atomically). Two ways
to run the same plan:

- :func:`run_in_place` (background mode, the bpy module, scripts): the renders run in
  this Blender, the engine step through the runner (the one launcher), blocking;
- :func:`runner_job` (the UI): one runner job whose processes are a background Blender
  for the renders (``background.py`` on a saved copy of the file) and the engine
  worker, one after the other, with one progress display and one Cancel.

With a *Render Cluster* (the ``render_cluster`` preference: ``local`` or a Ray
cluster's address) every render step runs instead as ``python -m engine render-cluster``
in the engine's Python (the Ray driver, out of Blender's process), both ways: it packs
the saved copy, splits the step into tasks of one camera × a frame range and writes the
same folder the single-machine render writes.

Intermediate files live in a hidden ``.OUT.partial-…`` sibling of the output, which
the runner removes on failure or cancel and the plan removes when it succeeds.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from . import contract, engine_env, render
from .contract import BadInput, PanoLoopError
from .runner import Job
from .scene_io import cameras_in_scope, left_out_cameras, write_cameras_json

Progress = Callable[[str, int, int], None]


@dataclass
class RenderStep:
    """Blender renders (``render.render_cameras`` or ``render.render_360``) as a spec."""

    spec: dict[str, Any]


@dataclass
class EngineStep:
    """``python -m engine COMMAND ARGV`` (the worker), writing the plan's output."""

    command: str
    argv: list[str]


@dataclass
class Plan:
    """One feature's steps for ``scene``; ``output`` is written whole by the last step."""

    label: str
    scene: str
    output: Path
    work: Path
    prepare: list[Callable[[], None]] = field(default_factory=list)
    steps: list[RenderStep | EngineStep] = field(default_factory=list)
    #: Main-thread bookkeeping once ``output`` is in place (e.g. remember the package).
    finished: Callable[[Path], None] | None = None
    #: Where the render steps run: "" = this machine, else ``render-cluster --cluster``.
    cluster: str = ""
    #: CPUs (Cycles threads) per cluster task; 0 = the driver's choice.
    cluster_cpus: int = 0


# --------------------------------------------------------------------------- inputs


def panorama_of(scene: Any) -> Path:
    """The loop playing on the World (the output applied last)."""
    folder = Path(bpy.path.abspath(scene.panoloop.last_output or ""))
    if not scene.panoloop.last_output or not (folder / contract.MANIFEST_NAME).is_file():
        raise BadInput(
            "the World plays no PanoLoop loop",
            "generate or animate a loop first (or Apply an output folder to the World)",
        )
    return folder


def render_cluster() -> tuple[str, int]:
    """The Render Cluster preference and its CPUs per task ("" = render on this machine)."""
    if not engine_env.registered():
        return "", 0
    prefs = engine_env.preferences()
    return prefs.render_cluster.strip(), int(prefs.render_cluster_cpus)


def world_yaw_degrees(scene: Any) -> float:
    """The World's rotation (``scene.panoloop.world_rotation``, radians) in degrees."""
    return math.degrees(scene.panoloop.world_rotation)


def scope_cameras_checked(scene: Any) -> list[Any]:
    """The camera scope (:func:`scene_io.cameras_in_scope`), refused when it is empty."""
    cameras = cameras_in_scope(scene)
    if not cameras:
        left = ", ".join(repr(name) for name in left_out_cameras(scene))
        raise BadInput(
            "no perspective cameras in the PanoLoop camera scope"
            + (f" (left out, not perspective: {left})" if left else ""),
            "add a perspective camera, or change the camera scope",
        )
    return render.check_cameras(cameras)


def export_gltf(scene: Any, path: Path) -> Path:
    """The scene as binary glTF through Blender's bundled exporter (+Y up, as glTF wants).

    Exports the given scene's visible, renderable objects with cameras and lights and
    modifiers applied; no animation (the VR viewer shows a static scene in a moving world).
    """
    path = Path(path)
    window = bpy.context.window
    previous = window.scene if window is not None else None
    if window is not None:
        window.scene = scene
    try:
        result = bpy.ops.export_scene.gltf(
            filepath=str(path),
            export_format="GLB",
            use_active_scene=True,
            use_visible=True,
            use_renderable=True,
            export_cameras=True,
            export_lights=True,
            export_apply=True,
            export_animations=False,
            export_yup=True,
        )
    finally:
        if window is not None and previous is not None:
            window.scene = previous
    if "FINISHED" not in result or not path.is_file():
        raise PanoLoopError(f"Blender's glTF exporter did not write {path}")
    return path


# --------------------------------------------------------------------------- plans


def multicam_plan(
    scene: Any,
    out: Path,
    *,
    instants: int = 4,
    panorama: Path | None = None,
    cameras: list[Any] | None = None,
    yaw_degrees: float | None = None,
    cluster: str | None = None,
) -> Plan:
    """Render every camera of the scope over the loop, then ``engine multicam`` on them.

    ``panorama``, ``cameras`` and ``yaw_degrees`` default to the scene's PanoLoop
    settings (the loop on the World, the camera scope, the World's rotation); ``cluster``
    to the Render Cluster preference ("" renders here).
    """
    panorama = Path(panorama) if panorama is not None else panorama_of(scene)
    if cameras is None:
        cameras = scope_cameras_checked(scene)
    cameras = render.check_cameras(list(cameras))
    yaw = world_yaw_degrees(scene) if yaw_degrees is None else float(yaw_degrees)
    frame_range = (scene.frame_start, scene.frame_end)
    contract.check_frame_range(*frame_range, render.loop_length(scene))
    contract.check_output_free(out)
    work = contract.make_partial_dir(out)
    cameras_file, renders = work / contract.CAMERAS_NAME, work / contract.RENDERS_DIR
    names = [c.name for c in cameras]

    def write_cameras() -> None:
        bpy.context.view_layer.update()  # matrix_world must follow any scripted change
        scene.frame_set(frame_range[0])
        write_cameras_json([scene.objects[n] for n in names], scene, cameras_file)

    argv = ["--panorama", str(panorama), "--cameras", str(cameras_file)]
    argv += ["--renders", str(renders), "--out", str(out)]
    argv += ["--frame-range", *map(str, frame_range), "--instants", str(instants)]
    argv += ["--yaw", f"{yaw:.17g}", *engine_env.preview_args(scene)]
    spec = {"kind": "cameras", "cameras": names, "frame_range": list(frame_range)}
    return Plan(
        label=f"Render {len(names)} camera{'s' if len(names) > 1 else ''}",
        scene=scene.name,
        output=out,
        work=work,
        prepare=[write_cameras],
        steps=[RenderStep({**spec, "out": str(renders)}), EngineStep("multicam", argv)],
        **_cluster_fields(cluster),
    )


def _cluster_fields(cluster: str | None) -> dict[str, Any]:
    setting, cpus = render_cluster()
    return {"cluster": setting if cluster is None else cluster.strip(), "cluster_cpus": cpus}


def vr_export_plan(
    scene: Any,
    out: Path,
    *,
    viewpoint: tuple[float, float, float] | None = None,
    size: str | None = None,
    mono_360_width: int = 0,
    stereo_360_width: int = 0,
    panorama: Path | None = None,
    yaw_degrees: float | None = None,
    cluster: str | None = None,
) -> Plan:
    """The glTF, optional Cycles 360° renders, then ``engine vr-package`` writes it all.

    ``viewpoint`` (Blender world coordinates; default: the active camera's position,
    else the origin) is where the 360° renders are taken and a WebXR visitor stands.
    The 360° renders span the scene's frame range, which must be one loop long.
    ``panorama`` and ``yaw_degrees`` default to the World's loop and rotation, ``cluster``
    (where the 360° renders run) to the Render Cluster preference.
    """
    panorama = Path(panorama) if panorama is not None else panorama_of(scene)
    yaw = world_yaw_degrees(scene) if yaw_degrees is None else float(yaw_degrees)
    frame_range = (scene.frame_start, scene.frame_end)
    if mono_360_width or stereo_360_width:
        contract.check_frame_range(*frame_range, render.loop_length(scene))
    for width in (mono_360_width, stereo_360_width):
        if width and (width < 4 or width % 4):
            raise BadInput(f"360° width {width} must be a positive multiple of 4")
    if viewpoint is None:
        viewpoint = tuple(scene.camera.matrix_world.translation) if scene.camera else (0, 0, 0)
    viewpoint = tuple(float(v) for v in viewpoint)
    contract.check_output_free(out)
    work = contract.make_partial_dir(out)
    glb = work / contract.SCENE_GLB
    argv = [str(panorama), "--out", str(out), "--gltf", str(glb), "--scene", scene.name]
    argv += ["--yaw", f"{yaw:.17g}", "--viewpoint"]
    argv += [f"{v:.17g}" for v in viewpoint]
    argv += ["--frame-range", *map(str, frame_range)]
    argv += ["--size", size] if size else []
    argv += engine_env.preview_args(scene)
    steps: list[RenderStep | EngineStep] = []
    for width, stereo, flag in (
        (mono_360_width, False, "--scene-360"),
        (stereo_360_width, True, "--scene-360-stereo"),
    ):
        if width:
            frames = work / f"{flag.strip('-')}-renders"
            spec = {"kind": "360", "viewpoint": list(viewpoint), "width": width}
            spec |= {"stereo": stereo, "frame_range": list(frame_range), "out": str(frames)}
            steps.append(RenderStep(spec))
            argv += [flag, str(frames)]
    label = "Render 360° and export for VR" if steps else "Export for VR"
    scene_name = scene.name

    def remember(output: Path) -> None:
        settings = getattr(bpy.data.scenes.get(scene_name), "panoloop", None)
        if settings is not None:  # the extension is enabled (not library use)
            settings.last_vr_package = str(output)

    return Plan(
        label=label,
        scene=scene.name,
        output=out,
        work=work,
        prepare=[lambda: export_gltf(scene, glb)],
        steps=[*steps, EngineStep("vr-package", argv)],
        finished=remember,
        **_cluster_fields(cluster),
    )


# --------------------------------------------------------------------------- run in place


def run_in_place(plan: Plan, *, progress: Progress | None = None) -> Path:
    """Run the plan here, blocking: renders in this Blender, the engine via the runner."""
    from . import runner

    try:
        for prepare in plan.prepare:
            prepare()
        scene = bpy.data.scenes[plan.scene]
        for index, step in enumerate(plan.steps):
            if isinstance(step, RenderStep) and not plan.cluster:
                render.render_spec(scene, step.spec, progress=progress or _no_progress)
                continue
            if isinstance(step, RenderStep):  # the runner removes its job folder when done
                job_dir = Path(tempfile.mkdtemp(prefix="cluster-", dir=engine_env.jobs_root()))
                job = engine_job(plan, cluster_step(plan, step, index), job_dir=job_dir)
            else:
                job = engine_job(plan, step, job_dir=plan.work)
            runner.start(job, blocking=True)
            if job.state == "CANCELLED":
                raise contract.JobCancelled(job.message)
            if job.state != "DONE":
                raise PanoLoopError(job.message, job.fix)
    finally:
        shutil.rmtree(plan.work, ignore_errors=True)
    if plan.finished is not None:
        plan.finished(plan.output)
    return plan.output


def _no_progress(stage: str, step: int, total: int) -> None:
    pass


# --------------------------------------------------------------------------- the runner


def engine_job(plan: Plan, step: EngineStep, *, job_dir: Path, name: str = "") -> Job:
    """A runner job for one engine step (the worker, offline: it loads no model)."""
    job_file = job_dir / f"{name or step.command}.json"
    job_file.write_text(json.dumps({"command": step.command, "argv": step.argv}), "utf-8")
    python = engine_env.checked_engine_python()
    return Job(
        label=plan.label,
        command=[str(python), "-m", "engine", "worker", "--job", str(job_file)],
        env=engine_env.worker_environment(online=False),
        job_dir=job_dir,
        output=plan.output,
    )


def runner_job(plan: Plan) -> Job:
    """The UI's way: one runner job running the plan's processes one after the other."""
    try:
        for prepare in plan.prepare:
            prepare()
        log_dir = Path(tempfile.mkdtemp(prefix="plan-", dir=engine_env.jobs_root()))
        processes = [_process(plan, step, index) for index, step in enumerate(plan.steps)]
    except BaseException:
        shutil.rmtree(plan.work, ignore_errors=True)
        raise
    (command, env), *then = processes
    return Job(
        label=plan.label,
        command=command,
        env=env,
        job_dir=log_dir,
        output=plan.output,
        on_done=_finish(plan),
        then=then,
    )


def _process(plan: Plan, step: RenderStep | EngineStep, index: int) -> tuple[list[str], dict]:
    if isinstance(step, EngineStep):
        job = engine_job(plan, step, job_dir=plan.work)
        return job.command, job.env
    if plan.cluster:
        job = engine_job(plan, cluster_step(plan, step, index), job_dir=plan.work,
                         name=f"render-cluster-{index}")  # fmt: skip
        return job.command, job.env
    return _background_blender(plan, step, index)


def saved_copy(plan: Plan) -> Path:
    """The scene as it is now, saved once into the plan's work folder (paths relative)."""
    blend = plan.work / "scene.blend"
    if not blend.is_file():
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, relative_remap=True)
    return blend


def cluster_step(plan: Plan, step: RenderStep, index: int) -> EngineStep:
    """A render step as ``engine render-cluster``: the saved copy, the step's spec, the
    cluster, and how the tasks start this very Blender (binary, or the bpy module's Python)."""
    spec_file = plan.work / f"render-{index}-spec.json"
    spec = {k: v for k, v in step.spec.items() if k != "out"} | {"scene": plan.scene}
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    if bpy.app.binary_path:
        blender = ["--blender", bpy.app.binary_path]
    else:
        blender = ["--blender-python", sys.executable]
    argv = [str(saved_copy(plan)), "--spec", str(spec_file), "--out", step.spec["out"]]
    argv += ["--cluster", plan.cluster, *blender, "--cpus-per-task", str(plan.cluster_cpus)]
    return EngineStep("render-cluster", argv)


def _background_blender(plan: Plan, step: RenderStep, index: int) -> tuple[list[str], dict]:
    """``blender -b COPY.blend --python background.py -- JOB.json`` for a render step."""
    blend = saved_copy(plan)
    job_file = plan.work / f"render-{index}.json"
    job = {**step.spec, "scene": plan.scene, "blend": str(blend)}
    job_file.write_text(json.dumps(job), encoding="utf-8")
    script = str(Path(__file__).with_name("background.py"))
    if bpy.app.binary_path:
        command = [bpy.app.binary_path, "--background", str(blend), "--python", script, "--"]
    else:  # the bpy module: its Python runs the script, which opens the copy itself
        command = [sys.executable, script]
    return [*command, str(job_file)], dict(os.environ)


def _finish(plan: Plan) -> Callable[[Job], Iterator[None]]:
    """``on_done``: the output is in place; remove the intermediate files, remember it."""

    def on_done(_job: Job) -> Iterator[None]:
        shutil.rmtree(plan.work, ignore_errors=True)
        yield
        if plan.finished is not None:
            plan.finished(plan.output)

    return on_done
