"""``python -m engine generate``: a prompt → a seamless looping 360° video (AnimateDiff).

Writes the output-folder contract atomically: ``frames/frame_NNNNNN.png`` (8-bit,
numbered from 0, no duplicated loop frame), a looping ``panorama.mp4`` and
``manifest.json`` (prompt, model and revision, seed, stage schedule, timings). Every
input is checked — sizes, counts, the model folder's configs and weight formats, the
cameras file, the output path — before a model loads or anything is written.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import BadInput
from ..jobs import JobContext

HELP = "generate a seamless looping 360° panorama video from a prompt (AnimateDiff)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="what the panorama shows")
    parser.add_argument(
        "--model",
        required=True,
        help="AnimateDiff pipeline: a hub id or a folder written by save_pretrained "
        "(with --motion-adapter: a Stable Diffusion 1.5 pipeline)",
    )
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument("--negative", default="", help="negative prompt (with --guidance > 1)")
    parser.add_argument("--width", type=int, default=2048, help="pixels, twice the height")
    parser.add_argument("--height", type=int, default=1024, help="pixels")
    parser.add_argument("--frames", type=int, default=16, help="frames in the loop")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the MP4")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same frames)")
    parser.add_argument(
        "--cameras", type=Path, help="cameras.json: denoise each camera's view whole"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, mps or cpu")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32")
    )
    parser.add_argument(
        "--motion-adapter", help="MotionAdapter hub id or folder for an SD 1.5 base"
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
        default=16,
        help="frames per model call (AnimateDiff: 16; fewer is faster, less coherent)",
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
    from .loading import inspect_model
    from .sampler import GenerateRequest, check_request_numbers, check_request_sizes

    # 1. Check inputs: nothing loads and nothing is written before all of them pass.
    if args.fps <= 0 or not math.isfinite(args.fps):
        raise BadInput(f"fps must be a positive number, got {args.fps}")
    if args.sphere_longitudes < 1:
        raise BadInput(f"--sphere-longitudes must be at least 1, got {args.sphere_longitudes}")
    if args.window_frames < 1:
        raise BadInput(f"--window-frames must be at least 1, got {args.window_frames}")
    cameras = ()
    if args.cameras is not None:
        from ..cameras import load_cameras

        cameras = tuple(load_cameras(args.cameras))
    request = GenerateRequest(
        prompt=args.prompt,
        negative=args.negative,
        width=args.width,
        height=args.height,
        frames=args.frames,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        schedule=args.schedule,
        cameras=cameras,
        sphere_latitudes=parse_latitudes(args.sphere_latitudes),
        sphere_longitudes=args.sphere_longitudes,
    )
    check_request_numbers(request)
    check_output_free(args.out)
    info = inspect_model(args.model, motion_adapter=args.motion_adapter, offline=args.offline)
    if args.window_frames > info.max_frames:
        raise BadInput(
            f"--window-frames {args.window_frames} exceeds the motion module's "
            f"{info.max_frames} positions"
        )
    window = (args.window_frames, info.sample_size, info.sample_size)
    check_request_sizes(request, info.vae_factor, info.align, window)
    # 2. Load, sample, decode, write.
    from .loading import load_animatediff

    with ctx.timed("load"):
        backend = load_animatediff(
            info,
            device=args.device,
            dtype=args.dtype,
            window_frames=args.window_frames,
            offline=args.offline,
            cpu_offload=args.cpu_offload,
            vae_slicing=args.vae_slicing,
            vae_tiling=args.vae_tiling,
        )
    return generate_to_folder(backend, request, args.out, ctx, fps=args.fps)


def generate_to_folder(
    backend: object, request: object, out: Path, ctx: JobContext, *, fps: float
) -> Path:
    """Sample and decode ``request`` with ``backend``, then write the output folder.

    Frames are sampled before the temporary folder exists, so a cancel or failure
    while sampling leaves nothing at all on disk.
    """
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
    from .sampler import decode_video, sample_latent

    result = sample_latent(backend, request, ctx)
    frames = decode_video(backend, result.latent, ctx)
    with atomic_output_dir(out) as tmp:
        with ctx.timed("write"):
            (tmp / FRAMES_DIR).mkdir()
            for index, frame in enumerate(frames):
                ctx.cancel.check()
                write_image(frame_path(tmp / FRAMES_DIR, index, frame.dtype), frame)
            encode_mp4(frames, tmp / PREVIEW_NAME, fps)
        height, width = frames[0].shape[:2]
        manifest = panorama_manifest(
            width=width,
            height=height,
            frames=len(frames),
            fps=fps,
            loop=True,
            kind="generate",
            prompt=request.prompt,
            negative_prompt=request.negative,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            **backend.describe(),
            schedule=request.schedule,
            stages=[s.to_dict() for s in result.stages],
            sphere_views={
                "latitudes": list(request.sphere_latitudes),
                "longitudes": request.sphere_longitudes,
                "fov": request.sphere_fov,
                "poles": request.sphere_poles,
            },
            cameras=[c.name for c in request.cameras],
            window_pixels_per_latent_pixel=round(
                sum(result.window_pixels) / len(result.window_pixels), 4
            ),
            preview=PREVIEW_NAME,
            timings=ctx.timings,
        )
        write_manifest(tmp, manifest)
    return out
