"""The engine's error types: what a user can act on, kept apart from bugs.

They are defined once, in :mod:`engine.contract` (standard library only, shared with
the Blender add-on, whose one error type is :class:`PanoLoopError` too).
"""

from __future__ import annotations

from .contract import BadInput, JobCancelled, PanoLoopError

__all__ = ["BadInput", "JobCancelled", "PanoLoopError"]
