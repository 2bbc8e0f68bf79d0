"""Spectral volumes (Generative Image Dynamics) ↔ motion textures that loop exactly.

A *motion texture* ``D(p, t)`` is the 2-D displacement of panorama pixel ``p`` at time
``t``. Its *spectral volume* keeps, per pixel, the complex temporal Fourier coefficients
``S_k`` of ``K`` frequencies (GID found 16 enough for natural oscillation):

    D(p, t) = Σ_k Re( S_k(p) · exp(2πi · n_k · t / T) )

Frequencies are stored in **hertz** (physical time: a branch sways at about 0.5 Hz
whatever the loop's length). A loop of ``T`` seconds plays each frequency ``f_k`` at the
whole harmonic nearest to it, ``n_k = round(f_k · T)`` cycles per loop, so the motion is
exactly periodic (frame ``T`` equals frame 0, the loop never jumps) and 2-, 4- and 8-second
loops move at the same speed. A frequency that rounds to 0 cycles (too slow for so short a
loop) or to T/2 frames or more (it would alias) is left out of that loop; the volume
keeps it. Format-1 files (before hertz) hold whole cycles per loop, played as such.

A volume may also carry a one-way *flow* (sky, water, mist drifting one way): a velocity
field in radians per second on the same coarse grid, rendered by the renderer's two-phase
flow map (see :mod:`.splat`), which loops exactly too.

Conventions:

- ``coefficients`` is complex64 of shape (K, 2, h, w) on a coarse equirect grid (motion
  is smooth; the renderer interpolates it, wrapping in longitude). Component 0 moves
  along +column (westward on screen: u grows), component 1 along +row (towards −Z).
- Units are **radians of equirect angle**: one pixel of a W-wide panorama is 2π/W
  radians in both directions (H = W/2 covers π), so one volume animates any size.
- ``amplitude`` is a full-resolution (H, W) float32 multiplier ≥ 0 of both the
  oscillation and the flow. Exactly 0 marks pixels that stay exactly still (a black
  mask); it is kept apart from the coarse grid so that "still" is sharp at full resolution.

``.npz`` layout, format 2 (:data:`NPZ_FORMAT`; plain arrays, no pickles):

=====================  ===============  ===========================================
key                    dtype, shape     meaning
=====================  ===============  ===========================================
``format``             int64 ()         2
``coefficients_real``  float32 (K,2,h,w)  Re S_k, radians (component 0 = +column)
``coefficients_imag``  float32 (K,2,h,w)  Im S_k, radians
``frequencies``        float64 (K,)     hertz, finite, ≥ 0, distinct
``amplitude``          float32 (H, W)   ≥ 0, 0 = exactly still
``prior``              str ()           optional: the prior that made it
``kinds``              str (K,)         optional: the motion kind of each frequency
``flow``               float32 (2,h,w)  optional: one-way velocity, radians per second
``info``               str ()           optional: JSON object, e.g. ``source`` of a clip
=====================  ===============  ===========================================

Format 1 is read too: the same keys without ``kinds``/``flow``, ``frequencies`` int64
whole cycles per loop (whatever the loop's length).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field, replace
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
#: Version of the ``.npz`` layout written by :func:`save_volume` (2: hertz; 1: cycles/loop).
NPZ_FORMAT = 2
NPZ_FORMATS_READ = (1, 2)
NPZ_KEYS = ("format", "coefficients_real", "coefficients_imag", "frequencies", "amplitude")
#: Units of :attr:`SpectralVolume.frequencies`.
HERTZ = "hertz"
CYCLES_PER_LOOP = "cycles_per_loop"
#: Largest one-way flow speed accepted, radians per second (a quarter turn per second).
MAX_FLOW = math.pi / 2


@dataclass(frozen=True)
class SpectralVolume:
    """Per-pixel temporal Fourier coefficients of a looping motion texture (see module doc).

    ``coefficients``: complex64 (K, 2, h, w), radians; ``frequencies``: float64 (K,) in
    ``unit`` (:data:`HERTZ`, or :data:`CYCLES_PER_LOOP` for format-1 files), ≥ 0 and
    distinct; ``amplitude``: float32 (H, W) ≥ 0 at the panorama's resolution; ``prior``:
    the name of the motion prior that made it; ``kinds``: the motion kind of each
    frequency (empty if unknown); ``flow``: optional one-way velocity (2, h, w) float32
    in radians per second (component 0 = +column, 1 = +row), scaled by ``amplitude``.
    """

    coefficients: np.ndarray
    frequencies: np.ndarray
    amplitude: np.ndarray
    prior: str = "unknown"
    info: dict = field(default_factory=dict)
    unit: str = HERTZ
    kinds: tuple[str, ...] = ()
    flow: np.ndarray | None = None

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(h, w) of the coarse motion grid."""
        return self.coefficients.shape[2], self.coefficients.shape[3]

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the panorama the amplitude was made for."""
        return self.amplitude.shape

    def scaled(self, strength: float) -> SpectralVolume:
        """The same motion with every displacement and the flow's speed multiplied by
        ``strength`` (GID's editing)."""
        return replace(
            self,
            coefficients=(self.coefficients * np.float32(strength)).astype(np.complex64),
            flow=None if self.flow is None else (self.flow * np.float32(strength)),
            info=dict(self.info),
        )

    def with_amplitude(self, amplitude: np.ndarray) -> SpectralVolume:
        """The same motion with another full-resolution amplitude map."""
        return replace(self, amplitude=np.asarray(amplitude, dtype=np.float32))

    def loop_cycles(self, seconds: float | None) -> np.ndarray:
        """Whole cycles per loop (int64, K) each frequency plays in a loop of ``seconds``."""
        return loop_cycles(self.frequencies, self.unit, seconds)


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
    if volume.unit not in (HERTZ, CYCLES_PER_LOOP):
        raise BadInput(f"{what}: unknown frequency unit {volume.unit!r}")
    if not np.all(np.isfinite(f)) or np.any(f < 0) or len(set(f.tolist())) != len(f):
        raise BadInput(f"{what}: frequencies must be distinct, finite and >= 0, got {f.tolist()}")
    if volume.unit == CYCLES_PER_LOOP and np.any(f != np.round(f)):
        raise BadInput(f"{what}: cycles per loop must be whole numbers, got {f.tolist()}")
    if volume.kinds and len(volume.kinds) != len(f):
        raise BadInput(f"{what}: {len(volume.kinds)} kind names for {len(f)} frequencies")
    flow = volume.flow
    if flow is not None:
        if flow.shape != (2, *c.shape[2:]):
            raise BadInput(f"{what}: flow must have shape {(2, *c.shape[2:])}, got {flow.shape}")
        if not np.all(np.isfinite(flow)):
            raise BadInput(f"{what}: flow contains NaN or infinity")
        fastest = float(np.abs(flow).max(initial=0.0))
        if fastest > MAX_FLOW:
            raise BadInput(
                f"{what}: a flow of {fastest:.3g} rad/s is faster than {MAX_FLOW:.3g} rad/s"
            )
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


def loop_cycles(frequencies: np.ndarray, unit: str, seconds: float | None) -> np.ndarray:
    """Whole cycles per loop of ``seconds`` for each frequency: the nearest harmonic k/T.

    Hertz need the loop's length; cycles per loop (format 1) are used as they are.
    """
    frequencies = np.asarray(frequencies, dtype=np.float64)
    if unit == CYCLES_PER_LOOP:
        return np.round(frequencies).astype(np.int64)
    if seconds is None or not seconds > 0:
        raise ValueError(f"frequencies in hertz need the loop's length, got seconds={seconds}")
    return np.floor(frequencies * seconds + 0.5).astype(np.int64)


def usable_frequencies(cycles: np.ndarray, frames: int, unit: str = CYCLES_PER_LOOP) -> np.ndarray:
    """Boolean mask of the frequencies (whole ``cycles`` per loop) a loop of ``frames`` shows.

    A frequency of T/2 cycles or more per T frames aliases (it would step backwards or
    flicker), so it is dropped at render time; the volume itself keeps it. A physical
    frequency (hertz) that rounds to 0 cycles is too slow for the loop: dropped too
    (format 1's explicit 0 cycles, a constant offset, is kept as before).
    """
    cycles = np.asarray(cycles)
    keep = 2 * cycles < frames
    return keep & (cycles > 0) if unit == HERTZ else keep


class MotionTexture:
    """Evaluates ``D(·, t)`` of a volume on its coarse grid, frame after frame, allocation-free.

    ``seconds`` is the loop's length (needed for frequencies in hertz); ``scale``
    multiplies the result (e.g. W/2π to get pixels of a W-wide panorama). Frame ``t``
    and frame ``t + frames`` are identical by construction.
    """

    def __init__(
        self,
        volume: SpectralVolume,
        frames: int,
        scale: float = 1.0,
        seconds: float | None = None,
    ) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        cycles = volume.loop_cycles(seconds)
        keep = usable_frequencies(cycles, frames, volume.unit)
        coeffs = volume.coefficients[keep].astype(np.complex128) * scale
        self.frames = frames
        # Harmonics that coincide simply add: the matrix product sums their terms.
        self.frequencies = cycles[keep].astype(np.float64)
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


def motion_texture(volume: SpectralVolume, frames: int, seconds: float | None = None) -> np.ndarray:
    """The whole looping motion texture (T, 2, h, w) in radians (frame T would equal frame 0)."""
    return MotionTexture(volume, frames, seconds=seconds).all_frames()


def spectral_from_motion(
    motion: np.ndarray, seconds: float, k: int = K
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal FFT of a looping motion texture (T, 2, h, w) lasting ``seconds``: its first
    ``k`` frequencies.

    Returns ``(coefficients (k, 2, h, w) complex64, frequencies in hertz j/seconds for
    j = 0..k-1)`` in the convention of :class:`SpectralVolume`, so that
    :func:`motion_texture` of the result over the same ``seconds`` gives ``motion`` back
    (but its mean, frequency 0) whenever ``motion`` holds no frequency ≥ min(k, T/2).
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    frames = motion.shape[0]
    spectrum = np.fft.rfft(motion.astype(np.float64), axis=0)[:k] / frames
    # A real signal's energy at f > 0 is split between +f and −f: fold it into +f.
    spectrum[1:] *= 2.0
    if frames % 2 == 0 and spectrum.shape[0] > frames // 2:
        spectrum[frames // 2] /= 2.0  # the Nyquist bin has no mirror
    frequencies = np.arange(spectrum.shape[0], dtype=np.float64) / float(seconds)
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
    """Write a volume as a compressed ``.npz`` (no pickles; readable by plain numpy).

    Format 2 (hertz); a volume read from a format-1 file (cycles per loop) is written
    back as format 1 so its frequencies keep their meaning.
    """
    path = Path(path)
    hertz = volume.unit == HERTZ
    arrays = {
        "format": np.int64(NPZ_FORMAT if hertz else 1),
        "coefficients_real": volume.coefficients.real.astype(np.float32),
        "coefficients_imag": volume.coefficients.imag.astype(np.float32),
        "frequencies": volume.frequencies.astype(np.float64 if hertz else np.int64),
        "amplitude": volume.amplitude.astype(np.float32),
        "prior": np.str_(volume.prior),
    }
    if volume.kinds:
        arrays["kinds"] = np.array(volume.kinds, dtype=np.str_)
    if volume.flow is not None:
        arrays["flow"] = volume.flow.astype(np.float32)
    if volume.info:
        # Where the motion came from (e.g. a clip's path and SHA-256), as JSON text.
        arrays["info"] = np.str_(json.dumps(volume.info, default=str))
    # Compress in memory, then write once: a full disk then raises one OSError with its
    # errno, not a zipfile failing again while it closes ("seek of closed file").
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with path.open("wb") as fh:
        fh.write(buffer.getbuffer())
    return path


def load_volume(path: str | os.PathLike[str]) -> SpectralVolume:
    """Read a ``.npz`` written by :func:`save_volume` (format 2, or 1); :class:`BadInput`
    naming the file if it is missing, not an npz, pickled, or holds malformed arrays."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"motion file not found: {path}")
    optional = ("prior", "kinds", "flow", "info")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in NPZ_KEYS if key not in data.files]
            if missing:
                raise BadInput(
                    f"motion file {path} lacks {', '.join(missing)}; not a PanoLoop motion .npz"
                )
            arrays = {key: data[key] for key in (*NPZ_KEYS, *optional) if key in data.files}
    except BadInput:
        raise
    except Exception as exc:  # numpy raises many types for a damaged archive
        raise BadInput(f"cannot read motion file {path}: {type(exc).__name__}: {exc}") from None
    fmt = arrays["format"]
    if fmt.shape != () or fmt.dtype.kind not in "iu" or int(fmt) not in NPZ_FORMATS_READ:
        raise BadInput(
            f"motion file {path} has format {fmt!r}; expected one of {list(NPZ_FORMATS_READ)}"
        )
    real, imag = arrays["coefficients_real"], arrays["coefficients_imag"]
    if real.shape != imag.shape or real.dtype.kind != "f" or imag.dtype.kind != "f":
        raise BadInput(
            f"motion file {path}: real and imaginary coefficients differ in shape or type"
        )
    frequencies = arrays["frequencies"]
    hertz = int(fmt) >= 2
    wanted = "fiu" if hertz else "iu"
    if frequencies.dtype.kind not in wanted:
        kind = "numbers (hertz)" if hertz else "integers (cycles per loop)"
        raise BadInput(f"motion file {path}: frequencies must be {kind}, got {frequencies.dtype}")
    amplitude = arrays["amplitude"]
    if amplitude.dtype.kind != "f":
        raise BadInput(f"motion file {path}: amplitude must be float, got {amplitude.dtype}")
    kinds = arrays.get("kinds")
    if kinds is not None and (kinds.dtype.kind != "U" or kinds.ndim != 1):
        raise BadInput(f"motion file {path}: kinds must be a list of names, got {kinds.dtype}")
    flow = arrays.get("flow")
    if flow is not None and flow.dtype.kind != "f":
        raise BadInput(f"motion file {path}: flow must be float, got {flow.dtype}")
    info = read_info(arrays.get("info"), path)
    volume = SpectralVolume(
        (real.astype(np.float32) + 1j * imag.astype(np.float32)).astype(np.complex64),
        frequencies.astype(np.float64),
        amplitude.astype(np.float32),
        str(arrays.get("prior", "file")),
        info,
        unit=HERTZ if hertz else CYCLES_PER_LOOP,
        kinds=tuple(str(k) for k in kinds) if kinds is not None else (),
        flow=None if flow is None else flow.astype(np.float32),
    )
    return check_volume(volume, f"motion file {path}")


def read_info(text: np.ndarray | None, path: Path) -> dict:
    """The optional ``info`` key: a JSON object as text (where the motion came from)."""
    if text is None:
        return {}
    try:
        info = json.loads(str(text)) if text.dtype.kind == "U" and text.shape == () else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise BadInput(f"motion file {path}: info must be a JSON object as text")
    return info
