"""Softmax splatting (GID's renderer): forward-warp an equirect frame by a motion field.

Every moving source pixel adds ``z·b·value`` to the four pixels around its target
(``b`` the bilinear share, ``z = exp(β·m/m_max)`` its softmax weight from its mean motion
magnitude ``m`` over the loop, so larger motion — usually the foreground — wins) and
each target is divided by its summed weights. Targets wrap across the 360° seam and
continue over the poles (row −1 is row 0 turned half a revolution, as
:func:`engine.projection.pad_equirect`). Pixels nothing lands on are holes, filled by
sampling the source backwards along their own displacement. Pixels whose amplitude is
exactly 0 are *pinned*: they are copied bit for bit from the input in every frame.

Speed: the motion arrives on a coarse grid and is interpolated per pixel inside the
kernel (wrapping in longitude), so no full-resolution field is ever built; the kernels
are compiled numba functions that release the GIL, run by a small thread pool over
bands of rows in two phases (even bands, then odd bands) with bands taller than twice
the largest vertical displacement, so no two threads write the same pixel and the sums
are added in the same order every run, whatever the thread count (deterministic
frames). Plain threads rather than numba's ``parallel=True`` keep the first compile
short (the kernels are cached on disk after it).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

#: Softmax weight z = exp(β · m / m_max): the strongest mover outweighs a still-ish
#: neighbour by e^8 ≈ 3000, without overflowing float32 with HDR values up to 65504.
SOFTMAX_BETA = 8.0
#: A target whose summed weight is below this received (almost) nothing: a hole.
HOLE_WEIGHT = 1e-3
#: Row bands of the two-phase parallel splat. Fixed (not per thread count) so the sums
#: are added in the same order on every machine; 16 keeps 2–8 threads busy.
ROW_BANDS = 16


# --------------------------------------------------------------------------- coarse → fine


def grid_tables(size: int, grid: int, wrap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear lookup of a coarse axis of ``grid`` cells from a fine axis of ``size`` pixels.

    Pixel centres (+0.5) are aligned on both axes. ``wrap`` continues across the ends
    (longitude); otherwise the ends are clamped (latitude: motion is flat over a pole).
    Returns (index0, index1, fraction of index1) per fine pixel.
    """
    pos = (np.arange(size, dtype=np.float64) + 0.5) * (grid / size) - 0.5
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i1 = i0 + 1
    if wrap:
        i0 %= grid
        i1 %= grid
    else:
        frac = np.where(i0 < 0, np.float32(0), np.where(i1 > grid - 1, np.float32(1), frac))
        i0 = np.clip(i0, 0, grid - 1)
        i1 = np.clip(i1, 0, grid - 1)
    return i0.astype(np.int32), i1.astype(np.int32), frac.astype(np.float32)


def upsample_grid(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly upsample a coarse equirect field (h, w) to (height, width), wrapping the seam."""
    h, w = field.shape
    y0, y1, fy = grid_tables(height, h, wrap=False)
    x0, x1, fx = grid_tables(width, w, wrap=True)
    top = field[y0][:, x0] * (1 - fx) + field[y0][:, x1] * fx
    bottom = field[y1][:, x0] * (1 - fx) + field[y1][:, x1] * fx
    return np.ascontiguousarray(top * (1 - fy[:, None]) + bottom * fy[:, None], dtype=np.float32)


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def _floor(x):
    """floor() as an int without a libm call (truncate, then step down for negatives)."""
    i = np.int64(x)
    if np.float32(i) > x:
        i -= 1
    return i


@njit(cache=True)
def _wrap_column(x: int, width: int) -> int:
    if 0 <= x < width:
        return x
    return x % width  # Python's modulo: also right for negative columns


@njit(cache=True)
def _target(row: int, col: int, height: int, width: int) -> tuple[int, int]:
    """Continue a pixel index over the poles (half a revolution) and across the seam."""
    if row < 0:
        row = -1 - row
        col += width // 2
    elif row >= height:
        row = 2 * height - 1 - row
        col += width // 2
    row = min(max(row, 0), height - 1)
    return row, _wrap_column(col, width)


#: Kernel options: float32 arithmetic may be reassociated and no Python division checks;
#: one compiled binary still adds in one fixed order, so frames stay reproducible.
_FAST = {
    "cache": True,
    "nogil": True,
    "fastmath": True,
    "error_model": "numpy",
    "boundscheck": False,
}


@njit(cache=True)
def _blend_rows(motion, ya, yb, wy, line):
    """Interpolate the coarse motion between coarse rows ya and yb into ``line`` (2, w)."""
    for k in range(motion.shape[2]):
        for c in range(2):
            top = motion[c, ya, k]
            line[c, k] = top + wy * (motion[c, yb, k] - top)


@njit(cache=True)
def _add(acc, row, col, height, width, share, r, g, b, z):
    """Add a bilinear ``share`` of a z-weighted colour, continuing over poles and seam."""
    row, col = _target(row, col, height, width)
    acc[row, col, 0] += share * r
    acc[row, col, 1] += share * g
    acc[row, col, 2] += share * b
    acc[row, col, 3] += share * z


@njit(**_FAST)
def _splat_rows(zsource, amplitude, motion, y0, y1, fy, x0, x1, fx, start, stop, acc, line):
    """Splat source rows [start, stop) into ``acc`` (colour·z sums and z sums)."""
    height, width = amplitude.shape
    one = np.float32(1.0)
    for i in range(start, stop):
        _blend_rows(motion, y0[i], y1[i], fy[i], line)
        fi = np.float32(i)
        for j in range(width):
            a = amplitude[i, j]
            if a == 0.0:
                continue  # pinned: copied from the input when resolving
            xa, xb, wx = x0[j], x1[j], fx[j]
            dx = line[0, xa] + wx * (line[0, xb] - line[0, xa])
            dy = line[1, xa] + wx * (line[1, xb] - line[1, xa])
            tx = np.float32(j) + dx * a
            ty = fi + dy * a
            ix = _floor(tx)
            iy = _floor(ty)
            ax = tx - np.float32(ix)
            ay = ty - np.float32(iy)
            r = zsource[i, j, 0]
            g = zsource[i, j, 1]
            b = zsource[i, j, 2]
            z = zsource[i, j, 3]
            # float32 throughout: an int literal here would promote the sums to float64.
            s00 = (one - ay) * (one - ax)
            s01 = (one - ay) * ax
            s10 = ay * (one - ax)
            s11 = ay * ax
            if 0 <= iy and iy + 1 < height and 0 <= ix and ix + 1 < width:
                # Fast path: all four targets inside, no seam or pole to continue over.
                acc[iy, ix, 0] += s00 * r
                acc[iy, ix, 1] += s00 * g
                acc[iy, ix, 2] += s00 * b
                acc[iy, ix, 3] += s00 * z
                acc[iy, ix + 1, 0] += s01 * r
                acc[iy, ix + 1, 1] += s01 * g
                acc[iy, ix + 1, 2] += s01 * b
                acc[iy, ix + 1, 3] += s01 * z
                acc[iy + 1, ix, 0] += s10 * r
                acc[iy + 1, ix, 1] += s10 * g
                acc[iy + 1, ix, 2] += s10 * b
                acc[iy + 1, ix, 3] += s10 * z
                acc[iy + 1, ix + 1, 0] += s11 * r
                acc[iy + 1, ix + 1, 1] += s11 * g
                acc[iy + 1, ix + 1, 2] += s11 * b
                acc[iy + 1, ix + 1, 3] += s11 * z
            else:
                _add(acc, iy, ix, height, width, s00, r, g, b, z)
                _add(acc, iy, ix + 1, height, width, s01, r, g, b, z)
                _add(acc, iy + 1, ix, height, width, s10, r, g, b, z)
                _add(acc, iy + 1, ix + 1, height, width, s11, r, g, b, z)


@njit(cache=True)
def _sample(source, y, x, c, height, width):
    """Bilinear sample of channel c at continuous pixel-index position (y, x), spherical."""
    iy = _floor(y)
    ix = _floor(x)
    ay = y - np.float32(iy)
    ax = x - np.float32(ix)
    r0, c0 = _target(iy, ix, height, width)
    r1, c1 = _target(iy, ix + 1, height, width)
    r2, c2 = _target(iy + 1, ix, height, width)
    r3, c3 = _target(iy + 1, ix + 1, height, width)
    one = np.float32(1.0)
    return (one - ay) * ((one - ax) * source[r0, c0, c] + ax * source[r1, c1, c]) + ay * (
        (one - ax) * source[r2, c2, c] + ax * source[r3, c3, c]
    )


@njit(**_FAST)
def _resolve_rows(
    source, pinned, amplitude, motion, y0, y1, fy, x0, x1, fx, start, stop, acc, out, top, line
):
    """Rows [start, stop): divide the sums by their weights, fill holes, copy pinned
    pixels; clears ``acc`` for the next frame.

    A hole samples the source backwards along its own displacement. ``top`` > 0 means
    integer output in [0, top] (rounded); 0 means float output.
    """
    height, width = amplitude.shape
    for i in range(start, stop):
        blended = False
        for j in range(width):
            a = amplitude[i, j]
            if a == 0.0:
                for c in range(3):
                    out[i, j, c] = pinned[i, j, c]
                continue
            weight = acc[i, j, 3]
            if weight > HOLE_WEIGHT:
                inverse = np.float32(1.0) / weight
                v0 = acc[i, j, 0] * inverse
                v1 = acc[i, j, 1] * inverse
                v2 = acc[i, j, 2] * inverse
            else:
                if not blended:
                    _blend_rows(motion, y0[i], y1[i], fy[i], line)
                    blended = True
                xa, xb, wx = x0[j], x1[j], fx[j]
                dx = (line[0, xa] + wx * (line[0, xb] - line[0, xa])) * a
                dy = (line[1, xa] + wx * (line[1, xb] - line[1, xa])) * a
                sy = np.float32(i) - dy
                sx = np.float32(j) - dx
                v0 = _sample(source, sy, sx, 0, height, width)
                v1 = _sample(source, sy, sx, 1, height, width)
                v2 = _sample(source, sy, sx, 2, height, width)
            if top > 0:
                out[i, j, 0] = math.floor(min(max(v0 + 0.5, 0.0), top))
                out[i, j, 1] = math.floor(min(max(v1 + 0.5, 0.0), top))
                out[i, j, 2] = math.floor(min(max(v2 + 0.5, 0.0), top))
            else:
                out[i, j, 0] = v0
                out[i, j, 1] = v1
                out[i, j, 2] = v2
            acc[i, j, 0] = 0.0
            acc[i, j, 1] = 0.0
            acc[i, j, 2] = 0.0
            acc[i, j, 3] = 0.0


# --------------------------------------------------------------------------- renderer


class SoftmaxSplatter:
    """Renders frames of one equirect image moved by coarse motion fields.

    ``image``: (H, W, 3) float32 (linear, HDR kept) or uint8/uint16 (the output keeps
    the dtype). ``amplitude``: (H, W) float32 ≥ 0, 0 = pinned. ``mean_motion``: coarse
    (h, w) mean displacement magnitude over the loop in pixels, before amplitude (the
    softmax weight). ``max_row_shift``: a bound on |vertical displacement| in pixels over
    the whole loop (sizes the row bands). Reuse one splatter for every frame.
    """

    def __init__(
        self,
        image: np.ndarray,
        amplitude: np.ndarray,
        mean_motion: np.ndarray,
        max_row_shift: float,
        threads: int | None = None,
    ) -> None:
        height, width = image.shape[:2]
        if amplitude.shape != (height, width):
            raise ValueError(f"amplitude {amplitude.shape} does not match image {image.shape}")
        self.original = np.ascontiguousarray(image)
        self.source = np.ascontiguousarray(image, dtype=np.float32)
        self.amplitude = np.ascontiguousarray(amplitude, dtype=np.float32)
        h, w = mean_motion.shape
        self.grid_shape = (h, w)
        self.y0, self.y1, self.fy = grid_tables(height, h, wrap=False)
        self.x0, self.x1, self.fx = grid_tables(width, w, wrap=True)
        magnitude = upsample_grid(mean_motion, height, width) * self.amplitude
        peak = float(magnitude.max())
        scale = SOFTMAX_BETA / peak if peak > 0 else 0.0
        self.zweight = np.ascontiguousarray(np.exp(magnitude * np.float32(scale)), dtype=np.float32)
        # Colour premultiplied by its softmax weight, and the weight: one 16-byte read.
        self.zsource = np.ascontiguousarray(
            np.concatenate([self.source * self.zweight[..., None], self.zweight[..., None]], axis=2)
        )
        self.top = float(np.iinfo(image.dtype).max) if image.dtype.kind in "iu" else 0.0
        # Integer frames are resolved into float32 (exact for 8- and 16-bit values, so
        # pinned pixels stay bit-identical) and cast after: one compiled kernel for all.
        self._resolved = None if self.top == 0 else np.empty((height, width, 3), np.float32)
        self.acc = np.zeros((height, width, 4), dtype=np.float32)
        self.edges = row_bands(height, max_row_shift, ROW_BANDS)
        self.threads = max(1, threads or default_threads())
        self._lines = [np.empty((2, w), np.float32) for _ in range(len(self.edges) - 1)]

    def _run(self, work, items: list) -> None:
        if self.threads == 1 or len(items) == 1:
            for item in items:
                work(item)
        else:
            # list() waits for every band and re-raises the first error.
            list(_pool(self.threads).map(work, items))

    def render(self, motion: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One frame moved by ``motion`` (2, h, w) float32 in pixels (d_col, d_row)."""
        if motion.shape != (2, *self.grid_shape) or motion.dtype != np.float32:
            raise ValueError(
                f"motion must be float32 {(2, *self.grid_shape)}, got {motion.dtype} {motion.shape}"
            )
        if out is None:
            out = np.empty_like(self.original)
        tables = (self.y0, self.y1, self.fy, self.x0, self.x1, self.fx)
        target = out if self._resolved is None else self._resolved
        bands = list(zip(self.edges[:-1], self.edges[1:], self._lines, strict=True))

        def splat(band):
            start, stop, line = band
            _splat_rows(self.zsource, self.amplitude, motion, *tables, start, stop, self.acc, line)

        def resolve(band):
            start, stop, line = band
            _resolve_rows(
                self.source, self.source, self.amplitude, motion, *tables,
                start, stop, self.acc, target, self.top, line,
            )  # fmt: skip

        # Even bands, then odd bands: same-phase bands never share a target row.
        self._run(splat, bands[0::2])
        self._run(splat, bands[1::2])
        self._run(resolve, bands)
        if self._resolved is not None:
            np.copyto(out, self._resolved, casting="unsafe")
        return out


def default_threads() -> int:
    """Cores this process may use (``PANOLOOP_THREADS`` overrides)."""
    override = os.environ.get("PANOLOOP_THREADS", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """One shared pool per thread count (the kernels release the GIL while they run)."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="panoloop-splat")
    return _POOLS[threads]


def row_bands(height: int, max_row_shift: float, wanted: int) -> np.ndarray:
    """Band edges (rows) for the two-phase parallel splat.

    A source row's four targets lie within ``ceil(max_row_shift) + 1`` rows of it, so
    bands of at least twice that (+ margin) never share a target with the band two
    away; over a pole the targets turn back into the same band. One band if motion is
    too large for two.
    """
    reach = int(math.ceil(max_row_shift)) + 2
    minimum = 2 * reach
    count = max(1, min(wanted, height // max(minimum, 1)))
    edges = np.linspace(0, height, count + 1).round().astype(np.int64)
    if count > 1 and np.min(np.diff(edges)) < minimum:
        count = max(1, count - 1)
        edges = np.linspace(0, height, count + 1).round().astype(np.int64)
    return edges
