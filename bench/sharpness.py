"""Benchmark: how much detail every bundled HDRI keeps where it moves, per view.

For each of Blender's bundled world HDRIs, with its automatic motion (no mask), a loop
of ``--frames`` frames at 24 fps: the sharpness ratio (Laplacian variance of the
tone-mapped grey moving pixels against the source's, ``engine.animate.measure``) of
every 8th frame as Blender's Standard view and as AgX through Blender's own OCIO config,
the smallest of each, and the renderer's set-up time (motion inversion tables, detail
gains and their check on real frames). With ``--open-loop`` the gains are the estimate
before that check (``BackwardWarper.calibrate`` undone): the baseline of the same run.

    .venv/bin/python bench/sharpness.py [--width 1024] [--frames 96] [--hdri forest,city]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from animate import bundled_hdri  # noqa: E402

from engine.animate.measure import moving_region, sharpness_ratio  # noqa: E402
from engine.animate.pipeline import LoopRenderer  # noqa: E402
from engine.animate.priors import ProceduralPrior  # noqa: E402
from engine.animate.warp import gain_field  # noqa: E402
from engine.colour import display_transform  # noqa: E402
from engine.media import read_image  # noqa: E402

NAMES = ("city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")


def at_width(image: np.ndarray, width: int) -> np.ndarray:
    """The panorama at ``width``×``width/2``: area-averaged down, bilinear up (a cubic
    would ring round the HDR lights, and that ringing would count as the source's detail)."""
    if image.shape[1] == width:
        return image
    interpolation = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, width // 2), interpolation=interpolation)


def measure(name: str, width: int, frames: int, views, open_loop: bool) -> str:
    image = at_width(read_image(bundled_hdri(name)), width)
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=1)
    start = time.perf_counter()
    renderer = LoopRenderer(image, volume, frames, fps=24)
    setup = time.perf_counter() - start
    if open_loop:
        warper = renderer.warper
        warper.gains[:] = gain_field(warper.estimated_tables, *image.shape[:2])
    region = moving_region(volume.amplitude)
    checked = [(t, renderer.frame(t)) for t in range(0, frames, 8)]
    parts = []
    for view_name, view in views:
        ratios = [sharpness_ratio(image, frame, region, view) for _, frame in checked]
        worst = int(np.argmin(ratios))
        parts.append(f"{view_name} min {ratios[worst]:.3f} (frame {checked[worst][0]})")
    return f"{name:10s} moving {region.mean():5.1%}  set-up {setup:.2f} s  " + "  ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--hdri", default=",".join(NAMES), help="comma-separated names")
    parser.add_argument("--open-loop", action="store_true", help="gains before their check")
    args = parser.parse_args()
    views = [("Standard", None), ("AgX", display_transform("AgX", 0.0))]
    label = "open-loop gains" if args.open_loop else "gains checked on real frames"
    print(f"{args.width}x{args.width // 2}, {args.frames} frames at 24 fps, {label}")
    for name in args.hdri.split(","):
        print(measure(name, args.width, args.frames, views, args.open_loop), flush=True)


if __name__ == "__main__":
    main()
