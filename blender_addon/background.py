"""The script a background Blender runs for the UI: render jobs, JSON lines on stdout.

``blender -b FILE.blend --python background.py -- JOB.json`` (or ``python
background.py JOB.json`` with the bpy module, which then opens ``job["blend"]``) runs
the renders a job file describes with :mod:`blender_addon.render`, prints the worker's
JSON-line events on stdout (``progress``, then ``done``, ``error`` or ``cancelled``) and
stops at the next frame on a ``cancel`` line on stdin (or when stdin closes: Blender,
the parent, went away). Exit codes are the engine's: 0 done, 2 refused, 130 cancelled,
1 failure.

For a render cluster (:mod:`engine.cluster`) it also runs a ``{"kind": "pack"}`` job:
the saved copy with every resource Blender can pack packed into it, and what it cannot
pack (image sequences, movies) copied into a ``resources/`` folder beside it with the
paths pointing there, so the pair can be shipped to machines without a shared disk.
Render jobs may carry ``threads`` (Cycles threads: the CPUs the task was given) and
``blender_version`` (refused when this Blender differs: frames would differ too).

It runs outside the extension package, so it puts the extension folder on ``sys.path``
and imports ``blender_addon`` (and through it only :mod:`engine.contract`) from there.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_addon import contract, render  # noqa: E402


def _stdin_cancel_flag() -> threading.Event:
    flag = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                break
        flag.set()  # a cancel line, or stdin closed: Blender (the parent) went away

    threading.Thread(target=watch, daemon=True).start()
    return flag


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


#: Folder beside a packed copy holding the files Blender cannot pack.
RESOURCES_DIR = "resources"
#: The frame number of a sequence's file name: the last run of digits.
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one render step (a :class:`plans.RenderStep` spec) in this Blender, or a
    ``pack`` job; returns the final event. The plan's next step is the runner's business."""
    if job.get("blend") and bpy.data.filepath != job["blend"]:
        bpy.ops.wm.open_mainfile(filepath=job["blend"])
    if job.get("kind") == "pack":
        return pack_for_cluster(Path(job["packed"]).resolve())
    check_blender_version(job.get("blender_version"))
    scene = bpy.data.scenes[job["scene"]]
    if job.get("threads"):  # a cluster task: as many Cycles threads as CPUs it was given
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(job["threads"])
    flag = _stdin_cancel_flag()

    def progress(stage: str, step: int, total: int) -> None:
        _emit({"event": "progress", "stage": stage, "step": step, "total": total})

    out = render.render_spec(scene, job, progress=progress, cancelled=flag.is_set)
    return {"event": "done", "output": str(out)}


def check_blender_version(expected: str | None) -> None:
    """Refuse to render with another Blender than the scene's (Cycles differs between them)."""
    if expected and expected != bpy.app.version_string:
        raise contract.BadInput(
            f"this node runs Blender {bpy.app.version_string} but the scene is rendered "
            f"with Blender {expected}",
            "install the same Blender version on every node of the render cluster",
        )


def pack_for_cluster(packed: Path) -> dict[str, Any]:
    """Write the open file as ``packed`` with its resources inside, and what Blender cannot
    pack (image sequences, movies) under ``resources/`` beside it, paths relative."""
    if bpy.data.libraries:
        names = ", ".join(repr(lib.filepath) for lib in bpy.data.libraries)
        raise contract.BadInput(
            f"the scene links other .blend files ({names}), which a render cluster cannot ship",
            "make the linked data local (Object > Relations > Make Local) or render here",
        )
    bpy.context.preferences.filepaths.save_version = 0  # no scene.blend1 backup to ship
    bpy.ops.file.pack_all()
    # This process's file becomes the packed copy, so relative paths are made from there.
    bpy.ops.wm.save_as_mainfile(filepath=str(packed), relative_remap=True)
    resources = packed.parent / RESOURCES_DIR
    for index, image in enumerate(bpy.data.images):
        if image.packed_file is not None or image.source not in ("SEQUENCE", "MOVIE"):
            continue
        source = Path(bpy.path.abspath(image.filepath, library=image.library))
        files = sequence_files(source) if image.source == "SEQUENCE" else [source]
        if not all(f.is_file() for f in files) or not files:
            raise contract.BadInput(f"image {image.name!r}: file not found: {source}")
        folder = resources / f"{index:04d}"
        folder.mkdir(parents=True)
        for file in files:
            shutil.copyfile(file, folder / file.name)
        image.filepath = str(folder / source.name)
    bpy.ops.file.make_paths_relative()
    bpy.ops.wm.save_mainfile()
    return {"event": "done", "output": str(packed), "blender_version": bpy.app.version_string}


def sequence_files(first: Path) -> list[Path]:
    """The files of an image sequence: same name around the last run of digits."""
    match = _NUMBERED.match(first.name)
    if match is None or not first.parent.is_dir():
        return [first]
    head, tail = match.group(1), match.group(3)
    pattern = re.compile(re.escape(head) + r"\d+" + re.escape(tail) + "$")
    return sorted(p for p in first.parent.iterdir() if pattern.match(p.name) and p.is_file())


def main(argv: list[str]) -> int:
    """``background.py JOB.json``: exit 0 done, 2 refused, 130 cancelled, 1 failure."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        final = run_job(job)
    except contract.JobCancelled as exc:
        final = {"event": "cancelled", "message": str(exc)}
    except contract.PanoLoopError as exc:
        final = {"event": "error", "message": str(exc), "fix": exc.fix, "exit_code": exc.exit_code}
    _emit(final)
    codes = {"done": 0, "cancelled": 130}
    return codes.get(final["event"], int(final.get("exit_code") or 1))


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(args))
