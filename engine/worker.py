"""``python -m engine worker --job JOB.json``: one engine job for the Blender add-on.

The add-on starts this in the engine's own Python (never inside Blender) and reads its
stdout. The job file names a subcommand and its argument list, exactly as typed after
``python -m engine``::

    {"command": "animate", "argv": ["in.exr", "--out", "/out/loop", "--seconds", "1"]}

so the worker runs the very same subcommand modules as the CLI.

Protocol: stdout carries only JSON objects, one per line, flushed as they happen:

- ``{"event": "started", "command": "animate", "pid": 123}``
- ``{"event": "progress", "stage": "render", "step": 3, "total": 8, "rate": 2.5,
  "eta_s": 2.0}``  (1-based step; ``rate`` in steps per second and ``eta_s`` the seconds
  left in this stage, both ``null`` until the stage's second report)
- ``{"event": "done", "output": "/out/loop", "timings": {...}}``
- ``{"event": "error", "message": "...", "fix": "...", "exit_code": 2}``
- ``{"event": "cancelled", "message": "..."}``

Everything else (logs, library chatter, tracebacks) goes to stderr, which the add-on
keeps in a log file: file descriptor 1 itself is pointed at stderr while the job runs,
so even a C library printing to stdout cannot break the protocol.

Cancel: a ``cancel`` line on stdin, stdin closing (Blender went away), or SIGTERM set
the job's cancel flag; the job stops at its next step and its temporary output is
removed (:func:`engine.media.atomic_output_dir`). A SIGTERM after a cancel stops the job
where it is (the add-on sends one when a step takes too long), and a worker whose stdin
pipe closed sends itself one after :data:`ORPHAN_GRACE_S`.
Exit codes are the CLI's: 0 done, 2 bad input, 130 cancelled, 1 other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from .errors import BadInput, JobCancelled, PanoLoopError, user_error
from .progress import CancelToken, JobContext, StageClock

HELP = "run one job for the Blender add-on, reporting JSON lines on stdout"

#: The stdin line that asks the running job to stop.
CANCEL_LINE = "cancel"
#: Seconds an orphaned worker (its stdin pipe closed) gets to stop at a step boundary.
ORPHAN_GRACE_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--job",
        required=True,
        type=Path,
        help='job file: {"command": NAME, "argv": [ARG, ...]} as after "python -m engine"',
    )


def read_job(path: Path) -> tuple[str, list[str]]:
    """The subcommand name and its argument list from a job file; BadInput if malformed."""
    try:
        job = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"job file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"job file {path} is not valid JSON: {exc}") from None
    if not isinstance(job, dict):
        raise BadInput(f"job file {path} must hold a JSON object, got {type(job).__name__}")
    command, argv = job.get("command"), job.get("argv", [])
    if not isinstance(command, str) or not command:
        raise BadInput(f"job file {path} has no command (got {command!r})")
    if command == "worker":
        raise BadInput(f"job file {path}: a worker cannot run another worker")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise BadInput(f"job file {path}: argv must be a list of strings, got {argv!r}")
    return command, argv


class EventStream:
    """Writes protocol events as JSON lines on a private copy of the original stdout."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._clock = StageClock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def progress(self, stage: str, step: int, total: int) -> None:
        """A progress event with the stage's rate and time left (threads may call it)."""
        with self._lock:
            rate, eta = self._clock.update(stage, step, total)
        self.emit(
            "progress",
            stage=stage,
            step=int(step),
            total=int(total),
            rate=None if rate is None else round(rate, 3),
            eta_s=None if eta is None else round(eta, 1),
        )


def take_over_stdout() -> EventStream:
    """Keep the real stdout for events only and send fd 1 (and ``sys.stdout``) to stderr.

    ``os.dup`` makes a non-inheritable descriptor, so child processes (ffmpeg) cannot
    hold the protocol pipe open either.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return EventStream(os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1))


def watch_stdin(token: CancelToken) -> threading.Thread:
    """Cancel on a ``cancel`` line, or when a stdin pipe closes (the add-on is gone).

    A stdin that is not a pipe (``< /dev/null``, a terminal) closing means nothing.
    """
    stdin_is_pipe = stat.S_ISFIFO(os.fstat(0).st_mode)

    def read() -> None:
        for line in sys.stdin:
            if line.strip() == CANCEL_LINE:
                token.cancel()
                return
        if stdin_is_pipe:
            token.cancel()
            # Nobody is left to wait for a clean stop: if the job does not reach its next
            # step soon (a long model call), interrupt it where it is.
            time.sleep(ORPHAN_GRACE_S)
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=read, name="panoloop-stdin", daemon=True)
    thread.start()
    return thread


def install_sigterm(token: CancelToken) -> None:
    """First SIGTERM: cancel at the next step. Second: raise JobCancelled right away."""

    def on_sigterm(signum: int, frame: object) -> None:
        if token.cancelled:
            raise JobCancelled("cancelled by the user; no output was written")
        token.cancel()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def run(args: argparse.Namespace, ctx: JobContext) -> Path | None:
    """Run the job file's subcommand, reporting events; re-raises so the exit code is right.

    Returns ``None`` so the CLI prints nothing more on stdout: the ``done`` event
    already carries the output path.
    """
    events = take_over_stdout()
    token = ctx.cancel
    install_sigterm(token)
    watch_stdin(token)
    job_ctx = JobContext(progress=events.progress, cancel=token, timings=ctx.timings)
    try:
        command, argv = read_job(args.job)
        events.emit("started", command=command, pid=os.getpid())
        output = run_subcommand(command, argv, job_ctx)
    except JobCancelled as exc:
        events.emit("cancelled", message=str(exc))
        raise
    except PanoLoopError as exc:
        events.emit("error", message=str(exc), fix=exc.fix, exit_code=exc.exit_code)
        raise
    except KeyboardInterrupt:
        events.emit("cancelled", message="interrupted; no output was written")
        raise
    except (OSError, MemoryError) as exc:
        error = user_error(exc)
        if error is None:
            _report_bug(events, exc)
            raise
        events.emit("error", message=str(error), fix=error.fix, exit_code=error.exit_code)
        raise error from exc
    except Exception as exc:
        _report_bug(events, exc)
        raise
    events.emit("done", output=str(output) if output is not None else None, timings=job_ctx.timings)
    return None


def _report_bug(events: EventStream, exc: BaseException) -> None:
    """An exception nobody expected: the traceback to the log, an ``error`` event."""
    traceback.print_exc(file=sys.stderr)
    events.emit(
        "error",
        message=f"{type(exc).__name__}: {exc}",
        fix="this is a bug in PanoLoop; the log holds the full traceback",
        exit_code=1,
    )


def run_subcommand(command: str, argv: list[str], ctx: JobContext) -> Path | None:
    """Parse ``command argv`` with the CLI's own parser and run its module's ``run``."""
    from .cli import build_parser

    ctx.cancel.check()
    try:
        args = build_parser().parse_args([command, *argv])
    except SystemExit as exc:
        # --help / --version print and exit inside argparse; a job must run, so refuse it.
        asked = next((a for a in argv if a in ("-h", "--help", "--version")), " ".join(argv))
        raise BadInput(
            f"job argv {asked!r} makes {command} print and exit (code {exc.code}); "
            "a job must run a command",
            "remove the option from the job's argv",
        ) from None
    if args.command is None:
        raise BadInput(f"unknown engine command {command!r}")
    return args._module.run(args, ctx)
