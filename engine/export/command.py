"""``python -m engine export PANORAMA_DIR --out DIR``: a panorama, ready for headsets and browsers.

Writes ``DIR/<name>_360.mp4`` (H.264 at a headset-safe size and level, with Spherical
Video V2 and V1 metadata), and on request ``DIR/cubemap/`` (every frame's six faces as
frame sequences, a 6×1 strip video, sheets of frame 0, orientation notes) and
``DIR/webxr/`` (an offline three.js
viewer with the video and, given ``--gltf``, the scene). Only the standard library is
imported here; the work happens in :mod:`engine.export.vr`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..contract import add_yaw_argument
from ..options import add_preview_arguments
from ..progress import JobContext

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
HELP = "export a panorama as a 360° MP4 with spherical metadata, cubemaps and a WebXR package"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "panorama",
        type=Path,
        metavar="PANORAMA_DIR",
        help="a PanoLoop output folder (manifest.json + frames/), a frame folder or an image",
    )
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--size",
        default=None,
        help="video size WIDTHxHEIGHT, 2:1 (default: the panorama's own size; "
        "headsets play up to 5760x2880 at 30 fps or 4096x2048 at 60 fps)",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate (default: the panorama's own)"
    )
    parser.add_argument(
        "--cubemap",
        action="store_true",
        help="also write cube faces of every frame (cubemap/F/frame_000000.png …, EXR for "
        "HDR loops), a 6x1 strip video and frame 0 as sheets",
    )
    parser.add_argument(
        "--face-size",
        type=int,
        default=None,
        help="cube face size in pixels, even (default: width/4)",
    )
    parser.add_argument("--webxr", action="store_true", help="also write a WebXR package")
    parser.add_argument(
        "--gltf", type=Path, default=None, help="scene .glb to put into the WebXR package"
    )
    parser.add_argument(
        "--viewpoint",
        type=float,
        nargs=3,
        default=(0.0, 0.0, 0.0),
        metavar=("X", "Y", "Z"),
        help="Blender-world point the panorama is seen from (places the glTF scene)",
    )
    add_yaw_argument(parser)
    parser.add_argument(
        "--stereo",
        choices=("mono", "top-bottom"),
        default="mono",
        help="frame layout: mono 2:1, or top-bottom stereo (square, left eye on top; "
        "the video gets _TB in its name and st3d = top-bottom)",
    )
    parser.add_argument(
        "--name", default=None, help="video file stem (default: the panorama folder's name)"
    )
    parser.add_argument("--crf", type=int, default=18, help="x264 quality (lower = better)")
    parser.add_argument(
        "--preset", default="medium", choices=X264_PRESETS, help="x264 preset (default: medium)"
    )
    add_preview_arguments(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the export folder atomically; returns ``--out``."""
    from ..colour import display_transform
    from ..errors import BadInput
    from .h264 import parse_size
    from .vr import ExportOptions, export_panorama

    display_transform(args.view, args.exposure, args.ocio_config, needed=False)
    size = parse_size(args.size) if args.size else None
    if args.face_size is not None and (args.face_size <= 0 or args.face_size % 2):
        raise BadInput(f"--face-size {args.face_size} must be positive and even")
    if not 0 <= args.crf <= 51:
        raise BadInput(f"--crf {args.crf} must be between 0 and 51")
    options = ExportOptions(
        size=size,
        fps=args.fps,
        cubemap=args.cubemap,
        webxr=args.webxr,
        face_size=args.face_size,
        gltf=args.gltf,
        viewpoint=tuple(args.viewpoint),
        yaw_degrees=args.yaw,
        stereo=args.stereo,
        name=args.name,
        crf=args.crf,
        preset=args.preset,
        view=args.view,
        exposure=args.exposure,
        ocio_config=args.ocio_config,
    )
    return export_panorama(args.panorama, args.out, options, ctx)
