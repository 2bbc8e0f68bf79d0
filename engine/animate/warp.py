"""Sharp frames: invert the forward motion, warp backwards with a cubic kernel, flow one way.

The motion texture says where each *source* pixel goes: ``p → p + a(p)·D(p)`` (``a`` the
full-resolution amplitude, ``D`` the coarse displacement). Forward splatting of colours
with a bilinear footprint blurs every frame twice (spread, then normalise): half the
Laplacian energy of the moving pixels is lost. Here the motion is inverted instead and
each *output* pixel ``q`` fetches its colour once, with a sharp kernel:

1. **Inversion** of ``p ↦ p + a·D(p)``: the fixed point of ``p = q − a(q)·D(p)``, found
   in one Newton step (the coarse field is bilinear, so locally linear: a 2×2 solve with
   its Jacobian). The amplitude is taken at ``q``: a black (still) source pixel next to
   a moving one is then stretched, as forward splatting's hole rule did, instead of
   being sampled as still. Where ``det(I + a·J)`` is small the motion folds (two
   sources land on ``q``) or tears, and ``q`` samples backwards along its own
   displacement, softmax splatting's hole rule. The procedural prior's motion at
   strength 1 stays just clear of that (smallest det(I + J) over the loop 0.22–0.30 on
   the bundled forest, sunset and city, where ripple compresses most); at higher
   strengths the most compressed ripple pixels take the hole rule instead.
2. **Sampling** with a cubic B-spline on prefiltered coefficients (the interpolating
   spline: exact at the pixels and near-ideal between them, where bilinear and Keys'
   bicubic blur; see the README's measurements), on the panorama padded over the seam
   and the poles (:func:`engine.projection.pad_equirect`); sample positions beyond the
   pad continue over the poles (half a revolution) and wrap in longitude first, so there
   is no seam.
   The cubic samples only the image's displayable part, up to a knee (:func:`hdr_knee`:
   at least 1, else a few times the darkest level nearby); the HDR excess above it (a
   lamp, the sun's disc) is sampled bilinearly and added, since the interpolating
   spline's ringing off a 2000:1 step showed as dark and bright lines several pixels
   away. The cubic's overshoot is limited to a factor :data:`OVERSHOOT` beyond the
   range of the 3×3 source pixels around the sample, and values stay ≥ 0.
   A sample between pixels still loses detail (half-way the finest detail cancels), so
   its difference from a smooth base is amplified by a gain that depends on its
   distance from the pixel grid, measured per tile of the image on the tile's own
   moving pixels and interpolated between tiles (:func:`detail_gains`: smooth sky and
   fine leaves lose different shares), never carrying it beyond the 3×3 range. The
   gains are then checked on a few real frames of the loop and raised per tile where
   a frame kept less detail than the source (:meth:`BackwardWarper.calibrate`).
3. **One-way flow** (a volume's ``flow``, radians per second): the flow-map technique of
   real-time water shaders. Two phases of the texture are advected along the flow,
   offset by half a period, and cross-faded with triangle weights; each phase jumps
   back while its weight is 0. Each pixel's phase is offset by a smooth noise, and the
   two phases are blended *variance-preserving*: the detail around the smooth base is
   mixed by ``w₀, w₁`` and scaled so that the mix keeps the source's Laplacian energy,
   counting what the plainly mixed base loses too (:func:`blend_model`: each band keeps
   w₀² + w₁² + 2w₀w₁ρ(d), ρ its correlation with itself at the phases' distance), so
   the image's detail energy does not pulse as a plain cross-fade does. The period
   divides the loop, so the loop is exact.
4. Pixels of amplitude 0 are copied from the input bit for bit.

Frames are deterministic: every kernel writes only its own rows, whatever the threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
from numba import njit

from ..projection import pad_equirect
from .priors import spherical_noise
from .splat import _FAST, _floor, _pool, default_threads, grid_tables, upsample_grid

#: det(I + a·J) below this: the motion folds (two sources land here) or tears.
FOLD_DETERMINANT = 0.2
#: Rows/columns of padding around the source: the cubic B-spline reads 2 beyond the sample.
WARP_PAD = 4
#: Linear-light values above the knee are HDR excess, moved bilinearly (module doc, 2.):
#: the knee is at least this, else this many times the darkest level nearby.
HDR_KNEE = 1.0
RING_RATIO = 4.0
#: How far the cubic may leave its 3×3 neighbours' range: down to low/OVERSHOOT, up to
#: high·OVERSHOOT (a plain [low, high] clamp cost a fifth of the detail, see README).
OVERSHOOT = 6.0
#: One-way flow: the period (seconds) aimed at; the loop holds a whole number of them.
FLOW_PERIOD = 2.0
#: σ (pixels) of the smooth base: a sample's detail is its difference from it (the
#: sharpening gives detail back; the variance-preserving blend mixes it).
DETAIL_SIGMA = 1.0
#: Detail gain table: steps per axis from on-a-pixel to half-way, and the largest gain.
GAIN_STEPS = 2
MAX_GAIN = 2.0
#: Largest normalisation of the flow blend's detail (when the base loses much).
MAX_BLEND_GAIN = 2.0
#: Probe tiles (pixels a side, most tiles) the image's gains are measured on.
PROBE_TILE = 24
PROBE_TILES = 96
#: Per-tile gains: tiles (pixels a side), each probed on one window (pixels a side) of
#: its four quarters' corners; fewer moving pixels than this there: the image's gains.
GAIN_TILE = 64
GAIN_WINDOW = 32
MIN_TILE_MOVING = 96
#: Closed-loop check (:meth:`BackwardWarper.calibrate`): a tile whose worst probe frame
#: kept a share r < 1 of the source's detail has its gains multiplied by r^-power.
CALIBRATION_POWER = 1.0
#: The pixels it checks: amplitude at least this (really moving), 2 pixels inside.
CALIBRATION_AMPLITUDE = 0.5
#: Gains tried per tile (the match is interpolated between them).
TRIAL_GAINS = (1.0, 4 / 3, 5 / 3, 2.0)
#: Cells (pixels a side) of the gain field the tiles' tables are interpolated into.
GAIN_CELL = 8
#: The display proxy the gains are measured in: (Y/(Y + grey))^(1/2.2), a tone curve that
#: rolls HDR highlights off as AgX does, so an HDR edge counts as the preview shows it.
PROXY_GREY = 0.18
#: Distances (pixels) at which the detail's correlation with itself is measured.
CORRELATION_REACH = 12
#: Width of the coarse per-pixel phase-offset noise (fraction of the grid width).
PHASE_NOISE_SIGMA = 1 / 16
#: Row bands the map and finishing kernels are split into (fixed: deterministic).
BANDS = 16


def flow_periods(seconds: float, period: float = FLOW_PERIOD) -> int:
    """Whole flow-map periods in a loop of ``seconds`` (≥ 1), each about ``period`` s."""
    return max(1, int(math.floor(seconds / period + 0.5)))


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def _bilinear_with_gradient(field, c, ya, yb, xa, xb, wx, wy):
    """Bilinear ``field[c]`` between coarse rows ya, yb and columns xa, xb, with its
    derivatives along columns and rows (per coarse cell)."""
    ta = field[c, ya, xa]
    tb = field[c, ya, xb]
    ba = field[c, yb, xa]
    bb = field[c, yb, xb]
    top = ta + wx * (tb - ta)
    bottom = ba + wx * (bb - ba)
    value = top + wy * (bottom - top)
    along = (tb - ta) + wy * ((bb - ba) - (tb - ta))
    return value, along, bottom - top


@njit(cache=True)
def _wrap(x, y, width, height):
    """A continuous (column, row) (pixel centres at integers) moved over a pole (half a
    revolution) and wrapped into [0, width)."""
    if y < -0.5:
        y = np.float32(-1.0) - y
        x += np.float32(width // 2)
    elif y > height - 0.5:
        y = np.float32(2 * height - 1) - y
        x += np.float32(width // 2)
    y = min(max(y, np.float32(-0.5)), np.float32(height - 0.5))
    while x < 0.0:
        x += np.float32(width)
    while x >= width:
        x -= np.float32(width)
    return x, y


@njit(**_FAST)
def _map_rows(
    amplitude, motion, flow, x0, x1, fx, y0, y1, fy, base, period, alikeness,
    slots, start, stop, pad, map_x, map_y, flow_maps, flow_weight, flow_norm,
):  # fmt: skip
    """Rows [start, stop): the backward sample position of every pixel (padded coordinates).

    The coarse motion is bilinear, so around ``q`` it is ``D(q) + J·(p − q)`` with ``J`` its
    Jacobian; ``p = q − a·D(p)`` is then one 2×2 solve (Newton's step of the fixed-point
    inversion, exact for a locally linear field). Where ``det(I + a·J)`` is small the
    motion folds or tears: ``q`` samples backwards along its own displacement.

    ``flow`` holds the coarse velocity (pixels/s, components 0–1) and the phase-offset
    noise (component 2). Flow pixels (``slots`` ≥ 0) get their two phases' positions in
    ``flow_maps[0..3, slot]`` and phase 0's weight in ``flow_weight``; ``map_x/map_y``
    then hold phase 0 as well.
    """
    height, width = amplitude.shape
    gh, gw = motion.shape[1], motion.shape[2]
    sx = np.float32(gw / width)
    sy = np.float32(gh / height)
    half = np.float32(0.5)
    one = np.float32(1.0)
    for i in range(start, stop):
        ya, yb, wy = y0[i], y1[i], fy[i]
        # Clamped at the poles: the field is flat in latitude there.
        ky = sy if ya != yb else np.float32(0.0)
        for j in range(width):
            a = amplitude[i, j]
            if a == 0.0:
                map_x[i, j] = np.float32(j + pad)
                map_y[i, j] = np.float32(i + pad)
                continue
            xa, xb, wx = x0[j], x1[j], fx[j]
            dx, jxx, jxy = _bilinear_with_gradient(motion, 0, ya, yb, xa, xb, wx, wy)
            dy, jyx, jyy = _bilinear_with_gradient(motion, 1, ya, yb, xa, xb, wx, wy)
            # (I + a·J)(p − q) = −a·D(q)
            m00 = one + a * jxx * sx
            m01 = a * jxy * ky
            m10 = a * jyx * sx
            m11 = one + a * jyy * ky
            det = m00 * m11 - m01 * m10
            rx = -a * dx
            ry = -a * dy
            if det > FOLD_DETERMINANT:
                ox = (m11 * rx - m01 * ry) / det
                oy = (m00 * ry - m10 * rx) / det
            else:
                ox, oy = rx, ry  # folds or tears: the hole rule
            px = np.float32(j) + ox
            py = np.float32(i) + oy
            slot = slots[i, j]
            if slot < 0:
                wxp, wyp = _wrap(px, py, width, height)
                map_x[i, j] = wxp + pad
                map_y[i, j] = wyp + pad
                continue
            # One-way flow: two phases half a period apart, offset per pixel by noise.
            vx = np.float32(0.0)
            vy = np.float32(0.0)
            ph = np.float32(0.0)
            for c in range(3):
                top = flow[c, ya, xa] + wx * (flow[c, ya, xb] - flow[c, ya, xa])
                bottom = flow[c, yb, xa] + wx * (flow[c, yb, xb] - flow[c, yb, xa])
                value = top + wy * (bottom - top)
                if c == 0:
                    vx = value * a
                elif c == 1:
                    vy = value * a
                else:
                    ph = value
            p0 = base + ph
            p0 = p0 - np.float32(math.floor(p0))
            p1 = p0 + half
            if p1 >= one:
                p1 -= one
            for k in range(2):
                pk = p0 if k == 0 else p1
                # Content moves with the flow: at phase pk it shows what was upstream.
                fx_off = vx * (pk - half) * period
                fy_off = vy * (pk - half) * period
                wxp, wyp = _wrap(px - fx_off, py - fy_off, width, height)
                flow_maps[2 * k, slot] = wxp + pad
                flow_maps[2 * k + 1, slot] = wyp + pad
            w0 = one - abs(np.float32(2.0) * p0 - one)
            w1 = one - w0
            # The phases are |v|·period/2 apart. Mixing them keeps the energy of what is
            # alike at that distance and loses the rest: the base (share s of the detail
            # energy) is mixed plainly, its loss made up by the detail's normalisation.
            gap = math.sqrt(vx * vx + vy * vy) * half * period
            reach = alikeness.shape[1] - 1
            step = min(gap, np.float32(reach))
            at = int(step)
            nxt = min(at + 1, reach)
            frac = step - np.float32(at)
            alike_base = alikeness[0, at] + frac * (alikeness[0, nxt] - alikeness[0, at])
            alike_detail = alikeness[1, at] + frac * (alikeness[1, nxt] - alikeness[1, at])
            share = alikeness[2, 0]
            cross = np.float32(2.0) * w0 * w1
            kept_base = w0 * w0 + w1 * w1 + cross * alike_base
            kept_detail = w0 * w0 + w1 * w1 + cross * alike_detail
            wanted = max(one - share * kept_base, np.float32(0.0))
            norm = math.sqrt(wanted / max((one - share) * kept_detail, np.float32(1e-6)))
            flow_weight[slot] = w0
            flow_norm[slot] = min(max(np.float32(norm), one), np.float32(MAX_BLEND_GAIN))
            map_x[i, j] = flow_maps[0, slot]
            map_y[i, j] = flow_maps[1, slot]


@njit(**_FAST)
def _bspline_weights(f):
    """Cubic B-spline weights of the taps at −1, 0, +1, +2 for a fraction f in [0, 1)."""
    one = np.float32(1.0)
    g = one - f
    sixth = np.float32(1.0 / 6.0)
    w0 = g * g * g * sixth
    w3 = f * f * f * sixth
    w1 = np.float32(2.0 / 3.0) - np.float32(0.5) * f * f * (np.float32(2.0) - f)
    w2 = one - w0 - w1 - w3
    return w0, w1, w2, w3


@njit(**_FAST)
def _sample(coef, x, y, out3):
    """Cubic B-spline interpolation of the prefiltered ``coef`` at padded (x, y) (pixel
    centres at integers): exact at the pixels, near-ideal between them."""
    ix = _floor(x)
    iy = _floor(y)
    ax0, ax1, ax2, ax3 = _bspline_weights(x - np.float32(ix))
    ay0, ay1, ay2, ay3 = _bspline_weights(y - np.float32(iy))
    r0 = np.float32(0.0)
    g0 = np.float32(0.0)
    b0 = np.float32(0.0)
    for r in range(4):
        wr = ay0
        if r == 1:
            wr = ay1
        elif r == 2:
            wr = ay2
        elif r == 3:
            wr = ay3
        yy = iy - 1 + r
        x0 = ix - 1
        # Horizontal taps of this row, all three channels (contiguous in memory).
        rr = (
            ax0 * coef[yy, x0, 0]
            + ax1 * coef[yy, x0 + 1, 0]
            + ax2 * coef[yy, x0 + 2, 0]
            + ax3 * coef[yy, x0 + 3, 0]
        )
        gg = (
            ax0 * coef[yy, x0, 1]
            + ax1 * coef[yy, x0 + 1, 1]
            + ax2 * coef[yy, x0 + 2, 1]
            + ax3 * coef[yy, x0 + 3, 1]
        )
        bb = (
            ax0 * coef[yy, x0, 2]
            + ax1 * coef[yy, x0 + 1, 2]
            + ax2 * coef[yy, x0 + 2, 2]
            + ax3 * coef[yy, x0 + 3, 2]
        )
        r0 += wr * rr
        g0 += wr * gg
        b0 += wr * bb
    out3[0] = r0
    out3[1] = g0
    out3[2] = b0


@njit(inline="always", **_FAST)
def _bilinear3(image, x, y, out3):
    """Bilinear ``image`` (padded, (H, W, 3)) at padded (x, y)."""
    ix = _floor(x)
    iy = _floor(y)
    fx = x - np.float32(ix)
    fy = y - np.float32(iy)
    for c in range(3):
        top = image[iy, ix, c] + fx * (image[iy, ix + 1, c] - image[iy, ix, c])
        bottom = image[iy + 1, ix, c] + fx * (image[iy + 1, ix + 1, c] - image[iy + 1, ix, c])
        out3[c] = top + fy * (bottom - top)


@njit(inline="always", **_FAST)
def _gain(gains, x, y):
    """The detail gain at a padded sample position: the table of its cell of the gain
    field (:func:`detail_gains`, cells of :data:`GAIN_CELL` pixels) over both axes'
    distance from the pixel grid (0 = on a pixel, 1 = half-way), interpolated bilinearly."""
    n = gains.shape[2] - 1
    one = np.float32(1.0)
    two = np.float32(2.0)
    fx = _floor(x)
    fy = _floor(y)
    row = min(max((fy - WARP_PAD) // GAIN_CELL, 0), gains.shape[0] - 1)
    col = min(max((fx - WARP_PAD) // GAIN_CELL, 0), gains.shape[1] - 1)
    table = gains[row, col]
    ux = one - abs(one - two * (x - np.float32(fx)))
    uy = one - abs(one - two * (y - np.float32(fy)))
    gx = ux * np.float32(n)
    gy = uy * np.float32(n)
    ix = min(_floor(gx), n - 1)
    iy = min(_floor(gy), n - 1)
    ax = gx - np.float32(ix)
    ay = gy - np.float32(iy)
    top = table[iy, ix] + ax * (table[iy, ix + 1] - table[iy, ix])
    bottom = table[iy + 1, ix] + ax * (table[iy + 1, ix + 1] - table[iy + 1, ix])
    return top + ay * (bottom - top)


@njit(inline="always", **_FAST)
def _sharp_sample(coef, base, near_low, near_high, gains, x, y, out3, base3):
    """One moving sample: the B-spline value (its overshoot limited to :data:`OVERSHOOT`
    times the 3×3 neighbours' range), with the detail it lost between pixels given back
    (``(g − 1)·(value − base)``, ``g`` from :func:`_gain`), the gain never carrying it
    beyond the 3×3 range. ``base3`` receives the smooth base at the same position."""
    _sample(coef, x, y, out3)
    _bilinear3(base, x, y, base3)
    g = _gain(gains, x, y) - np.float32(1.0)
    half = np.float32(0.5)
    r = _floor(y + half)
    k = _floor(x + half)
    keep = np.float32(1.0 - 1.0 / OVERSHOOT)
    grow = np.float32(OVERSHOOT - 1.0)
    for c in range(3):
        lo = near_low[r, k, c]
        hi = near_high[r, k, c]
        v = min(max(out3[c], lo - keep * abs(lo)), hi + grow * abs(hi))
        w = v + g * (v - base3[c])
        out3[c] = min(max(w, min(v, lo)), max(v, hi))


@njit(inline="always", **_FAST)
def _on_grid(x, y):
    """Whether a padded sample position is exactly on a pixel (not moved: copied)."""
    return x == np.float32(np.int64(x)) and y == np.float32(np.int64(y))


@njit(inline="always", **_FAST)
def _phases(flow_maps, flow_weight, slot):
    """A flow pixel's two phases: weights (w0, w1) and padded positions (x0, y0, x1, y1)."""
    w0 = flow_weight[slot]
    return (
        w0, np.float32(1.0) - w0,
        flow_maps[0, slot], flow_maps[1, slot], flow_maps[2, slot], flow_maps[3, slot],
    )  # fmt: skip


@njit(**_FAST)
def _finish_rows(
    original, amplitude, padded, coef, base, near_low, near_high, gains, map_x, map_y,
    slots, flow_maps, flow_weight, flow_norm, start, stop, top, out,
):  # fmt: skip
    """Rows [start, stop): sample every moving pixel (sharpened B-spline), blend the flow
    pixels' two phases (variance-preserving around the smooth base), copy still pixels
    exactly, round integer frames."""
    height, width = amplitude.shape
    c0 = np.empty(3, np.float32)
    c1 = np.empty(3, np.float32)
    b0 = np.empty(3, np.float32)
    b1 = np.empty(3, np.float32)
    half = np.float32(0.5)
    for i in range(start, stop):
        for j in range(width):
            if amplitude[i, j] == 0.0:
                for c in range(3):
                    out[i, j, c] = original[i, j, c]
                continue
            slot = slots[i, j]
            if slot < 0:
                x = map_x[i, j]
                y = map_y[i, j]
                if _on_grid(x, y):
                    # Not moved (strength 0, or motion that vanishes here): exact copy.
                    for c in range(3):
                        out[i, j, c] = padded[np.int64(y), np.int64(x), c]
                    continue
                _sharp_sample(coef, base, near_low, near_high, gains, x, y, c0, b0)
                for c in range(3):
                    out[i, j, c] = _store(c0[c], top)
                continue
            w0, w1, x0, y0, x1, y1 = _phases(flow_maps, flow_weight, slot)
            norm = flow_norm[slot]
            _sharp_sample(coef, base, near_low, near_high, gains, x0, y0, c0, b0)
            _sharp_sample(coef, base, near_low, near_high, gains, x1, y1, c1, b1)
            r0 = _floor(y0 + half)
            k0 = _floor(x0 + half)
            r1 = _floor(y1 + half)
            k1 = _floor(x1 + half)
            keep = np.float32(1.0 - 1.0 / OVERSHOOT)
            grow = np.float32(OVERSHOOT - 1.0)
            for c in range(3):
                lo = min(near_low[r0, k0, c], near_low[r1, k1, c])
                hi = max(near_high[r0, k0, c], near_high[r1, k1, c])
                level = w0 * b0[c] + w1 * b1[c]
                v = level + (w0 * (c0[c] - b0[c]) + w1 * (c1[c] - b1[c])) * norm
                v = min(max(v, lo - keep * abs(lo)), hi + grow * abs(hi))
                out[i, j, c] = _store(v, top)


@njit(**_FAST)
def _add_excess_rows(
    amplitude, excess, near_low, near_high, near_light, map_x, map_y, slots, flow_maps, flow_weight,
    start, stop, out,
):  # fmt: skip
    """Rows [start, stop) of a linear-light frame, at every moving sample whose nearest
    source pixel is within 4 pixels of HDR excess (``near_light``): keep the cubic's
    displayable value within the range of the 3×3 source pixels round that one
    (``near_low``/``near_high``: no ringing off the knee's step, which showed as a dark
    line along a lamp's edge and black specks in foliage against a bright sky), then add
    the excess above the knee (:func:`hdr_knee`), sampled bilinearly (it cannot ring).
    Flow pixels add each phase's excess by its weight and keep their blend's own bound
    (a tighter one there cut the cross-fade's restored detail mid-fade: the drift pulsed).
    Pixels copied exactly (not moved) already hold it."""
    height, width = amplitude.shape
    e0 = np.empty(3, np.float32)
    e1 = np.empty(3, np.float32)
    half = np.float32(0.5)
    for i in range(start, stop):
        for j in range(width):
            if amplitude[i, j] == 0.0:
                continue
            slot = slots[i, j]
            if slot < 0:
                x = map_x[i, j]
                y = map_y[i, j]
                r = _floor(y + half)
                k = _floor(x + half)
                if _on_grid(x, y) or not near_light[r, k]:
                    continue
                _bilinear3(excess, x, y, e0)
                for c in range(3):
                    kept = min(max(out[i, j, c], near_low[r, k, c]), near_high[r, k, c])
                    out[i, j, c] = kept + e0[c]
                continue
            w0, w1, x0, y0, x1, y1 = _phases(flow_maps, flow_weight, slot)
            lit0 = near_light[_floor(y0 + half), _floor(x0 + half)]
            lit1 = near_light[_floor(y1 + half), _floor(x1 + half)]
            if lit0 or lit1:
                _bilinear3(excess, x0, y0, e0)
                _bilinear3(excess, x1, y1, e1)
                for c in range(3):
                    out[i, j, c] += w0 * e0[c] + w1 * e1[c]


@njit(cache=True)
def _store(v, top):
    """A float sample as stored: rounded into [0, top] for integer frames, else as is."""
    if top > 0:
        return math.floor(min(max(v + 0.5, 0.0), top))
    return v


# --------------------------------------------------------------------------- renderer


class BackwardWarper:
    """Renders frames of one equirect image moved by coarse motion fields (module doc).

    ``image``: (H, W, 3) float32 (linear, HDR kept) or uint8/uint16 (the output keeps the
    dtype). ``amplitude``: (H, W) float32 ≥ 0, 0 = pinned. ``flow``: optional coarse
    one-way velocity (2, h, w) in pixels per second (before amplitude); ``seconds``: the
    loop's length (the flow period divides it). Reuse one warper for every frame.
    """

    def __init__(
        self,
        image: np.ndarray,
        amplitude: np.ndarray,
        grid_shape: tuple[int, int],
        flow: np.ndarray | None = None,
        seconds: float = 4.0,
        threads: int | None = None,
    ) -> None:
        height, width = image.shape[:2]
        if amplitude.shape != (height, width):
            raise ValueError(f"amplitude {amplitude.shape} does not match image {image.shape}")
        self.original = np.ascontiguousarray(image)
        self.source = np.ascontiguousarray(image, dtype=np.float32)
        self.amplitude = np.ascontiguousarray(amplitude, dtype=np.float32)
        self.grid_shape = grid_shape
        self.top = float(np.iinfo(image.dtype).max) if image.dtype.kind in "iu" else 0.0
        self.threads = max(1, threads or default_threads())
        self.padded = pad_equirect(self.source, WARP_PAD)
        # Pixels that do not move are copied from here (the input's own values).
        exact = self.original.dtype == np.float32 or self.original.dtype.kind in "iu"
        self.padded_original = self.padded if exact else pad_equirect(self.original, WARP_PAD)
        # The cubic samples the displayable part (up to the knee, :func:`hdr_knee`); the
        # HDR excess above it (a lamp, the sun) moves bilinearly, added by its own pass
        # (:func:`_add_excess_rows`), since a cubic's ringing off a 2000:1 step shows as
        # dark and bright lines pixels away.
        knee = hdr_knee(self.padded, self.top)[WARP_PAD:-WARP_PAD, WARP_PAD:-WARP_PAD]
        self.displayable = np.minimum(self.source, knee[..., None])
        padded_displayable = pad_equirect(self.displayable, WARP_PAD)
        self.excess = self.padded - padded_displayable
        # Within 4 pixels of any excess: the cubic's taps and its prefilter's decaying
        # tail still ring off the knee's step there (measured: a 0.1 wall went to 0.092
        # 3-4 px from a lamp with 2 px).
        self.near_light = cv2.dilate(
            (self.excess.max(axis=2) > 0).astype(np.uint8), np.ones((9, 9), np.uint8)
        )
        self.lit = bool(self.near_light.any())
        kernel = np.ones((3, 3), np.uint8)
        self.coefficients = bspline_coefficients(self.displayable, WARP_PAD)
        # The cubic may overshoot its 3×3 neighbours' range by a factor (its sharpness),
        # never more: no black or blazing rings next to a bright edge.
        self.near_low = cv2.erode(padded_displayable, kernel, borderType=cv2.BORDER_REPLICATE)
        self.near_high = cv2.dilate(padded_displayable, kernel, borderType=cv2.BORDER_REPLICATE)
        # The smooth base whose difference from a sample is the detail (sharpening, blend).
        self.base = smooth_base(self.displayable, WARP_PAD)
        self.tile_tables = detail_gains(
            self.coefficients, self.base, self.near_low, self.near_high, self.amplitude > 0
        )
        # The estimate, kept as it was before :meth:`calibrate` raises ``tile_tables``.
        self.estimated_tables = self.tile_tables
        self.gains = gain_field(self.tile_tables, height, width)
        self.y0, self.y1, self.fy = grid_tables(height, grid_shape[0], wrap=False)
        self.x0, self.x1, self.fx = grid_tables(width, grid_shape[1], wrap=True)
        self.map_x = np.empty((height, width), np.float32)
        self.map_y = np.empty((height, width), np.float32)
        self.periods = flow_periods(seconds)
        self.period = seconds / self.periods
        self._setup_flow(flow, height, width)
        self._resolved = None if self.top == 0 else np.empty((height, width, 3), np.float32)
        edges = np.linspace(0, height, min(BANDS, height) + 1).round().astype(np.int64)
        self.bands = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))

    def _setup_flow(self, flow: np.ndarray | None, height: int, width: int) -> None:
        """Which pixels flow (slot numbers), their phase-offset noise and the local mean."""
        gh, gw = self.grid_shape
        self.slots = np.full((height, width), -1, np.int32)
        self.flow = np.zeros((3, gh, gw), np.float32)
        if flow is not None and np.any(flow != 0):
            self.flow[:2] = flow
            rng = np.random.Generator(np.random.PCG64(0x666C6F77))
            self.flow[2] = spherical_noise(rng, gh, gw, max(PHASE_NOISE_SIGMA * gw, 0.5))
            speed = np.hypot(*(upsample_grid(np.ascontiguousarray(f), height, width) for f in flow))
            flowing = (speed > 0) & (self.amplitude > 0)
            count = int(flowing.sum())
            self.slots[flowing] = np.arange(count, dtype=np.int32)
        else:
            count = 0
        self.flow_count = count
        padded = max(count, 1)
        self.flow_maps = np.full((4, padded), float(WARP_PAD), np.float32)
        self.flow_weight = np.zeros(padded, np.float32)
        self.flow_norm = np.ones(padded, np.float32)
        self.alikeness = np.zeros((3, CORRELATION_REACH + 1), np.float32)
        if count:
            smooth = self.base[WARP_PAD:-WARP_PAD, WARP_PAD:-WARP_PAD]
            self.alikeness = blend_model(self.displayable, smooth, flowing)

    def _run(self, work) -> None:
        if self.threads == 1:
            for band in self.bands:
                work(band)
        else:
            list(_pool(self.threads).map(work, self.bands))

    def calibrate(self, probes: Iterable[tuple[np.ndarray, int]], frames: int) -> np.ndarray:
        """Check the detail gains on real frames of the loop and raise them where a frame
        kept less detail than the source: the closed loop over :func:`tile_gains`'
        estimate, whose static shifts cannot see what the motion's stretch and the
        cubic's limited overshoot next to HDR values (a bright sky behind leaves) take.

        ``probes``: (motion (2, h, w) float32 in pixels, frame index) of the frames to
        render; ``frames``: the loop's length. Per tile of :data:`GAIN_TILE` pixels with
        at least :data:`MIN_TILE_MOVING` pixels that really move
        (:data:`CALIBRATION_AMPLITUDE`), the worst frame's detail energy
        (:func:`tile_energies`, as AgX and as Standard show it) over the source's, ``r``;
        where ``r`` < 1 the tile's
        gains between pixels are multiplied by ``r^-CALIBRATION_POWER``, kept within
        [1, :data:`MAX_GAIN`]. Gains are never lowered. Returns the worst ratios (th, tw),
        NaN where a tile was not checked.
        """
        height, width = self.amplitude.shape
        region = (self.amplitude >= CALIBRATION_AMPLITUDE).astype(np.uint8)
        region = cv2.erode(region, np.ones((5, 5), np.uint8)) > 0
        views = (False, True)
        # Integer frames are display values: their top value stands for 1.
        scale = np.float32(1.0 / self.top if self.top else 1.0)
        source = self.source * scale
        references = [tile_energies(source, region, clipped) for clipped in views]
        counts = references[0][1]
        worst = np.full(counts.shape, np.inf)
        frame = np.empty_like(self.original)
        for motion, t in probes:
            self.render(motion, t, frames, frame)
            shown = frame.astype(np.float32) * scale
            for clipped, (reference, _) in zip(views, references, strict=True):
                energy, _ = tile_energies(shown, region, clipped)
                detailed = (counts >= MIN_TILE_MOVING) & (reference > 0)
                ratio = np.where(detailed, energy / np.where(detailed, reference, 1.0), np.inf)
                worst = np.minimum(worst, ratio)
        worst = np.where(np.isfinite(worst), worst, np.nan)
        short = np.nan_to_num(worst, nan=1.0) < 1.0
        if short.any():
            factor = np.ones(counts.shape, np.float32)
            factor[short] = np.maximum(worst[short], 1e-3) ** -CALIBRATION_POWER
            # On a pixel (table entry 0, 0) a sample is exact: its gain stays.
            raised = np.clip(self.tile_tables * factor[..., None, None], 1.0, MAX_GAIN)
            raised[..., 0, 0] = self.tile_tables[..., 0, 0]
            self.tile_tables = raised.astype(np.float32)
            self.gains[:] = gain_field(self.tile_tables, height, width)
        return worst

    def render(self, motion: np.ndarray, t: int, frames: int, out: np.ndarray | None = None):
        """Frame ``t`` of ``frames``, moved by ``motion`` (2, h, w) float32 in pixels."""
        if motion.shape != (2, *self.grid_shape) or motion.dtype != np.float32:
            wanted = (2, *self.grid_shape)
            raise ValueError(f"motion must be float32 {wanted}, got {motion.dtype} {motion.shape}")
        if out is None:
            out = np.empty_like(self.original)
        # Phase of the flow at this frame: whole periods per loop, so frame T == frame 0.
        base = np.float32(((t % frames) * self.periods % frames) / frames)
        period = np.float32(self.period)

        def maps(band):
            _map_rows(
                self.amplitude, motion, self.flow, self.x0, self.x1, self.fx,
                self.y0, self.y1, self.fy, base, period, self.alikeness, self.slots,
                band[0], band[1], WARP_PAD, self.map_x, self.map_y, self.flow_maps,
                self.flow_weight, self.flow_norm,
            )  # fmt: skip

        self._run(maps)
        target = out if self._resolved is None else self._resolved

        def finish(band):
            _finish_rows(
                self.original if self._resolved is None else self.source, self.amplitude,
                self.padded_original, self.coefficients, self.base, self.near_low,
                self.near_high, self.gains, self.map_x, self.map_y, self.slots,
                self.flow_maps, self.flow_weight, self.flow_norm,
                band[0], band[1], self.top, target,
            )  # fmt: skip
            if self.lit:
                _add_excess_rows(
                    self.amplitude, self.excess, self.near_low, self.near_high, self.near_light,
                    self.map_x, self.map_y, self.slots, self.flow_maps, self.flow_weight,
                    band[0], band[1], target,
                )  # fmt: skip

        self._run(finish)
        if self._resolved is not None:
            np.copyto(out, self._resolved, casting="unsafe")
        return out


def hdr_knee(padded: np.ndarray, top: float) -> np.ndarray:
    """Where the cubic stops, per padded pixel, float32 (H', W'): values above it are HDR
    excess moved bilinearly. For linear light, the larger of :data:`HDR_KNEE` and
    :data:`RING_RATIO` times the darkest mean level within 4 pixels (smoothed), so the
    cubic never sees a step more than a few times its darker side's level (its ringing
    there stays like an ordinary edge's), while HDR texture among bright neighbours
    (clouds of 1–3 in a bright sky, which AgX shows) keeps the sharp kernel. Integer
    frames: their top value (nothing is excess)."""
    if top:
        return np.full(padded.shape[:2], top, np.float32)
    level = np.ascontiguousarray(padded.mean(axis=2, dtype=np.float32))
    darkest = cv2.erode(level, np.ones((9, 9), np.uint8), borderType=cv2.BORDER_REPLICATE)
    darkest = cv2.GaussianBlur(darkest, (0, 0), 2.0, borderType=cv2.BORDER_REPLICATE)
    return np.maximum(np.float32(HDR_KNEE), np.float32(RING_RATIO) * darkest)


def blend_model(source: np.ndarray, base: np.ndarray, region: np.ndarray) -> np.ndarray:
    """What mixing two flow phases keeps, measured on the image (float32 (3, reach + 1)).

    In the display proxy, the Laplacian of the base and of the detail (source − base)
    over ``region``: row 0 and row 1 hold their correlations with themselves shifted by
    0, 1, … pixels (:func:`self_correlation`), row 2 column 0 the base's share of the
    Laplacian energy. Two phases ``d`` pixels apart mixed by ``w₀, w₁`` keep
    ``w₀² + w₁² + 2w₀w₁ρ(d)`` of each band's energy.
    """
    out = np.zeros((3, CORRELATION_REACH + 1), np.float32)
    shown = _proxy(source)
    smooth = _proxy(base)
    lap_base = cv2.Laplacian(smooth, cv2.CV_32F, ksize=1)
    lap_detail = cv2.Laplacian(shown - smooth, cv2.CV_32F, ksize=1)
    energy_base = float(np.mean(lap_base[region] ** 2))
    energy_detail = float(np.mean(lap_detail[region] ** 2))
    if energy_base + energy_detail <= 0:
        return out
    out[0] = self_correlation(lap_base, region)
    out[1] = self_correlation(lap_detail, region)
    out[2, 0] = energy_base / (energy_base + energy_detail)
    return out


def self_correlation(field: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Correlation of ``field`` (H, W) with itself shifted by 0, 1, … pixels (mean of the
    horizontal and vertical shifts, over ``region``), float32, ≥ 0."""
    out = np.zeros(CORRELATION_REACH + 1, np.float32)
    base = field[region]
    energy = float(np.mean(base * base))
    if energy <= 0:
        return out
    out[0] = 1.0
    for d in range(1, CORRELATION_REACH + 1):
        across = np.roll(field, d, axis=1)[region]
        down = np.roll(field, d, axis=0)[region]
        value = 0.5 * (float(np.mean(base * across)) + float(np.mean(base * down))) / energy
        out[d] = max(value, 0.0)
    return out


def bspline_coefficients(image: np.ndarray, pad: int) -> np.ndarray:
    """Cubic B-spline coefficients of an equirect image (H, W, 3) float32, padded by ``pad``
    over the seam and the poles: the interpolating prefilter 6/(z + 4 + 1/z), applied as
    its impulse response √3·(√3 − 2)^|n| (truncated where it falls below 1e-7) along
    rows and columns of the image padded wider first, so the seam and poles are seamless.
    """
    pole = math.sqrt(3.0) - 2.0
    reach = int(math.ceil(math.log(1e-7) / math.log(-pole)))
    taps = np.array([math.sqrt(3.0) * pole ** abs(n) for n in range(-reach, reach + 1)])
    taps = (taps / taps.sum()).astype(np.float32)  # the truncated sum is 1 to 1e-7
    wide = pad_equirect(np.ascontiguousarray(image, dtype=np.float32), pad + reach)
    filtered = cv2.sepFilter2D(wide, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(filtered[reach:-reach, reach:-reach])


def smooth_base(image: np.ndarray, pad: int) -> np.ndarray:
    """The image blurred by :data:`DETAIL_SIGMA` across the seam and over the poles,
    padded by ``pad`` like :func:`~engine.projection.pad_equirect` (float32)."""
    reach = int(math.ceil(3 * DETAIL_SIGMA)) + 1
    wide = pad_equirect(np.ascontiguousarray(image, dtype=np.float32), pad + reach)
    blurred = cv2.GaussianBlur(wide, (0, 0), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(blurred[reach:-reach, reach:-reach])


def tile_energies(
    image: np.ndarray, region: np.ndarray, clipped: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of :data:`GAIN_TILE` pixels of an (H, W, 3) linear image: the Laplacian
    variance of its display proxy (wrapping the seam) over the tile's pixels in
    ``region`` (H, W) bool, float64 (th, tw), and how many there are. The proxy rolls
    HDR off (:data:`PROXY_GREY`, as AgX), or with ``clipped`` clips it at 1 (as
    Blender's Standard view, where a bright sky is flat white)."""
    height, width = region.shape
    shown = _clipped_proxy(image) if clipped else _proxy(image)
    padded = np.concatenate([shown[:, -1:], shown, shown[:, :1]], axis=1)
    lap = cv2.Laplacian(padded, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)[:, 1:-1]
    th, tw = -(-height // GAIN_TILE), -(-width // GAIN_TILE)
    shape = (th * GAIN_TILE, tw * GAIN_TILE)
    weight = np.zeros(shape, np.float64)
    weight[:height, :width] = region
    values = np.zeros(shape, np.float64)
    values[:height, :width] = lap

    def per_tile(a):
        return a.reshape(th, GAIN_TILE, tw, GAIN_TILE).sum(axis=(1, 3))

    counts = per_tile(weight)
    safe = np.maximum(counts, 1.0)
    mean = per_tile(values * weight) / safe
    return per_tile(values * values * weight) / safe - mean * mean, counts


def detail_gains(
    coef: np.ndarray,
    base: np.ndarray,
    near_low: np.ndarray,
    near_high: np.ndarray,
    moving: np.ndarray,
) -> np.ndarray:
    """How much detail to give back between pixels, per tile of :data:`GAIN_TILE` pixels:
    gain tables, float32 (⌈H/GAIN_TILE⌉, ⌈W/GAIN_TILE⌉, GAIN_STEPS + 1, GAIN_STEPS + 1),
    each over both axes' distance from the pixel grid (0 = on a pixel, 1 = half-way);
    :func:`gain_field` spreads them over the image.

    Any interpolator blurs a sample taken between pixels (at half-way the finest detail
    cancels); how much shows depends on the content (fine grass loses half its Laplacian
    energy at a half-pixel shift, HDR leaves against the sky hardly any), and one image
    mixes both. So it is measured per tile on the tile's own moving pixels
    (:func:`tile_gains`); a tile with fewer than :data:`MIN_TILE_MOVING` moving pixels
    takes the image's gains (:func:`image_gains`). ``moving`` is (H, W), the other arrays
    padded by :data:`WARP_PAD`.
    """
    fallback = image_gains(coef, base, near_low, near_high, moving)
    return tile_gains(coef, base, near_low, near_high, moving, fallback)


def gain_field(tables: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-tile gain tables (th, tw, n, n) interpolated bilinearly between tile centres
    (wrapping the seam, flat beyond the first and last tile rows) at the centres of the
    :data:`GAIN_CELL`-pixel cells of an (height, width) image, so no tile edge shows:
    float32 (ch, cw, n, n)."""
    th, tw, n, _ = tables.shape
    cells_y = -(-height // GAIN_CELL)
    cells_x = -(-width // GAIN_CELL)
    # Cell centres in tile units (tile centres at 0.5, 1.5, …).
    cy = ((np.arange(cells_y) + 0.5) * GAIN_CELL / GAIN_TILE).clip(0.5, th - 0.5) - 0.5
    cx = (np.arange(cells_x) + 0.5) * GAIN_CELL / GAIN_TILE - 0.5
    y0 = np.minimum(np.floor(cy).astype(np.int64), th - 1)
    y1 = np.minimum(y0 + 1, th - 1)
    wy = (cy - y0).astype(np.float32)[:, None, None, None]
    x0 = np.floor(cx).astype(np.int64)
    wx = (cx - x0).astype(np.float32)[None, :, None, None]
    x1, x0 = (x0 + 1) % tw, x0 % tw
    top = tables[y0][:, x0] + wx * (tables[y0][:, x1] - tables[y0][:, x0])
    bottom = tables[y1][:, x0] + wx * (tables[y1][:, x1] - tables[y1][:, x0])
    return np.ascontiguousarray(top + wy * (bottom - top), dtype=np.float32)


def image_gains(
    coef: np.ndarray,
    base: np.ndarray,
    near_low: np.ndarray,
    near_high: np.ndarray,
    moving: np.ndarray,
) -> np.ndarray:
    """One gain table for the whole image, float32 (GAIN_STEPS + 1, GAIN_STEPS + 1):
    probe tiles of the moving region are shifted by each offset with the renderer's own
    sampling (:func:`_sharp_sample`'s arithmetic), and the gain on the detail that gives
    back the source's Laplacian energy, in a display proxy (:data:`PROXY_GREY`), is found
    by bisection. The fallback of tiles with too few moving pixels."""
    steps = GAIN_STEPS
    gains = np.ones((steps + 1, steps + 1), np.float32)
    tiles = _probe_tiles(moving)
    if not tiles:
        return gains
    size = PROBE_TILE
    pick = [np.s_[i - 1 : i + size + 2, j - 1 : j + size + 2] for i, j in tiles]
    stack = np.stack([coef[k] for k in pick])
    base_stack = np.stack([base[k] for k in pick])
    low_stack = np.stack([near_low[k] for k in pick])
    high_stack = np.stack([near_high[k] for k in pick])
    reference = _proxy_energy(_shifted(stack, 0.0, 0.0))
    if reference <= 0:
        return gains
    for iy in range(steps + 1):
        for ix in range(steps + 1):
            if iy == 0 and ix == 0:
                continue
            fy, fx = 0.5 * iy / steps, 0.5 * ix / steps
            gains[iy, ix] = _solve_gain(
                _shifted(stack, fy, fx), _bilinear_shift(base_stack, fy, fx),
                _nearest(low_stack, fy, fx), _nearest(high_stack, fy, fx), reference,
            )  # fmt: skip
    return gains


def tile_gains(
    coef: np.ndarray,
    base: np.ndarray,
    near_low: np.ndarray,
    near_high: np.ndarray,
    moving: np.ndarray,
    fallback: np.ndarray,
) -> np.ndarray:
    """A gain table per tile of :data:`GAIN_TILE` pixels, float32 (th, tw, n, n).

    Each tile is probed on the window of :data:`GAIN_WINDOW` pixels (of four, one per
    quarter) holding most moving pixels; the energies (Laplacian variance in the display
    proxy over the window's moving pixels) of its samples at each offset, sharpened by
    each of :data:`TRIAL_GAINS`, are compared with the source's there and the gain that
    matches is interpolated between the trials (the energy grows with the gain). Tiles
    with fewer than :data:`MIN_TILE_MOVING` moving pixels in their window keep
    ``fallback`` (n, n).
    """
    height, width = moving.shape
    steps = fallback.shape[0] - 1
    th, tw = -(-height // GAIN_TILE), -(-width // GAIN_TILE)
    tables = np.broadcast_to(fallback, (th, tw, steps + 1, steps + 1)).copy()
    window = min(GAIN_WINDOW, height, width)
    corners = []
    for ty in range(th):
        for tx in range(tw):
            best = None
            for qy in (0, 1):
                for qx in (0, 1):
                    i = min(ty * GAIN_TILE + qy * (GAIN_TILE - window), height - window)
                    j = min(tx * GAIN_TILE + qx * (GAIN_TILE - window), width - window)
                    count = int(moving[i + 1 : i + window - 1, j + 1 : j + window - 1].sum())
                    if best is None or count > best[0]:
                        best = (count, i, j)
            if best[0] >= MIN_TILE_MOVING:
                corners.append((ty, tx, best[1], best[2]))
    if not corners:
        return tables
    # Windows in padded coordinates, one pixel of border for the B-spline's taps.
    reach = window + 2
    pick = [np.s_[i + WARP_PAD - 1 : i + WARP_PAD + reach, j + WARP_PAD - 1 : j + WARP_PAD + reach]
            for _, _, i, j in corners]  # fmt: skip
    stack = np.stack([coef[k] for k in pick])
    base_stack = np.stack([base[k] for k in pick])
    low_stack = np.stack([near_low[k] for k in pick])
    high_stack = np.stack([near_high[k] for k in pick])
    mask = np.stack(
        [moving[i + 1 : i + window - 1, j + 1 : j + window - 1] for _, _, i, j in corners]
    )
    # The horizontal B-spline pass of each column offset, shared by the row offsets.
    across = [_shifted_across(stack, 0.5 * ix / steps) for ix in range(steps + 1)]
    reference = _masked_energy(_shifted_down(across[0], 0.0), mask)
    trials = np.asarray(TRIAL_GAINS, np.float32)
    rows = np.array([c[0] for c in corners])
    cols = np.array([c[1] for c in corners])
    for iy in range(steps + 1):
        for ix in range(steps + 1):
            if iy == 0 and ix == 0:
                continue
            fy, fx = 0.5 * iy / steps, 0.5 * ix / steps
            sample = _shifted_down(across[ix], fy)
            smooth = _bilinear_shift(base_stack, fy, fx)
            low, high = _nearest(low_stack, fy, fx), _nearest(high_stack, fy, fx)
            value, floor, ceiling = _limited(sample, low, high)
            detail = value - smooth
            energy = np.empty((len(trials), len(corners)))
            for k, g in enumerate(trials):
                sharpened = value + np.float32(g - 1.0) * detail
                np.minimum(np.maximum(sharpened, floor, out=sharpened), ceiling, out=sharpened)
                energy[k] = _masked_energy(sharpened, mask)
            tables[rows, cols, iy, ix] = _crossing(trials, energy, reference)
    return tables


def _crossing(trials: np.ndarray, energy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column k of ``energy`` (len(trials), K), increasing with the trial gains: the
    gain where it reaches ``reference[k]`` (linear between trials), clamped to the
    trials' range; a tile without detail (reference 0) keeps the smallest."""
    above = energy >= reference[None]
    # First trial at or above the reference (len(trials) when none is).
    first = np.where(above.any(axis=0), above.argmax(axis=0), len(trials))
    out = np.where(first == 0, trials[0], trials[-1]).astype(np.float32)
    inside = (first > 0) & (first < len(trials))
    k = np.nonzero(inside)[0]
    hi = first[k]
    lo = hi - 1
    e_lo, e_hi = energy[lo, k], energy[hi, k]
    share = (reference[k] - e_lo) / np.maximum(e_hi - e_lo, 1e-12)
    out[k] = trials[lo] + share * (trials[hi] - trials[lo])
    return out


def _probe_tiles(moving: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners (padded coordinates) of up to :data:`PROBE_TILES` tiles that
    lie (almost) wholly in the moving region, spread evenly over it."""
    size = PROBE_TILE
    height, width = moving.shape
    rows, cols = height // size, width // size
    if rows == 0 or cols == 0:
        return []
    cover = moving[: rows * size, : cols * size].reshape(rows, size, cols, size).mean(axis=(1, 3))
    full = np.argwhere(cover >= 0.9)
    if len(full) == 0:
        full = np.argwhere(cover >= 0.5)
    if len(full) == 0:
        return []
    chosen = full[np.unique(np.linspace(0, len(full) - 1, PROBE_TILES).round().astype(int))]
    return [(int(r) * size + WARP_PAD, int(c) * size + WARP_PAD) for r, c in chosen]


def _bspline_taps(f: float) -> np.ndarray:
    g = 1.0 - f
    w0, w3 = g**3 / 6.0, f**3 / 6.0
    w1 = 2.0 / 3.0 - 0.5 * f * f * (2.0 - f)
    return np.array([w0, w1, 1.0 - w0 - w1 - w3, w3], np.float32)


def _shifted(stack: np.ndarray, fy: float, fx: float) -> np.ndarray:
    """B-spline samples of coefficient tiles (K, S + 3, S + 3, 3) at offset (fy, fx):
    (K, S, S, 3)."""
    return _shifted_down(_shifted_across(stack, fx), fy)


def _shifted_across(stack: np.ndarray, fx: float) -> np.ndarray:
    """The horizontal pass of :func:`_shifted`: (K, S + 3, S, 3)."""
    size = stack.shape[2] - 3
    wx = _bspline_taps(fx)
    out = wx[0] * stack[:, :, 0:size]
    for k in range(1, 4):
        out += wx[k] * stack[:, :, k : k + size]
    return out


def _shifted_down(across: np.ndarray, fy: float) -> np.ndarray:
    """The vertical pass of :func:`_shifted`: (K, S, S, 3)."""
    size = across.shape[1] - 3
    wy = _bspline_taps(fy)
    out = wy[0] * across[:, 0:size]
    for k in range(1, 4):
        out += wy[k] * across[:, k : k + size]
    return out


def _bilinear_shift(stack: np.ndarray, fy: float, fx: float) -> np.ndarray:
    size = stack.shape[1] - 3
    a, b = stack[:, 1 : size + 1], stack[:, 2 : size + 2]
    rows = a + np.float32(fy) * (b - a)
    left, right = rows[:, :, 1 : size + 1], rows[:, :, 2 : size + 2]
    return left + np.float32(fx) * (right - left)


def _nearest(stack: np.ndarray, fy: float, fx: float) -> np.ndarray:
    size = stack.shape[1] - 3
    dy, dx = (1 if fy >= 0.5 else 0), (1 if fx >= 0.5 else 0)
    return stack[:, 1 + dy : 1 + dy + size, 1 + dx : 1 + dx + size]


def _proxy(linear: np.ndarray) -> np.ndarray:
    """The display proxy (:data:`PROXY_GREY`) of linear RGB (…, 3): grey in [0, 1)."""
    luminance = np.maximum(linear @ np.array([0.2126, 0.7152, 0.0722], np.float32), 0.0)
    return (luminance / (luminance + np.float32(PROXY_GREY))) ** np.float32(1 / 2.2)


def _clipped_proxy(linear: np.ndarray) -> np.ndarray:
    """The display proxy of Blender's Standard view: luminance clipped to [0, 1], ^1/2.2."""
    luminance = np.clip(linear @ np.array([0.2126, 0.7152, 0.0722], np.float32), 0.0, 1.0)
    return luminance ** np.float32(1 / 2.2)


def _proxy_energy(tiles: np.ndarray) -> float:
    """Laplacian variance of tiles (K, S, S, 3) in the display proxy, tile interiors."""
    shown = _proxy(tiles)
    lap = (
        shown[:, :-2, 1:-1] + shown[:, 2:, 1:-1] + shown[:, 1:-1, :-2] + shown[:, 1:-1, 2:]
        - 4 * shown[:, 1:-1, 1:-1]
    )  # fmt: skip
    return float(lap.var())


def _solve_gain(sample, base, low, high, reference: float, iterations: int = 8) -> float:
    """The gain in [1, MAX_GAIN] whose sharpened samples (as :func:`_sharp_sample`) have
    the ``reference`` Laplacian energy (bisection; the energy grows with the gain)."""
    value, floor, ceiling = _limited(sample, low, high)
    detail = value - base

    def energy(gain: float) -> float:
        return _proxy_energy(np.clip(value + np.float32(gain - 1.0) * detail, floor, ceiling))

    lo, hi = 1.0, MAX_GAIN
    if energy(lo) >= reference:
        return lo
    if energy(hi) <= reference:
        return hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if energy(mid) < reference else (lo, mid)
    return 0.5 * (lo + hi)


def _limited(sample, low, high):
    """As :func:`_sharp_sample`: the B-spline samples with their overshoot limited to
    :data:`OVERSHOOT` beyond the 3×3 range, and the range the sharpened value must keep."""
    keep, grow = 1.0 - 1.0 / OVERSHOOT, OVERSHOOT - 1.0
    value = np.minimum(np.maximum(sample, low - keep * np.abs(low)), high + grow * np.abs(high))
    return value, np.minimum(value, low), np.maximum(value, high)


def _masked_energy(tiles: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per tile (K, S, S, 3), the Laplacian variance in the display proxy over the tile
    interior's pixels where ``mask`` (K, S − 2, S − 2) holds: float64 (K,)."""
    shown = _proxy(tiles)
    lap = (
        shown[:, :-2, 1:-1] + shown[:, 2:, 1:-1] + shown[:, 1:-1, :-2] + shown[:, 1:-1, 2:]
        - 4 * shown[:, 1:-1, 1:-1]
    )  # fmt: skip
    weight = mask.astype(np.float32)
    count = np.maximum(weight.sum(axis=(1, 2)), 1.0)
    mean = (lap * weight).sum(axis=(1, 2)) / count
    return (lap * lap * weight).sum(axis=(1, 2)) / count - mean * mean
