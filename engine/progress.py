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
from typing import Any, TextIO

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


class StageClock:
    """Rate (steps per second) and time left of each stage, from the steps reported so far.

    The clock of a stage starts at its first report, so a slow first step (compiling,
    loading) does not count as the stage's pace; until a second report nothing is known.
    Stages may run at the same time (rendering while frames are written); each has its
    own clock. Not thread-safe: callers hold their own lock.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._first: dict[str, tuple[float, int]] = {}

    def update(self, stage: str, step: int, total: int) -> tuple[float | None, float | None]:
        """``(rate, eta_s)`` after ``step`` of ``total``; ``None`` while unknown."""
        now = self._now()
        first_time, first_step = self._first.setdefault(stage, (now, step))
        if step <= first_step or now <= first_time:
            return None, None
        rate = (step - first_step) / (now - first_time)
        return rate, max(total - step, 0) / rate


def format_eta(seconds: float | None) -> str:
    """``1:05`` style minutes:seconds (``h:mm:ss`` past an hour); ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TerminalProgress:
    """CLI progress on stderr: a tqdm bar per stage (count, rate, ETA) on a terminal;
    otherwise (a log file, CI) one line at each stage's first and last step, the last
    with its rate. Safe to call from several threads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bars: dict[str, Any] = {}
        self._clock = StageClock()
        self._lock = threading.Lock()

    def __call__(self, stage: str, step: int, total: int) -> None:
        with self._lock:
            if self.stream.isatty():
                self._bar(stage, step, total)
                return
            rate, _ = self._clock.update(stage, step, total)
            if step == 1 or step >= total:
                pace = f" ({rate:.1f}/s)" if rate and step >= total else ""
                print(f"{stage}: {step}/{total}{pace}", file=self.stream, flush=True)

    def _bar(self, stage: str, step: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = tqdm(
                total=total,
                desc=stage,
                unit="step",
                file=self.stream,
                position=len(self._bars),
                dynamic_ncols=True,
            )
            self._bars[stage] = bar
        bar.update(step - bar.n)
        if step >= total:
            bar.close()


def stderr_progress(stage: str, step: int, total: int) -> None:
    """CLI progress for one process (see :class:`TerminalProgress`)."""
    _TERMINAL(stage, step, total)


_TERMINAL = TerminalProgress()
