"""Motion learned from a real clip: trajectories → temporal spectrum → a spectral volume.

The user films (or owns) a clip of real movement — trees in wind, a river, clouds — and
PanoLoop animates a still panorama with that movement instead of the procedural prior's
guess. Following Generative Image Dynamics (GID, arXiv 2309.07906):

1. **Trajectories from the first frame**: the displacement ``D(p, t)`` of the point seen
   at pixel ``p`` in frame 0, for every frame ``t``. Dense optical flow (OpenCV's DIS) is
   accumulated frame to frame (each step's flow sampled where the point has got to), then
   refined by matching frame 0 against frame ``t`` directly from that estimate, so the
   per-step errors do not add up over the clip.
2. **Temporal FFT** of ``D`` over the clip's ``N`` frames: bin ``j`` is ``j · fps / N``
   hertz. The ``K = 16`` bins with the most motion energy are kept (the constant term,
   which no loop can play, and the Nyquist bin, which aliases, are not candidates), with
   their frequencies in **hertz**, so a loop of any length plays each at its nearest whole
   harmonic (:func:`engine.animate.spectral.loop_cycles`).
3. **Units as GID normalises them, for panoramas**: displacements become radians of
   equirect angle (one pixel of a W-wide panorama is 2π/W), so the volume does not depend
   on resolution; coefficients are averaged onto the coarse motion grid the renderer
   interpolates.

An equirect clip (2:1) maps its motion directly onto a panorama of its own size; the
still parts of the clip (and, with a region mask, everything outside the region) get
amplitude 0, so they stay bit-identical. A perspective clip's motion is placed on the
region of the panorama the user chooses with a mask, tiled at one clip pixel per panorama
pixel and wrapping across the 360° seam.

Coefficient convention (as :func:`engine.animate.spectral.spectral_from_motion`): for a
real motion ``D(t) = Σ_k Re(S_k · e^{2πi f_k t})``, ``S_k`` is the FFT bin divided by
``N`` and doubled (the energy of −f folded into +f). Component 0 is the displacement
along +column, component 1 along +row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .spectral import K

#: Width of the coarse motion grid (as the procedural prior's): motion is smooth.
GRID_WIDTH = 256
#: Widest frame the flow is computed on; larger clips are downscaled first (flow is
#: smooth and DIS's cost grows with the pixel count).
ANALYSIS_WIDTH = 512
#: Columns of the equirect frame repeated on each side before the flow, so motion across
#: the 360° seam is matched like anywhere else (a fraction of the width).
SEAM_PAD_FRACTION = 1 / 8
#: A pixel moves if its RMS displacement over the clip exceeds this many pixels of the
#: analysis frame and this fraction of the clip's strong motion (99th percentile).
MOVING_MIN_PX = 0.15
MOVING_FRACTION = 0.1
#: ... and its 8-bit gray level changes by more than this at some frame (isolated noisy
#: pixels are then removed by a 3×3 median, which does not move a region's edge): flow
#: spreads motion a patch beyond a moving edge, the pixels themselves do not change there.
CHANGE_LEVELS = 3.0
#: Holes this many pixels wide inside moving areas (flat texture that moves without
#: changing) are closed.
CLOSE_PX = 5


@dataclass(frozen=True)
class ClipSpectrum:
    """The kept harmonics of a clip's trajectories, in the clip's (analysis) pixels.

    ``coefficients``: complex64 (K, 2, h, w) in analysis pixels; ``frequencies``: hertz
    (K,), ascending; ``scale``: analysis pixels per clip pixel (≤ 1); ``moving``: bool
    (h, w), pixels whose RMS displacement marks them as moving; ``energy``: the share of
    the clip's oscillating motion energy the kept harmonics hold.
    """

    coefficients: np.ndarray
    frequencies: np.ndarray
    scale: float
    moving: np.ndarray
    energy: float


# --------------------------------------------------------------------------- trajectories


def analysis_gray(frame: np.ndarray, scale: float) -> np.ndarray:
    """A frame as the 8-bit gray image the flow runs on (HDR frames tone-mapped first)."""
    from ..media import to_display_uint8

    gray = cv2.cvtColor(to_display_uint8(frame), cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def analysis_scale(width: int) -> float:
    return min(1.0, ANALYSIS_WIDTH / width)


def trajectories(frames: Sequence[np.ndarray], *, wrap: bool) -> np.ndarray:
    """``D(p, t)`` (N, 2, h, w) float32, analysis pixels: where frame 0's pixel ``p`` is
    at frame ``t``, minus ``p`` (``D[0] = 0``). ``wrap``: the frames are equirect and
    motion continues across the left/right edge.

    ``frames`` are the analysis gray images (:func:`analysis_gray`).
    """
    h, w = frames[0].shape
    pad = max(8, round(w * SEAM_PAD_FRACTION)) if wrap else 0

    def padded(gray: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(gray, 0, 0, pad, pad, cv2.BORDER_WRAP) if pad else gray

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    first = padded(frames[0])
    grid_x, grid_y = np.meshgrid(
        np.arange(w + 2 * pad, dtype=np.float32), np.arange(h, dtype=np.float32)
    )
    out = np.zeros((len(frames), 2, h, w), dtype=np.float32)
    track = np.zeros((h, w + 2 * pad, 2), dtype=np.float32)
    previous = first
    for t in range(1, len(frames)):
        current = padded(frames[t])
        # 1. Accumulate: this step's flow, read where each point has got to.
        step = dis.calc(previous, current, None)
        map_x, map_y = grid_x + track[..., 0], grid_y + track[..., 1]
        border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REPLICATE
        track = track + cv2.remap(step, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)
        # 2. Refine against frame 0 from that estimate (DIS starts from a flow it is
        # given): the per-step errors do not pile up over t.
        track = dis.calc(first, current, np.ascontiguousarray(track))
        out[t] = np.moveaxis(track[:, pad : pad + w], 2, 0)
        previous = current
    return out


# --------------------------------------------------------------------------- spectrum


def changing_pixels(frames: Sequence[np.ndarray]) -> np.ndarray:
    """bool (h, w): pixels whose gray level leaves frame 0's by > CHANGE_LEVELS at some frame."""
    first = frames[0].astype(np.float32)
    change = np.zeros(first.shape, dtype=np.float32)
    for frame in frames[1:]:
        np.maximum(change, np.abs(frame.astype(np.float32) - first), out=change)
    return cv2.medianBlur((change > CHANGE_LEVELS).astype(np.uint8), 3).astype(bool)


def moving_mask(flow_moving: np.ndarray, changing: np.ndarray) -> np.ndarray:
    """Pixels that both move (flow) and change (photometry), small holes closed."""
    moving = (flow_moving & changing).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (CLOSE_PX, CLOSE_PX))
    closed = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    # Closing must not reach into pixels that never change: those are still for sure.
    return closed.astype(bool) & (flow_moving | changing)


def clip_spectrum(motion: np.ndarray, fps: float, scale: float, k: int = K) -> ClipSpectrum:
    """The ``k`` strongest harmonics (hertz) of trajectories ``motion`` (N, 2, h, w).

    ``moving`` here is where the kept harmonics move the pixel (flow only); combine it
    with :func:`changing_pixels` through :func:`moving_mask` for the amplitude.
    """
    n = motion.shape[0]
    spectrum = np.fft.rfft(motion.astype(np.float64), axis=0) / n
    spectrum[1:] *= 2.0  # fold −f into +f (see the module doc)
    # Candidates: 1 … the last bin below Nyquist (0 is a constant; N/2 aliases).
    last = (n - 1) // 2
    energy = (np.abs(spectrum[1 : last + 1]) ** 2).sum(axis=(1, 2, 3))
    order = np.argsort(energy)[::-1][:k]
    bins = np.sort(order + 1)
    kept = float(energy[bins - 1].sum() / energy.sum()) if energy.sum() > 0 else 1.0
    coefficients = spectrum[bins].astype(np.complex64)
    rms = np.sqrt(0.5 * (np.abs(coefficients) ** 2).sum(axis=(0, 1)))
    strong = float(np.percentile(rms, 99)) if rms.size else 0.0
    moving = rms > max(MOVING_MIN_PX, MOVING_FRACTION * strong)
    return ClipSpectrum(
        coefficients=coefficients,
        frequencies=bins.astype(np.float64) * float(fps) / n,
        scale=scale,
        moving=moving,
        energy=kept,
    )


# --------------------------------------------------------------------------- placement


def grid_shape(width: int) -> tuple[int, int]:
    """(h, w) of the coarse motion grid for a panorama ``width`` pixels wide."""
    gw = min(GRID_WIDTH, width)
    return gw // 2, gw


def equirect_coefficients(spec: ClipSpectrum, width: int) -> np.ndarray:
    """An equirect clip's coefficients (K, 2, gh, gw) in radians for a panorama of its size."""
    gh, gw = grid_shape(width)
    h, w = spec.coefficients.shape[2:]
    radians_per_px = 2.0 * math.pi / w  # an analysis pixel of the (scaled) equirect frame
    return _resample(spec.coefficients * np.float32(radians_per_px), gh, gw)


def perspective_coefficients(spec: ClipSpectrum, width: int) -> np.ndarray:
    """A perspective clip's coefficients tiled over the whole panorama grid, radians.

    One clip pixel covers one panorama pixel; tiles repeat in both directions and wrap
    across the seam (the grid is periodic in longitude). The region mask (the amplitude)
    decides where the motion shows.
    """
    height = width // 2
    gh, gw = grid_shape(width)
    cells = width / gw  # panorama pixels per grid cell
    h, w = spec.coefficients.shape[2:]
    # The clip's field averaged over one grid cell's footprint (in analysis pixels).
    footprint = max(1, round(cells * spec.scale))
    field = spec.coefficients
    if footprint > 1:
        field = _blur(field, footprint)
    # Grid cell centres in panorama pixels → clip pixels → analysis pixels, tiled.
    ys = ((np.arange(gh) + 0.5) * (height / gh)) * spec.scale
    xs = ((np.arange(gw) + 0.5) * (width / gw)) * spec.scale
    map_x, map_y = np.meshgrid(xs.astype(np.float32) - 0.5, ys.astype(np.float32) - 0.5)
    map_x, map_y = np.mod(map_x, w).astype(np.float32), np.mod(map_y, h).astype(np.float32)
    radians_per_analysis_px = (2.0 * math.pi / width) / spec.scale
    out = np.empty((*field.shape[:2], gh, gw), dtype=np.complex64)
    for index in np.ndindex(*field.shape[:2]):
        real, imag = (
            cv2.remap(
                np.ascontiguousarray(part, dtype=np.float32),
                map_x,
                map_y,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_WRAP,
            )  # fmt: skip
            for part in (field[index].real, field[index].imag)
        )
        out[index] = real + 1j * imag
    return (out * np.float32(radians_per_analysis_px)).astype(np.complex64)


def equirect_amplitude(spec: ClipSpectrum, height: int, width: int) -> np.ndarray:
    """(H, W) float32: 1 where the clip moves, exactly 0 where it is still."""
    moving = spec.moving.astype(np.uint8)
    if moving.shape != (height, width):
        moving = cv2.resize(moving, (width, height), interpolation=cv2.INTER_NEAREST)
    return moving.astype(np.float32)


def _resample(coefficients: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Area-average each complex (h, w) field of (K, 2, h, w) onto a (gh, gw) grid."""
    k, c, h, w = coefficients.shape
    if (h, w) == (gh, gw):
        return coefficients.astype(np.complex64)
    interpolation = cv2.INTER_AREA if gw < w else cv2.INTER_LINEAR
    out = np.empty((k, c, gh, gw), dtype=np.complex64)
    for i, j in np.ndindex(k, c):
        real = cv2.resize(coefficients[i, j].real, (gw, gh), interpolation=interpolation)
        imag = cv2.resize(coefficients[i, j].imag, (gw, gh), interpolation=interpolation)
        out[i, j] = real + 1j * imag
    return out


def _blur(coefficients: np.ndarray, size: int) -> np.ndarray:
    """Box-average each complex field over ``size`` pixels, wrapping (the tiles repeat)."""
    out = np.empty_like(coefficients)
    h, w = coefficients.shape[2:]
    pad = size // 2 + 1

    def wrapped_blur(part: np.ndarray) -> np.ndarray:
        # Box filters have no wrapping border mode: pad by wrapping, filter, crop.
        big = cv2.copyMakeBorder(part.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_WRAP)
        return cv2.blur(big, (size, size))[pad : pad + h, pad : pad + w]

    for index in np.ndindex(*coefficients.shape[:2]):
        field = coefficients[index]
        out[index] = wrapped_blur(field.real) + 1j * wrapped_blur(field.imag)
    return out
