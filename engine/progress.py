"""What every engine job shares: progress reporting and cancellation.

A job is a subcommand (``views``, ``animate``, ``generate``, ``export``) run with a
:class:`JobContext`. The CLI reports progress on stderr; the worker turns the same
calls into JSON lines for the Blender add-on. Bad input is refused with
:class:`~engine.errors.BadInput` *before* any heavy import or model load.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import JobCancelled

#: ``progress(stage, step, total)``: ``step`` of ``total`` done in ``stage`` (1-based).
ProgressFn = Callable[[str, int, int], None]


class CancelToken:
    """A flag set from another thread (or a signal handler); jobs poll it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if cancel was asked for (call between steps)."""
        if self._event.is_set():
            raise JobCancelled("cancelled by the user; no output was written")


def quiet_progress(stage: str, step: int, total: int) -> None:
    """A progress callback that reports nothing (library use)."""


@dataclass
class JobContext:
    """Progress callback and cancel flag handed to a job; ``timings`` collects stage seconds."""

    progress: ProgressFn = quiet_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, stage: str, step: int, total: int) -> None:
        """Report progress and honour a pending cancel."""
        self.cancel.check()
        self.progress(stage, step, total)

    def timed(self, stage: str) -> _StageTimer:
        """``with ctx.timed("render"):`` adds the block's wall-clock seconds to ``timings``."""
        return _StageTimer(self, stage)


class _StageTimer:
    def __init__(self, ctx: JobContext, stage: str) -> None:
        self.ctx, self.stage = ctx, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.ctx.timings[self.stage] = round(self.ctx.timings.get(self.stage, 0.0) + elapsed, 4)


def stderr_progress(stage: str, step: int, total: int) -> None:
    """CLI progress: one updating line on stderr when it is a terminal, else sparse lines."""
    if sys.stderr.isatty():
        end = "\n" if step >= total else ""
        print(f"\r{stage}: {step}/{total}", end=end, file=sys.stderr, flush=True)
    elif step == total or step == 1:
        print(f"{stage}: {step}/{total}", file=sys.stderr, flush=True)
