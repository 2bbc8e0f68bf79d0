"""Command-line options several subcommands share (standard library only, so ``--help``
and argument checks stay instant): how HDR previews are tone-mapped, how EXR frames are
compressed. The values are checked where they are used (:mod:`engine.colour`,
:func:`engine.media.check_exr_codec`), before anything is written."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    """``--view``, ``--exposure`` and ``--ocio-config``: how every 8-bit picture made from
    HDR frames (MP4s, contact sheets, cubemap previews) is tone-mapped, as Blender shows it."""
    parser.add_argument(
        "--view",
        default="AgX",
        help="Blender view transform for 8-bit previews of HDR frames: AgX (default, "
        "Blender's own default), Filmic or Standard",
    )
    parser.add_argument(
        "--exposure", type=float, default=0.0, help="preview exposure in stops (default 0)"
    )
    parser.add_argument(
        "--ocio-config",
        type=Path,
        help="Blender's datafiles/colormanagement/config.ocio (default: the OCIO "
        "environment variable, else that of a Blender installed here: the bpy module, "
        "blender on PATH, the usual install folders; --view Standard works without one)",
    )


def add_exr_codec_argument(parser: argparse.ArgumentParser) -> None:
    """``--exr-codec``: the compression of EXR frames the command writes."""
    parser.add_argument(
        "--exr-codec",
        default="dwab",
        help="compression of EXR frames: dwab (default: lossy, about 1.8 MB per 2048x1024 "
        "frame, HDR kept), dwaa (lossy), piz, zip, rle or none (lossless, 8-13 MB)",
    )
