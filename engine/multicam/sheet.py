"""The multicam contact sheet: cameras by instants, labelled.

Rows are clips (per camera the reprojection, then Blender's render when there is one),
columns a few instants spread over the loop; a header names each column's frame and
time, a left column names each row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Contact-sheet tile height in pixels and the gap between tiles.
SHEET_TILE_H = 180
SHEET_GAP = 4
#: The sheet's labels: a header row (instants) and a column (camera, which row is what).
SHEET_HEADER_H = 28
SHEET_LABEL_W = 220
REPROJECTION_LABEL = "reprojection"
RENDER_LABEL = "Blender render"


def contact_sheet(
    rows: list[tuple[str, list[Path]]], instants: int = 4, fps: float = 0.0, display: Any = None
) -> Any:
    """A labelled grid (8-bit RGB): one row per ``(label, frames)``, ``instants`` columns
    spread over the loop.

    Every row samples the same frame numbers, so a column is one instant for all cameras.
    The header names each column's frame and time (``fps`` > 0); the left column names
    each row (camera, and whether it is the reprojection or Blender's render). HDR frames
    are tone-mapped by ``display`` (:class:`engine.colour.DisplayTransform`; default
    Blender's AgX through ``$OCIO``).
    """
    import cv2
    import numpy as np

    from ..colour import display_transform
    from ..media import read_image

    display = display or display_transform()

    count = min(len(frames) for _, frames in rows)
    picks = np.unique(np.linspace(0, count - 1, min(instants, count)).round().astype(int))
    grid = []
    widths = []
    for label, frames in rows:
        tiles = []
        for i in picks:
            tile = display.to_uint8(read_image(frames[i]))
            scale = SHEET_TILE_H / tile.shape[0]
            size = (max(1, round(tile.shape[1] * scale)), SHEET_TILE_H)
            tiles.append(cv2.resize(tile, size, interpolation=cv2.INTER_AREA))
            tiles.append(np.zeros((SHEET_TILE_H, SHEET_GAP, 3), np.uint8))
        widths = [t.shape[1] for t in tiles[0::2]]
        row = np.concatenate(tiles[:-1], axis=1)
        grid.append(np.concatenate([_label_tile(label, SHEET_TILE_H), row], axis=1))
    width = max(r.shape[1] for r in grid)
    padded = [np.pad(r, ((0, SHEET_GAP), (0, width - r.shape[1]), (0, 0))) for r in grid]
    header = _header(picks, widths, width, fps)
    return np.concatenate([header, *padded], axis=0)[:-SHEET_GAP]


def _label_tile(text: str, height: int) -> Any:
    """A dark tile of :data:`SHEET_LABEL_W` with ``text`` wrapped on up to four lines."""
    import cv2
    import numpy as np

    tile = np.full((height, SHEET_LABEL_W, 3), 24, np.uint8)
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] > SHEET_LABEL_W - 16:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for index, text_line in enumerate(lines[:4]):
        cv2.putText(
            tile, text_line, (8, 28 + 22 * index), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
            (235, 235, 235), 1, cv2.LINE_AA,
        )  # fmt: skip
    return tile


def _header(picks: Any, widths: list[int], width: int, fps: float) -> Any:
    """The header row: over each column, the loop frame it shows and its time."""
    import cv2
    import numpy as np

    header = np.full((SHEET_HEADER_H, width, 3), 24, np.uint8)
    x = SHEET_LABEL_W
    for frame, tile_w in zip(picks, widths, strict=True):
        text = f"frame {int(frame)}" + (f"  {frame / fps:.2f} s" if fps > 0 else "")
        cv2.putText(
            header, text, (x + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1,
            cv2.LINE_AA,
        )  # fmt: skip
        x += tile_w + SHEET_GAP
    return header
