"""One job at a time, in subprocesses, without ever freezing Blender: the one launcher.

The pattern (bpy is not thread-safe):

- ``subprocess.Popen`` starts the worker (``python -m engine worker --job job.json``)
  in the engine's own Python; its stderr goes straight to a log file;
- a reader thread turns the worker's stdout lines into events on a ``queue.Queue``
  and touches nothing else;
- on the main thread, a ``bpy.app.timers`` callback drains the queue within a small
  time budget, updates the window manager's job display (which redraws the panels and
  the status bar) and, when the job is done, applies the result (e.g. the World).

A job may be a plan of several processes (``then``: e.g. a background Blender renders,
then the engine worker writes the output folder), run one after the other, each
speaking the same JSON-lines protocol; the next starts only after a ``done``.
No modal operator is held while a job runs, so autosave keeps working and switching
tabs does not stop anything. Cancel writes ``cancel`` on the worker's stdin; a worker
that does not stop within :data:`CANCEL_GRACE_S` is terminated, then killed, and any
temporary ``.NAME.partial-*`` sibling of the output is removed. A worker that dies
without a final event is reported with the tail of its log. In background mode
(``blender -b``, the bpy module) there is no event loop: :func:`start` with
``blocking=True`` drains the queue in a loop until the job ends.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import contract
from .engine_env import AddonError

#: Seconds between two timer ticks while a job runs.
TICK_INTERVAL_S = 0.1
#: Most time one tick spends draining events; keeps every tick far below 50 ms.
DRAIN_BUDGET_S = 0.015
#: Seconds a worker gets to stop after ``cancel`` before it is terminated (then killed).
CANCEL_GRACE_S = 5.0
KILL_GRACE_S = 5.0
#: Seconds a worker that closed its stdout without a final event may take to exit.
EXIT_GRACE_S = 5.0
#: How much of the log a crash report quotes.
LOG_TAIL_LINES = 12

RUNNING_STATES = ("RUNNING", "CANCELLING", "APPLYING", "CLEANING")


class Job:
    """One worker process and what the UI shows of it. Touch only from the main thread.

    ``state`` is RUNNING (→ CANCELLING) → APPLYING → DONE, or ERROR | CANCELLED.
    ``on_done(job)`` returns an iterator of small main-thread steps (e.g. loading the
    frames, then wiring the World's nodes): one step runs per timer tick, so even the
    final apply never stalls the UI. An :class:`AddonError` from a step turns the job
    into an ERROR.
    """

    def __init__(
        self,
        *,
        label: str,
        command: list[str],
        env: dict[str, str],
        job_dir: Path,
        output: Path | None = None,
        on_done: Callable[[Job], Iterator[None]] | None = None,
        then: list[tuple[list[str], dict[str, str]]] | None = None,
    ) -> None:
        self.label = label
        self.command = command
        self.env = env
        #: Further ``(command, env)`` processes, started in turn after a ``done`` event.
        self.then = list(then or [])
        self.job_dir = Path(job_dir)
        self.output = Path(output) if output else None
        self.on_done = on_done
        self.state = "RUNNING"
        self.stage, self.step, self.total = "starting", 0, 0
        #: The worker's current line within the stage (e.g. pip's download), if it sends one.
        self.detail = ""
        #: The worker's estimate of the seconds left in the current stage (None: unknown).
        self.eta_s: float | None = None
        self.message, self.fix = "", ""
        #: Shown as the fix of an error reported without one, or about being offline.
        self.fix_hint = ""
        self.result: Path | None = None
        self.exit_code: int | None = None
        #: Wall-clock and main-thread CPU seconds of every tick (the UI-freeze budget).
        self.tick_seconds: list[float] = []
        self.tick_cpu_seconds: list[float] = []
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self._final_event: dict[str, Any] | None = None
        self._stdout_closed = False
        self._waiting_since: float | None = None
        self._cancel_at: float | None = None
        self._log_file: Any = None
        self._applying: Iterator[None] | None = None
        self._cleaning: tuple[threading.Thread, tuple[str, str, str]] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def log_path(self) -> Path:
        return self.job_dir / "worker.log"

    @property
    def finished(self) -> bool:
        return self.state not in RUNNING_STATES

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0

    def start(self) -> None:
        """Start the worker process and its reader thread."""
        if self._log_file is None:
            self._log_file = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in _finish)
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log_file,
                env=self.env,
                cwd=self.job_dir,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                # Ctrl-C in Blender's terminal must not hit the worker; cancel is ours.
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            self._log_file.close()
            self._log_file = None
            raise AddonError(
                f"cannot start the engine {self.command[0]}: {exc}",
                "Preferences > Add-ons > PanoLoop: check Engine Python",
            ) from None
        threading.Thread(
            target=_read_events, args=(self.proc.stdout, self.events), daemon=True
        ).start()

    def _start_next(self) -> None:
        """The previous process said ``done``: start the plan's next one (fresh queue)."""
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass  # it is gone already
        self.command, self.env = self.then.pop(0)
        self.events = queue.Queue()
        self._final_event, self._stdout_closed, self._waiting_since = None, False, None
        self.stage, self.step, self.total = "starting", 0, 0
        try:
            self.start()
        except AddonError as exc:
            self._finish("ERROR", str(exc), exc.fix)

    def request_cancel(self) -> None:
        """Ask the worker to stop (it removes its temporary output itself)."""
        if self.finished or self.state in ("CANCELLING", "APPLYING", "CLEANING"):
            return  # an output already written whole is applied, not thrown away
        self.state = "CANCELLING"
        self.stage = "cancelling"
        self._cancel_at = time.monotonic()
        self._send_line("cancel")

    def poll(self) -> None:
        """Drain pending events (within :data:`DRAIN_BUDGET_S`) and watch the process."""
        if self.state == "APPLYING":
            self._apply_step()
        elif self.state == "CLEANING":
            self._check_cleaned()
        else:
            self._drain(time.perf_counter())

    def _drain(self, start: float) -> None:
        while not self.finished and time.perf_counter() - start < DRAIN_BUDGET_S:
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle(kind, payload)
        if self.state in ("RUNNING", "CANCELLING"):
            self._watch_process()

    def stop(self, timeout: float = KILL_GRACE_S) -> None:
        """Cancel and wait (blocking) until the worker has gone; used on file load/disable."""
        self.request_cancel()
        deadline = time.monotonic() + timeout
        while self.state in ("RUNNING", "CANCELLING") and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        if self.state in ("RUNNING", "CANCELLING") and self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._finish("CANCELLED", "cancelled; the engine was stopped")
        if self.state == "APPLYING":  # the scene it was for is going away: keep the output
            self._applying = None
            self._end("DONE", f"finished: {self.result} (not applied: the file changed)")
        if self.state == "CLEANING":
            self._cleaning[0].join()
            self._check_cleaned()

    # ------------------------------------------------------------------ internals

    def _send_line(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is already gone; _watch_process reports how it ended

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "eof":
            self._stdout_closed = True
            return
        event = payload.get("event")
        if event == "progress":
            self.stage = str(payload.get("stage", ""))
            self.step, self.total = int(payload.get("step", 0)), int(payload.get("total", 0))
            self.detail = str(payload.get("detail", ""))
            eta = payload.get("eta_s")
            self.eta_s = float(eta) if isinstance(eta, (int, float)) else None
        elif event in ("done", "error", "cancelled"):
            self._final_event = payload

    def _watch_process(self) -> None:
        assert self.proc is not None
        if self._final_event is not None:
            # The worker writes its final event after its output is renamed into place (or
            # its temporary output removed): the job is over even while the interpreter
            # still tears down (numba, torch: seconds under load).
            self.exit_code = self.proc.poll()
            self._conclude()
            return
        now = time.monotonic()
        code = self.proc.poll()
        if self._cancel_at is not None and code is None:
            waited = now - self._cancel_at
            if waited > CANCEL_GRACE_S + KILL_GRACE_S:
                self.proc.kill()
            elif waited > CANCEL_GRACE_S:
                self.proc.terminate()
        if code is None and not self._stdout_closed:
            return
        # Exited, or closed its stdout, without a final event: a crash or a kill.
        if self._waiting_since is None:
            self._waiting_since = now
        if code is None:
            if now - self._waiting_since > EXIT_GRACE_S:
                self.proc.kill()
            return
        if not self.events.empty() or (not self._stdout_closed and now - self._waiting_since < 1):
            return  # let the reader thread deliver (and poll drain) the last lines
        self.exit_code = code
        self._conclude()

    def _conclude(self) -> None:
        """Turn the final event (or its absence: a crash) into the job's end state."""
        event = self._final_event or {}
        kind = event.get("event")
        if kind == "done" and self.then and self._cancel_at is None:
            self._start_next()
        elif kind == "done" and self._cancel_at is not None and self.then:
            self._finish("CANCELLED", "cancelled; nothing was written")
        elif kind == "done":
            self.result = Path(event["output"]) if event.get("output") else self.output
            self._finish("DONE", f"finished: {self.result}")
        elif kind == "cancelled" or (self._cancel_at is not None and kind != "error"):
            self._finish("CANCELLED", "cancelled; nothing was written")
        elif kind == "error":
            self._finish("ERROR", str(event.get("message", "")), str(event.get("fix", "")))
        else:
            self._finish(
                "ERROR",
                f"the engine stopped unexpectedly ({describe_exit(self.exit_code)}); "
                f"log tail: {log_tail(self.log_path)}",
                f"full log: {self.log_path}",
            )

    def _finish(self, state: str, message: str, fix: str = "") -> None:
        """The worker is done with: release it, clean up, then apply (DONE) step by step."""
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass  # broken pipe: the worker is gone either way
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if state != "DONE" and self.output is not None:
            # Deleting a killed worker's frames is disk work that can take longer than a
            # tick: a thread does it (no bpy there); the job ends once it is gone.
            thread = threading.Thread(target=remove_partial_outputs, args=(self.output,))
            thread.start()
            self._cleaning = (thread, (state, message, fix))
            self.state, self.stage = "CLEANING", "cleaning up"
            return
        if state == "DONE" and self.on_done is not None:
            self.state, self.stage, self.message = "APPLYING", "applying", message
            self._applying = self.on_done(self)
            return
        self._end(state, message, fix)

    def _check_cleaned(self) -> None:
        assert self._cleaning is not None
        thread, ending = self._cleaning
        if not thread.is_alive():
            self._cleaning = None
            self._end(*ending)

    def _apply_step(self) -> None:
        assert self._applying is not None
        try:
            next(self._applying)
        except StopIteration:
            self._applying = None
            self._end("DONE", self.message)
        except AddonError as exc:
            self._applying = None
            self._end("ERROR", str(exc), exc.fix)

    def _end(self, state: str, message: str, fix: str = "") -> None:
        if state == "ERROR" and self.fix_hint and (not fix or "offline" in message):
            fix = self.fix_hint  # the engine cannot know where Blender keeps the setting
        self.state, self.message, self.fix = state, message, fix
        if state in ("DONE", "CANCELLED"):
            shutil.rmtree(self.job_dir, ignore_errors=True)
        self.stage = state.lower()


def _read_events(stream: Any, events: queue.Queue[tuple[str, Any]]) -> None:
    """Reader thread: worker stdout lines → queue. Never touches bpy."""
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            payload = json.loads(line)
        except json.JSONDecodeError:
            continue  # not ours; the protocol keeps stdout for events only
        if isinstance(payload, dict):
            events.put(("event", payload))
    events.put(("eof", None))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a worker log, joined on one line for a report."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) if tail else "(log is empty)"


def remove_partial_outputs(output: Path | None) -> None:
    """Remove ``.NAME.partial-*`` siblings a killed worker could not clean up itself."""
    if output is None or not output.parent.is_dir():
        return
    for partial in output.parent.glob(f"{contract.partial_prefix(output)}*"):
        shutil.rmtree(partial, ignore_errors=True)


# ---------------------------------------------------------------------- the one job

_job: Job | None = None


def current() -> Job | None:
    """The running job, or the last finished one (for the panel), or None."""
    return _job


def is_busy() -> bool:
    return _job is not None and not _job.finished


def start(job: Job, *, blocking: bool) -> Job:
    """Start ``job``; one at a time. ``blocking`` runs it to the end before returning."""
    global _job
    if is_busy():
        raise AddonError(
            f"a PanoLoop job is already running ({_job.label})", "wait for it or click Cancel"
        )
    job.start()
    _job = job
    publish(job)
    if blocking:
        wait(job)
    elif not bpy.app.timers.is_registered(timer_tick):
        bpy.app.timers.register(timer_tick, first_interval=TICK_INTERVAL_S)
    return job


def wait(job: Job, timeout: float | None = None) -> None:
    """Drive ``job`` from this (main) thread until it ends: background mode and tests."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not job.finished:
        job.poll()
        publish(job)
        if deadline is not None and time.monotonic() > deadline:
            job.stop()
        time.sleep(0.02)
    publish(job)


def timer_tick() -> float | None:
    """The ``bpy.app.timers`` callback: one short step of the current job."""
    job = _job
    if job is None or job.finished:
        return None
    start, cpu_start = time.perf_counter(), time.thread_time()
    job.poll()
    publish(job)
    job.tick_seconds.append(time.perf_counter() - start)
    job.tick_cpu_seconds.append(time.thread_time() - cpu_start)
    return None if job.finished else TICK_INTERVAL_S


def cancel() -> bool:
    """Ask the running job to stop; False when none runs."""
    if not is_busy():
        return False
    _job.request_cancel()
    publish(_job)
    return True


def shutdown() -> None:
    """End the running job now (file load, add-on disabled); blocks a few seconds at most."""
    if is_busy():
        _job.stop()
    if bpy.app.timers.is_registered(timer_tick):
        bpy.app.timers.unregister(timer_tick)


def eta_text(seconds: float | None) -> str:
    """``~1:05 left`` for the panel and status bar; empty while unknown."""
    if seconds is None:
        return ""
    whole = int(round(seconds))
    return f"~{whole // 60}:{whole % 60:02d} left"


def publish(job: Job) -> None:
    """Copy the job's state to ``window_manager.panoloop_job`` (changes redraw the UI)."""
    wm = bpy.context.window_manager
    display = getattr(wm, "panoloop_job", None) if wm is not None else None
    if display is None:
        return
    values = {
        "label": job.label,
        "state": job.state,
        "stage": job.stage,
        "step": job.step,
        "total": job.total,
        "eta": eta_text(job.eta_s) if job.state == "RUNNING" else "",
        "progress": job.progress,
        "detail": job.detail[:1024],
        "message": job.message[:1024],
        "fix": job.fix[:1024],
        "output": str(job.result or ""),
    }
    for name, value in values.items():
        if getattr(display, name) != value:
            setattr(display, name, value)


@persistent
def _on_load_pre(*_args: Any) -> None:
    shutdown()


def register() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    global _job
    shutdown()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    _job = None
