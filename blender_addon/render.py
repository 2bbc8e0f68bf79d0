"""Real Blender renders for multicam and VR: every camera in sync, and the scene in 360°.

- :func:`render_cameras`: the scene (with its animated World) through every chosen
  perspective camera for the loop's frame range, Cycles or EEVEE as the scene is set.
  Every camera writes the same file numbers: ``<camera>/frame_000000.png`` is Blender
  frame ``frame_start``, i.e. loop frame 0, for all cameras.
- :func:`render_360`: a temporary Cycles equirectangular panoramic camera at a viewpoint,
  mono (2:1) or spherical stereo top-bottom (left eye on top, 1:1), over the same range.
  The panoramic camera's rotation (90°, 0, −90°) makes its image follow Blender's world
  convention (centre column = +X, row 0 = +Z), like every PanoLoop panorama.

Outputs are written to a temporary sibling and renamed into place whole; a cancel (the
``cancelled`` callback returning True between frames) removes them. Scene settings
touched here (camera, frame, output path and format, engine, multiview) are restored.

bpy only (never torch, never numpy); relative imports stay inside functions so this file
can also run as a script in a background Blender: ``blender -b FILE.blend --python
render.py -- JOB.json`` (or ``python render.py JOB.json`` with the bpy module), printing
the worker's JSON-line events on stdout and stopping on a ``cancel`` line on stdin.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy

#: ``progress(stage, step, total)``; ``cancelled() -> bool`` polled between frames.
Progress = Callable[[str, int, int], None]
Cancelled = Callable[[], bool]
#: Rotation that makes a Cycles equirect camera match the world texture (REFERENCE §1).
PANO_ROTATION = (math.radians(90.0), 0.0, math.radians(-90.0))
#: Eye separation for stereo 360 (metres): the average adult interpupillary distance.
DEFAULT_INTEROCULAR_M = 0.064
MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
#: PanoLoop's World node (``world.ENV_NODE_NAME``; repeated so the job script needs no
#: package import).
ENV_NODE_NAME = "PanoLoop Environment"


class RenderError(Exception):
    """A scene the renders cannot use; the message names the object or value."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix

    def report_text(self) -> str:
        return f"{self} — {self.fix}" if self.fix else str(self)


class RenderCancelled(RenderError):
    """The user cancelled; the partial output is already removed."""


def _no_progress(stage: str, step: int, total: int) -> None:
    pass


def _never() -> bool:
    return False


# --------------------------------------------------------------------------- checks


def check_cameras(objects: list[Any]) -> list[Any]:
    """The chosen camera objects, refused unless there is at least one and all are perspective."""
    if not objects:
        raise RenderError("no cameras chosen", "add a camera, or change the PanoLoop camera scope")
    for obj in objects:
        if obj.type != "CAMERA":
            raise RenderError(f"object {obj.name!r} is a {obj.type}, not a camera")
        if obj.data.type != "PERSP":
            raise RenderError(
                f"camera {obj.name!r} is {obj.data.type}; multicam needs perspective cameras",
                "set its Type to Perspective, or leave it out of the camera scope",
            )
    names = [obj.name for obj in objects]
    for name in names:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise RenderError(f"camera name {name!r} cannot be used as a folder name")
    return objects


def loop_length(scene: Any) -> int | None:
    """Frames of the loop on the scene's World (PanoLoop's node), or None if there is none."""
    world = scene.world
    if world is None or not world.use_nodes or world.node_tree is None:
        return None
    node = world.node_tree.nodes.get(ENV_NODE_NAME)
    if node is None or node.image is None:
        return None
    return int(node.image_user.frame_duration)


def check_frame_range(frame_start: int, frame_end: int, loop_frames: int | None) -> None:
    """Refuse a range that is empty or, when a loop plays, not exactly one loop long."""
    count = frame_end - frame_start + 1
    if count < 1:
        raise RenderError(f"frame range {frame_start}-{frame_end} is empty")
    if loop_frames is not None and count != loop_frames:
        raise RenderError(
            f"frame range {frame_start}-{frame_end} is {count} frames but the World's loop "
            f"has {loop_frames}",
            f"set the scene's frame range to {frame_start}-{frame_start + loop_frames - 1}",
        )


def check_output_free(path: Path) -> Path:
    path = Path(path)
    if path.exists():
        raise RenderError(f"output {path} already exists", "choose a new output folder")
    if not path.parent.is_dir():
        raise RenderError(f"parent folder of output {path} does not exist")
    return path


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A temporary sibling that becomes ``final`` only if the block succeeds."""
    final = check_output_free(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def kept_settings(scene: Any) -> Iterator[None]:
    """Restore what the renders change on ``scene`` (camera, frame, output, engine, views)."""
    render = scene.render
    image = render.image_settings
    saved = {
        "camera": scene.camera,
        "frame": scene.frame_current,
        "filepath": render.filepath,
        "engine": render.engine,
        "res": (render.resolution_x, render.resolution_y, render.resolution_percentage),
        "format": (image.file_format, image.color_mode, image.color_depth),
        "multiview": (render.use_multiview, render.views_format, image.views_format),
        "stereo": image.stereo_3d_format.display_mode,
        "squeezed": image.stereo_3d_format.use_squeezed_frame,
        "extension": render.use_file_extension,
    }
    try:
        yield
    finally:
        scene.camera = saved["camera"]
        render.filepath = saved["filepath"]
        render.engine = saved["engine"]
        render.resolution_x, render.resolution_y, render.resolution_percentage = saved["res"]
        image.file_format, image.color_mode, image.color_depth = saved["format"]
        render.use_multiview, render.views_format, image.views_format = saved["multiview"]
        image.stereo_3d_format.display_mode = saved["stereo"]
        image.stereo_3d_format.use_squeezed_frame = saved["squeezed"]
        render.use_file_extension = saved["extension"]
        scene.frame_set(saved["frame"])


def _png_output(scene: Any) -> None:
    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = "RGB"
    image.color_depth = "8"
    scene.render.use_file_extension = True


def _render_frame(scene: Any, frame: int, path_stem: Path) -> None:
    scene.frame_set(frame)
    scene.render.filepath = str(path_stem)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    if not Path(f"{path_stem}.png").is_file():
        raise RenderError(f"Blender did not write {path_stem}.png")


def _scene_fps(scene: Any) -> float:
    return scene.render.fps / scene.render.fps_base


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- multicam


def render_cameras(
    scene: Any,
    camera_objects: list[Any],
    frame_range: tuple[int, int],
    out_dir: str | Path,
    *,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
    loop_frames: int | None = None,
) -> Path:
    """Render ``scene`` through every camera for ``frame_range`` (inclusive) into ``out_dir``.

    ``out_dir/<camera>/frame_NNNNNN.png`` where N = frame − start (loop frame N), the
    same numbers for every camera, plus ``manifest.json``. ``loop_frames`` (default: the
    World's PanoLoop loop) must equal the range's length. Returns ``out_dir``.
    """
    start, end = (int(v) for v in frame_range)
    cameras = check_cameras(list(camera_objects))
    check_frame_range(start, end, loop_frames if loop_frames is not None else loop_length(scene))
    out_dir = Path(out_dir)
    total = len(cameras) * (end - start + 1)
    with atomic_folder(out_dir) as tmp, kept_settings(scene):
        _png_output(scene)
        scene.render.use_multiview = False
        step = 0
        for cam in cameras:
            scene.camera = cam
            (tmp / cam.name).mkdir()
            for frame in range(start, end + 1):
                if cancelled():
                    raise RenderCancelled("cancelled; no renders were kept")
                _render_frame(scene, frame, tmp / cam.name / f"frame_{frame - start:06d}")
                step += 1
                progress("render", step, total)
        _write_json(
            tmp / MANIFEST_NAME,
            {
                "kind": "blender_renders",
                "engine": scene.render.engine,
                "frame_range": [start, end],
                "frames": end - start + 1,
                "fps": _scene_fps(scene),
                "loop": True,
                "sync": "frame_N.png of every camera is Blender frame start + N",
                "cameras": [
                    {"name": c.name, "folder": c.name, "type": c.data.type} for c in cameras
                ],
            },
        )
    return out_dir


# --------------------------------------------------------------------------- 360°


def _pano_camera(scene: Any, viewpoint: tuple[float, float, float], stereo: bool) -> Any:
    data = bpy.data.cameras.new("PanoLoop 360")
    data.type = "PANO"
    data.panorama_type = "EQUIRECTANGULAR"
    data.clip_start = 0.01
    if stereo:
        data.stereo.use_spherical_stereo = True
        data.stereo.convergence_mode = "PARALLEL"
        data.stereo.interocular_distance = DEFAULT_INTEROCULAR_M
        data.stereo.use_pole_merge = True  # fade parallax out near the poles
    obj = bpy.data.objects.new("PanoLoop 360", data)
    obj.location = viewpoint
    obj.rotation_euler = PANO_ROTATION
    scene.collection.objects.link(obj)
    return obj


def render_360(
    scene: Any,
    viewpoint: tuple[float, float, float],
    frame_range: tuple[int, int],
    out_dir: str | Path,
    *,
    width: int = 1024,
    stereo: bool = False,
    interocular: float = DEFAULT_INTEROCULAR_M,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
    loop_frames: int | None = None,
) -> Path:
    """Render the scene in 360° from ``viewpoint`` (Blender world coordinates) with Cycles.

    Mono: ``width``×``width/2`` equirect frames. Stereo: spherical stereo, top-bottom with
    the left eye on top, ``width``×``width`` frames. ``out_dir`` becomes a PanoLoop
    panorama folder (``frames/``, ``manifest.json`` with ``stereo``), which
    ``engine export`` turns into a tagged ``_360``/``_360_TB`` MP4.
    """
    start, end = (int(v) for v in frame_range)
    if width < 2 or width % 4:
        raise RenderError(f"360° width {width} must be a positive multiple of 4")
    if not interocular > 0:
        raise RenderError(f"interocular distance {interocular} must be positive")
    check_frame_range(start, end, loop_frames if loop_frames is not None else loop_length(scene))
    out_dir = Path(out_dir)
    if not hasattr(scene, "cycles"):
        raise RenderError("360° renders need Cycles, which is not available in this Blender")
    camera = None
    with atomic_folder(out_dir) as tmp, kept_settings(scene):
        try:
            camera = _pano_camera(scene, tuple(viewpoint), stereo)
            camera.data.stereo.interocular_distance = interocular
            scene.render.engine = "CYCLES"
            scene.camera = camera
            scene.render.resolution_x, scene.render.resolution_y = width, width // 2
            scene.render.resolution_percentage = 100
            _png_output(scene)
            _stereo_output(scene, stereo)
            frames = tmp / FRAMES_DIR
            frames.mkdir()
            total = end - start + 1
            for frame in range(start, end + 1):
                if cancelled():
                    raise RenderCancelled("cancelled; no 360° frames were kept")
                _render_frame(scene, frame, frames / f"frame_{frame - start:06d}")
                progress("render 360", frame - start + 1, total)
        finally:
            if camera is not None:
                data = camera.data
                bpy.data.objects.remove(camera)
                bpy.data.cameras.remove(data)
        _write_json(
            tmp / MANIFEST_NAME,
            {
                "projection": "equirectangular",
                "orientation": {"convention": "blender", "up": "+Z", "center": "+X"},
                "width": width,
                "height": width if stereo else width // 2,
                "frames": end - start + 1,
                "fps": _scene_fps(scene),
                "loop": True,
                "frames_dir": FRAMES_DIR,
                "stereo": "top-bottom" if stereo else "mono",
                "stereo_layout": "left eye on top" if stereo else None,
                "interocular_m": interocular if stereo else None,
                "viewpoint": list(viewpoint),
                "frame_range": [start, end],
                "source": "blender",
                "engine": "CYCLES",
            },
        )
    return out_dir


def _stereo_output(scene: Any, stereo: bool) -> None:
    render = scene.render
    render.use_multiview = stereo
    if not stereo:
        return
    render.views_format = "STEREO_3D"
    image = render.image_settings
    image.views_format = "STEREO_3D"
    image.stereo_3d_format.display_mode = "TOPBOTTOM"
    image.stereo_3d_format.use_squeezed_frame = False


# --------------------------------------------------------------------------- the job script


def _stdin_cancel_flag() -> threading.Event:
    flag = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                break
        flag.set()  # a cancel line, or stdin closed: Blender (the parent) went away

    threading.Thread(target=watch, daemon=True).start()
    return flag


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run a render job description (what the operator writes) in this Blender.

    ``job["renders"]`` (optional) lists several render specs (else the job is one);
    ``job["then"]`` (optional: one or a list of ``{python, job, env}``) runs engine
    worker jobs on the renders afterwards, forwarding their events, so one process
    carries the whole operation (one progress bar, one Cancel). Returns the final event.
    """
    if job.get("blend") and bpy.data.filepath != job["blend"]:
        bpy.ops.wm.open_mainfile(filepath=job["blend"])
    scene = bpy.data.scenes[job["scene"]]
    flag = _stdin_cancel_flag()

    def progress(stage: str, step: int, total: int) -> None:
        _emit({"event": "progress", "stage": stage, "step": step, "total": total})

    out = None
    for spec in job.get("renders") or [job]:
        out = _render_spec(scene, {**job, **spec}, progress, flag.is_set)
    final = {"event": "done", "output": str(out)}
    thens = job.get("then") or []
    for then in [thens] if isinstance(thens, dict) else thens:
        final = _run_engine_worker(then, flag)
        if final.get("event") != "done":
            break
    return final


def _render_spec(
    scene: Any, spec: dict[str, Any], progress: Progress, cancelled: Cancelled
) -> Path:
    frame_range = tuple(spec["frame_range"])
    if spec["kind"] == "cameras":
        cameras = [scene.objects[name] for name in spec["cameras"]]
        return render_cameras(
            scene, cameras, frame_range, Path(spec["out"]), progress=progress,
            cancelled=cancelled,
        )  # fmt: skip
    return render_360(
        scene, tuple(spec["viewpoint"]), frame_range, Path(spec["out"]),
        width=int(spec.get("width", 1024)), stereo=bool(spec.get("stereo")),
        progress=progress, cancelled=cancelled,
    )  # fmt: skip


def _run_engine_worker(then: dict[str, Any], flag: threading.Event) -> dict[str, Any]:
    """``python -m engine worker --job FILE``: forward its progress, pass a cancel on."""
    import subprocess

    command = [then["python"], "-m", "engine", "worker", "--job", then["job"]]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=then.get("env"),
        text=True, encoding="utf-8", errors="replace",
    )  # fmt: skip

    def pass_cancel() -> None:
        flag.wait()
        if proc.poll() is None:
            try:
                proc.stdin.write("cancel\n")
                proc.stdin.flush()
            except OSError:
                pass  # the worker is already gone

    threading.Thread(target=pass_cancel, daemon=True).start()
    final: dict[str, Any] = {}
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "progress":
            _emit(event)
        elif event.get("event") in ("done", "error", "cancelled"):
            final = event
    code = proc.wait()
    if not final:
        final = {"event": "error", "message": f"the engine worker stopped (exit code {code})"}
    return final


def main(argv: list[str]) -> int:
    """``render.py JOB.json``: exit 0 done, 2 refused, 130 cancelled, 1 failure."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        final = run_job(job)
    except RenderCancelled as exc:
        final = {"event": "cancelled", "message": str(exc)}
    except RenderError as exc:
        final = {"event": "error", "message": str(exc), "fix": exc.fix, "exit_code": 2}
    _emit(final)
    codes = {"done": 0, "cancelled": 130}
    return codes.get(final["event"], int(final.get("exit_code") or 1))


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(args))
