"""Measures of a looping panorama that tests and benchmarks share.

- :func:`sharpness_ratio`: detail kept by a frame where things move (Laplacian variance
  of the tone-mapped grey image, against the source's).
- :func:`detail_energy`: the same energy of one frame, for pulsing over a loop.
- :func:`mean_shift`: the dominant frame-to-frame shift of a region (phase correlation).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..colour import DisplayTransform
from ..media import to_display_uint8


def grey(image: np.ndarray, view: DisplayTransform | None = None) -> np.ndarray:
    """The tone-mapped grey image, float32 in [0, 255]: through ``view`` (a preview's
    view transform, e.g. Blender's AgX), or by default clipped to [0, 1] and sRGB-encoded
    (Blender's Standard view)."""
    shown = to_display_uint8(image) if view is None else view.to_uint8(image)
    return cv2.cvtColor(shown, cv2.COLOR_RGB2GRAY).astype(np.float32)


def laplacian(image: np.ndarray, view: DisplayTransform | None = None) -> np.ndarray:
    """The 3×3 Laplacian of the tone-mapped grey image (wrapping the seam)."""
    g = grey(image, view)
    padded = np.concatenate([g[:, -1:], g, g[:, :1]], axis=1)
    return cv2.Laplacian(padded, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)[:, 1:-1]


def detail_energy(
    image: np.ndarray, region: np.ndarray, view: DisplayTransform | None = None
) -> float:
    """Variance of the Laplacian over ``region`` (a boolean (H, W) mask)."""
    return float(laplacian(image, view)[region].var())


def moving_region(amplitude: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pixels that really move (amplitude ≥ ``threshold``), shrunk by 2 pixels so the
    Laplacian of a still neighbour does not count."""
    region = (amplitude >= threshold).astype(np.uint8)
    return cv2.erode(region, np.ones((5, 5), np.uint8)).astype(bool)


def sharpness_ratio(
    source: np.ndarray,
    frame: np.ndarray,
    region: np.ndarray,
    view: DisplayTransform | None = None,
) -> float:
    """Laplacian variance of ``frame`` over that of ``source`` in ``region`` (1 = as sharp;
    forward splatting with a bilinear footprint measured about 0.5), tone-mapped as
    :func:`grey` with ``view``."""
    reference = detail_energy(source, region, view)
    return detail_energy(frame, region, view) / reference if reference > 0 else 1.0


def mean_shift(before: np.ndarray, after: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """(d_column, d_row) in pixels that moves ``before`` onto ``after`` inside ``region``
    (phase correlation of the tone-mapped grey images, windowed)."""
    a = grey(before)[region].astype(np.float64)
    b = grey(after)[region].astype(np.float64)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return np.array([dx, dy])
