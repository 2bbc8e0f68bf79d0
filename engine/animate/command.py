"""``python -m engine animate``: a still equirect image → a seamless looping 360° video folder.

Standard library only at import, so ``--help`` and the argument checks are instant; the
work is in :func:`engine.animate.pipeline.animate_panorama`.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import replace
from pathlib import Path

from ..errors import BadInput
from ..options import add_exr_codec_argument, add_preview_arguments
from ..progress import JobContext

#: The motion priors ``--prior`` chooses from.
PRIORS = ("procedural", "diffusion")
HELP = "animate a still equirect image (EXR/HDR/PNG/JPG) into a seamless looping 360° video"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="equirect still (2:1): EXR, HDR, PNG or JPG")
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="loop length in seconds (default 4)"
    )
    parser.add_argument("--fps", type=float, default=24.0, help="frames per second (default 24)")
    parser.add_argument(
        "--mask",
        type=Path,
        help="motion mask, same size as IMAGE: white moves, black stays exactly still "
        "(default: estimated from the image)",
    )
    parser.add_argument(
        "--motion-map",
        type=Path,
        help="painted motion, an RGB image the size of IMAGE: red = one-way drift/flow, "
        "green = sway, blue = ripple, each channel's value = how much; black = exactly "
        "still (replaces the estimate of what moves; --mask further limits it)",
    )
    parser.add_argument(
        "--drift-direction",
        type=float,
        metavar="DEG",
        help="heading of the wind the sky (and the map's red) drifts with, in Blender's "
        "world: 0 = toward +X, 90 = toward +Y (default: chosen by --seed)",
    )
    parser.add_argument(
        "--drift-speed",
        type=float,
        metavar="DEG_PER_S",
        help="one-way drift speed overhead, degrees of arc per second; 0 = no one-way "
        "drift (default 2)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="motion amplitude multiplier, >= 0 (0 reproduces the still; default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the motion (default 0)")
    parser.add_argument(
        "--motion",
        type=Path,
        help="reuse a spectral volume (.npz, e.g. OUT/motion.npz of an earlier run) "
        "instead of predicting one; --mask then further limits it",
    )
    add_diffusion_arguments(parser)
    add_preview_arguments(parser)
    add_exr_codec_argument(parser)


def add_diffusion_arguments(parser: argparse.ArgumentParser) -> None:
    """``--prior`` and the diffusion prior's options (engine.animate.diffusion_prior)."""
    parser.add_argument(
        "--prior",
        choices=PRIORS,
        default="procedural",
        help="where the motion comes from: procedural (built in, no model) or diffusion "
        "(a video model animates the downscaled still, its motion moves the full-size "
        "source; needs torch and --model)",
    )
    parser.add_argument(
        "--model", help="--prior diffusion: AnimateDiff or Wan 2.1 pipeline (hub id or folder)"
    )
    parser.add_argument(
        "--revision", help="--prior diffusion: hub commit, branch or tag of --model"
    )
    parser.add_argument(
        "--denoise-strength",
        type=float,
        help="--prior diffusion: how far the still is re-noised before the model animates "
        "it, in (0, 1) (default 0.6); --strength is the motion's amplitude",
    )
    parser.add_argument("--steps", type=int, help="--prior diffusion: denoising steps (default 25)")
    parser.add_argument("--prompt", help="--prior diffusion: what the scene shows and does")
    parser.add_argument(
        "--device", default="auto", help="--prior diffusion: auto, cuda, mps or cpu"
    )


def diffusion_prior(args: argparse.Namespace, ctx: JobContext) -> object | None:
    """The prior ``args`` ask for: None (the procedural one) or a checked DiffusionPrior.

    Refuses (BadInput, before anything loads) diffusion options without
    ``--prior diffusion``, that prior with options it cannot honour, and a Python without
    torch and diffusers.
    """
    given = [name for name, value in (
        ("--model", args.model), ("--revision", args.revision),
        ("--denoise-strength", args.denoise_strength), ("--steps", args.steps),
        ("--prompt", args.prompt),
    ) if value is not None]  # fmt: skip
    if args.prior != "diffusion":
        if given:
            raise BadInput(f"{', '.join(given)} are for --prior diffusion")
        return None
    if args.model is None:
        raise BadInput("--prior diffusion needs --model (an AnimateDiff or Wan 2.1 pipeline)")
    clashing = [name for name, value in (
        ("--motion", args.motion), ("--motion-map", args.motion_map),
        ("--drift-direction", args.drift_direction), ("--drift-speed", args.drift_speed),
    ) if value is not None]  # fmt: skip
    if clashing:
        raise BadInput(
            f"{', '.join(clashing)} cannot be used with --prior diffusion: the model's clip "
            "gives the motion (use --mask and --strength with it)"
        )
    missing = [name for name in ("torch", "diffusers") if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInput(
            f"--prior diffusion needs {' and '.join(missing)}, which this Python lacks",
            fix="in Blender run Set Up Engine with Install: Animate and Generate, "
            "or pip install -e '.[generate]' in the engine's environment",
        )
    from .diffusion_prior import DiffusionPrior, DiffusionSettings

    settings = DiffusionSettings(model=args.model, revision=args.revision, device=args.device)
    overrides = {"denoise_strength": args.denoise_strength, "steps": args.steps,
                 "prompt": args.prompt}  # fmt: skip
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    # The model's configs are read by the prior after animate's own checks (the still,
    # the mask, the output) have passed, still before any weight loads.
    return DiffusionPrior(settings, ctx)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the output folder atomically; returns ``--out``."""
    prior = diffusion_prior(args, ctx)
    from .pipeline import animate_panorama

    return animate_panorama(
        args.image,
        args.out,
        seconds=args.seconds,
        fps=args.fps,
        mask_path=args.mask,
        strength=args.strength,
        seed=args.seed,
        motion_path=args.motion,
        motion_map_path=args.motion_map,
        drift_direction=args.drift_direction,
        drift_speed=args.drift_speed,
        view=args.view,
        exposure=args.exposure,
        ocio_config=args.ocio_config,
        exr_codec=args.exr_codec,
        prior=prior,
        ctx=ctx,
    )
