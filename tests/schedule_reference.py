"""Window schedules and counts used only by tests and benchmarks, not by the engine.

- :func:`multidiffusion_windows`: MultiDiffusion's overlapping windows, the baseline
  whose work per step ``bench/generate.py`` compares ours with;
- :func:`coverage`: how many times each latent cell is written by a set of views.
"""

from __future__ import annotations

import numpy as np

from engine.generate.ring import View, window_view
from engine.generate.schedule import Grid, WindowGrid, _docked_starts


def multidiffusion_windows(window: WindowGrid, grid: Grid, stride: int) -> list[View]:
    """MultiDiffusion's overlapping windows with ``stride`` latent pixels, wrapping in
    longitude (for counting the work it does per step, beside ours)."""
    F, H, W = grid
    fw, h, w = window.size
    rows = list(range(0, H - h + 1, stride))
    if rows[-1] + h < H:
        rows.append(H - h)
    return [
        window_view(f0, r0, c0, (fw, h, w), grid)
        for f0 in _docked_starts(F, fw)
        for r0 in rows
        for c0 in range(0, W, stride)
    ]


def coverage(views: list[View], grid: tuple[int, int, int]) -> np.ndarray:
    """How many times each (frame, row, col) is written by ``views``: (F, H, W) int array."""
    F, H, W = grid
    count = np.zeros((F, H * W), dtype=np.int64)
    for view in views:
        cells = view.cells[view.keep]
        np.add.at(count, (view.frames[:, None], cells[None, :]), 1)
    return count.reshape(F, H, W)
