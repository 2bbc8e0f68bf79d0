"""``python -m engine render-cluster``: a Blender render step split over a Ray cluster.

    python -m engine render-cluster SCENE.blend --spec SPEC.json --out DIR
        --cluster local|auto|HOST[:PORT]|ray://HOST[:PORT]
        [--blender BLENDER | --blender-python PYTHON_WITH_BPY]
        [--cpus-per-task N] [--frames-per-task N] [--local-cpus N]

SPEC.json is a render step as the add-on's plans write it, plus the scene's name:
``{"scene": "Scene", "kind": "cameras", "cameras": ["Cam"], "frame_range": [1, 96]}``
or ``{"scene": "Scene", "kind": "360", "viewpoint": [0, 0, 1.6], "width": 2048,
"stereo": false, "frame_range": [1, 96]}``. DIR gets exactly what the single-machine
render writes (``blender_addon.render``): ``<camera>/frame_NNNNNN.png`` or
``frames/frame_NNNNNN.png``, and ``manifest.json``. The add-on runs this (through the
worker) when its *Render Cluster* preference is set.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..contract import BadInput
from ..progress import JobContext
from .connect import import_ray, parse_cluster
from .renders import render_on_cluster

HELP = "render a Blender scene's cameras or 360° frames as tasks on a Ray cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blend", type=Path, help="the saved .blend (it is packed and shipped)")
    parser.add_argument("--spec", required=True, type=Path, help="the render step (JSON file)")
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--cluster",
        required=True,
        help="'local' (a Ray instance on this machine), 'auto' (the one 'ray start' runs "
        "here), or a running cluster's HOST[:PORT] or ray://HOST[:PORT]",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--blender", type=Path, help="Blender binary on every node (default: 'blender' on PATH)"
    )
    which.add_argument(
        "--blender-python", type=Path, help="instead of Blender: a Python with the bpy module"
    )
    parser.add_argument(
        "--cpus-per-task",
        type=int,
        default=0,
        help="CPUs (= Cycles threads) per task; 0: half the largest node's",
    )
    parser.add_argument(
        "--frames-per-task", type=int, default=0, help="0: about two tasks per worker slot"
    )
    parser.add_argument(
        "--local-cpus", type=int, default=0, help="CPUs of a 'local' cluster (0: this machine's)"
    )


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input (Ray, the spec, the address), then render; returns ``--out``."""
    import_ray("--cluster")
    for name in ("cpus_per_task", "frames_per_task", "local_cpus"):
        if getattr(args, name) < 0:
            flag = "--" + name.replace("_", "-")
            raise BadInput(f"{flag} must be 0 (automatic) or more, got {getattr(args, name)}")
    if not args.blend.is_file():
        raise BadInput(f"scene file not found: {args.blend}")
    spec = read_spec(args.spec)
    address = parse_cluster(args.cluster, flag="--cluster")
    if args.local_cpus and not address.local:
        raise BadInput(f"--local-cpus applies to --cluster local, not to {args.cluster!r}")
    return render_on_cluster(
        blend=args.blend,
        spec=spec,
        out=args.out,
        address=address,
        blender=blender_of(args),
        cpus_per_task=args.cpus_per_task,
        frames_per_task=args.frames_per_task,
        local_cpus=args.local_cpus or None,
        ctx=ctx,
    )


def read_spec(path: Path) -> dict:
    """The render step of ``--spec``; BadInput naming the file when it is not one."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--spec file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"--spec {path} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise BadInput(f"--spec {path} must hold a JSON object")
    return spec


def blender_of(args: argparse.Namespace) -> dict[str, str]:
    """How the tasks start Blender: ``{"binary": PATH}`` or ``{"python": PATH}``."""
    if args.blender_python is not None:
        return {"python": str(args.blender_python)}
    binary = str(args.blender) if args.blender is not None else shutil.which("blender")
    if not binary:
        raise BadInput("no Blender found: 'blender' is not on PATH", "pass --blender PATH")
    return {"binary": binary}
