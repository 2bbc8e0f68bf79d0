"""Scene settings → an engine job: command line, job folder, output path, what to do after.

Every check that can be made in Blender without loading images or models happens here,
before anything starts, and fails with an :class:`AddonError` whose ``fix`` says where
to look. The engine repeats its own checks (it is the authority on its inputs).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy

from . import contract, engine_env, world
from .engine_env import AddonError, preview_args
from .runner import Job
from .scene_io import cameras_in_scope, write_cameras_json

#: ``device`` preference → the engine's ``--device``; precision → ``--dtype``.
DEVICE_FLAGS = {"AUTO": "auto", "CUDA": "cuda", "MPS": "mps", "CPU": "cpu"}
DTYPE_FLAGS = {"AUTO": "auto", "FP16": "float16", "BF16": "bfloat16", "FP32": "float32"}
ONLINE_FIX = (
    "allow Online Access in Preferences > System > Network, "
    "or set the PanoLoop Model preference to a local folder"
)


def frame_count(seconds: float, fps: int) -> int:
    """Frames of a loop of ``seconds`` at ``fps``; refuses a fractional count."""
    frames = seconds * fps
    if frames < 1 or abs(frames - round(frames)) > 1e-6:
        raise AddonError(
            f"{seconds:g} s at {fps} fps is {frames:g} frames; a loop needs a whole number",
            "change Seconds or FPS so that Seconds × FPS is a whole number",
        )
    return round(frames)


def new_output_path(scene: Any, kind: str) -> Path:
    """A fresh folder name under the output root: ``<scene>-<kind>-<date>-<time>``."""
    root = engine_env.output_root()
    stem = contract.safe_name(f"{scene.name}-{kind}", fallback=kind)
    stem = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = root / stem, 1
    while path.exists() or any(root.glob(f"{contract.partial_prefix(path)}*")):
        n += 1
        path = root / f"{stem}-{n}"
    return path


def apply_world_when_done(scene_name: str) -> Callable[[Job], Iterator[None]]:
    """``on_done`` for jobs producing a panorama: make it the scene's looping World."""

    def on_done(job: Job) -> Iterator[None]:
        return world.apply_panorama_steps(scene_name, job.result)

    return on_done


def worker_job(
    label: str,
    command: str,
    argv: list[str],
    *,
    output: Path | None,
    online: bool,
    on_done: Callable[[Job], Iterator[None]] | None = None,
    job_dir: Path | None = None,
) -> Job:
    """A :class:`Job` running ``python -m engine worker`` on ``command argv``."""
    python = engine_env.checked_engine_python()
    job_dir = job_dir or Path(tempfile.mkdtemp(prefix=f"{command}-", dir=engine_env.jobs_root()))
    job_file = job_dir / "job.json"
    job_file.write_text(json.dumps({"command": command, "argv": argv}, indent=2) + "\n")
    return Job(
        label=label,
        command=[str(python), "-m", "engine", "worker", "--job", str(job_file)],
        env=engine_env.worker_environment(online=online),
        job_dir=job_dir,
        output=output,
        on_done=on_done,
    )


def source_image_path(scene: Any) -> Path:
    """The still to animate: ``source_image``, else the World's environment image file."""
    settings = scene.panoloop
    if settings.source_image.strip():
        return Path(bpy.path.abspath(settings.source_image.strip()))
    image = world.world_environment_image(scene.world)
    if image is None:
        raise AddonError(
            "nothing to animate: Source Image is empty and the World has no environment image",
            "set Source Image in the PanoLoop panel, or give the World an Environment Texture",
        )
    if image.source != "FILE" or image.packed_file is not None or not image.filepath:
        raise AddonError(
            f"the World's image {image.name!r} is not a still image file on disk",
            "set Source Image to a 2:1 image file (unpack or save the World's image first)",
        )
    width, height = image.size
    if width != 2 * height:
        raise AddonError(
            f"the World's image {image.name!r} is {width}x{height}; an equirect panorama is 2:1",
            "choose a 2:1 image as Source Image",
        )
    return Path(bpy.path.abspath(image.filepath, library=image.library))


def animate_job(scene: Any) -> Job:
    """``engine animate`` on the scene's source image; the result becomes the World."""
    settings = scene.panoloop
    source = source_image_path(scene)
    if not source.is_file():
        raise AddonError(f"source image not found: {source}", "check Source Image")
    frame_count(settings.seconds, settings.fps)
    output = new_output_path(scene, "animate")
    argv = [
        str(source),
        "--out", str(output),
        "--seconds", repr(float(settings.seconds)),
        "--fps", str(settings.fps),
        "--strength", repr(float(settings.strength)),
        "--seed", str(settings.seed),
    ]  # fmt: skip
    if settings.motion_mask.strip():
        argv += ["--mask", bpy.path.abspath(settings.motion_mask.strip())]
    if settings.motion_map.strip():
        argv += ["--motion-map", str(saved_motion_map(settings.motion_map.strip()))]
    if not settings.drift_auto:
        argv += ["--drift-direction", repr(float(settings.drift_direction))]
    argv += ["--drift-speed", repr(float(settings.drift_speed))]
    argv += preview_args(scene)
    return worker_job(
        f"Animate {source.name}",
        "animate",
        argv,
        output=output,
        online=bpy.app.online_access,
        on_done=apply_world_when_done(scene.name),
    )


def saved_motion_map(path: str) -> Path:
    """The motion map's file, with any unsaved painting in Blender saved into it first."""
    target = Path(bpy.path.abspath(path))
    for image in bpy.data.images:
        if image.filepath and Path(bpy.path.abspath(image.filepath)) == target:
            if image.is_dirty:
                image.save()
    if not target.is_file():
        raise AddonError(f"motion map not found: {target}", "check Motion Map, or create one")
    return target


def create_motion_map(scene: Any) -> Any:
    """A black RGB image at the source's size, saved as PNG in the output folder and set
    as the scene's Motion Map; returns the Blender image (to paint on)."""
    settings = scene.panoloop
    source = source_image_path(scene)
    if not source.is_file():
        raise AddonError(f"source image not found: {source}", "check Source Image")
    still = bpy.data.images.load(str(source), check_existing=True)
    width, height = still.size
    if width != 2 * height:
        raise AddonError(
            f"source image {source.name} is {width}x{height}; an equirect panorama is 2:1",
            "choose a 2:1 image as Source Image",
        )
    path = engine_env.output_root() / f"{source.stem}-motion-map.png"
    n = 1
    while path.exists():
        n += 1
        path = path.with_name(f"{source.stem}-motion-map-{n}.png")
    image = bpy.data.images.new(path.stem, width, height, alpha=False)
    image.generated_color = (0.0, 0.0, 0.0, 1.0)
    image.colorspace_settings.name = "Non-Color"  # a map of amounts, not a picture
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    settings.motion_map = str(path)
    return image


def model_is_local(model: str) -> bool:
    return Path(bpy.path.abspath(model)).is_dir()


def generate_job(scene: Any) -> Job:
    """``engine generate`` from the scene's prompt, aware of its cameras."""
    settings = scene.panoloop
    prefs = engine_env.preferences()
    if not settings.prompt.strip():
        raise AddonError("the prompt is empty", "write a Prompt in the PanoLoop panel")
    model = prefs.model.strip()
    if not model:
        raise AddonError(
            "no model chosen",
            "Preferences > Add-ons > PanoLoop: set Model to a hub id or a local folder",
        )
    if settings.width != 2 * settings.height:
        raise AddonError(
            f"size {settings.width}x{settings.height} is not 2:1",
            "pick a size preset or make Width twice Height",
        )
    # Frames written = seconds × fps (whole, checked here); the engine denoises
    # seconds × the model's own rate (8/s for AnimateDiff) and interpolates the rest.
    frame_count(settings.seconds, settings.fps)
    engine_env.checked_engine_python()  # before any job folder is made
    local = model_is_local(model)
    online = bpy.app.online_access
    output = new_output_path(scene, "generate")
    job_dir = Path(tempfile.mkdtemp(prefix="generate-", dir=engine_env.jobs_root()))
    argv = [
        "--prompt", settings.prompt,
        "--model", bpy.path.abspath(model) if local else model,
        "--out", str(output),
        "--width", str(settings.width),
        "--height", str(settings.height),
        "--seconds", repr(float(settings.seconds)),
        "--fps", str(settings.fps),
        "--steps", str(settings.steps),
        "--guidance", repr(float(settings.guidance)),
        "--seed", str(settings.seed),
        "--device", DEVICE_FLAGS[prefs.device],
        "--dtype", DTYPE_FLAGS[prefs.precision],
        "--schedule", prefs.schedule,
    ]  # fmt: skip
    if prefs.window_frames > 0:  # 0: the engine picks the model family's own window
        argv += ["--window-frames", str(prefs.window_frames)]
    if settings.negative_prompt.strip():
        argv += ["--negative", settings.negative_prompt]
    if prefs.motion_adapter.strip():
        argv += ["--motion-adapter", prefs.motion_adapter.strip()]
    if prefs.cpu_offload:
        argv.append("--cpu-offload")
    if prefs.vae_slicing:
        argv.append("--vae-slicing")
    if prefs.vae_tiling:
        argv.append("--vae-tiling")
    if not online:
        argv.append("--offline")
    cameras = cameras_in_scope(scene)
    if cameras:
        cameras_file = job_dir / contract.CAMERAS_NAME
        argv += ["--cameras", str(write_cameras_json(cameras, scene, cameras_file))]
        argv += ["--yaw", f"{math.degrees(settings.world_rotation):.17g}"]
    job = worker_job(
        f"Generate “{settings.prompt[:40]}”",
        "generate",
        argv,
        output=output,
        online=online,
        on_done=apply_world_when_done(scene.name),
        job_dir=job_dir,
    )
    if not online and not local:
        job.fix_hint = ONLINE_FIX
    return job


def serve_job(argv: list[str]) -> Job:
    """``engine serve`` in the worker: serves until Cancel; its stage shows the URL."""
    return worker_job("Serve to headset", "serve", argv, output=None, online=False)
