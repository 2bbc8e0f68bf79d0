"""One validation layer for what a user types: every number and path, with its limits.

Every value that reaches the engine from a command line — the CLI and the worker share
one argparse parser (:func:`engine.cli.build_parser`) — passes through here, so a bad one
is refused in one line that names it (exit 2; the worker's ``error`` event) before any
image or model loads. :func:`guard_parser` walks a subcommand's arguments once and wraps
their types: each ``float`` becomes a finite number within its named :class:`Limit` (no
NaN, no infinity, no 1e300), each ``int`` an integer within its limit, each ``Path`` a
path the filesystem and OpenCV can take (UTF-8, no NUL byte). New arguments are covered
the day they are added; a dest with no named limit still gets the absurd-magnitude bound.

The limits themselves live in :mod:`engine.contract` (standard library only), so the
Blender add-on gives its properties the very same ranges (``scene.panoloop.fps`` has the
CLI's).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .contract import (
    ANY_INTEGER,
    ANY_NUMBER,
    BLENDER_FRAME,
    COORDINATE,
    CRF,
    FACE_SIZE,
    FPS,
    FRAMES,
    INSTANTS,
    SECONDS,
    SEED,
    STRENGTH,
    BadInput,
    Limit,
    path_problem,
    shown_path,
)

__all__ = [
    "LIMITS_BY_DEST",
    "Limit",
    "check_path",
    "guard_parser",
    "number_type",
    "path_type",
    "shown_path",
]


#: argparse dest → its limit. Dests not listed get ANY_NUMBER / ANY_INTEGER.
LIMITS_BY_DEST: dict[str, Limit] = {
    "fps": FPS,
    "seconds": SECONDS,
    "frames": FRAMES,
    "seed": SEED,
    "strength": STRENGTH,
    "viewpoint": COORDINATE,
    "face_size": FACE_SIZE,
    "frame_range": BLENDER_FRAME,
    "instants": INSTANTS,
    "crf": CRF,
}


# ----------------------------------------------------------------------------- paths


def check_path(path: str | os.PathLike[str], what: str = "path") -> Path:
    """``path`` as a :class:`Path`, or :class:`BadInput` saying why it cannot be used."""
    problem = path_problem(os.fspath(path))
    if problem:
        raise BadInput(f"{what} '{shown_path(path)}' {problem}")
    return Path(path)


# ----------------------------------------------------------------------------- argparse


def number_type(limit: Limit, parse: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse ``type`` reading one number within ``limit`` (NaN and infinity refused)."""

    def read(text: str) -> Any:
        try:
            value = parse(text)
        except (TypeError, ValueError):
            kind = "a whole number" if limit.integer else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not limit.contains(value):
            raise argparse.ArgumentTypeError(f"must be {limit.describe()}, got {text!r}")
        return value

    read.__name__ = "integer" if limit.integer else "number"
    return read


def path_type(text: str) -> Path:
    """An argparse ``type`` for paths: refuses empty, NUL-holding and non-UTF-8 text."""
    problem = path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"'{shown_path(text)}' {problem}")
    return Path(text)


def guard_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Wrap every ``float``, ``int`` and ``Path`` argument of ``parser`` in its checked type."""
    for action in parser._actions:  # argparse has no public iterator over its actions
        if action.type is float:
            action.type = number_type(LIMITS_BY_DEST.get(action.dest, ANY_NUMBER), float)
        elif action.type is int:
            limit = LIMITS_BY_DEST.get(action.dest, ANY_INTEGER)
            action.type = number_type(limit if limit.integer else ANY_INTEGER, int)
        elif action.type is Path:
            action.type = path_type
    return parser
