"""The script a background Blender runs for the UI: render jobs, JSON lines on stdout.

``blender -b FILE.blend --python background.py -- JOB.json`` (or ``python
background.py JOB.json`` with the bpy module, which then opens ``job["blend"]``) runs
the renders a job file describes with :mod:`blender_addon.render`, prints the worker's
JSON-line events on stdout (``progress``, then ``done``, ``error`` or ``cancelled``) and
stops at the next frame on a ``cancel`` line on stdin (or when stdin closes: Blender,
the parent, went away). Exit codes are the engine's: 0 done, 2 refused, 130 cancelled,
1 failure.

It runs outside the extension package, so it puts the extension folder on ``sys.path``
and imports ``blender_addon`` (and through it only :mod:`engine.contract`) from there.
"""

from __future__ import annotations

import json
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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one render step (a :class:`plans.RenderStep` spec) in this Blender; returns
    the final event. The plan's next step (the engine) is the runner's business."""
    if job.get("blend") and bpy.data.filepath != job["blend"]:
        bpy.ops.wm.open_mainfile(filepath=job["blend"])
    scene = bpy.data.scenes[job["scene"]]
    flag = _stdin_cancel_flag()

    def progress(stage: str, step: int, total: int) -> None:
        _emit({"event": "progress", "stage": stage, "step": step, "total": total})

    out = render.render_spec(scene, job, progress=progress, cancelled=flag.is_set)
    return {"event": "done", "output": str(out)}


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
