"""Motion from a video diffusion model animating the still itself (``animate --prior diffusion``).

In the spirit of DynamiCrafter and DynamicScaler's image-to-video mode, with the loop made
exact by our ring of frames:

1. the still is downscaled to a size the model handles: the model family's native window
   height (AnimateDiff: the UNet's ``sample_size`` × VAE factor, 512 px for SD 1.5; Wan 2.1:
   its 480 px training height), width twice that, both multiples of VAE factor × patch;
2. ``generate``'s own image-to-video path runs it through the ring sampler
   (:func:`engine.generate.command.prepare` and :func:`~engine.generate.command.sample_frames`:
   the still's latent for every frame of a ring that wraps, noised to the level the
   ``denoise_strength`` selects) for one window of the model's frames at its own rate;
3. the clip's motion is estimated with :mod:`engine.animate.clip`, the code
   ``engine motion`` runs on an equirect clip (trajectories from the first frame, the
   strongest harmonics in hertz, still where the clip neither moves nor changes), and
   mapped onto the full-size still (radians of equirect angle do not depend on size; the
   amplitude is scaled up nearest-neighbour).

The renderer then moves the full-resolution source by that spectral volume, so the pixels
stay the source's own (HDR kept, still pixels bit-identical, the loop exact); only the
motion comes from the model. The volume records where it came from (model, revision or
hash, strength, seed, steps, prompt), and ``motion.npz`` carries that into any later
``animate --motion``.

Imports torch (through :mod:`engine.generate`): only ``--prior diffusion`` loads this module.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from ..errors import BadInput
from ..generate import command as generate
from ..generate.sampler import denoise_start
from ..progress import JobContext
from . import clip
from .priors import Drift, MotionPrior
from .spectral import HERTZ, SpectralVolume

#: What the model is told the scene does when no prompt is given.
DEFAULT_PROMPT = (
    "a 360 degree panorama with gentle natural motion: leaves in the wind, "
    "drifting clouds, moving water"
)
#: Denoising steps when none are given (generate's default).
DEFAULT_STEPS = 25
#: ``--denoise-strength`` of the prior when none is given: the model repaints enough to
#: move things, the still still sets the layout.
DEFAULT_DENOISE_STRENGTH = generate.DEFAULT_DENOISE_STRENGTH


@dataclass(frozen=True)
class DiffusionSettings:
    """What the diffusion prior runs: ``model`` (hub id or folder, AnimateDiff or Wan 2.1),
    ``denoise_strength`` in (0, 1), ``steps``, ``prompt``, ``revision`` (a hub commit,
    branch or tag), ``device``/``dtype`` as ``generate`` takes them, ``guidance``.

    ``height`` (pixels) overrides the family's native window height and ``frames`` the
    model's window of frames (library and tests; the CLI uses the natives).
    """

    model: str
    denoise_strength: float = DEFAULT_DENOISE_STRENGTH
    steps: int = DEFAULT_STEPS
    prompt: str = DEFAULT_PROMPT
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    guidance: float = 7.5
    offline: bool = False
    height: int | None = None
    frames: int | None = None
    window_frames: int | None = None


def check_settings(settings: DiffusionSettings) -> DiffusionSettings:
    """The numbers, before anything is read: BadInput naming the value."""
    strength = settings.denoise_strength
    if not 0 < strength < 1:  # NaN fails too; 1 would ignore the still altogether
        raise BadInput(
            f"--denoise-strength must lie in (0, 1) for the diffusion prior, got {strength}"
        )
    if settings.steps < 1:
        raise BadInput(f"--steps must be at least 1, got {settings.steps}")
    if denoise_start(settings.steps, strength) >= settings.steps:
        raise BadInput(
            f"--denoise-strength {strength} of {settings.steps} steps leaves no step to run; "
            "raise --denoise-strength or --steps"
        )
    if not settings.prompt.strip():
        raise BadInput("--prompt is empty; describe the scene (or leave it out)")
    return settings


@dataclass(frozen=True)
class ModelShape:
    """What the prior needs to know of a model before loading it: the family, the size
    the still is brought to (pixels) and the clip it denoises (frames at ``fps``)."""

    family: str
    width: int
    height: int
    frames: int
    fps: float


def model_shape(settings: DiffusionSettings) -> ModelShape:
    """Read the model's configs (no weights): its family, native window height (rounded
    down to a multiple of VAE factor × patch, width twice it) and one window of frames."""
    from ..generate.backends import ANIMATEDIFF_FPS, ANIMATEDIFF_WINDOW_FRAMES
    from ..generate.loading import inspect_model
    from ..generate.wan import (
        WAN_MODEL_FPS,
        WAN_PIPELINE,
        WAN_TRAIN_FRAMES,
        WAN_TRAIN_HEIGHT,
        inspect_wan,
        model_class,
    )

    source, offline, revision = settings.model, settings.offline, settings.revision
    if model_class(source, offline=offline, revision=revision) == WAN_PIPELINE:
        info = inspect_wan(source, offline=offline)
        step, native = info.vae_factor * info.patch[1], WAN_TRAIN_HEIGHT
        window = settings.window_frames or WAN_TRAIN_FRAMES
        frames = math.ceil(window / info.time_factor) * info.time_factor
        family, fps = "wan", WAN_MODEL_FPS
    else:
        info = inspect_model(source, offline=offline, revision=revision)
        step, native = info.vae_factor * info.align, info.sample_size * info.vae_factor
        frames = settings.window_frames or ANIMATEDIFF_WINDOW_FRAMES
        family, fps = "animatediff", ANIMATEDIFF_FPS
    height = max(step, (settings.height or native) // step * step)
    return ModelShape(family, 2 * height, height, settings.frames or frames, fps)


class DiffusionPrior(MotionPrior):
    """A video diffusion model animates the downscaled still; its motion is kept (module doc)."""

    name = "diffusion"

    def __init__(self, settings: DiffusionSettings, ctx: JobContext | None = None) -> None:
        self.settings = check_settings(settings)
        self.ctx = ctx or JobContext()
        self._shape: ModelShape | None = None

    def check(self) -> ModelShape:
        """Read the model's configs (BadInput for a missing or broken model); no weights."""
        if self._shape is None:
            self._shape = model_shape(self.settings)
        return self._shape

    def spectral_volume(
        self,
        image: np.ndarray,
        *,
        mask: np.ndarray | None,
        seed: int,
        motion_map: np.ndarray | None = None,
        drift: Drift | None = None,
    ) -> SpectralVolume:
        """The model's clip of ``image`` → its spectral volume at ``image``'s size.

        ``motion_map`` and ``drift`` shape the procedural prior's motion and are not used
        here (the command refuses them with this prior).
        """
        shape = self.check()
        height, width = image.shape[:2]
        # 1-2. The still at the model's size, animated through generate's ring sampler.
        job = generate.prepare(self._generate_args(shape, seed), self.ctx, still=_Still(
            image, self.settings.denoise_strength))  # fmt: skip
        frames, _ = generate.sample_frames(job.backend, job.request, self.ctx, still=job.still)
        described = job.backend.describe()
        # 3. Its motion, as engine motion estimates an equirect clip's.
        with self.ctx.timed("clip_motion"):
            coefficients, frequencies, amplitude, energy = clip_volume(
                frames, shape.fps, height, width
            )
        if mask is not None:
            amplitude = amplitude * mask
        source = {
            "kind": "diffusion",
            "model": described.get("model", self.settings.model),
            "revision": described.get("revision"),
            "backend": described.get("backend"),
            "denoise_strength": self.settings.denoise_strength,
            "seed": seed,
            "steps": self.settings.steps,
            "steps_run": self.settings.steps - denoise_start(
                self.settings.steps, self.settings.denoise_strength),
            "guidance": self.settings.guidance,
            "prompt": self.settings.prompt,
            "size": [shape.width, shape.height],
            "frames": len(frames),
            "fps": shape.fps,
            "energy_kept": round(energy, 6),
        }  # fmt: skip
        return SpectralVolume(
            coefficients,
            frequencies,
            np.ascontiguousarray(amplitude, dtype=np.float32),
            self.name,
            {"source": source},
            unit=HERTZ,
        )

    def _generate_args(self, shape: ModelShape, seed: int) -> argparse.Namespace:
        """``generate``'s arguments for this clip, through its own parser (its defaults,
        its checks); ``--out`` is required there but never used by :func:`prepare`."""
        s = self.settings
        parser = argparse.ArgumentParser(prog="animate --prior diffusion")
        generate.add_arguments(parser)
        argv = [
            "--prompt", s.prompt, "--model", s.model, "--out", "unused",
            "--width", str(shape.width), "--height", str(shape.height),
            "--frames", str(shape.frames), "--steps", str(s.steps), "--seed", str(seed),
            "--guidance", repr(s.guidance), "--device", s.device, "--dtype", s.dtype,
        ]  # fmt: skip
        if s.window_frames:
            argv += ["--window-frames", str(s.window_frames)]
        if s.revision:
            argv += ["--revision", s.revision]
        if s.offline:
            argv.append("--offline")
        return parser.parse_args(argv)


@dataclass(frozen=True)
class _Still:
    """The in-memory still, as :func:`engine.generate.command.prepare` reads one."""

    image: np.ndarray
    strength: float

    def read(self, width: int, height: int) -> np.ndarray:
        return generate.still_for_model(self.image, width, height)

    def describe(self) -> dict:
        return {"denoise_strength": self.strength}


def clip_volume(
    frames: list[np.ndarray], fps: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """An equirect clip (a loop: its frames wrap) → (coefficients (K, 2, gh, gw) in
    radians, frequencies in hertz, amplitude (height, width): 1 where it moves, 0 where
    still, the share of motion energy kept), for a panorama ``width`` × ``height``.

    The steps and functions ``engine motion`` runs on an equirect clip.
    """
    scale = clip.analysis_scale(frames[0].shape[1])
    gray = [clip.analysis_gray(frame, scale) for frame in frames]
    motion = clip.trajectories(gray, wrap=True)
    spec = clip.clip_spectrum(motion, fps, scale)
    moving = clip.moving_mask(spec.moving, clip.changing_pixels(gray))
    spec = clip.ClipSpectrum(spec.coefficients, spec.frequencies, scale, moving, spec.energy)
    coefficients = clip.equirect_coefficients(spec, width)
    amplitude = clip.equirect_amplitude(spec, height, width)
    return coefficients, spec.frequencies, amplitude, spec.energy
