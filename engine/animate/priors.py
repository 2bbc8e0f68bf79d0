"""Motion priors: a still equirect image → a :class:`~engine.animate.spectral.SpectralVolume`.

:class:`MotionPrior` is the interface a learned model (GID's latent diffusion over
spectral volumes) would implement; :class:`ProceduralPrior` is the built-in one, needing
no weights:

- each motion kind has natural frequencies in **hertz** (drift 0.05–0.2 Hz, sway
  0.3–1.3 Hz, ripple 0.6–2.1 Hz), and its power falls exponentially with frequency, as
  GID measured on natural videos; a loop plays them at the nearest whole harmonics, so
  every loop length moves at the same speed;
- the per-frequency coefficients are spatially coherent complex Gaussian random fields
  (white noise blurred on the sphere: wrapping in longitude and continuing over the
  poles), so neighbouring pixels sway together and the 360° seam does not exist;
- *where* things move comes from the user's mask (white moves, black stays exactly
  still, grey in between) or, without one, from an estimate on the image itself:
  smooth sky above the horizon → slow horizontal drift, green textured regions →
  sway, smooth bluish regions below the horizon → ripple, the rest (ground,
  buildings, rooms) → still;
- or from a user's *motion map* (red = drift/flow, green = sway, blue = ripple, each
  channel's value = how much; black = exactly still);
- drift also flows **one way** (:func:`dome_flow`): clouds under a wind at a heading in
  Blender's world (0° = toward +X, 90° = toward +Y) on a flat cloud layer seen from
  below, so they run overhead at ``speed`` degrees of arc per second and slow towards
  the horizon; reflections below the horizon flow in mirror image. Without a heading
  the seed picks one.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from ..projection import pad_equirect
from .spectral import HERTZ, SpectralVolume
from .splat import upsample_grid

#: Width of the coarse motion grid (motion is smooth; the renderer interpolates it).
GRID_WIDTH = 256
#: Width at which the image is analysed for the automatic motion estimate.
ANALYSIS_WIDTH = 512
#: Amplitudes below this are rounded to exactly still (so "still" is really still).
STILL_BELOW = 0.02
#: Default one-way drift speed overhead, degrees of arc per second (calm high clouds).
DRIFT_SPEED = 2.0
#: One-way flow is capped where the dome's longitude speed grows as tan(elevation):
#: above this elevation the sky near the zenith flows as it does here.
FLOW_ELEVATION_CAP = math.radians(75.0)


@dataclass(frozen=True)
class MotionKind:
    """One kind of natural motion: how big, how fast, how fast its power falls, how coherent.

    ``rms`` is the root-mean-square displacement over the loop in radians of equirect
    angle (2π/1024 rad = 1 pixel of a 1024-wide panorama); ``hertz`` are its natural
    frequencies; the power at frequency f falls as exp(−(f − hertz[0])/decay) (``decay``
    in hertz); ``correlation`` is the spatial blur (σ) as a fraction of the panorama
    width; ``direction`` weighs (column, row).
    """

    name: str
    rms: float
    hertz: tuple[float, ...]
    decay: float
    correlation: float
    direction: tuple[float, float]


_PIXEL_1K = 2 * math.pi / 1024
#: The built-in motion kinds (amplitudes chosen to read as calm natural motion; the
#: frequencies as slow cloud billows, branches in a breeze and small water waves). Drift's
#: oscillation is small: the sky mostly flows one way (:func:`dome_flow`).
DRIFT = MotionKind(
    "drift",
    rms=1.5 * _PIXEL_1K,
    hertz=(0.05, 0.08, 0.11, 0.15, 0.2),
    decay=0.1,
    correlation=1 / 24,
    direction=(1.0, 0.15),
)
SWAY = MotionKind(
    "sway",
    rms=2.0 * _PIXEL_1K,
    hertz=(0.3, 0.4, 0.55, 0.75, 1.0, 1.3),
    decay=0.5,
    correlation=1 / 96,
    direction=(1.0, 0.5),
)
RIPPLE = MotionKind(
    "ripple",
    rms=1.0 * _PIXEL_1K,
    hertz=(0.6, 0.85, 1.2, 1.6, 2.1),
    decay=1.0,
    correlation=1 / 256,
    direction=(0.3, 1.0),
)
KINDS = (DRIFT, SWAY, RIPPLE)


@dataclass(frozen=True)
class Drift:
    """The one-way drift: wind heading in degrees (Blender's world: 0 = toward +X,
    90 = toward +Y; None = chosen by the seed) and speed overhead in degrees of arc per
    second (0 = no one-way flow)."""

    direction: float | None = None
    speed: float = DRIFT_SPEED


class MotionPrior(abc.ABC):
    """Predicts the motion of a still panorama as a spectral volume.

    Implementations take the (H, W, 3) image (float32 linear or uint8/uint16 sRGB, row
    0 = +Z, centre column = +X), an optional (H, W) float32 mask in [0, 1] (0 = still),
    and a seed; the same inputs must give the same volume. A learned prior would
    predict GID-normalised coefficients and :func:`~engine.animate.spectral.denormalize`
    them.
    """

    #: Recorded in the manifest and the motion file.
    name: str = "abstract"

    @abc.abstractmethod
    def spectral_volume(
        self,
        image: np.ndarray,
        *,
        mask: np.ndarray | None,
        seed: int,
        motion_map: np.ndarray | None = None,
        drift: Drift | None = None,
    ) -> SpectralVolume:
        """The spectral volume for ``image``; its amplitude is 0 wherever ``mask`` is 0.

        ``motion_map``: optional (H, W, 3) float32 in [0, 1], red = drift/flow, green =
        sway, blue = ripple (replaces the estimate of where each kind moves); ``drift``:
        the one-way flow's heading and speed.
        """


class ProceduralPrior(MotionPrior):
    """The built-in, weight-free prior (see the module doc)."""

    name = "procedural"

    def __init__(self, grid_width: int = GRID_WIDTH, kinds: tuple[MotionKind, ...] = KINDS) -> None:
        self.grid_width = grid_width
        self.kinds = kinds

    def spectral_volume(
        self,
        image: np.ndarray,
        *,
        mask: np.ndarray | None,
        seed: int,
        motion_map: np.ndarray | None = None,
        drift: Drift | None = None,
    ) -> SpectralVolume:
        height, width = image.shape[:2]
        gw = min(self.grid_width, width)
        gh = gw // 2
        drift = drift or Drift()
        # 1. Where each kind of motion happens (coarse shares), and how much moves (full res).
        if motion_map is not None:
            amplitude, coarse_shares = motion_map_shares(motion_map, gh, gw)
        else:
            shares = motion_kind_shares(image)
            moving = np.clip(shares.sum(axis=0), 0.0, 1.0)
            amplitude = upsample_grid(moving, height, width)
            amplitude[amplitude < STILL_BELOW] = 0.0
            coarse_shares = _normalised_shares(_resize_stack(shares, gh, gw))
        if mask is not None:
            amplitude = amplitude * mask if motion_map is not None else mask.copy()
        # 2. One coherent random field per kind, frequency and component; each kind
        # fills its own frequencies (in hertz) and is zero at the others'.
        rng = np.random.Generator(np.random.PCG64(seed))
        frequencies = np.concatenate([np.asarray(k.hertz, np.float64) for k in self.kinds])
        kinds = tuple(k.name for k in self.kinds for _ in k.hertz)
        coefficients = np.zeros((len(frequencies), 2, gh, gw), dtype=np.complex64)
        first = 0
        for kind, share in zip(self.kinds, coarse_shares, strict=True):
            fields = kind_coefficients(kind, gh, gw, rng)
            span = slice(first, first + len(kind.hertz))
            coefficients[span] = (fields * share[None, None]).astype(np.complex64)
            first += len(kind.hertz)
        # 3. The one-way drift: a wind over the dome where the drift kind moves.
        heading = drift_heading(drift, seed)
        flow = None
        if drift.speed > 0 and "drift" in kinds:
            drift_share = coarse_shares[[k.name for k in self.kinds].index("drift")]
            flow = (dome_flow(heading, math.radians(drift.speed), gh, gw) * drift_share).astype(
                np.float32
            )
        return SpectralVolume(
            coefficients,
            frequencies,
            amplitude.astype(np.float32),
            self.name,
            {
                "kinds": [k.name for k in self.kinds],
                "seed": seed,
                "drift_direction": heading,
                "drift_speed": drift.speed,
                "motion_map": motion_map is not None,
            },
            unit=HERTZ,
            kinds=kinds,
            flow=flow,
        )


def drift_heading(drift: Drift, seed: int) -> float:
    """The wind heading in degrees: the user's, or one the seed picks (its own stream, so
    the oscillation's random fields do not depend on it)."""
    if drift.direction is not None:
        return float(drift.direction) % 360.0
    rng = np.random.Generator(np.random.PCG64([seed, 0x64726966]))
    return float(round(rng.uniform(0.0, 360.0), 1))


def dome_flow(heading_deg: float, speed: float, height: int, width: int) -> np.ndarray:
    """One-way velocity (2, h, w) in radians of equirect angle per second (component 0 =
    +column, 1 = +row) of a flat layer moving toward ``heading_deg`` seen from the centre.

    A point of the layer at azimuth λ and elevation e moves as
    dλ/dt = ω·tan|e|·sin(h − λ) and de/dt = −sign(e)·ω·sin²e·cos(h − λ), ω = ``speed``
    (rad/s, the angular speed overhead): clouds run overhead at ω, recede toward the
    horizon downwind and rise from it upwind; below the horizon (water, reflections)
    the same in mirror image. Columns grow as azimuth falls (u = 0.5 − λ/2π), rows as
    elevation falls. tan|e| is capped at :data:`FLOW_ELEVATION_CAP`.
    """
    h = math.radians(heading_deg)
    col = (np.arange(width, dtype=np.float64) + 0.5) / width
    azimuth = (0.5 - col) * 2 * math.pi
    elevation = math.pi / 2 - (np.arange(height, dtype=np.float64) + 0.5) / height * math.pi
    e = elevation[:, None]
    along = np.cos(h - azimuth)[None, :]
    across = np.sin(h - azimuth)[None, :]
    d_azimuth = speed * np.tan(np.minimum(np.abs(e), FLOW_ELEVATION_CAP)) * across
    d_elevation = -np.sign(e) * speed * np.sin(e) ** 2 * along
    return np.stack([-d_azimuth, -d_elevation]).astype(np.float32)


def motion_map_shares(
    motion_map: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A user's motion map (H, W, 3) in [0, 1] → (amplitude (H, W), coarse shares (3, h, w)).

    The amplitude is the largest channel at full resolution (black = exactly 0 = still);
    each kind's coarse share is its channel over the largest one, so a pixel painted
    red 1 and green 0.5 flows fully and sways half.
    """
    channels = np.moveaxis(np.asarray(motion_map, dtype=np.float32), 2, 0)
    amplitude = channels.max(axis=0)
    coarse = _resize_stack(np.ascontiguousarray(channels), height, width)
    peak = coarse.max(axis=0)
    shares = np.where(peak[None] > 0, coarse / np.maximum(peak[None], 1e-6), 0.0)
    return amplitude.astype(np.float32), shares.astype(np.float32)


def kind_coefficients(
    kind: MotionKind, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """Coherent complex Gaussian coefficients (len(kind.hertz), 2, h, w) of one kind, radians.

    At frequency f the expected power is ∝ exp(−(f − f₀)/decay), normalised so the total
    RMS displacement over the loop is ``kind.rms`` where the kind has full share.
    """
    frequencies = np.asarray(kind.hertz, dtype=np.float64)
    power = np.exp(-(frequencies - frequencies[0]) / kind.decay)
    direction = np.asarray(kind.direction, dtype=np.float64)
    direction = direction / np.sqrt(np.sum(direction**2))
    # E|Re(S e^{iθ})|² = |S|²/2 per frequency, summed over frequencies and components.
    per_frequency = np.sqrt(2.0 * power / power.sum()) * kind.rms
    sigma = max(kind.correlation * width, 0.5)
    out = np.empty((len(frequencies), 2, height, width), dtype=np.complex64)
    for k in range(len(frequencies)):
        for c in range(2):
            re = spherical_noise(rng, height, width, sigma)
            im = spherical_noise(rng, height, width, sigma)
            # Re and Im unit-variance each → E|S|² = 2; halve it to 1 before scaling.
            out[k, c] = (re + 1j * im) * (per_frequency[k] * direction[c] / math.sqrt(2.0))
    return out


def spherical_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian noise blurred by ``sigma`` grid pixels on the equirect sphere."""
    noise = rng.standard_normal((height, width)).astype(np.float32)
    field = wrapped_blur(noise, sigma)
    std = float(field.std())
    return field / std if std > 0 else field


def wrapped_blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an equirect field that wraps across the seam and over the poles."""
    import cv2

    height = field.shape[0]
    pad = min(int(math.ceil(3 * sigma)) + 1, height - 1)
    padded = pad_equirect(np.ascontiguousarray(field, dtype=np.float32), pad)
    blurred = cv2.GaussianBlur(
        padded, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )
    return blurred[pad : pad + height, pad : pad + field.shape[1]]


# --------------------------------------------------------------------------- image analysis


def motion_kind_shares(image: np.ndarray, width: int = ANALYSIS_WIDTH) -> np.ndarray:
    """How much of each kind (drift, sway, ripple) moves at each analysed pixel.

    Returns (3, h, w) float32 in [0, 1] at ``min(width, W)`` wide; the rest is still.
    Heuristics on linear colour: smooth (low local log-luminance contrast) regions above
    the horizon that are not warm → sky drift; greenish textured regions → sway; smooth
    bluish regions below the horizon → ripple.
    """
    import cv2

    height0, width0 = image.shape[:2]
    w = min(width, width0)
    h = w // 2
    linear = _to_linear(image)
    small = cv2.resize(linear, (w, h), interpolation=cv2.INTER_AREA) if w != width0 else linear
    small = np.maximum(small, 0.0)
    luminance = small @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    floor = 1e-3 * float(np.median(luminance)) + 1e-6
    log_lum = np.log(luminance + floor)
    sigma = 1.5 * w / ANALYSIS_WIDTH
    mean = wrapped_blur(log_lum, sigma)
    texture = np.sqrt(np.maximum(wrapped_blur(log_lum * log_lum, sigma) - mean * mean, 0.0))
    total = small.sum(axis=2) + 3 * floor
    red, green, blue = small[..., 0], small[..., 1], small[..., 2]
    greenness = (green - np.maximum(red, blue)) / total  # yellow and grey are not foliage
    coolness = (blue - red) / total  # sky and water are blue or neutral, not warm
    elevation = 90.0 - (np.arange(h, dtype=np.float32) + 0.5) / h * 180.0
    above = _smoothstep(elevation, 2.0, 8.0)[:, None]
    below = _smoothstep(-elevation, 2.0, 8.0)[:, None]
    smooth = 1.0 - _smoothstep(texture, 0.05, 0.2)
    textured = _smoothstep(texture, 0.08, 0.3)
    # Sky is brighter than the panorama's median (a dark wall or ceiling is not sky);
    # water is darker than the sky it reflects (a lit white floor is not water).
    relative = luminance / (float(np.median(luminance)) + floor)
    sky_level = float(np.median(luminance[elevation > 10.0])) if np.any(elevation > 10.0) else 0.0
    sky = above * smooth * _smoothstep(relative, 0.8, 1.5) * _smoothstep(coolness, -0.08, -0.02)
    foliage = _smoothstep(greenness, 0.0, 0.04) * textured
    darker_than_sky = 1.0 - _smoothstep(luminance / (sky_level + floor), 0.8, 1.2)
    water = below * smooth * _smoothstep(coolness, 0.0, 0.05) * darker_than_sky
    shares = np.stack([sky, foliage, water]).astype(np.float32)
    blur = 2.0 * w / ANALYSIS_WIDTH
    return np.stack([np.clip(wrapped_blur(s, blur), 0.0, 1.0) for s in shares])


def _to_linear(image: np.ndarray) -> np.ndarray:
    if image.dtype.kind == "f":
        return np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    encoded = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4).astype(
        np.float32
    )


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((np.asarray(x, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _resize_stack(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if stack.shape[1:] == (height, width):
        return stack
    return np.stack([cv2.resize(s, (width, height), interpolation=cv2.INTER_AREA) for s in stack])


def _normalised_shares(shares: np.ndarray) -> np.ndarray:
    """Mix of kinds per coarse pixel, summing to 1 (sway where the image suggests none).

    The *amount* of motion is the amplitude map; the coarse shares only say which kind,
    so a user's mask over a region the estimate calls still still sways.
    """
    total = shares.sum(axis=0)
    fallback = np.zeros_like(shares)
    fallback[1] = 1.0  # sway
    weight = np.clip(total / 0.05, 0.0, 1.0)
    safe = np.where(total > 0, total, 1.0)
    mixed = shares / safe[None] * weight[None] + fallback * (1.0 - weight[None])
    return mixed.astype(np.float32)
