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
    """Run a render job description (what the operator writes) in this Blender.

    ``job["renders"]`` (optional) lists several render specs (else the job is one);
    ``job["then"]`` (optional: one or a list of ``{python, job, env}``) runs engine
    worker jobs on the renders afterwards, forwarding their events, so one process
    carries the whole operation (one progress bar, one Cancel). Returns the final event.
    """
    if job.get("blend") and bpy.data.filepath != job["blend"]:
        bpy.ops.wm.open_mainfile(filepath=job["blend"])
    scene = bpy.data.scenes[job["scene"]]
    flag = _stdin_cancel_flag()

    def progress(stage: str, step: int, total: int) -> None:
        _emit({"event": "progress", "stage": stage, "step": step, "total": total})

    out = None
    for spec in job.get("renders") or [job]:
        out = _render_spec(scene, {**job, **spec}, progress, flag.is_set)
    final = {"event": "done", "output": str(out)}
    thens = job.get("then") or []
    for then in [thens] if isinstance(thens, dict) else thens:
        final = _run_engine_worker(then, flag)
        if final.get("event") != "done":
            break
    return final


def _render_spec(
    scene: Any, spec: dict[str, Any], progress: render.Progress, cancelled: render.Cancelled
) -> Path:
    frame_range = tuple(spec["frame_range"])
    if spec["kind"] == "cameras":
        cameras = [scene.objects[name] for name in spec["cameras"]]
        return render.render_cameras(
            scene, cameras, frame_range, Path(spec["out"]), progress=progress,
            cancelled=cancelled,
        )  # fmt: skip
    return render.render_360(
        scene, tuple(spec["viewpoint"]), frame_range, Path(spec["out"]),
        width=int(spec.get("width", 1024)), stereo=bool(spec.get("stereo")),
        progress=progress, cancelled=cancelled,
    )  # fmt: skip


def _run_engine_worker(then: dict[str, Any], flag: threading.Event) -> dict[str, Any]:
    """``python -m engine worker --job FILE``: forward its progress, pass a cancel on."""
    import subprocess

    command = [then["python"], "-m", "engine", "worker", "--job", then["job"]]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=then.get("env"),
        text=True, encoding="utf-8", errors="replace",
    )  # fmt: skip

    def pass_cancel() -> None:
        flag.wait()
        if proc.poll() is None:
            try:
                proc.stdin.write("cancel\n")
                proc.stdin.flush()
            except OSError:
                pass  # the worker is already gone

    threading.Thread(target=pass_cancel, daemon=True).start()
    final: dict[str, Any] = {}
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "progress":
            _emit(event)
        elif event.get("event") in ("done", "error", "cancelled"):
            final = event
    code = proc.wait()
    if not final:
        final = {"event": "error", "message": f"the engine worker stopped (exit code {code})"}
    return final


def main(argv: list[str]) -> int:
    """``render.py JOB.json``: exit 0 done, 2 refused, 130 cancelled, 1 failure."""
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
