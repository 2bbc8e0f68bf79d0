"""Spectral volumes (Generative Image Dynamics) ↔ motion textures that loop exactly.

A *motion texture* ``D(p, t)`` is the 2-D displacement of panorama pixel ``p`` at frame
``t``. Its *spectral volume* keeps, per pixel, the complex temporal Fourier coefficients
``S_k`` of the first ``K = 16`` frequencies (GID found 16 enough for natural oscillation):

    D(p, t) = Σ_k Re( S_k(p) · exp(2πi · f_k · t / T) )

with ``f_k`` an **integer** number of cycles per loop of ``T`` frames, so the motion is
exactly periodic: frame ``T`` equals frame 0 and the loop never jumps.

Conventions:

- ``coefficients`` is complex64 of shape (K, 2, h, w) on a coarse equirect grid (motion
  is smooth; the renderer interpolates it, wrapping in longitude). Component 0 moves
  along +column (westward on screen: u grows), component 1 along +row (towards −Z).
- Units are **radians of equirect angle**: one pixel of a W-wide panorama is 2π/W
  radians in both directions (H = W/2 covers π), so one volume animates any size.
- ``amplitude`` is a full-resolution (H, W) float32 multiplier ≥ 0. Exactly 0 marks
  pixels that stay exactly still (a black mask); it is kept apart from the coarse grid
  so that "still" is sharp at full resolution.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput

#: Frequencies kept per pixel: GID (arXiv 2309.07906) found K = 16 enough.
K = 16
#: GID normalisation: per frequency, divide by this percentile of the magnitudes.
NORMALIZE_PERCENTILE = 95.0
#: Largest coefficient magnitude accepted, radians: half a turn is already far beyond
#: any natural motion; the limit keeps every target pixel index finite.
MAX_COEFFICIENT = math.pi
#: Version of the ``.npz`` layout written by :func:`save_volume`.
NPZ_FORMAT = 1
NPZ_KEYS = ("format", "coefficients_real", "coefficients_imag", "frequencies", "amplitude")


@dataclass(frozen=True)
class SpectralVolume:
    """Per-pixel temporal Fourier coefficients of a looping motion texture (see module doc).

    ``coefficients``: complex64 (K, 2, h, w), radians; ``frequencies``: int64 (K,) cycles
    per loop, ≥ 0 and distinct; ``amplitude``: float32 (H, W) ≥ 0 at the panorama's
    resolution; ``prior``: the name of the motion prior that made it.
    """

    coefficients: np.ndarray
    frequencies: np.ndarray
    amplitude: np.ndarray
    prior: str = "unknown"
    info: dict = field(default_factory=dict)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(h, w) of the coarse motion grid."""
        return self.coefficients.shape[2], self.coefficients.shape[3]

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the panorama the amplitude was made for."""
        return self.amplitude.shape

    def scaled(self, strength: float) -> SpectralVolume:
        """The same motion with every displacement multiplied by ``strength`` (GID's editing)."""
        return SpectralVolume(
            (self.coefficients * np.float32(strength)).astype(np.complex64),
            self.frequencies,
            self.amplitude,
            self.prior,
            dict(self.info),
        )


def check_volume(volume: SpectralVolume, what: object = "spectral volume") -> SpectralVolume:
    """Refuse a malformed volume with a one-line :class:`BadInput` naming what is wrong."""
    c, f, a = volume.coefficients, volume.frequencies, volume.amplitude
    if c.ndim != 4 or c.shape[1] != 2 or c.shape[0] < 1:
        raise BadInput(f"{what}: coefficients must have shape (K, 2, h, w), got {c.shape}")
    if c.shape[3] != 2 * c.shape[2] or c.shape[2] < 2:
        raise BadInput(
            f"{what}: motion grid must be 2:1 and at least 4x2, got {c.shape[3]}x{c.shape[2]}"
        )
    if f.shape != (c.shape[0],):
        raise BadInput(
            f"{what}: {f.shape[0] if f.ndim else 0} frequencies for {c.shape[0]} coefficients"
        )
    if np.any(f < 0) or len(set(f.tolist())) != len(f):
        raise BadInput(f"{what}: frequencies must be distinct integers >= 0, got {f.tolist()}")
    if a.ndim != 2 or a.shape[1] != 2 * a.shape[0]:
        raise BadInput(f"{what}: amplitude must be a 2:1 (H, W) map, got shape {a.shape}")
    if not np.all(np.isfinite(c)):
        raise BadInput(f"{what}: coefficients contain NaN or infinity")
    largest = float(np.abs(c).max(initial=0.0))
    if largest > MAX_COEFFICIENT:
        raise BadInput(
            f"{what}: a coefficient of {largest:.3g} rad moves pixels by more than a half turn "
            f"(limit {MAX_COEFFICIENT:.3g} rad)"
        )
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise BadInput(f"{what}: amplitude must be finite and >= 0")
    return volume


# --------------------------------------------------------------------------- synthesis


def usable_frequencies(frequencies: np.ndarray, frames: int) -> np.ndarray:
    """Boolean mask of the frequencies a loop of ``frames`` frames can show.

    A frequency of T/2 cycles or more per T frames aliases (it would step backwards or
    flicker), so it is dropped at render time; the volume itself keeps it.
    """
    return 2 * np.asarray(frequencies) < frames


class MotionTexture:
    """Evaluates ``D(·, t)`` of a volume on its coarse grid, frame after frame, allocation-free.

    ``scale`` multiplies the result (e.g. W/2π to get pixels of a W-wide panorama).
    Frame ``t`` and frame ``t + frames`` are identical by construction.
    """

    def __init__(self, volume: SpectralVolume, frames: int, scale: float = 1.0) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        keep = usable_frequencies(volume.frequencies, frames)
        coeffs = volume.coefficients[keep].astype(np.complex128) * scale
        self.frames = frames
        self.frequencies = volume.frequencies[keep].astype(np.float64)
        h, w = volume.grid_shape
        self.shape = (2, h, w)
        # Re(S e^{iθ}) = Re(S)·cos θ − Im(S)·sin θ: one real matrix product per frame.
        self._matrix = np.ascontiguousarray(
            np.concatenate([coeffs.real, -coeffs.imag]).reshape(2 * len(coeffs), 2 * h * w),
            dtype=np.float32,
        )
        self._basis = np.empty(2 * len(coeffs), dtype=np.float32)

    def frame(self, t: int, out: np.ndarray | None = None) -> np.ndarray:
        """The displacement (2, h, w) float32 at frame ``t`` (any integer; periodic)."""
        phase = 2.0 * math.pi * self.frequencies * ((t % self.frames) / self.frames)
        n = len(self.frequencies)
        self._basis[:n] = np.cos(phase)
        self._basis[n:] = np.sin(phase)
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        np.dot(self._basis, self._matrix, out=out.reshape(-1))
        return out

    def all_frames(self) -> np.ndarray:
        """Every frame of the loop, shape (T, 2, h, w) float32."""
        return np.stack([self.frame(t) for t in range(self.frames)])


def motion_texture(volume: SpectralVolume, frames: int) -> np.ndarray:
    """The whole looping motion texture (T, 2, h, w) in radians (frame T would equal frame 0)."""
    return MotionTexture(volume, frames).all_frames()


def spectral_from_motion(motion: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Temporal FFT of a looping motion texture (T, 2, h, w): its first ``k`` frequencies.

    Returns ``(coefficients (k, 2, h, w) complex64, frequencies 0..k-1)`` in the
    convention of :class:`SpectralVolume`, so that :func:`motion_texture` of the result
    gives ``motion`` back whenever ``motion`` holds no frequency ≥ min(k, T/2).
    """
    frames = motion.shape[0]
    spectrum = np.fft.rfft(motion.astype(np.float64), axis=0)[:k] / frames
    # A real signal's energy at f > 0 is split between +f and −f: fold it into +f.
    spectrum[1:] *= 2.0
    if frames % 2 == 0 and spectrum.shape[0] > frames // 2:
        spectrum[frames // 2] /= 2.0  # the Nyquist bin has no mirror
    frequencies = np.arange(spectrum.shape[0], dtype=np.int64)
    return spectrum.astype(np.complex64), frequencies


# --------------------------------------------------------------------------- GID normalisation


def normalize(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GID's normalisation of a spectral volume, for a learned prior's input or output.

    Per frequency, divide by the 95th percentile of the magnitudes (over pixels and
    both components), then apply ``sign(x)·sqrt(|x|)`` to real and imaginary parts.
    Returns ``(normalised float32 (K, 4, h, w) as Re x, Im x, Re y, Im y; scales (K,))``.
    """
    c = np.asarray(coefficients)
    magnitude = np.abs(c).reshape(c.shape[0], -1)
    scales = np.percentile(magnitude, NORMALIZE_PERCENTILE, axis=1).astype(np.float32)
    scales = np.where(scales > 0, scales, np.float32(1.0))
    scaled = c / scales[:, None, None, None]
    parts = np.stack([scaled.real, scaled.imag], axis=2).reshape(c.shape[0], 4, *c.shape[2:])
    return (np.sign(parts) * np.sqrt(np.abs(parts))).astype(np.float32), scales


def denormalize(normalised: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Invert :func:`normalize`: (K, 4, h, w) + scales → complex64 (K, 2, h, w)."""
    parts = np.sign(normalised) * np.square(normalised)
    k, _, h, w = parts.shape
    parts = parts.reshape(k, 2, 2, h, w)
    c = (parts[:, :, 0] + 1j * parts[:, :, 1]) * np.asarray(scales)[:, None, None, None]
    return c.astype(np.complex64)


# --------------------------------------------------------------------------- files


def save_volume(path: str | os.PathLike[str], volume: SpectralVolume) -> Path:
    """Write a volume as a compressed ``.npz`` (no pickles; readable by plain numpy)."""
    path = Path(path)
    with path.open("wb") as fh:
        np.savez_compressed(
            fh,
            format=np.int64(NPZ_FORMAT),
            coefficients_real=volume.coefficients.real.astype(np.float32),
            coefficients_imag=volume.coefficients.imag.astype(np.float32),
            frequencies=volume.frequencies.astype(np.int64),
            amplitude=volume.amplitude.astype(np.float32),
            prior=np.str_(volume.prior),
        )
    return path


def load_volume(path: str | os.PathLike[str]) -> SpectralVolume:
    """Read a ``.npz`` written by :func:`save_volume`; :class:`BadInput` naming the file if
    it is missing, not an npz, pickled, or holds malformed arrays."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"motion file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in NPZ_KEYS if key not in data.files]
            if missing:
                raise BadInput(
                    f"motion file {path} lacks {', '.join(missing)}; not a PanoLoop motion .npz"
                )
            arrays = {
                key: data[key] for key in (*NPZ_KEYS, *(["prior"] if "prior" in data.files else []))
            }
    except BadInput:
        raise
    except Exception as exc:  # numpy raises many types for a damaged archive
        raise BadInput(f"cannot read motion file {path}: {type(exc).__name__}: {exc}") from None
    if arrays["format"].shape != () or int(arrays["format"]) != NPZ_FORMAT:
        raise BadInput(f"motion file {path} has format {arrays['format']!r}; expected {NPZ_FORMAT}")
    real, imag = arrays["coefficients_real"], arrays["coefficients_imag"]
    if real.shape != imag.shape or real.dtype.kind != "f" or imag.dtype.kind != "f":
        raise BadInput(
            f"motion file {path}: real and imaginary coefficients differ in shape or type"
        )
    frequencies = arrays["frequencies"]
    if frequencies.dtype.kind not in "iu":
        raise BadInput(f"motion file {path}: frequencies must be integers, got {frequencies.dtype}")
    amplitude = arrays["amplitude"]
    if amplitude.dtype.kind != "f":
        raise BadInput(f"motion file {path}: amplitude must be float, got {amplitude.dtype}")
    volume = SpectralVolume(
        (real.astype(np.float32) + 1j * imag.astype(np.float32)).astype(np.complex64),
        frequencies.astype(np.int64),
        amplitude.astype(np.float32),
        str(arrays.get("prior", "file")),
    )
    return check_volume(volume, f"motion file {path}")
