"""A Blender render step split into Ray tasks: one camera × a range of frames each.

The driver (this machine, the engine's Python; never Blender's UI thread):

1. **pack** — a local background Blender writes the saved scene with everything Blender
   can pack packed in, and copies what it cannot (image sequences such as the World's
   loop, movies) beside it (``background.py``, job kind ``pack``);
2. **ship** — the .blend and those files go into Ray's object store once; every task
   gets them from there, so workers need no shared disk;
3. **render** — each task (:func:`render_task`, on a worker) writes them to a temporary
   folder, runs a background Blender on its part (``"part"``: frames, ``"only"``: the
   camera) with as many Cycles threads as CPUs it was given, and streams back progress,
   then the frame files' bytes and the manifest;
4. **place** — the driver writes the frames into a temporary sibling of the output, in
   the same layout as the single-machine render, and renames it into place whole; the
   manifest is that render's plus ``cluster`` (:func:`cluster_record`: where each task ran).

Progress is the sum of the tasks'. A task that fails (a Blender error, a killed worker)
is submitted once more; a second failure ends the job with the task's log tail. Cancel,
a failure or the driver's end cancel every task still running (their Blender processes
die with them), and nothing partial is left. The frames equal the single-machine
render's: the same Blender on the same scene with the same Cycles seed renders the same
pixels whichever machine or thread count renders them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import contract
from ..contract import BadInput, PanoLoopError
from ..progress import JobContext
from .connect import (
    EXTENSION_DIR,
    ClusterAddress,
    check_reachable,
    connected,
    import_ray,
    largest_node_cpus,
)

#: What workers need of the extension (shipped with the job to a remote cluster).
SHIPPED_PACKAGES = ("engine", "blender_addon")
#: A Blender binary on a worker node, when it is not where the driver's Blender is.
BLENDER_ENV = "PANOLOOP_BLENDER"
#: Frames per task: each worker slot gets about this many tasks (load balance vs start-up).
TASKS_PER_SLOT = 2
#: A failed task is submitted this many times in all before the job fails.
ATTEMPTS = 2
#: Lines of a task's Blender log quoted in a report.
LOG_TAIL_LINES = 12
#: Seconds between two looks at the cancel flag while waiting for tasks.
WAIT_TICK_S = 0.25
STAGE = "render on cluster"


@dataclass
class Task:
    """One camera (or the 360° view) × frames ``part`` of the step, and its attempts."""

    index: int
    spec: dict[str, Any]
    label: str
    frames: int
    attempts: int = 0
    rendered: int = 0
    manifest: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    #: Hostname of the node that ran the last attempt.
    node: str = ""


# --------------------------------------------------------------------------- the plan


def split_tasks(spec: dict[str, Any], frames_per_task: int) -> list[Task]:
    """The step as tasks: each camera's frames (or the 360° frames) in runs of at most
    ``frames_per_task``, camera by camera, in frame order."""
    start, end = (int(v) for v in spec["frame_range"])
    views: list[str | None] = list(spec["cameras"]) if spec["kind"] == "cameras" else [None]
    tasks = []
    for view in views:
        for first in range(start, end + 1, frames_per_task):
            last = min(first + frames_per_task - 1, end)
            part = {**spec, "part": [first, last]}
            if view is not None:
                part["only"] = [view]
            what = f"camera {view!r}" if view is not None else "360°"
            label = f"{what} frames {first}-{last}"
            tasks.append(Task(len(tasks), part, label, last - first + 1))
    return tasks


def auto_frames_per_task(spec: dict[str, Any], slots: int) -> int:
    """Frames per task so each worker slot gets about :data:`TASKS_PER_SLOT` tasks."""
    start, end = (int(v) for v in spec["frame_range"])
    frames = end - start + 1
    views = len(spec["cameras"]) if spec["kind"] == "cameras" else 1
    return max(1, min(frames, math.ceil(views * frames / (TASKS_PER_SLOT * max(1, slots)))))


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A render step spec (``plans.RenderStep``) as the driver needs it; BadInput if not."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("cameras", "360"):
        raise BadInput(f"render spec must have kind 'cameras' or '360', got {spec!r:.200}")
    if not isinstance(spec.get("scene"), str) or not spec["scene"]:
        raise BadInput("render spec names no scene")
    frame_range = spec.get("frame_range")
    whole = isinstance(frame_range, list) and all(isinstance(v, int) for v in frame_range)
    if not (whole and len(frame_range) == 2 and frame_range[0] <= frame_range[1]):
        raise BadInput(f"render spec frame_range must be [start, end], got {frame_range!r}")
    if spec["kind"] == "cameras":
        cameras = spec.get("cameras")
        if not cameras or not all(isinstance(c, str) and c for c in cameras):
            raise BadInput(f"render spec lists no cameras (got {cameras!r})")
    return spec


# --------------------------------------------------------------------------- Blender


def blender_command(blender: dict[str, str], script: Path, job: Path) -> list[str]:
    """How to run ``background.py JOB`` in Blender: a Blender binary, or a Python that
    imports the bpy module. A node's :data:`BLENDER_ENV` overrides the binary's path."""
    binary = os.environ.get(BLENDER_ENV) or blender.get("binary")
    if binary:
        return [binary, "--background", "--python", str(script), "--", str(job)]
    return [blender["python"], str(script), str(job)]


def _die_with_parent() -> None:
    """Linux: the Blender child gets SIGKILL when the worker running it dies (a forced
    cancel kills the worker outright); elsewhere its stdin closing stops it at a frame."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def run_blender(
    command: list[str], log: Path, on_event: Any = None, cancelled: Any = None
) -> dict[str, Any]:
    """Run a background Blender speaking the JSON-lines protocol; its final event (or a
    made-up ``error`` with the log tail when it died without one). Other output → ``log``."""
    with open(log, "a", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
        final: dict[str, Any] | None = None
        stop = threading.Event()
        if cancelled is not None:
            threading.Thread(target=_kill_when, args=(proc, cancelled, stop), daemon=True).start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                event = _event(line)
                if event is None:
                    log_file.write(line)
                elif event.get("event") == "progress" and on_event is not None:
                    on_event(event)
                elif event.get("event") in ("done", "error", "cancelled"):
                    final = event
            code = proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if final is None:
        final = {"event": "error", "exit_code": 1, "message": f"Blender {_exit(code)}"}
    if final["event"] == "error":
        final["message"] = f"{final.get('message')}; log tail: {log_tail(log)}"
    return final


def _kill_when(proc: subprocess.Popen, cancelled: Any, stop: threading.Event) -> None:
    while not stop.wait(WAIT_TICK_S):
        if cancelled():
            proc.kill()
            return


def _event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, on one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) if tail else "(log is empty)"


def background_script() -> Path:
    """``blender_addon/background.py`` of the extension this module belongs to."""
    return EXTENSION_DIR / "blender_addon" / "background.py"


def extension_copy(folder: Path) -> Path:
    """What a background Blender imports of the extension, as one folder: on a worker
    Ray unpacks ``engine`` and ``blender_addon`` into separate places, but
    ``background.py`` finds both beside itself (``blender_addon`` and the contract)."""
    # Shipped with the job (Ray's py_modules); found, not imported (it is Blender's side).
    found = importlib.util.find_spec("blender_addon")
    if found is None or not found.submodule_search_locations:
        raise PanoLoopError("this worker has no blender_addon package (shipped with the job)")
    shutil.copytree(
        Path(found.submodule_search_locations[0]),
        folder / "blender_addon",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (folder / "engine").mkdir()
    for name in ("__init__.py", "contract.py"):
        shutil.copyfile(Path(contract.__file__).with_name(name), folder / "engine" / name)
    return folder


# --------------------------------------------------------------------------- the task


def render_task(
    blend: bytes, resources: dict[str, bytes], job: dict[str, Any], blender: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """On a worker: render one task; yields ``started``, ``progress`` (frames done, as
    Blender reports them), ``refused`` (bad input, e.g. another Blender version), then
    ``file`` items (path relative to the step's output, bytes) and the ``manifest``.
    Raises on failure, with the log tail."""
    sweep_task_folders()
    with tempfile.TemporaryDirectory(prefix=f"{TASK_PREFIX}{os.getpid()}-") as scratch:
        root = Path(scratch)
        (root / "scene.blend").write_bytes(blend)
        for relative, data in resources.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        out = root / "out"
        job = {**job, "blend": str(root / "scene.blend"), "out": str(out)}
        (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
        yield {"kind": "started", "pid": os.getpid(), "node": socket.gethostname()}
        script = extension_copy(root / "extension") / "blender_addon" / "background.py"
        command = blender_command(blender, script, root / "job.json")
        events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

        def run() -> None:
            progress = lambda event: events.put(("progress", event))  # noqa: E731
            events.put(("final", run_blender(command, root / "blender.log", on_event=progress)))

        threading.Thread(target=run, name="panoloop-blender", daemon=True).start()
        while (item := events.get())[0] == "progress":
            yield {"kind": "progress", "step": int(item[1].get("step", 0))}
        final = item[1]
        if final["event"] == "error" and int(final.get("exit_code") or 1) == 2:
            yield {"kind": "refused", "message": final["message"], "fix": final.get("fix", "")}
            return
        if final["event"] != "done":
            raise RuntimeError(f"Blender on {socket.gethostname()}: {final.get('message')}")
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            relative = path.relative_to(out).as_posix()
            if relative == contract.MANIFEST_NAME:
                yield {"kind": "manifest", "manifest": json.loads(path.read_text("utf-8"))}
            else:
                yield {"kind": "file", "path": relative, "data": path.read_bytes()}


#: A task's temporary folder: ``panoloop-task-<worker pid>-…`` in the node's temp folder.
TASK_PREFIX = "panoloop-task-"


def sweep_task_folders() -> None:
    """Remove task folders of workers that were killed (a forced cancel cannot clean up)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TASK_PREFIX}*-*"):
        pid = folder.name[len(TASK_PREFIX) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_tree(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# --------------------------------------------------------------------------- the driver


def pack_scene(
    blend: Path, blender: dict[str, str], scratch: Path, ctx: JobContext
) -> tuple[bytes, dict[str, str], str]:
    """The scene packed for shipping: (.blend bytes, ``resources/`` files by relative
    path → absolute path, Blender's version), by a local background Blender."""
    packed = scratch / "scene.blend"
    job = scratch / "pack.json"
    paths = {"blend": str(blend.resolve()), "packed": str(packed.resolve())}
    job.write_text(json.dumps({"kind": "pack", **paths}), encoding="utf-8")
    ctx.step("pack the scene", 0, 1)
    final = run_blender(
        blender_command(blender, background_script(), job),
        scratch / "pack.log",
        cancelled=lambda: ctx.cancel.cancelled,
    )
    ctx.cancel.check()
    if final["event"] != "done":
        error = BadInput if int(final.get("exit_code") or 1) == 2 else PanoLoopError
        raise error(f"packing the scene failed: {final.get('message')}", final.get("fix", ""))
    ctx.step("pack the scene", 1, 1)
    resources = {
        p.relative_to(scratch).as_posix(): str(p)
        for p in sorted((scratch / "resources").rglob("*"))
        if p.is_file()
    }
    return packed.read_bytes(), resources, str(final.get("blender_version", ""))


def render_on_cluster(
    *,
    blend: Path,
    spec: dict[str, Any],
    out: Path,
    address: ClusterAddress,
    blender: dict[str, str],
    cpus_per_task: int = 0,
    frames_per_task: int = 0,
    local_cpus: int | None = None,
    ctx: JobContext,
) -> Path:
    """Render ``spec`` (a ``plans.RenderStep`` spec plus ``scene``) of ``blend`` on the
    cluster into ``out``, laid out as the single-machine render. ``cpus_per_task`` 0 =
    half the largest node's CPUs; ``frames_per_task`` 0 = about two tasks per slot."""
    import_ray(address.flag)  # refused before anything is written when Ray is missing
    spec = check_spec(spec)
    out = contract.check_output_free(out)
    check_reachable(address)  # a wrong address is refused before the scene is packed
    with contract.atomic_output_dir(out) as staging:
        scratch = staging / ".cluster-pack"
        scratch.mkdir()
        blend_bytes, resource_paths, version = pack_scene(Path(blend), blender, scratch, ctx)
        with connected(address, packages=SHIPPED_PACKAGES, local_cpus=local_cpus) as ray:
            largest = largest_node_cpus(ray)
            cpus = cpus_per_task or max(1, largest // 2)
            if cpus > largest:
                raise BadInput(
                    f"--cpus-per-task {cpus}: the largest node of the cluster has {largest} CPUs"
                )
            slots = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
            tasks = split_tasks(spec, frames_per_task or auto_frames_per_task(spec, slots))
            job = {"blender_version": version, "threads": cpus}
            resources = {rel: Path(path).read_bytes() for rel, path in resource_paths.items()}
            _remove_tree(scratch)
            with ctx.timed("tasks"):
                manifest = run_tasks(ray, tasks, blend_bytes, resources, job, blender, cpus,
                                     staging, ctx)  # fmt: skip
        contract.write_manifest(staging, {**manifest, "cluster": cluster_record(address, tasks)})
    return out


def cluster_record(address: ClusterAddress, tasks: list[Task]) -> dict[str, Any]:
    """How the step was rendered, for its manifest (``cluster``, as ``generate --ray``
    records its workers): Ray, the address kind (``local``, ``auto``, ``gcs``,
    ``client``), and per task its frames, the node that rendered it and its attempts."""
    return {
        "engine": "ray",
        "address": address.kind,
        "tasks": [{"task": t.label, "hostname": t.node, "attempts": t.attempts} for t in tasks],
    }


def run_tasks(
    ray: Any,
    tasks: list[Task],
    blend: bytes,
    resources: dict[str, bytes],
    job: dict[str, Any],
    blender: dict[str, str],
    cpus: int,
    staging: Path,
    ctx: JobContext,
) -> dict[str, Any]:
    """Submit every task, stream their results into ``staging``, retry a failure once;
    the step's manifest. Every task still running is cancelled on the way out."""
    remote = ray.remote(render_task).options(num_cpus=cpus, max_retries=0, num_returns="streaming")
    blend_ref, resources_ref = ray.put(blend), ray.put(resources)
    running: dict[Any, Task] = {}
    total = sum(t.frames for t in tasks)

    def submit(task: Task) -> None:
        task.attempts += 1
        task.rendered, task.manifest = 0, None
        running[remote.remote(blend_ref, resources_ref, {**task.spec, **job}, blender)] = task

    try:
        for task in tasks:
            submit(task)
        ctx.step(STAGE, 0, total)
        while running:
            ctx.cancel.check()
            ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_TICK_S)
            for generator in ready:
                task = running[generator]
                try:
                    item = ray.get(next(generator))
                except StopIteration:
                    del running[generator]
                    if task.manifest is None:
                        raise PanoLoopError(f"render task {task.label} sent no manifest") from None
                    continue
                except ray.exceptions.RayError as exc:
                    del running[generator]
                    _failed(task, exc, submit)
                    continue
                _take(item, task, staging)
                ctx.step(STAGE, sum(t.rendered for t in tasks), total)
    finally:
        for generator in running:
            ray.cancel(generator, force=True)
    return _merged_manifest(tasks)


def _take(item: dict[str, Any], task: Task, staging: Path) -> None:
    """One streamed item of a task: log it, count it, or write its file into ``staging``."""
    kind = item.get("kind")
    if kind == "started":
        task.node = str(item["node"])
        where = f"worker pid {item['pid']} on {item['node']}"
        print(f"task {task.index} ({task.label}) attempt {task.attempts}: {where}",
              file=sys.stderr, flush=True)  # fmt: skip
    elif kind == "progress":
        task.rendered = int(item["step"])
    elif kind == "refused":
        raise BadInput(f"render task {task.label}: {item['message']}", item.get("fix", ""))
    elif kind == "manifest":
        task.manifest = item["manifest"]
    elif kind == "file":
        target = _inside(staging, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item["data"])
        task.files.append(item["path"])


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, refused when a task names a path outside ``root``."""
    target = (root / relative).resolve()
    if root.resolve() not in target.parents:
        raise PanoLoopError(f"a render task sent a file outside its output: {relative!r}")
    return target


def _failed(task: Task, exc: Exception, submit: Any) -> None:
    """Submit a failed task once more; a second failure ends the job, with its log tail."""
    reason = _reason(exc)
    if task.attempts < ATTEMPTS:
        print(f"task {task.index} ({task.label}) failed: {reason}; retrying once",
              file=sys.stderr, flush=True)  # fmt: skip
        submit(task)
        return
    raise PanoLoopError(
        f"render task {task.label} failed {task.attempts} times: {reason}",
        "see the message above; a node without Blender needs PANOLOOP_BLENDER set there",
    )


def _reason(exc: Exception) -> str:
    """What went wrong in a task, in one line (a task's own error, or its worker's death)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception) and not isinstance(cause, type(exc)):
        return str(cause).strip().splitlines()[-1] if str(cause).strip() else repr(cause)
    text = str(exc).strip()
    if "WorkerCrashedError" in type(exc).__name__ or "worker died" in text.lower():
        return "the worker running it died (killed, or out of memory)"
    return text.splitlines()[-1] if text else type(exc).__name__


def _merged_manifest(tasks: list[Task]) -> dict[str, Any]:
    """The step's manifest: every task writes the whole render's (same scene, range and
    cameras); they must agree."""
    manifests = [t.manifest for t in tasks]
    first = manifests[0]
    if first is None or any(m != first for m in manifests):
        raise PanoLoopError("the render tasks disagree about the render (manifests differ)")
    return first


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
