"""The engine's error types: what a user can act on, kept apart from bugs.

They are defined once, in :mod:`engine.contract` (standard library only, shared with
the Blender add-on, whose one error type is :class:`PanoLoopError` too).
:func:`user_error` is the one place that decides which system failures (a full disk, a
read-only disk, no memory) a user sees as one line rather than as a bug.
"""

from __future__ import annotations

from .contract import BadInput, JobCancelled, PanoLoopError, Unwritable, unwritable

__all__ = ["BadInput", "JobCancelled", "PanoLoopError", "Unwritable", "unwritable", "user_error"]


def user_error(exc: BaseException) -> PanoLoopError | None:
    """The one-line error a user sees for a failure they can act on, else None (a bug).

    The CLI and the worker both ask this before treating an exception as a bug.
    """
    if isinstance(exc, PanoLoopError):
        return exc
    if isinstance(exc, OSError):
        return unwritable(exc)
    if isinstance(exc, MemoryError):
        return PanoLoopError(
            f"ran out of memory ({exc or 'MemoryError'})",
            "use a smaller size, fewer frames or cameras, or close other programs",
        )
    return None
