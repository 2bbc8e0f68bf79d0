"""Which views the model denoises at each step: shifted windows, sphere views, camera views.

All views live on the ring latent of :mod:`.ring` (grid (F, H, W); row 0 = +Z, centre
column faces +X, columns wrap modulo W, frames modulo F). Three kinds, after
DynamicScaler (arXiv 2412.11100) plus one of ours:

- **Offset-shifting windows**: non-overlapping windows of the model's native size tile
  the ring; the whole grid moves every step through a cycle of offsets, so no window
  border stays in one place and every latent pixel is processed once per step.
  Latitude does not wrap: the grid of row bands is shifted too; a thin edge band is
  read through a window widened to half a window (an extra edge row, context only) but
  writes back only its own rows, so its border stays on the shifted grid. That costs
  ≤ 1.25 window pixels per latent pixel.
- **Blended tail** (ours): in the last few steps no later step is left to heal a
  border, so two tilings half a window apart are both denoised and their clean
  estimates averaged with weights that fall to 1/n at each window's borders. Each
  border of one tiling lies mid-window in the other. Twice the work, two steps.
- **Sphere views** (Panoramic Projecting Denoise): perspective views of FOV 120° at
  several latitudes and both poles, rotating in longitude every step, gathered and
  scattered nearest-neighbour (see :func:`.ring.nearest_view`).
- **Camera views** (ours): one view per Blender camera, holding the camera's whole
  image rectangle, denoised last in every step of the first half so each camera's
  picture forms as one coherent window. The view is widened by half the image and
  moves within that margin every step, so its outline never stays put.

:func:`plan_stages` lays out Global Motion Guidance: sphere views on a half-size canvas,
shifted windows to the end there, then ×2 upscale, re-noise and a refining pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from .ring import View, nearest_view, window_view

#: Camera views cycle through this many positions (DynamicScaler shifts over ~16 offsets).
OFFSET_CYCLE = 16
#: Per-axis step multipliers (made coprime with the axis's number of offsets), so each
#: axis visits all its offsets once per cycle, the three axes out of phase.
_FRAME_STRIDE, _ROW_STRIDE, _COL_STRIDE = 3, 7, 5
#: DynamicScaler's sphere views: latitudes (degrees) with six longitudes each, plus poles.
SPHERE_LATITUDES = (0.0, 45.0, -45.0, 60.0, -60.0, 75.0, -75.0)
SPHERE_LONGITUDES = 6
SPHERE_FOV = 120.0
#: Sphere views turn this much in longitude every step (DynamicScaler: about 12°).
SPHERE_ROTATION = 12.0

Grid = tuple[int, int, int]
Size = tuple[int, int, int]


@dataclass(frozen=True)
class WindowGrid:
    """The model's native window (frames, rows, cols) in latent pixels, and ``align``:
    the granularity of sizes and offsets the denoiser accepts (its UNet's downsampling)."""

    size: Size
    align: int = 1


# --------------------------------------------------------------------------- windows


def step_offsets(step: int, window: WindowGrid) -> tuple[int, int, int]:
    """(frame, row, col) offset of the window grid at ``step``, each in [0, window size).

    An axis of size n with alignment a has n/a offsets; step k takes offset
    ``(k·stride mod n/a)·a`` with the stride coprime with n/a, so within any n/a
    consecutive steps every offset comes exactly once: no border position is used twice
    while another waits (a border's residue adds up where it comes back soon).
    AnimateDiff's (16, 64, 64) window with align 8 has 16, 8 and 8 offsets.
    """
    fw, h, w = window.size

    def offset(stride: int, size: int, align: int) -> int:
        return cycle_position(step, stride, max(1, size // align)) * align

    return (
        offset(_FRAME_STRIDE, fw, 1),
        offset(_ROW_STRIDE, h, window.align),
        offset(_COL_STRIDE, w, window.align),
    )


def cycle_position(step: int, stride: int, count: int) -> int:
    """Position in [0, count) at ``step``: ``step·s mod count`` with s the first of
    ``stride``, ``stride + 1``, … coprime with ``count``, so any ``count`` consecutive
    steps visit every position once (window offsets and camera-view shifts walk it)."""
    while math.gcd(stride, count) != 1:
        stride += 1
    return step * stride % count


class RowBand(NamedTuple):
    """Latent rows ``[top, top + rows)`` go through the model; ``[write_top, write_top +
    write_rows)`` of them are written back (fewer only for a widened edge band)."""

    top: int
    rows: int
    write_top: int
    write_rows: int


def row_bands(height: int, h: int, offset: int, align: int) -> list[RowBand]:
    """Row bands writing [0, height) once, their borders on the grid shifted by ``offset``.

    Bands are ``h`` rows except at the top and bottom edge (latitude does not wrap).
    A band thinner than half a window is read through a window widened to half a
    window toward the interior, for context; it writes back only its own rows. Widened
    bands come first, so the rows they borrow are still untouched when they read them.
    """
    min_rows = min(height, max(align, math.ceil(h / 2 / align) * align))
    bands = []
    start = -offset if offset else 0
    while start < height:
        top, bottom = max(0, start), min(height, start + h)
        rows = bottom - top
        if rows < min_rows:
            bands.append(RowBand(min(top, height - min_rows), min_rows, top, rows))
        else:
            bands.append(RowBand(top, rows, top, rows))
        start += h
    return sorted(bands, key=lambda band: band.rows == band.write_rows)


def fixed_row_bands(height: int, h: int) -> list[RowBand]:
    """Unshifted bands of ``h`` rows; the last one docks at the bottom edge."""
    starts = list(range(0, height - h + 1, h))
    if starts[-1] + h < height:
        starts.append(height - h)
    return [RowBand(s, h, s, h) for s in starts]


def shifted_windows(
    step: int, window: WindowGrid, grid: Grid, *, latitude_shift: bool = True
) -> list[View]:
    """The non-overlapping window tiling of the ring at ``step`` (offset shifting).

    Frames and columns wrap, so some windows straddle the loop point and the 360° seam.
    When F or W is not a multiple of the window the last window wraps onto the first
    (the sampler re-noises the overlap before it is read).
    """
    f_off, r_off, c_off = step_offsets(step, window)
    return tiling((f_off, r_off if latitude_shift else 0, c_off), window, grid)


def tiling(offsets: tuple[int, int, int], window: WindowGrid, grid: Grid) -> list[View]:
    """The window tiling whose grid is shifted by ``offsets`` (frame, row, col)."""
    F, H, W = grid
    fw, h, w = window.size
    f_off, r_off, c_off = offsets
    views = []
    for f0 in _wrapped_starts(F, fw, f_off):
        for band in row_bands(H, h, r_off, window.align):
            for c0 in _wrapped_starts(W, w, c_off):
                views.append(
                    window_view(
                        f0,
                        band.top,
                        c0,
                        (fw, band.rows, w),
                        grid,
                        write_rows=(band.write_top - band.top, band.write_rows),
                    )  # fmt: skip
                )
    return views


def blend_windows(step: int, window: WindowGrid, grid: Grid) -> list[View]:
    """The blended tail's views at ``step``: the shifted tiling and its twin, shifted by
    half a window along frames, rows and columns (so each border of one lies mid-window
    in the other)."""
    fw, h, w = window.size
    f_off, r_off, c_off = step_offsets(step, window)
    half_h, half_w = (window.align * max(1, n // 2 // window.align) for n in (h, w))
    twin = ((f_off + fw // 2) % fw, (r_off + half_h) % h, (c_off + half_w) % w)
    return tiling((f_off, r_off, c_off), window, grid) + tiling(twin, window, grid)


def blend_weights(view: View, grid: Grid) -> np.ndarray:
    """Weights (Fw, h, w) of a view's clean estimate in the blended tail.

    Along each axis a tent over pixel centres: the distance (k + ½) to a side that
    borders another window, over n/2, capped at 1; so 1/n on a border pixel and about
    1 mid-window. A side on the latitude edge (row 0 or H−1) borders no window, so the
    tent stays flat toward it. Rows the view does not write get 0.
    """
    _, H, W = grid
    rows = view.cells.reshape(view.height, view.width)[:, 0] // W
    row_w = _tent(view.height, top_open=rows[0] == 0, bottom_open=rows[-1] == H - 1)
    row_w = row_w * view.keep.reshape(view.height, view.width)[:, 0]
    return (
        _tent(len(view.frames))[:, None, None]
        * row_w[None, :, None]
        * _tent(view.width)[None, None, :]
    )


def _tent(n: int, top_open: bool = False, bottom_open: bool = False) -> np.ndarray:
    k = np.arange(n) + 0.5
    top = np.full(n, np.inf) if top_open else k
    bottom = np.full(n, np.inf) if bottom_open else n - k
    return np.minimum(np.minimum(top, bottom) / (n / 2), 1.0)


def fixed_windows(window: WindowGrid, grid: Grid) -> list[View]:
    """Plain tiling that never moves and never wraps (the baseline seams are measured on)."""
    F, H, W = grid
    fw, h, w = window.size
    views = []
    for f0 in _docked_starts(F, fw):
        for band in fixed_row_bands(H, h):
            for c0 in _docked_starts(W, w):
                views.append(window_view(f0, band.top, c0, (fw, band.rows, w), grid))
    return views


def _wrapped_starts(total: int, size: int, offset: int) -> list[int]:
    return [(offset + k * size) % total for k in range(math.ceil(total / size))]


def _docked_starts(total: int, size: int) -> list[int]:
    starts = list(range(0, total - size + 1, size))
    if starts[-1] + size < total:
        starts.append(total - size)
    return starts


def fill_windows(step: int, window: WindowGrid, grid: Grid, written: np.ndarray) -> list[View]:
    """Shifted windows that hold cells no view wrote this step; they write only those.

    ``written`` is the (F, H·W) bool mask of cells already written in this step.
    """
    views = []
    for view in shifted_windows(step, window, grid):
        missing = ~written[view.frames][:, view.cells].all(axis=0) & view.keep
        if missing.any():
            views.append(
                View(view.frames, view.cells, missing, view.height, view.width, kind="fill")
            )
    return views


# --------------------------------------------------------------------------- sphere views


def look_directions(
    latitude: float, longitude: float, fov: float, rows: int, cols: int
) -> np.ndarray:
    """Rays (rows, cols, 3) of a square-pixel pinhole view looking at (latitude, longitude).

    Degrees; longitude 0 faces +X, 90 faces +Y (so it moves left in the panorama);
    ``fov`` is the horizontal field of view; the view's up is toward +Z (at the poles,
    toward the longitude's meridian).
    """
    lat, lon = math.radians(latitude), math.radians(longitude)
    forward = np.array(
        [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]
    )
    right = np.array([math.sin(lon), -math.cos(lon), 0.0])
    up = np.cross(right, forward)
    half = math.tan(math.radians(fov) / 2)
    x = ((np.arange(cols) + 0.5) / cols * 2 - 1) * half
    y = ((np.arange(rows) + 0.5) / rows * 2 - 1) * half * rows / cols
    return forward + x[None, :, None] * right - y[:, None, None] * up


def sphere_views(
    step: int,
    window: WindowGrid,
    grid: Grid,
    *,
    latitudes: Sequence[float] = SPHERE_LATITUDES,
    longitudes: int = SPHERE_LONGITUDES,
    fov: float = SPHERE_FOV,
    poles: bool = True,
) -> list[View]:
    """Perspective views covering the sphere at ``step`` (rotating ``SPHERE_ROTATION``°
    per step), for every frame window of the shifted tiling."""
    F = grid[0]
    fw, h, w = window.size
    turn = step * SPHERE_ROTATION
    looks = [
        (lat, turn + k * 360.0 / longitudes + (30.0 if i % 2 else 0.0))
        for i, lat in enumerate(latitudes)
        for k in range(longitudes)
    ]
    if poles:
        looks += [(90.0, turn), (-90.0, turn)]
    f_off = step_offsets(step, window)[0]
    views = []
    for f0 in _wrapped_starts(F, fw, f_off):
        frames = (f0 + np.arange(fw)) % F
        for lat, lon in looks:
            views.append(nearest_view(look_directions(lat, lon, fov, h, w), frames, grid, "sphere"))
    return views


def camera_directions(
    camera: object, rows: int, cols: int, margin: float = 0.0, shift: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """Rays (rows, cols, 3) through a rows×cols grid spanning a Blender camera's image.

    ``camera`` is an :class:`engine.cameras.BlenderCamera`; its own intrinsics (lens,
    sensor fit, shift) are kept, only the sampling density changes. ``margin`` widens
    the sampled rectangle by that fraction of the image size and ``shift`` (x right,
    y down, fractions of the image size, each within ±margin/2) moves it while it still
    holds the whole image.
    """
    k = camera.intrinsics()
    rot = camera.camera_to_world_opencv()[:3, :3]
    u = 0.5 + ((np.arange(cols) + 0.5) / cols - 0.5) * (1 + margin) + shift[0]
    v = 0.5 + ((np.arange(rows) + 0.5) / rows - 0.5) * (1 + margin) + shift[1]
    x = (u * camera.resolution_x - k[0, 2]) / k[0, 0]
    y = (v * camera.resolution_y - k[1, 2]) / k[1, 1]
    return x[None, :, None] * rot[:, 0] + y[:, None, None] * rot[:, 1] + rot[:, 2]


#: A camera view samples its image widened by this fraction and moves within it each
#: step, so its outline never stays put (a fixed outline leaves a rectangle around the
#: camera's picture: 1.5–1.7 times the interior's gradient energy, bench/seams.py).
CAMERA_MARGIN = 0.5
#: Camera views run in this first fraction of the steps, while the composition forms;
#: run to the end, their coarser sampling would set the texture of the picture.
CAMERA_FRACTION = 0.5


def camera_steps(steps: int, fraction: float = CAMERA_FRACTION) -> int:
    """Camera views run in steps ``[0, camera_steps(steps))`` (at least the first)."""
    return max(1, round(steps * fraction))


def camera_shift(step: int, margin: float) -> tuple[float, float]:
    """Where the widened camera view sits at ``step`` (x, y in image fractions, ±margin/2):
    it walks the offset cycle like the window grid, so its outline never stays put."""

    def along(stride: int) -> float:
        return (cycle_position(step, stride, OFFSET_CYCLE) / (OFFSET_CYCLE - 1) - 0.5) * margin

    return along(_COL_STRIDE), along(_ROW_STRIDE)


def camera_views(
    step: int, window: WindowGrid, grid: Grid, cameras: Sequence, margin: float = CAMERA_MARGIN
) -> list[View]:
    """One view per camera for every frame window at ``step``: the camera's whole image,
    widened by ``margin`` and moved within it every step (see :func:`camera_shift`)."""
    F = grid[0]
    fw, h, w = window.size
    f_off = step_offsets(step, window)[0]
    shift = camera_shift(step, margin)
    directions = [camera_directions(cam, h, w, margin, shift) for cam in cameras]
    views = []
    for f0 in _wrapped_starts(F, fw, f_off):
        frames = (f0 + np.arange(fw)) % F
        views += [nearest_view(d, frames, grid, "camera") for d in directions]
    return views


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """A run of denoising steps ``[start, stop)`` (indices into the timesteps) on one canvas.

    ``views``: ``"sphere"`` (sphere views, then windows for any cell left unwritten),
    ``"single"`` (the whole latent as one window, the diffusers reference),
    ``"windows"`` (shifted windows), ``"blend"`` (the blended tail: two tilings half a
    window apart, averaged) or ``"fixed"`` (the unshifted baseline).
    ``scale``: 1 for the output canvas, 2 for the half-size coarse canvas.
    """

    name: str
    views: str
    start: int
    stop: int
    scale: int = 1

    def to_dict(self) -> dict:
        return {"name": self.name, "views": self.views, "steps": [self.start, self.stop],
                "canvas": f"1/{self.scale}"}  # fmt: skip


#: DynamicScaler: sphere views for ~15 of 48 steps; the refine pass restarts near there.
SPHERE_FRACTION = 0.3
RENOISE_FRACTION = 0.3
#: Steps of the blended tail at the end of the output canvas (at most a fifth of them).
BLEND_STEPS = 2


def default_blend_steps(steps: int) -> int:
    """How many final steps blend two tilings: ``BLEND_STEPS``, at most a fifth of them."""
    return min(BLEND_STEPS, steps // 5)


def plan_stages(
    steps: int,
    latent_hw: tuple[int, int],
    window: WindowGrid,
    *,
    schedule: str = "dynamic",
    sphere_fraction: float = SPHERE_FRACTION,
    renoise_fraction: float = RENOISE_FRACTION,
    blend_steps: int | None = None,
) -> list[Stage]:
    """The stage plan for ``steps`` denoising steps on a latent of ``latent_hw`` (H, W).

    ``"dynamic"``: when the half-size canvas still holds a whole window, sphere views on
    it, shifted windows to the end, then ×2 upscale, re-noise and refine at full size
    (Global Motion Guidance); otherwise sphere views then shifted windows at full size.
    ``"windows"``: shifted windows only. Both end with ``blend_steps`` steps of the
    blended tail on the output canvas (default :func:`default_blend_steps`).
    ``"fixed"``: the unshifted tiling baseline. ``"single"``: the whole latent as one
    window in every step (the diffusers reference; see :data:`.sampler.SINGLE`).
    """
    if schedule == "fixed":
        return [Stage("fixed", "fixed", 0, steps)]
    if schedule == "single":
        return [Stage("single", "single", 0, steps)]
    tail = default_blend_steps(steps) if blend_steps is None else max(0, min(blend_steps, steps))
    if schedule == "windows":
        return _with_tail([Stage("windows", "windows", 0, steps)], steps - tail)
    sphere_end = min(steps, max(1, round(steps * sphere_fraction)))
    H, W = latent_hw
    _, h, w = window.size
    coarse = H // 2 >= h and (H // 2) % window.align == 0 and steps >= 3
    if not coarse:
        stages = [Stage("sphere", "sphere", 0, sphere_end)]
        if sphere_end < steps:
            stages.append(Stage("windows", "windows", sphere_end, steps))
        return _with_tail(stages, max(sphere_end, steps - tail))
    refine_start = min(steps - 1, max(1, round(steps * renoise_fraction)))
    return [
        Stage("sphere", "sphere", 0, sphere_end, scale=2),
        *([Stage("windows", "windows", sphere_end, steps, scale=2)] if sphere_end < steps else []),
        *_with_tail([Stage("refine", "windows", refine_start, steps)], steps - tail),
    ]


def stages_from(stages: list[Stage], start: int) -> list[Stage]:
    """The plan from step ``start`` on (image-to-video below strength 1): every stage cut to
    ``[start, stop)``, stages that end before it dropped.

    When a full-size stage already runs at ``start`` the coarse pass is left out too: it
    exists to find the global layout from noise, which the still already gives, and its
    re-noised upscale would replace the still's full-size detail.
    """
    if start <= 0:
        return stages
    full_size = any(s.scale == 1 and s.start <= start < s.stop for s in stages)
    return [
        replace(s, start=max(s.start, start))
        for s in stages
        if s.stop > start and not (full_size and s.scale != 1)
    ]


def _with_tail(stages: list[Stage], blend_start: int) -> list[Stage]:
    """Cut the last (shifted-window) stage at ``blend_start`` and blend from there on."""
    last = stages[-1]
    if last.views != "windows" or blend_start >= last.stop:
        return stages
    blend_start = max(blend_start, last.start)
    tail = Stage("blend", "blend", blend_start, last.stop, last.scale)
    if blend_start == last.start:
        return [*stages[:-1], tail]
    return [*stages[:-1], Stage(last.name, last.views, last.start, blend_start, last.scale), tail]
