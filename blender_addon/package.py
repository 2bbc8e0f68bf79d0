"""The whole scene for VR: glTF through Blender's bundled exporter, 360° renders, engine export.

:func:`export_scene_vr` (blocking; the library API the demo and background mode use)::

    OUT/
      scene.glb                the scene, Blender's glTF exporter (+Y up, cameras, lights)
      panorama/                ``engine export`` of the World's loop: <name>_360.mp4 with
                               spherical metadata, cubemap/, webxr/ (viewer + scene.glb)
      scene_360/               optional: a mono Cycles 360° of the composed scene, exported
                               (<name>_360.mp4) — the frames are kept in scene_360/frames
      scene_360_TB/            optional: spherical stereo top-bottom, left eye on top
                               (<name>_360_TB.mp4, st3d = top-bottom)
      manifest.json

The engine runs in its own Python (``python -m engine export``): the add-on computes no
pixels. Everything is built in a temporary sibling and renamed into place whole.
:func:`render_multicam` (also here, for the same reason) renders every camera and hands
the renders to ``engine multicam``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bpy

from . import contract
from .contract import (
    MONO_360_DIR,
    PANORAMA_DIR,
    SCENE_GLB,
    STEREO_360_DIR,
    JobCancelled,
    PanoLoopError,
    check_output_free,
)
from .render import (
    Cancelled,
    Progress,
    _never,
    _no_progress,
    check_cameras,
    render_360,
    render_cameras,
)
from .scene_io import cameras_in_scope

ENGINE_POLL_S = 0.1


# --------------------------------------------------------------------------- pieces


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


def engine_python() -> str:
    """The engine's interpreter: the add-on's preference when registered, else this one."""
    try:
        from .engine_env import checked_engine_python

        return str(checked_engine_python())
    except Exception:  # noqa: BLE001 - not registered (bpy module, tests): fall back
        if importlib.util.find_spec("engine") is not None:
            return sys.executable
        raise PanoLoopError(
            "the PanoLoop engine is not set up",
            "Preferences > Add-ons > PanoLoop: set up the engine",
        ) from None


def run_engine(
    argv: list[str],
    *,
    python: str | None = None,
    cancelled: Cancelled = _never,
) -> str:
    """Run ``python -m engine ARGV`` to the end; returns its stdout (the output path).

    A cancel terminates it (the engine removes its temporary output). Failures raise
    :class:`PanoLoopError` with the engine's one-line message.
    """
    command = [python or engine_python(), "-m", "engine", *argv]
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    while proc.poll() is None:
        if cancelled():
            proc.terminate()
            proc.wait()
            raise JobCancelled("cancelled; the engine removed its partial output")
        time.sleep(ENGINE_POLL_S)
    out, err = proc.communicate()
    if proc.returncode != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        message = lines[-1] if lines else f"engine {argv[0]} exited with {proc.returncode}"
        raise PanoLoopError(message.removeprefix("error: ").removeprefix("failed: "))
    return out.strip()


def _panorama_fps(panorama_dir: Path) -> float | None:
    try:
        manifest = json.loads((panorama_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise PanoLoopError(f"{panorama_dir} is not a PanoLoop output (no manifest.json)") from None
    return manifest.get("fps")


def world_yaw_degrees(scene: Any) -> float:
    """The Z rotation of a Mapping node feeding PanoLoop's World node (0 if there is none)."""
    import math

    world = scene.world
    node = world.node_tree.nodes.get(contract.ENV_NODE_NAME) if world and world.node_tree else None
    vector = node.inputs.get("Vector") if node is not None else None
    if vector is None or not vector.is_linked:
        return 0.0
    mapping = vector.links[0].from_node
    if mapping.bl_idname != "ShaderNodeMapping":
        return 0.0
    return math.degrees(mapping.inputs["Rotation"].default_value[2])


# --------------------------------------------------------------------------- VR export


def export_scene_vr(
    scene: Any,
    panorama_dir: str | Path,
    out_dir: str | Path,
    *,
    viewpoint: tuple[float, float, float] | None = None,
    size: str | None = None,
    mono_360_width: int = 0,
    stereo_360_width: int = 0,
    frame_range: tuple[int, int] | None = None,
    python: str | None = None,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
) -> Path:
    """Export the World's loop and the scene for VR into the new folder ``out_dir``.

    ``viewpoint`` (Blender world coordinates; default: the active camera's position, else
    the origin) is where the 360° renders are taken and where a WebXR visitor stands.
    ``mono_360_width``/``stereo_360_width`` > 0 add Cycles 360° renders of the scene
    over ``frame_range`` (default: the scene's range, which must span the loop).
    """
    panorama_dir, out_dir = Path(panorama_dir), Path(out_dir)
    # 1. Check inputs (the engine checks its own again).
    check_output_free(out_dir)
    fps = _panorama_fps(panorama_dir)
    if viewpoint is None:
        viewpoint = tuple(scene.camera.matrix_world.translation) if scene.camera else (0, 0, 0)
    viewpoint = tuple(float(v) for v in viewpoint)
    frame_range = frame_range or (scene.frame_start, scene.frame_end)
    yaw = world_yaw_degrees(scene)
    steps = 2 + bool(mono_360_width) * 2 + bool(stereo_360_width) * 2
    step = 0

    def advance(stage: str) -> None:
        nonlocal step
        if cancelled():
            raise JobCancelled("cancelled; nothing was written")
        step += 1
        progress(stage, step, steps)

    with contract.atomic_output_dir(out_dir) as tmp:
        # 2. The scene as glTF.
        advance("gltf")
        glb = export_gltf(scene, tmp / SCENE_GLB)
        # 3. The World's loop: 360° MP4, cubemaps, WebXR package (with the glTF).
        advance("export panorama")
        argv = ["export", str(panorama_dir), "--out", str(tmp / PANORAMA_DIR), "--cubemap"]
        argv += ["--webxr", "--gltf", str(glb), "--yaw", f"{yaw:g}", "--viewpoint"]
        argv += [f"{v:g}" for v in viewpoint]
        if size:
            argv += ["--size", size]
        run_engine(argv, python=python, cancelled=cancelled)
        # 4. Optional 360° renders of the composed scene, exported with their metadata.
        for width, stereo, name in (
            (mono_360_width, False, MONO_360_DIR),
            (stereo_360_width, True, STEREO_360_DIR),
        ):
            if not width:
                continue
            advance(f"render {name}")
            frames = render_360(
                scene, viewpoint, frame_range, tmp / f"{name}_frames", width=width,
                stereo=stereo, progress=progress, cancelled=cancelled,
            )  # fmt: skip
            advance(f"export {name}")
            argv = ["export", str(frames), "--out", str(tmp / name), "--name", "scene"]
            argv += ["--stereo", "top-bottom" if stereo else "mono"]
            if fps:
                argv += ["--fps", f"{fps:g}"]
            run_engine(argv, python=python, cancelled=cancelled)
            shutil.move(str(frames / "frames"), str(tmp / name / "frames"))
            shutil.rmtree(frames)
        (tmp / "manifest.json").write_text(
            json.dumps(
                {
                    "kind": "vr_package",
                    "scene": scene.name,
                    "panorama": str(panorama_dir),
                    "viewpoint": list(viewpoint),
                    "yaw_degrees": yaw,
                    "frame_range": list(frame_range),
                    "gltf": SCENE_GLB,
                    "panorama_export": PANORAMA_DIR,
                    "webxr": f"{PANORAMA_DIR}/webxr/index.html",
                    "scene_360": MONO_360_DIR if mono_360_width else None,
                    "scene_360_stereo": STEREO_360_DIR if stereo_360_width else None,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return out_dir


# --------------------------------------------------------------------------- multicam


def render_multicam(
    scene: Any,
    camera_objects: list[Any],
    frame_range: tuple[int, int],
    out_dir: str | Path,
    *,
    panorama_dir: str | Path,
    python: str | None = None,
    instants: int = 4,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
) -> Path:
    """Blender renders of every camera + the engine's reprojections, in sync, into ``out_dir``.

    Writes ``cameras.json`` from the scene, renders every camera over ``frame_range``
    (which must span the World's loop), then runs ``engine multicam --renders``: per
    camera reprojected and rendered clips, MP4s, one contact sheet. Returns ``out_dir``.
    """
    from .scene_io import write_cameras_json

    out_dir = Path(out_dir)
    check_output_free(out_dir)
    cameras = check_cameras(list(camera_objects))
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.work-", dir=out_dir.parent))
    try:
        bpy.context.view_layer.update()  # matrix_world must follow any scripted change
        scene.frame_set(frame_range[0])
        write_cameras_json(cameras, scene, work / "cameras.json")
        renders = render_cameras(
            scene, cameras, frame_range, work / "renders", progress=progress, cancelled=cancelled
        )
        progress("reproject", 1, 1)
        argv = ["multicam", "--panorama", str(panorama_dir), "--cameras"]
        argv += [str(work / "cameras.json"), "--renders", str(renders), "--out", str(out_dir)]
        argv += ["--frame-range", str(frame_range[0]), str(frame_range[1])]
        argv += ["--instants", str(instants)]
        run_engine(argv, python=python, cancelled=cancelled)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------- operator jobs
#
# In the UI the work runs in other processes, one job at a time through the extension's
# runner (progress, Cancel, no frozen Blender): the Blender renders in a background
# Blender on a saved copy of the file (``render.py`` as its script, JSON lines on
# stdout), the rest in the engine worker. Each job's ``on_done`` starts the next one.
# In background mode (no event loop; also the bpy module, which has no Blender binary
# to start) the same steps run here, blocking.


def panorama_of(scene: Any) -> Path:
    """The loop playing on the World (the output applied last)."""
    folder = Path(bpy.path.abspath(scene.panoloop.last_output or ""))
    if not scene.panoloop.last_output or not (folder / "manifest.json").is_file():
        raise PanoLoopError(
            "the World plays no PanoLoop loop",
            "generate or animate a loop first (or Apply an output folder to the World)",
        )
    return folder


def _blender_job(label: str, job: dict[str, Any], output: Path, on_done: Any) -> Any:
    """A runner job running ``render.py`` in a background Blender on a copy of this file."""
    from . import engine_env
    from .runner import Job

    job_dir = Path(tempfile.mkdtemp(prefix="render-", dir=engine_env.jobs_root()))
    blend = job_dir / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, relative_remap=True)
    (job_dir / "job.json").write_text(json.dumps({**job, "blend": str(blend)}), encoding="utf-8")
    script = str(Path(__file__).with_name("background.py"))
    if bpy.app.binary_path:
        command = [bpy.app.binary_path, "--background", str(blend), "--python", script, "--"]
    else:  # the bpy module: its Python runs render.py, which opens the copy itself
        command = [sys.executable, script]
    return Job(
        label=label,
        command=[*command, str(job_dir / "job.json")],
        env=dict(os.environ),
        job_dir=job_dir,
        output=output,
        on_done=on_done,
    )


def _remove_when_done(folder: Path) -> Any:
    """``on_done`` (the runner's iterator of main-thread steps): remove a work folder."""

    def on_done(_job: Any) -> Any:
        shutil.rmtree(folder, ignore_errors=True)
        yield

    return on_done


def multicam_job(scene: Any) -> Any:
    """The UI's multicam: one background Blender renders every camera, then runs the
    engine worker on the renders (``engine multicam``), forwarding its progress."""
    from . import engine_env, jobs
    from .render import loop_length

    panorama = panorama_of(scene)
    cameras = check_cameras(cameras_in_scope(scene))
    frame_range = (scene.frame_start, scene.frame_end)
    contract.check_frame_range(*frame_range, loop_length(scene))
    python = engine_python()
    out = jobs.new_output_path(scene, "multicam")
    # Work files are named like partial outputs, so the runner removes them on a failure
    # or cancel; success removes them in on_done.
    work = out.parent / f".{out.name}.partial-blender"
    work.mkdir()
    renders = work / "renders"
    cameras_file = work / "cameras.json"
    from .scene_io import write_cameras_json

    bpy.context.view_layer.update()
    scene.frame_set(frame_range[0])
    write_cameras_json(cameras, scene, cameras_file)
    argv = ["--panorama", str(panorama), "--cameras", str(cameras_file), "--renders"]
    argv += [str(renders), "--out", str(out), "--frame-range", *map(str, frame_range)]
    engine_job = work / "engine_job.json"
    engine_job.write_text(json.dumps({"command": "multicam", "argv": argv}), encoding="utf-8")
    render = {
        "scene": scene.name,
        "kind": "cameras",
        "cameras": [c.name for c in cameras],
        "frame_range": list(frame_range),
        "out": str(renders),
        "then": {
            "python": python,
            "job": str(engine_job),
            "env": engine_env.worker_environment(online=False),
        },
    }
    label = f"Render {len(cameras)} camera{'s' if len(cameras) > 1 else ''}"
    return _blender_job(label, render, out, _remove_when_done(work))


def export_vr_job(scene: Any, *, mono_360_width: int = 0, stereo_360_width: int = 0) -> Any:
    """The UI's VR export: glTF here (fast); then the engine exports the loop (worker), or,
    with 360° renders asked for, a background Blender renders them and runs the engine
    exports. The last step moves the assembled package into place whole."""
    from . import engine_env, jobs

    panorama = panorama_of(scene)
    python = engine_python()
    frame_range = (scene.frame_start, scene.frame_end)
    if mono_360_width or stereo_360_width:
        from .render import loop_length

        contract.check_frame_range(*frame_range, loop_length(scene))
    out = jobs.new_output_path(scene, "vr")
    work = out.parent / f".{out.name}.partial-vr"  # the runner removes it on failure
    package = work / "package"
    package.mkdir(parents=True)
    glb = export_gltf(scene, package / SCENE_GLB)
    viewpoint = tuple(scene.camera.matrix_world.translation) if scene.camera else (0, 0, 0)
    yaw = world_yaw_degrees(scene)
    argv = [str(panorama), "--out", str(package / PANORAMA_DIR), "--cubemap", "--webxr"]
    argv += ["--gltf", str(glb), "--yaw", f"{yaw:g}", "--viewpoint"]
    argv += [f"{v:g}" for v in viewpoint]
    facts = {
        "kind": "vr_package", "scene": scene.name, "panorama": str(panorama),
        "viewpoint": list(viewpoint), "yaw_degrees": yaw, "frame_range": list(frame_range),
        "gltf": SCENE_GLB, "panorama_export": PANORAMA_DIR,
        "webxr": f"{PANORAMA_DIR}/webxr/index.html",
        "scene_360": MONO_360_DIR if mono_360_width else None,
        "scene_360_stereo": STEREO_360_DIR if stereo_360_width else None,
    }  # fmt: skip
    on_done = _finish_package(work, package, out, facts)
    if not (mono_360_width or stereo_360_width):
        return jobs.worker_job(
            "Export for VR", "export", argv, output=out, online=False, on_done=on_done
        )
    env = engine_env.worker_environment(online=False)
    fps = _panorama_fps(panorama)
    renders, thens = [], [_engine_step(work / "export.json", "export", argv, python, env)]
    for width, stereo, name in (
        (mono_360_width, False, MONO_360_DIR),
        (stereo_360_width, True, STEREO_360_DIR),
    ):
        if not width:
            continue
        frames = work / f"{name}_frames"
        renders.append({"kind": "360", "viewpoint": list(viewpoint), "width": width,
                        "stereo": stereo, "out": str(frames)})  # fmt: skip
        step = [str(frames), "--out", str(package / name), "--name", "scene"]
        step += ["--stereo", "top-bottom" if stereo else "mono"]
        step += ["--fps", f"{fps:g}"] if fps else []
        thens.append(_engine_step(work / f"{name}.json", "export", step, python, env))
    job = {"scene": scene.name, "frame_range": list(frame_range), "renders": renders}
    return _blender_job("Render 360° and export for VR", {**job, "then": thens}, out, on_done)


def _engine_step(path: Path, command: str, argv: list[str], python: str, env: dict) -> dict:
    path.write_text(json.dumps({"command": command, "argv": argv}), encoding="utf-8")
    return {"python": python, "job": str(path), "env": env}


def _finish_package(work: Path, package: Path, out: Path, facts: dict[str, Any]) -> Any:
    """``on_done`` steps: keep the 360° frames beside their videos, write the manifest,
    move the package into place whole, remove the work folder."""

    def on_done(job: Any) -> Any:
        for name in (MONO_360_DIR, STEREO_360_DIR):
            frames = work / f"{name}_frames" / "frames"
            if frames.is_dir() and (package / name).is_dir():
                shutil.move(str(frames), str(package / name / "frames"))
        (package / "manifest.json").write_text(json.dumps(facts, indent=2) + "\n")
        yield
        os.rename(package, out)
        shutil.rmtree(work, ignore_errors=True)
        job.result, job.message = out, f"finished: {out}"

    return on_done


def run_blocking(scene: Any, kind: str, **options: Any) -> Path:
    """Background mode: the same steps in this process, blocking, with a progress bar."""
    from . import jobs

    wm = bpy.context.window_manager

    def progress(stage: str, step: int, total: int) -> None:
        if wm is not None and total:
            wm.progress_update(int(100 * step / total))

    if wm is not None:
        wm.progress_begin(0, 100)
    try:
        panorama = panorama_of(scene)
        out = jobs.new_output_path(scene, kind)
        if kind == "multicam":
            frame_range = (scene.frame_start, scene.frame_end)
            cameras = cameras_in_scope(scene)
            return render_multicam(
                scene, cameras, frame_range, out, panorama_dir=panorama, progress=progress
            )
        return export_scene_vr(scene, panorama, out, progress=progress, **options)
    finally:
        if wm is not None:
            wm.progress_end()
