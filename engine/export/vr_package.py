"""``python -m engine vr-package LOOP --out DIR --gltf scene.glb``: the whole VR package.

The last step of the add-on's *Export for VR* plan (Blender writes the glTF and, on
request, 360° renders of the composed scene; the engine writes the final folder)::

    DIR/
      scene.glb        the scene (Blender's glTF exporter, +Y up)
      panorama/        ``engine export`` of the World's loop: <name>_360.mp4 with spherical
                       metadata, cubemap/, webxr/ (viewer + scene.glb)
      scene_360/       with --scene-360: the mono Cycles 360° exported (scene_360.mp4)
                       and its frames
      scene_360_TB/    with --scene-360-stereo: spherical stereo, top-bottom, left eye on
                       top (scene_360_TB.mp4, st3d = top-bottom) and its frames
      manifest.json    kind ``vr_package``; ``render_cluster``: per 360° folder, the
                       Ray record of a render on a Render Cluster (None: this machine)

Everything is written into a temporary sibling and renamed into place whole. Only the
standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..contract import (
    KIND_VR_PACKAGE,
    MONO_360_DIR,
    PANORAMA_DIR,
    SCENE_GLB,
    STEREO_360_DIR,
    WEBXR_DIR,
    BadInput,
    check_output_free,
)
from ..options import add_preview_arguments
from ..progress import JobContext

HELP = "the VR package of a scene: the loop exported, the scene's glTF, its 360° renders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("panorama", type=Path, metavar="LOOP", help="the World's loop folder")
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument("--gltf", required=True, type=Path, help="the scene as binary glTF")
    parser.add_argument(
        "--viewpoint",
        type=float,
        nargs=3,
        default=(0.0, 0.0, 0.0),
        metavar=("X", "Y", "Z"),
        help="Blender-world point the panorama is seen from",
    )
    parser.add_argument(
        "--yaw", type=float, default=0.0, help="the World's rotation (Mapping Z) in degrees"
    )
    parser.add_argument("--size", default=None, help="loop video size WIDTHxHEIGHT (2:1)")
    parser.add_argument(
        "--scene-360", type=Path, default=None, help="mono 360° renders of the scene (a folder)"
    )
    parser.add_argument(
        "--scene-360-stereo",
        type=Path,
        default=None,
        help="top-bottom stereo 360° renders of the scene (a folder)",
    )
    parser.add_argument("--scene", default=None, help="the Blender scene's name (recorded)")
    parser.add_argument("--frame-range", type=int, nargs=2, default=None, metavar=("START", "END"))
    add_preview_arguments(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the package atomically; returns ``--out``."""
    import shutil

    from ..colour import display_transform
    from ..media import atomic_output_dir, open_panorama, write_manifest
    from .h264 import parse_size
    from .vr import ExportOptions, export_panorama, open_stereo_frames

    # 1. Check inputs: nothing is written before all of them pass.
    display_transform(args.view, args.exposure, args.ocio_config, needed=False)
    check_output_free(args.out)
    for value, name in ((args.yaw, "--yaw"), *((v, "--viewpoint") for v in args.viewpoint)):
        if not math.isfinite(value):
            raise BadInput(f"{name} {value} must be a finite number")
    if not args.gltf.is_file() or args.gltf.suffix.lower() != ".glb":
        raise BadInput(f"scene {args.gltf} must be an existing binary glTF (.glb)")
    loop = open_panorama(args.panorama)
    size = parse_size(args.size) if args.size else None
    renders = {}
    if args.scene_360 is not None:
        renders[MONO_360_DIR] = ("mono", args.scene_360, open_panorama(args.scene_360))
    if args.scene_360_stereo is not None:
        stereo = open_stereo_frames(args.scene_360_stereo)
        renders[STEREO_360_DIR] = ("top-bottom", args.scene_360_stereo, stereo)
    viewpoint = tuple(float(v) for v in args.viewpoint)

    shown = {"view": args.view, "exposure": args.exposure, "ocio_config": args.ocio_config}
    with atomic_output_dir(args.out) as tmp:
        # 2. The scene, then the World's loop with cubemaps and the WebXR viewer.
        glb = Path(shutil.copyfile(args.gltf, tmp / SCENE_GLB))
        loop_options = ExportOptions(
            size=size,
            cubemap=True,
            webxr=True,
            gltf=glb,
            viewpoint=viewpoint,
            yaw_degrees=args.yaw,
            **shown,
        )
        export_panorama(args.panorama, tmp / PANORAMA_DIR, loop_options, ctx)
        # 3. The scene's own 360° renders, exported with their metadata, frames kept.
        for folder, (layout, source, frames) in renders.items():
            options = ExportOptions(stereo=layout, name="scene", fps=loop.fps, **shown)
            export_panorama(source, tmp / folder, options, ctx)
            (tmp / folder / "frames").mkdir()
            for path in frames.frames:
                shutil.copyfile(path, tmp / folder / "frames" / path.name)
        # 4. What is where.
        write_manifest(
            tmp,
            {
                "kind": KIND_VR_PACKAGE,
                "scene": args.scene,
                "panorama": str(args.panorama),
                "viewpoint": list(viewpoint),
                "yaw_degrees": args.yaw,
                "frame_range": list(args.frame_range) if args.frame_range else None,
                "gltf": SCENE_GLB,
                "panorama_export": PANORAMA_DIR,
                "webxr": f"{PANORAMA_DIR}/{WEBXR_DIR}/index.html",
                "scene_360": MONO_360_DIR if MONO_360_DIR in renders else None,
                "scene_360_stereo": STEREO_360_DIR if STEREO_360_DIR in renders else None,
                # Where each 360° render ran: its Ray record (None: on this machine).
                "render_cluster": {
                    folder: (frames.manifest or {}).get("cluster")
                    for folder, (_, _, frames) in renders.items()
                },
                "timings": ctx.timings,
            },
        )
    return args.out
