"""``python -m engine views``: render Blender cameras from an equirect panorama (image or video).

Checks every input, then :func:`engine.views.render.render_views` writes the camera
folders atomically. Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..contract import add_yaw_argument
from ..progress import JobContext

HELP = "render Blender cameras (cameras.json) from an equirect image, frame folder or output folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--panorama",
        required=True,
        type=Path,
        help="equirect image (EXR/HDR/PNG/JPG), a folder of numbered frames, "
        "or a PanoLoop output folder with manifest.json",
    )
    parser.add_argument(
        "--cameras", required=True, type=Path, help="cameras.json written by the add-on"
    )
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--interpolation",
        choices=("linear", "cubic", "nearest"),
        default="linear",
        help="resampling filter (default: linear, as Cycles' default texture filter)",
    )
    add_yaw_argument(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the camera folders atomically; returns ``--out``."""
    from ..cameras import load_cameras
    from ..media import check_output_free, open_panorama
    from ..preflight import require_camera_views_fit

    # 1. Check inputs: nothing is written before all of them pass.
    check_output_free(args.out)
    source = open_panorama(args.panorama)
    cameras = load_cameras(args.cameras)
    require_camera_views_fit(
        [c.width * c.height for c in cameras], source.frames[0], source.count, args.out, "views"
    )
    # 2. Render and write.
    from .render import render_views

    return render_views(
        source,
        cameras,
        args.out,
        ctx,
        interpolation=args.interpolation,
        source_path=args.panorama,
        yaw_degrees=args.yaw,
    )
