"""Resizing an equirect panorama without a seam: filtering and sampling wrap at 360°.

``cv2.resize`` clamps at the image border, which would leave a visible line where the
left and right edges meet; here every output pixel is sampled along its own direction
(:func:`engine.projection.sampling_map`) from a padded frame, after a blur whose
footprint matches the shrink factor when downscaling (no aliasing).
"""

from __future__ import annotations

import numpy as np

from ..projection import PAD, SamplingMap, equirect_directions, pad_equirect, sampling_map

#: Gaussian σ per unit of shrink factor: close to an area filter's footprint.
SIGMA_PER_SHRINK = 0.5


class EquirectResizer:
    """Resize W×H equirect frames to ``width``×``height``; the map is built once."""

    def __init__(self, src_width: int, src_height: int, width: int, height: int) -> None:
        self.src_size = (src_width, src_height)
        self.size = (width, height)
        self.shrink = src_width / width
        self.identity = (src_width, src_height) == (width, height)
        self.smap: SamplingMap | None = None
        if not self.identity:
            self.smap = sampling_map(
                equirect_directions(width, height), src_width, src_height, "linear"
            )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Resize one (H, W, 3) frame; dtype kept."""
        if self.identity:
            return frame
        import cv2

        from ..projection import remap_equirect

        if self.shrink > 1.0:
            sigma = SIGMA_PER_SHRINK * self.shrink
            radius = int(np.ceil(3 * sigma))
            padded = pad_equirect(frame, radius)
            blurred = cv2.GaussianBlur(padded, (2 * radius + 1, 2 * radius + 1), sigma)
            frame = blurred[radius:-radius, radius:-radius]
        padded = pad_equirect(frame, PAD)
        return remap_equirect(padded, self.smap, padded=True)
