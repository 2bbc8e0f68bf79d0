"""``python -m engine multicam``: check every input, then write the multicam folder
(:mod:`engine.multicam.folder`). Only the standard library is imported at the top."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..contract import (
    KIND_BLENDER_RENDERS,
    add_yaw_argument,
    check_frame_range,
    safe_names,
)
from ..options import add_preview_arguments
from ..progress import JobContext

HELP = "render every camera in sync from a panorama: per-camera clips, MP4s, contact sheet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--panorama", required=True, type=Path, help="PanoLoop output folder, frame folder or image"
    )
    parser.add_argument("--cameras", required=True, type=Path, help="cameras.json from Blender")
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--frame-range",
        type=int,
        nargs=2,
        default=None,
        metavar=("START", "END"),
        help="Blender frame range the clips stand for; must span exactly the loop",
    )
    parser.add_argument(
        "--instants", type=int, default=4, help="columns of the contact sheet (default 4)"
    )
    parser.add_argument("--fps", type=float, default=None, help="clip frame rate override")
    parser.add_argument(
        "--renders",
        type=Path,
        default=None,
        help="Blender renders of the same cameras (blender_addon.render.render_cameras "
        "output): copied in, encoded, and shown under each camera's row in the contact sheet",
    )
    add_yaw_argument(parser)
    add_preview_arguments(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the multicam folder atomically; returns ``--out``."""
    from ..cameras import load_cameras
    from ..colour import display_transform
    from ..errors import BadInput
    from ..media import check_output_free, open_panorama, read_image
    from ..preflight import require_camera_views_fit

    # 1. Check inputs.
    display_transform(args.view, args.exposure, args.ocio_config, needed=False)
    check_output_free(args.out)
    source = open_panorama(args.panorama)
    hdr = read_image(source.frames[0]).dtype.kind == "f"
    display = display_transform(args.view, args.exposure, args.ocio_config, needed=hdr)
    cameras = load_cameras(args.cameras)
    for cam in cameras:
        kind = cam.extra.get("type", "PERSP")
        if kind != "PERSP":
            raise BadInput(
                f"camera {cam.name!r} is {kind}; multicam reprojects perspective cameras only"
            )
    if args.instants < 1:
        raise BadInput(f"--instants {args.instants} must be at least 1")
    if args.frame_range is not None:
        check_frame_range(*args.frame_range, source.count)
    fps = args.fps if args.fps is not None else source.fps
    if fps is None:
        raise BadInput(f"panorama {args.panorama} records no frame rate; pass --fps")
    if fps <= 0:
        raise BadInput(f"frame rate {fps:g} must be positive")
    renders = check_renders(args.renders, cameras, source.count) if args.renders else None
    copies = 2 if renders else 1  # the Blender renders are copied in beside the views
    require_camera_views_fit(
        [c.width * c.height for c in cameras] * copies,
        source.frames[0],
        source.count,
        args.out,
        "multicam",
    )
    # 2. Render.
    from .folder import render_multicam

    return render_multicam(
        source,
        cameras,
        args.out,
        ctx,
        fps=float(fps),
        frame_range=tuple(args.frame_range) if args.frame_range else None,
        instants=args.instants,
        source_path=args.panorama,
        renders=renders,
        render_cluster=render_cluster_of(args.renders) if renders else None,
        yaw_degrees=args.yaw,
        display=display,
    )


def render_cluster_of(folder: Path) -> dict | None:
    """Where the Blender renders in ``folder`` ran: their manifest's Ray record
    (``render-cluster`` writes one), None when they were rendered on one machine."""
    from ..media import read_manifest

    return read_manifest(folder, kind=KIND_BLENDER_RENDERS).get("cluster")


def check_renders(folder: Path, cameras: list, loop_frames: int) -> dict[str, list[Path]]:
    """The Blender render folders of ``cameras``, each exactly one loop long."""
    from ..errors import BadInput
    from ..media import list_frames, read_manifest

    manifest = read_manifest(folder, kind=KIND_BLENDER_RENDERS)
    recorded = {c["name"]: c.get("folder") for c in manifest.get("cameras") or []}
    folders = safe_names(cam.name for cam in cameras)
    clips = {}
    for cam in cameras:
        sub = folder / (recorded.get(cam.name) or folders[cam.name])
        if not sub.is_dir():
            raise BadInput(f"renders in {folder} have no folder for camera {cam.name!r}")
        clips[cam.name] = list_frames(sub)
        if len(clips[cam.name]) != loop_frames:
            raise BadInput(
                f"camera {cam.name!r} has {len(clips[cam.name])} rendered frames in {folder}; "
                f"the loop has {loop_frames}"
            )
    return clips
