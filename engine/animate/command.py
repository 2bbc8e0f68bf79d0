"""``python -m engine animate``: a still equirect image → a seamless looping 360° video folder.

Standard library only at import, so ``--help`` and the argument checks are instant; the
work is in :func:`engine.animate.pipeline.animate_panorama`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_exr_codec_argument, add_preview_arguments
from ..progress import JobContext

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
    add_preview_arguments(parser)
    add_exr_codec_argument(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the output folder atomically; returns ``--out``."""
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
        ctx=ctx,
    )
