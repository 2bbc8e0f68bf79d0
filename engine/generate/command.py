"""``python -m engine generate``: a prompt → a seamless looping 360° video (AnimateDiff or Wan 2.1).

The model family comes from the model's ``model_index.json`` (``_class_name``):
``WanPipeline`` → :mod:`.wan` (flow matching, time-compressing VAE, ``--lora``, 16
frames/s), anything else → AnimateDiff (:mod:`.backends`, 8 frames/s).

Writes the output-folder contract atomically: ``frames/frame_NNNNNN.png`` (8-bit,
numbered from 0, no duplicated loop frame), a looping ``panorama.mp4`` and
``manifest.json`` (prompt, model and revision, seed, stage schedule, timings). Every
input is checked — sizes, counts, the model folder's configs and weight formats, the
cameras file, the output path — before a model loads or anything is written.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from ..contract import add_yaw_argument
from ..errors import BadInput
from ..progress import JobContext

HELP = "generate a seamless looping 360° panorama video from a prompt (AnimateDiff or Wan 2.1)"
#: Loop length when neither --seconds nor --frames is given: one AnimateDiff window.
DEFAULT_SECONDS = 2.0
#: How close seconds × rate must come to a whole number of frames.
WHOLE = 1e-6
#: ``--denoise-strength`` with ``--image`` when none is given (diffusers' video-to-video
#: default): the last 60 % of the steps run from the still noised to their first level.
DEFAULT_DENOISE_STRENGTH = 0.6


@dataclass(frozen=True)
class LoopTiming:
    """How long the loop is and at which rates it is denoised and written.

    ``frames`` = seconds × fps are written; ``denoised_frames`` = seconds × model_fps are
    denoised (the model's own rate, so its motion keeps its natural speed) and the
    output rate is reached by loop-aware interpolation (:mod:`engine.interpolate`).
    """

    seconds: float
    fps: float
    model_fps: float
    frames: int
    denoised_frames: int


def loop_timing(
    seconds: float | None, frames: int | None, fps: float, model_fps: float
) -> LoopTiming:
    """Resolve --seconds/--frames/--fps against the model's rate; BadInput naming the values.

    Both counts must be whole: frames written = seconds × fps, frames denoised =
    seconds × model_fps (refused otherwise, with the nearest lengths that work).
    """
    if not (math.isfinite(fps) and fps > 0):
        raise BadInput(f"fps must be a positive number, got {fps}")
    if not (math.isfinite(model_fps) and model_fps > 0):
        raise BadInput(f"--model-fps must be a positive number, got {model_fps}")
    if frames is not None and frames < 1:
        raise BadInput(f"frames must be at least 1, got {frames}")
    if seconds is None:
        seconds = frames / fps if frames is not None else DEFAULT_SECONDS
    if not (math.isfinite(seconds) and seconds > 0):
        raise BadInput(f"seconds must be a positive number, got {seconds}")
    written = _whole(seconds * fps)
    if written is None:
        raise BadInput(f"{seconds:g} s at {fps:g} fps is {seconds * fps:g} frames; "
                       "a loop needs a whole number")  # fmt: skip
    if frames is not None and frames != written:
        raise BadInput(f"--frames {frames} disagrees with --seconds {seconds:g} at {fps:g} fps "
                       f"({seconds * fps:g} frames); give one of them")  # fmt: skip
    denoised = _whole(seconds * model_fps)
    if denoised is None:
        exact = seconds * model_fps
        low, high = math.floor(exact) / model_fps, math.ceil(exact) / model_fps
        raise BadInput(
            f"{seconds:g} s at the model's {model_fps:g} frames/s is {exact:g} frames to denoise; "
            f"a loop needs a whole number: choose {low:g} or {high:g} seconds",
            fix="seconds × 8 must be whole for AnimateDiff (or set --model-fps)",
        )
    return LoopTiming(seconds, fps, model_fps, written, denoised)


def _whole(value: float) -> int | None:
    nearest = round(value)
    return nearest if nearest >= 1 and abs(value - nearest) <= WHOLE else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="what the panorama shows")
    parser.add_argument(
        "--model",
        required=True,
        help="AnimateDiff or Wan 2.1 pipeline: a hub id or a folder written by save_pretrained "
        "(with --motion-adapter: a Stable Diffusion 1.5 pipeline)",
    )
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument("--negative", default="", help="negative prompt (with --guidance > 1)")
    parser.add_argument("--width", type=int, default=2048, help="pixels, twice the height")
    parser.add_argument("--height", type=int, default=1024, help="pixels")
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"length of the loop (default {DEFAULT_SECONDS:g}); frames written = seconds × fps",
    )
    parser.add_argument(
        "--frames",
        type=int,
        help="frames written (instead of --seconds: seconds = frames / fps; "
        "Wan denoises a multiple of 4)",
    )
    parser.add_argument(
        "--fps", type=float, help="frame rate of the output (default: the model's, 8 or Wan's 16)"
    )
    parser.add_argument(
        "--model-fps",
        type=float,
        help="rate the model denoises at (default: its own, 8 for AnimateDiff, 16 for Wan); "
        "frames denoised = seconds × model fps, the rest are interpolated",
    )
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument(
        "--image",
        type=Path,
        help="image-to-video: a 2:1 equirect still (EXR/HDR/PNG/JPG) the loop starts from, "
        "resized to --width x --height; the frames are the model's own pixels",
    )
    parser.add_argument(
        "--denoise-strength",
        type=float,
        help=f"with --image: how far the still is re-noised, (0, 1]; the last strength x "
        f"--steps steps run (1 ignores the still; default {DEFAULT_DENOISE_STRENGTH:g})",
    )
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same frames)")
    parser.add_argument(
        "--cameras", type=Path, help="cameras.json: denoise each camera's view whole"
    )
    add_yaw_argument(parser)
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps or cpu")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32")
    )
    parser.add_argument(
        "--motion-adapter", help="MotionAdapter hub id or folder for an SD 1.5 base"
    )
    parser.add_argument("--revision", help="hub commit, branch or tag of --model (pins it)")
    parser.add_argument(
        "--motion-adapter-revision", help="hub commit, branch or tag of --motion-adapter"
    )
    parser.add_argument(
        "--variant",
        help="weight variant to load, e.g. fp16 (default: fp16 on a GPU when the model "
        "has it, else the full-precision files)",
    )
    parser.add_argument("--offline", action="store_true", help="never reach the hub")
    parser.add_argument(
        "--cpu-offload",
        action="store_true",
        help="model CPU offload: each model waits on the CPU, moves to the device to run",
    )
    parser.add_argument(
        "--vae-slicing",
        action="store_true",
        help="VAE batch slicing (frames are decoded one at a time already)",
    )
    parser.add_argument(
        "--vae-tiling",
        action="store_true",
        help="decode each frame in blended tiles: less memory at 4K, the seam stays hidden",
    )
    parser.add_argument(
        "--window-frames",
        type=int,
        help="frames per model call (AnimateDiff: 16, Wan: 81; fewer is faster, less coherent)",
    )
    parser.add_argument(
        "--window-size",
        help="Wan: pixels WIDTHxHEIGHT per model call (default 832x480, its training size)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="ID_OR_FILE[:SCALE]",
        help="Wan: LoRA weights (hub id, folder or .safetensors file), scale 1 by default; "
        "repeatable (e.g. PanoWan's panorama LoRA)",
    )
    parser.add_argument(
        "--schedule",
        default="dynamic",
        choices=("dynamic", "windows", "fixed"),
        help="dynamic: sphere views, shifted windows, coarse-to-fine (default); "
        "windows: shifted windows only; fixed: plain tiling (a baseline)",
    )
    parser.add_argument(
        "--sphere-latitudes",
        default="0,45,-45,60,-60,75,-75",
        help="latitudes (degrees) of the sphere views, comma separated",
    )
    parser.add_argument(
        "--sphere-longitudes", type=int, default=6, help="sphere views per latitude"
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="denoise on Ray workers that each hold the model: local (a Ray cluster on "
        "this machine, for this job), auto (the one `ray start` runs here), or HOST:PORT / "
        "ray://HOST:PORT of a cluster's head; same frames as without it (needs the "
        "cluster extra)",
    )
    parser.add_argument(
        "--ray-workers",
        type=int,
        metavar="N",
        help="Ray workers (default: one per GPU of the cluster with CUDA, else 1)",
    )


def parse_latitudes(text: str) -> tuple[float, ...]:
    """``"0,45,-45"`` → (0.0, 45.0, -45.0); BadInput naming the value otherwise."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"--sphere-latitudes must be numbers, got {text!r}") from None
    if any(not math.isfinite(v) or abs(v) > 90 for v in values):
        raise BadInput(f"--sphere-latitudes must lie in [-90, 90], got {text!r}")
    return values


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check everything, load the model, sample, decode and write the folder atomically."""
    from ..media import check_output_free

    still = check_still_arguments(args)
    check_output_free(args.out)
    job = prepare(args, ctx, still=still)
    if job.ray is not None:
        return _run_on_ray(args, job, ctx)
    return generate_to_folder(
        job.backend,
        job.request,
        args.out,
        ctx,
        timing=job.timing,
        extra=job.extra,
        yaw_degrees=args.yaw,
        still=job.still,
    )


@dataclass
class PreparedJob:
    """A checked request and the loaded backend that samples it.

    ``still``: the image-to-video still, (height, width, 3) float32 RGB in [0, 1] at the
    request's size, or None; ``extra``: manifest fields the checks decided.
    """

    backend: object
    request: object
    timing: LoopTiming
    extra: dict
    still: object = None
    ray: RayJob | None = None  # the backend is made, on Ray workers, by _run_on_ray


@dataclass(frozen=True)
class RayJob:
    """What ``--ray`` runs, all checked by :func:`prepare`: the cluster (``target``,
    :class:`engine.cluster.connect.ClusterAddress`), what each worker loads (``spec``,
    :class:`.cluster.LoadSpec`) and the memory estimate's inputs (``shape`` from the
    model's configs and headers; ``size``, a :class:`.memory.JobSize` whose dtype is set
    once the workers' device is known), checked on the workers' nodes before they load."""

    target: object
    spec: object
    shape: object
    size: object


def prepare(
    args: argparse.Namespace, ctx: JobContext, *, still: StillImage | None = None
) -> PreparedJob:
    """Check every generate argument (nothing loads before all pass), then load the model.

    ``args`` are :func:`add_arguments`'s; ``still`` (from :func:`check_still_arguments`)
    makes it image-to-video: the still is read and resized to the request's size here.
    """
    from .backends import ANIMATEDIFF_FPS, ANIMATEDIFF_WINDOW_FRAMES
    from .cluster import check_ray_arguments
    from .loading import WEIGHTED_COMPONENTS, header_params, inspect_model, pick_device, pick_dtype
    from .memory import auto_vae_tiling, read_model_shape
    from .sampler import GenerateRequest, check_request_numbers, check_request_sizes
    from .wan import WAN_MODEL_FPS, WAN_PIPELINE, model_class, parse_lora

    # 1. Check inputs: nothing loads and nothing is written before all of them pass.
    if args.sphere_longitudes < 1:
        raise BadInput(f"--sphere-longitudes must be at least 1, got {args.sphere_longitudes}")
    if args.window_frames is not None and args.window_frames < 1:
        raise BadInput(f"--window-frames must be at least 1, got {args.window_frames}")
    ray_target = check_ray_arguments(args.ray, args.ray_workers, args.device)
    window_size = parse_window_size(args.window_size) if args.window_size else None
    loras = [parse_lora(text) for text in args.lora]
    wan = model_class(args.model, offline=args.offline, revision=args.revision) == WAN_PIPELINE
    if not wan and (loras or window_size):
        raise BadInput(f"--lora and --window-size are for Wan models; {args.model} is not one")
    native_fps = WAN_MODEL_FPS if wan else ANIMATEDIFF_FPS
    model_fps = args.model_fps if args.model_fps is not None else native_fps
    fps = args.fps if args.fps is not None else native_fps
    timing = loop_timing(args.seconds, args.frames, fps, model_fps)
    cameras = ()
    if args.cameras is not None:
        from ..cameras import load_cameras, turned_by_world

        # Camera views are taken in the panorama's own frame: the World's rotation turns
        # the cameras the other way round (engine.cameras.turned_by_world).
        cameras = tuple(turned_by_world(load_cameras(args.cameras), args.yaw))
    request = GenerateRequest(
        prompt=args.prompt,
        negative=args.negative,
        width=args.width,
        height=args.height,
        frames=timing.denoised_frames,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        schedule=args.schedule,
        cameras=cameras,
        sphere_latitudes=parse_latitudes(args.sphere_latitudes),
        sphere_longitudes=args.sphere_longitudes,
        denoise_strength=still.strength if still is not None else 1.0,
    )
    check_request_numbers(request)
    pixels = still.read(args.width, args.height) if still is not None else None
    extra = still.describe() if still is not None else {}
    if wan:
        if args.motion_adapter_revision:
            raise BadInput("--motion-adapter-revision is for AnimateDiff; Wan has no adapter")
        checked = _check_wan(args, request, timing, window_size=window_size, loras=loras)
        if ray_target is not None:
            from .cluster import wan_load_spec

            info, window, lora_infos, shape = checked
            tiling = auto_vae_tiling(request.width, args.vae_tiling)
            spec = wan_load_spec(info, args, window=window, loras=lora_infos, vae_tiling=tiling)
            job = PreparedJob(None, request, timing, extra, pixels)
            return _on_ray(args, job, ray_target, spec, shape, window)
        backend, vae_tiling = _load_wan(args, checked, request, ctx, timing)
        extra["vae_tiling_auto"] = vae_tiling and not args.vae_tiling
        return PreparedJob(backend, request, timing, extra, pixels)
    if ray_target is None:
        device = pick_device(args.device)  # names and availability, before anything loads
        gpu_fp16 = device != "cpu" and str(pick_dtype(args.dtype, device)) == "torch.float16"
    else:  # the workers pick their device on their own nodes
        gpu_fp16 = args.device == "cuda" and args.dtype in ("auto", "float16")
    info = inspect_model(
        args.model,
        motion_adapter=args.motion_adapter,
        offline=args.offline,
        revision=args.revision,
        adapter_revision=args.motion_adapter_revision,
        variant=args.variant,
        prefer_fp16=gpu_fp16,
    )
    if args.steps > info.train_timesteps:
        raise BadInput(
            f"--steps {args.steps} exceeds the model's {info.train_timesteps} training timesteps"
        )
    args.window_frames = args.window_frames or ANIMATEDIFF_WINDOW_FRAMES
    if args.window_frames > info.max_frames:
        raise BadInput(
            f"--window-frames {args.window_frames} exceeds the motion module's "
            f"{info.max_frames} positions"
        )
    window = (args.window_frames, info.sample_size, info.sample_size)
    check_request_sizes(request, info.vae_factor, info.align, window)
    adapter = info.adapter.folder if info.adapter is not None else None
    params = header_params(info.source, WEIGHTED_COMPONENTS, info.variant)
    if info.adapter is not None:
        adapter_params = header_params(info.adapter.source, ("",), info.adapter.variant)
        params["motion_adapter"] = adapter_params[""]
    shape = read_model_shape(info.folder, adapter, params=params)
    if ray_target is not None:  # the backend lives on Ray workers while the job runs
        from .cluster import load_spec

        spec = load_spec(info, args, vae_tiling=auto_vae_tiling(request.width, args.vae_tiling))
        job = PreparedJob(None, request, timing, extra, pixels)
        return _on_ray(args, job, ray_target, spec, shape, window)
    dtype = pick_dtype(args.dtype, device)
    vae_tiling = check_memory(args, shape, window, request, timing, dtype)
    # 2. Load.
    from .loading import load_animatediff

    with ctx.timed("load"):
        backend = load_animatediff(
            info,
            device=device,
            dtype=args.dtype,
            window_frames=args.window_frames,
            offline=args.offline,
            cpu_offload=args.cpu_offload,
            vae_slicing=args.vae_slicing,
            vae_tiling=vae_tiling,
        )
    extra["vae_tiling_auto"] = vae_tiling and not args.vae_tiling
    return PreparedJob(backend, request, timing, extra, pixels)


# --------------------------------------------------------------------------- image-to-video


@dataclass(frozen=True)
class StillImage:
    """``--image`` and ``--denoise-strength``, checked: the still to start from."""

    path: Path
    strength: float

    def read(self, width: int, height: int):
        """The still at ``width`` x ``height`` for the VAE (see :func:`read_still`)."""
        return read_still(self, width, height)

    def describe(self) -> dict:
        """The manifest's image-to-video fields (the still's SHA-256 names its bytes)."""
        from ..motion import file_sha256

        return {
            "init_image": {"path": str(self.path), "sha256": file_sha256(self.path)},
            "denoise_strength": self.strength,
        }


def check_still_arguments(args: argparse.Namespace) -> StillImage | None:
    """``--image``/``--denoise-strength`` → the checked still, or None (text-to-video).

    The strength must lie in (0, 1] (NaN refused); it needs ``--image``; the image is
    checked to be readable and 2:1 later, by :func:`read_still`, before any model loads.
    """
    strength = args.denoise_strength
    if strength is not None and not 0 < strength <= 1:  # NaN fails too
        raise BadInput(f"--denoise-strength must lie in (0, 1], got {strength}")
    if args.image is None:
        if strength is not None:
            raise BadInput(f"--denoise-strength {strength} needs --image (the still to animate)")
        return None
    return StillImage(args.image, DEFAULT_DENOISE_STRENGTH if strength is None else strength)


def read_still(still: StillImage, width: int, height: int):
    """The still file as the VAE takes it (:func:`still_for_model`): readable, 2:1 and
    finite, or BadInput naming the file."""
    import numpy as np

    from ..media import check_equirect_shape, read_image

    image = read_image(still.path)
    check_equirect_shape(image.shape[1], image.shape[0], still.path)
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise BadInput(f"image {still.path} contains NaN or infinite pixel values")
    return still_for_model(image, width, height)


def still_for_model(image, width: int, height: int):
    """An equirect still (H, W, 3: float scene-linear, uint8 or uint16) → (height, width, 3)
    float32 RGB in [0, 1], what the VAE encodes: an HDR still is shown through the sRGB
    transfer (exposure 0, clipped), then resized with area averaging (bicubic when
    enlarged)."""
    import cv2
    import numpy as np

    from ..media import to_display_uint8

    display = to_display_uint8(image)
    interpolation = cv2.INTER_AREA if display.shape[1] >= width else cv2.INTER_CUBIC
    resized = cv2.resize(display, (width, height), interpolation=interpolation)
    return resized.astype(np.float32) / np.float32(255.0)


def _run_on_ray(args: argparse.Namespace, job: PreparedJob, ctx: JobContext) -> Path:
    """The ``--ray`` path of :func:`run`: the same sampler, its model calls on Ray workers
    (:mod:`.cluster`); every worker and a local cluster end with the job."""
    from .cluster import ray_backend

    ray = job.ray
    memory = (ray.shape, ray.size)
    with ray_backend(ray.target, args.ray_workers, ray.spec, ctx, memory=memory) as backend:
        return generate_to_folder(
            backend, job.request, args.out, ctx, timing=job.timing, extra=job.extra,
            yaw_degrees=args.yaw, still=job.still,
        )  # fmt: skip


def _on_ray(
    args: argparse.Namespace,
    job: PreparedJob,
    target: object,
    spec: object,
    shape: object,
    window: tuple[int, int, int],
) -> PreparedJob:
    """``job`` (no backend yet) made a Ray job: first the driver's own share of the
    memory estimate (the ring latent and the frames it holds) is checked against this
    machine's RAM, before any cluster is reached; the workers' share is checked on their
    nodes before they load (:func:`.cluster.ray_backend`)."""
    from .memory import check_driver_fits

    size = job_size(args, window, job.request, job.timing, None)
    check_driver_fits(shape, size)
    job.extra["vae_tiling_auto"] = spec.vae_tiling and not args.vae_tiling
    job.ray = RayJob(target, spec, shape, size)
    return job


def parse_window_size(text: str) -> tuple[int, int]:
    """``"832x480"`` (width x height, pixels) → (height, width); BadInput naming the value."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInput(f"--window-size must be WIDTHxHEIGHT in pixels, got {text!r}") from None
    if width < 1 or height < 1:
        raise BadInput(f"--window-size must be positive, got {text!r}")
    return height, width


def _check_wan(
    args: argparse.Namespace,
    request: object,
    timing: LoopTiming,
    *,
    window_size: tuple[int, int] | None,
    loras: list,
) -> tuple:
    """The Wan 2.1 checks of :func:`prepare`: the pipeline, sizes and LoRAs, from configs
    and headers only. (info, window of one model call, checked LoRAs, model shape)."""
    from .loading import header_params
    from .memory import read_wan_shape
    from .sampler import check_request_sizes
    from .wan import WAN_WEIGHTED, inspect_lora, inspect_wan, native_window

    if args.motion_adapter:
        raise BadInput(f"--motion-adapter is for AnimateDiff; {args.model} is a Wan pipeline")
    info = inspect_wan(
        args.model, offline=args.offline, revision=args.revision, variant=args.variant
    )
    latent = (
        max(1, timing.denoised_frames // info.time_factor),
        args.height // info.vae_factor,
        args.width // info.vae_factor,
    )
    window = native_window(info, latent, frames=args.window_frames, size=window_size)
    check_request_sizes(
        request, info.vae_factor, info.patch[1], window, time_factor=info.time_factor
    )
    checked = tuple(inspect_lora(spec, info, offline=args.offline) for spec in loras)
    shape = read_wan_shape(info.folder, header_params(info.files, WAN_WEIGHTED, info.variant))
    return info, window, checked, shape


def _load_wan(
    args: argparse.Namespace, checked: tuple, request: object, ctx: JobContext, timing: LoopTiming
) -> tuple[object, bool]:
    """The in-process Wan 2.1 path of :func:`prepare`: the memory check, then the load of
    what :func:`_check_wan` checked. (backend, whether the VAE decodes in tiles)"""
    from .loading import pick_device
    from .wan import load_wan, pick_wan_dtype

    info, window, loras, shape = checked
    dtype = pick_wan_dtype(args.dtype, pick_device(args.device))
    vae_tiling = check_memory(args, shape, window, request, timing, dtype)
    with ctx.timed("load"):
        backend = load_wan(
            info,
            window=window,
            device=args.device,
            dtype=args.dtype,
            loras=loras,
            offline=args.offline,
            cpu_offload=args.cpu_offload,
            vae_tiling=vae_tiling,
        )
    return backend, vae_tiling


def check_memory(
    args: argparse.Namespace,
    shape: object,
    window: tuple[int, int, int],
    request: object,
    timing: LoopTiming,
    dtype: object,
) -> bool:
    """Estimate the job's peak memory from the model's configs and weight headers and
    refuse (BadInput, with the numbers and what to change) one that cannot fit, before
    any weight loads. ``window`` is one denoiser call's (latent frames, rows, cols).

    Returns whether the VAE decodes in tiles (asked for, or by itself at 4096 px and wider).
    """
    from .loading import pick_device
    from .memory import check_fits

    job = job_size(args, window, request, timing, dtype)
    check_fits(shape, job, pick_device(args.device))
    return job.vae_tiling


def job_size(
    args: argparse.Namespace,
    window: tuple[int, int, int],
    request: object,
    timing: LoopTiming,
    dtype: object,
) -> object:
    """The :class:`.memory.JobSize` of a checked request; ``dtype`` None: float32 until
    the device is known (a Ray job's workers pick theirs)."""
    from .memory import JobSize, auto_vae_tiling, dtype_name

    return JobSize(
        width=request.width,
        height=request.height,
        denoised_frames=timing.denoised_frames,
        output_frames=timing.frames,
        window=window,
        guidance=request.guidance > 1.0,
        dtype=dtype_name(dtype) if dtype is not None else "float32",
        cpu_offload=args.cpu_offload,
        vae_tiling=auto_vae_tiling(request.width, args.vae_tiling),
    )


def scheduler_record(backend: object, result: object) -> dict:
    """The manifest's ``scheduler``: beta schedule and spacing (when the backend names
    them) and the first stage's timesteps, in order."""
    summary = getattr(backend, "schedule_summary", dict)()
    return {**summary, "timesteps": result.first_stage_timesteps()}


def generate_to_folder(
    backend: object,
    request: object,
    out: Path,
    ctx: JobContext,
    *,
    fps: float | None = None,
    timing: LoopTiming | None = None,
    extra: dict | None = None,
    yaw_degrees: float = 0.0,
    still: object = None,
) -> Path:
    """Sample and decode ``request`` with ``backend``, interpolate to the output rate,
    then write the output folder.

    ``timing`` gives the rates (without it, the denoised frames are written at ``fps``);
    ``still`` (height, width, 3) in [0, 1] makes it image-to-video (:func:`sample_frames`).
    Frames are sampled before the temporary folder exists, so a cancel or failure
    while sampling leaves nothing at all on disk.
    """
    if timing is None:
        rate = fps if fps is not None else 8.0
        timing = LoopTiming(request.frames / rate, rate, rate, request.frames, request.frames)
    from ..media import (
        FRAMES_DIR,
        PREVIEW_NAME,
        atomic_output_dir,
        encode_mp4,
        frame_path,
        panorama_manifest,
        write_image,
        write_manifest,
    )

    frames, result = sample_frames(backend, request, ctx, still=still)
    frames = interpolate_to_rate(frames, timing, ctx)
    with atomic_output_dir(out) as tmp:
        with ctx.timed("write"):
            (tmp / FRAMES_DIR).mkdir()
            for index, frame in enumerate(frames):
                ctx.cancel.check()
                write_image(frame_path(tmp / FRAMES_DIR, index, frame.dtype), frame)
            encode_mp4(frames, tmp / PREVIEW_NAME, timing.fps)
        height, width = frames[0].shape[:2]
        manifest = panorama_manifest(
            width=width,
            height=height,
            frames=len(frames),
            fps=timing.fps,
            loop=True,
            kind="generate",
            prompt=request.prompt,
            negative_prompt=request.negative,
            **result.prompt_info,
            seconds=timing.seconds,
            model_fps=timing.model_fps,
            denoised_frames=timing.denoised_frames,
            interpolation=INTERPOLATION if timing.frames != timing.denoised_frames else None,
            **(extra or {}),
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            **backend.describe(),
            schedule=request.schedule,
            scheduler=scheduler_record(backend, result),
            stages=[s.to_dict() for s in result.stages],
            sphere_views={
                "latitudes": list(request.sphere_latitudes),
                "longitudes": request.sphere_longitudes,
                "fov": request.sphere_fov,
                "poles": request.sphere_poles,
            },
            cameras=[c.name for c in request.cameras],
            yaw_degrees=yaw_degrees,
            window_pixels_per_latent_pixel=round(
                sum(result.window_pixels) / len(result.window_pixels), 4
            ),
            preview=PREVIEW_NAME,
            timings=ctx.timings,
        )
        write_manifest(tmp, manifest)
    return out


def sample_frames(
    backend: object, request: object, ctx: JobContext, *, still: object = None
) -> tuple[list, object]:
    """The denoised loop: ``request.frames`` uint8 frames and the :class:`SampleResult`.

    With ``still`` ((height, width, 3) float RGB in [0, 1], the request's size) the ring
    starts from the still's latent (the backend's ``encode_still``, every frame alike),
    noised to the level ``request.denoise_strength`` selects (image-to-video).
    """
    from .sampler import SINGLE, decode_video, sample_latent

    init = None
    if still is not None and request.denoise_strength < 1:
        latent_frames = request.frames // getattr(backend, "time_factor", 1)
        with ctx.timed("encode_image"):
            init = backend.encode_still(still, latent_frames)
    result = sample_latent(backend, request, ctx, init=init)
    frames = decode_video(backend, result.latent, ctx, wrap=request.schedule != SINGLE)
    return frames, result


#: What the manifest records for the frame-rate interpolation.
INTERPOLATION = "loop-aware optical flow (OpenCV DIS, both ways)"


def interpolate_to_rate(frames: list, timing: LoopTiming, ctx: JobContext) -> list:
    """The denoised loop → ``timing.frames`` frames at the output rate (loop-aware)."""
    if timing.frames == len(frames):
        return frames
    from ..interpolate import interpolate_loop

    with ctx.timed("interpolate"):  # ctx.step honours a cancel before every frame
        return interpolate_loop(
            frames, timing.frames, step=lambda k, n: ctx.step("interpolate", k, n)
        )
