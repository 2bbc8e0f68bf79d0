"""The denoising loop on the ring latent, and the wrapped decode.

Reads like a diffusers pipeline: 1. check inputs → 2. encode prompt → 3. timesteps →
4. latents → 5. denoising loop (stage by stage) → 6. decode. Every step takes the
backend's step rule (:mod:`.steprule`: DDIM η = 0 on ε for AnimateDiff, the flow-match
Euler step on velocity for Wan) per view: predict for the view's window, form x̂₀ and
ε̂, step to the next noise level and write the view's cells back. Views of one step
may overlap (sphere views, wrapped windows, edge bands, camera views): a cell already
written this step is
pushed back one noise level with the rule's exact forward step before a later view
reads it, and the last writer wins — never an average, so the noise stays Gaussian.
The one exception is the blended tail (the last steps, nearly clean): there the clean
estimates of two tilings half a window apart are averaged with border-tapered weights,
so the borders of the second-to-last step are not left for one low-noise step to heal.

Randomness comes only from one ``torch.Generator`` seeded with ``seed`` on the CPU:
the same request gives the same latents. Cancellation is checked before every model
call and raises :class:`~engine.errors.JobCancelled`; nothing is returned half done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from ..errors import BadInput
from ..progress import CancelToken, JobContext
from . import schedule as sch
from .ring import View, accumulate, gather, gather_mask, mark_written, scatter, window_view
from .steprule import StepRule, step_rule

#: The reference schedule: the whole latent is one window in every step — no shifting,
#: no sphere or camera views, no blended tail, no coarse pass — and frames decode without
#: wrapped columns: exactly what diffusers' ``AnimateDiffPipeline`` computes (the tests
#: compare the two). Library only; a panorama made this way has seams.
SINGLE = "single"
SCHEDULES = ("dynamic", "windows", "fixed", SINGLE)


@dataclass(frozen=True)
class GenerateRequest:
    """What to sample. Sizes in pixels; the latent is (C, frames, height/f, width/f)."""

    prompt: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float = 7.5
    seed: int = 0
    negative: str = ""
    schedule: str = "dynamic"  # "dynamic" | "windows" | "fixed" | "single" (see SINGLE)
    cameras: Sequence[Any] = ()
    sphere_latitudes: Sequence[float] = sch.SPHERE_LATITUDES
    sphere_longitudes: int = sch.SPHERE_LONGITUDES
    sphere_fov: float = sch.SPHERE_FOV
    sphere_poles: bool = True
    blend_steps: int | None = None  # None: schedule.default_blend_steps(steps)
    camera_margin: float = sch.CAMERA_MARGIN
    camera_fraction: float = sch.CAMERA_FRACTION
    #: Image-to-video: the last ``denoise_strength`` fraction of the steps run, from the
    #: still's latent noised to their first level (1: from pure noise, text-to-video).
    denoise_strength: float = 1.0


@dataclass
class SampleResult:
    """The clean ring latent (C, F, H, W) and what was done to make it."""

    latent: torch.Tensor
    stages: list[sch.Stage]
    timesteps: list[int] = field(default_factory=list)  # the backend's, for all steps
    window_pixels: list[float] = field(default_factory=list)  # per step, per latent pixel
    prompt_info: dict[str, int] = field(default_factory=dict)  # tokens and chunks, if any

    def first_stage_timesteps(self) -> list[int]:
        """The timesteps the first stage denoises at, in order (for the manifest)."""
        return self.timesteps[self.stages[0].start : self.stages[0].stop]


def check_request(request: GenerateRequest, backend: Any) -> None:
    """Refuse a request the backend cannot sample, naming the value (BadInput)."""
    check_request_numbers(request)
    check_request_sizes(
        request,
        backend.vae_factor,
        backend.align,
        backend.window,
        time_factor=getattr(backend, "time_factor", 1),
    )


def check_request_numbers(request: GenerateRequest) -> None:
    """The model-independent checks (run before a model is even resolved)."""
    if not request.prompt.strip():
        raise BadInput("prompt is empty; describe the scene to generate")
    if request.width != 2 * request.height:
        raise BadInput(
            f"width must be twice height for an equirect panorama, "
            f"got {request.width}x{request.height}"
        )
    if request.steps <= 0:
        raise BadInput(f"steps must be at least 1, got {request.steps}")
    if not math.isfinite(request.guidance) or request.guidance < 0:
        raise BadInput(f"guidance must be a finite number ≥ 0, got {request.guidance}")
    if request.frames <= 0:
        raise BadInput(f"frames must be at least 1, got {request.frames}")
    if request.schedule not in SCHEDULES:
        raise BadInput(f"schedule must be one of {', '.join(SCHEDULES)}, got {request.schedule!r}")
    if request.blend_steps is not None and request.blend_steps < 0:
        raise BadInput(f"blend_steps must be at least 0, got {request.blend_steps}")
    if not 0 <= request.camera_margin <= 1:  # NaN fails too
        raise BadInput(f"camera_margin must lie in [0, 1], got {request.camera_margin}")
    if not 0 <= request.camera_fraction <= 1:
        raise BadInput(f"camera_fraction must lie in [0, 1], got {request.camera_fraction}")
    if not 0 < request.denoise_strength <= 1:  # NaN fails too
        raise BadInput(f"denoise strength must lie in (0, 1], got {request.denoise_strength}")
    if denoise_start(request.steps, request.denoise_strength) >= request.steps:
        raise BadInput(
            f"denoise strength {request.denoise_strength} of {request.steps} steps leaves no "
            "step to run; raise --denoise-strength or --steps"
        )


def denoise_start(steps: int, strength: float) -> int:
    """The first step an image-to-video run takes: the schedule keeps its last
    ``int(steps × strength)`` steps, as diffusers' img2img and video2video pipelines do."""
    return steps - min(int(steps * strength), steps)


def check_request_sizes(
    request: GenerateRequest,
    vae_factor: int,
    align: int,
    window: tuple[int, int, int],
    *,
    time_factor: int = 1,
) -> None:
    """Sizes against the model: multiples of the VAE × UNet factor, at least one window.

    ``time_factor``: output frames per latent frame (Wan's VAE: 4), so ``frames`` must be
    a multiple of it and the window's frames count latent frames.
    """
    if request.frames % time_factor:
        raise BadInput(
            f"frames {request.frames} is not a multiple of {time_factor} "
            f"(the model's VAE packs {time_factor} frames in each latent frame)"
        )
    step = vae_factor * align
    for name, value in (("width", request.width), ("height", request.height)):
        if value % step:
            raise BadInput(f"{name} {value} is not a multiple of {step} (VAE factor × UNet factor)")
    fw, h, _ = window
    if request.schedule == SINGLE:
        return  # the whole latent is the window: any aligned size the model accepts
    if request.height // vae_factor < h:
        raise BadInput(
            f"height {request.height} is below the model's window of {h * vae_factor} pixels"
        )
    if request.frames // time_factor < fw:
        raise BadInput(
            f"frames {request.frames} is below the model's window of {fw * time_factor} frames"
        )


# --------------------------------------------------------------------------- the loop


def sample_latent(
    backend: Any,
    request: GenerateRequest,
    ctx: JobContext,
    *,
    latents: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
) -> SampleResult:
    """Sample the clean ring latent for ``request`` with ``backend``.

    ``latents`` (C, F, H, W), like diffusers' ``latents=``, replaces the initial noise
    (the seeded generator still drives any later re-noising). ``init`` (C, F, H, W), the
    clean latent of a still (image-to-video), is noised with that noise to the level of
    the first step ``request.denoise_strength`` keeps (:func:`noised_init`); at strength 1
    it is not used, so the run is the text-to-video run of the same seed, exactly.
    """
    # 1. Check inputs.
    check_request(request, backend)
    H, W = request.height // backend.vae_factor, request.width // backend.vae_factor
    latent_frames = request.frames // getattr(backend, "time_factor", 1)
    size = (latent_frames, H, W) if request.schedule == SINGLE else backend.window
    window = sch.WindowGrid(size, backend.align)
    # 2. Encode the prompt (and the negative prompt for classifier-free guidance).
    with ctx.timed("encode_prompt"):
        embeds = backend.encode_prompt(request.prompt, request.negative, request.guidance)
    # 3. Timesteps, their noise levels (the backend's step rule) and the stage plan.
    rule = step_rule(backend)
    timesteps = backend.timesteps(request.steps)
    levels = [rule.level(t) for t in timesteps] + [rule.final_level]
    targets = step_targets(backend, rule, timesteps, levels)
    stages = sch.plan_stages(
        request.steps, (H, W), window, schedule=request.schedule, blend_steps=request.blend_steps
    )
    start = denoise_start(request.steps, request.denoise_strength)
    stages = sch.stages_from(stages, start)
    # 4. Initial latents: unit Gaussian noise on the first stage's canvas.
    generator = torch.Generator("cpu").manual_seed(request.seed)
    scale = stages[0].scale
    shape = (backend.latent_channels, latent_frames, H // scale, W // scale)
    if latents is None:
        x = _noise(shape, generator, backend.device)
    elif tuple(latents.shape) != shape:
        raise BadInput(f"latents must have shape {shape}, got {tuple(latents.shape)}")
    else:
        x = latents.to(backend.device, torch.float32)
    if start > 0:
        x = noised_init(init, x, scale, rule, levels[start])
    result = SampleResult(latent=x, stages=stages, timesteps=timesteps)
    if hasattr(embeds, "describe"):
        result.prompt_info = embeds.describe()
    total = sum(s.stop - s.start for s in stages)
    done = 0
    # 5. Denoising loop, stage by stage (Global Motion Guidance when there is a coarse pass).
    with ctx.timed("denoise"):
        for stage in stages:
            if stage.scale != scale:
                start = levels[stage.start]
                x = _upscale_and_renoise(x, scale // stage.scale, rule, start, generator)
                scale = stage.scale
            grid = tuple(x.shape[1:])
            for i in range(stage.start, stage.stop):
                done += 1
                ctx.step(f"denoise ({stage.name})", done, total)
                step = _StepState(
                    backend, rule, embeds, request.guidance, timesteps[i], levels[i],
                    targets[i], generator, ctx,
                )  # fmt: skip
                views = _stage_views(stage, i, window, grid, request)
                if stage.views == "blend":
                    x, pixels = step.run_blended(x, views)
                else:
                    x, pixels = step.run(x, views, window, i, fill=stage.views == "sphere")
                result.window_pixels.append(pixels / float(np.prod(grid)))
    result.latent = x
    return result


def step_targets(
    backend: Any, rule: StepRule, timesteps: list[int], levels: list[float]
) -> list[float]:
    """The level each step lands on: the next step's level, unless the backend says where
    its own scheduler's step lands (``previous_timestep``: diffusers' DDIM goes from t to
    t − T/n, which linspace spacing makes differ from the next listed timestep)."""
    previous = getattr(backend, "previous_timestep", None)
    if previous is None:
        return levels[1:]
    landing = [previous(i, timesteps) for i in range(len(timesteps))]
    return [rule.final_level if t is None else rule.level(t) for t in landing]


def noised_init(
    init: torch.Tensor | None, noise: torch.Tensor, scale: int, rule: StepRule, level: float
) -> torch.Tensor:
    """The still's clean latent (C, F, H, W) at the start ``level`` by the rule's forward
    rule (DDIM: √ᾱ·x₀ + √(1−ᾱ)·ε, diffusers' ``add_noise``; flow matching:
    (1−σ)·x₀ + σ·ε, its ``scale_noise``), area-averaged to the first stage's canvas
    (``scale`` 2: the coarse pass)."""
    if init is None:
        raise BadInput("a denoise strength below 1 needs the still's latent (image-to-video)")
    C, F = noise.shape[:2]
    if tuple(init.shape) != (C, F, noise.shape[2] * scale, noise.shape[3] * scale):
        raise BadInput(f"the still's latent has shape {tuple(init.shape)}, the ring "
                       f"{(C, F, noise.shape[2] * scale, noise.shape[3] * scale)}")  # fmt: skip
    x0 = init.to(noise.device, torch.float32)
    if scale > 1:
        x0 = nnf.avg_pool2d(x0, scale)  # pools the last two axes (rows, columns) only
    return rule.combine(x0, noise, level)


def _noise(shape: tuple[int, ...], generator: torch.Generator, device: Any) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


def _stage_views(
    stage: sch.Stage, i: int, window: sch.WindowGrid, grid: tuple, request: GenerateRequest
) -> list[View]:
    if stage.views == SINGLE:
        return [window_view(0, 0, 0, grid, grid)]
    if stage.views == "fixed":
        views = sch.fixed_windows(window, grid)
    elif stage.views == "blend":
        return sch.blend_windows(i, window, grid)
    elif stage.views == "sphere":
        views = sch.sphere_views(
            i,
            window,
            grid,
            latitudes=request.sphere_latitudes,
            longitudes=request.sphere_longitudes,
            fov=request.sphere_fov,
            poles=request.sphere_poles,
        )
    else:
        views = sch.shifted_windows(i, window, grid)
    if request.cameras and i < sch.camera_steps(request.steps, request.camera_fraction):
        views += sch.camera_views(i, window, grid, request.cameras, request.camera_margin)
    return views


@dataclass
class _StepState:
    """One denoising step from noise level ``level`` to ``next_level`` (the rule's
    levels: ᾱ for DDIM, σ for flow matching) over a list of views."""

    backend: Any
    rule: StepRule
    embeds: Any
    guidance: float
    t: float
    level: float
    next_level: float
    generator: torch.Generator
    ctx: JobContext

    def run(
        self, x: torch.Tensor, views: list[View], window: sch.WindowGrid, i: int, fill: bool
    ) -> tuple[torch.Tensor, int]:
        """Denoise every view (then fill cells no view wrote, when ``fill``), in waves.

        The result is that of denoising the views one after another in list order (a
        view reads the cells earlier views wrote, re-noised; the last writer wins):
        :func:`plan_waves` only groups views whose order cannot change what any of them
        reads, so each wave's windows go to the model together (:func:`predict_windows`).
        """
        F, HW = x.shape[1], x.shape[2] * x.shape[3]
        if fill:
            written = torch.zeros(F, HW, dtype=torch.bool)
            for view in views:
                mark_written(written, view)
            if not bool(written.all()):
                grid = tuple(x.shape[1:])
                views = views + sch.fill_windows(i, window, grid, written.numpy())
        again = reread_masks(views, (F, HW))
        # Noise for re-noised cells is drawn in list order, as one view at a time would.
        noise = {
            k: _noise((x.shape[0], len(views[k].frames), views[k].height, views[k].width),
                      self.generator, x.device)
            for k, mask in enumerate(again) if mask is not None
        }  # fmt: skip
        out = x.clone()
        limit = getattr(self.backend, "windows_per_call", 1) or len(views)
        for wave in plan_waves(views, (F, HW)):
            for start in range(0, len(wave), limit):
                chunk = [(views[k], again[k], noise.get(k)) for k in wave[start : start + limit]]
                self.denoise_chunk(out, chunk)
        return out, sum(view.pixels for view in views)

    def denoise_chunk(self, latent: torch.Tensor, chunk: list[tuple]) -> None:
        """Read every (view, re-noise mask, noise) window of ``chunk``, then write each
        one's step back into ``latent`` in order (in place)."""
        windows = [self.read_window(latent, *item) for item in chunk]
        preds = self.predict_all(windows)
        for (view, _, _), window, pred in zip(chunk, windows, preds, strict=True):
            x0, eps = self.rule.split(window, pred, self.level)
            scatter(latent, view, self.rule.combine(x0, eps, self.next_level))

    def read_window(self, latent: torch.Tensor, view: View, again: Any, noise: Any) -> torch.Tensor:
        """The view's window, the cells in ``again`` (written earlier this step; None: no
        cell) pushed back one level with ``noise``."""
        window = gather(latent, view)
        if again is None:
            return window
        renoised = self.rule.renoise(window, self.next_level, self.level, noise)
        return torch.where(again.to(window.device), renoised, window)

    def run_blended(self, x: torch.Tensor, views: list[View]) -> tuple[torch.Tensor, int]:
        """One step from the border-tapered weighted mean of every view's clean
        estimate (views read the step's input only, so none is re-noised)."""
        C, F, H, W = x.shape
        total = torch.zeros(C, F, H * W, dtype=x.dtype, device=x.device)
        weight = torch.zeros(F, H * W, dtype=x.dtype, device=x.device)
        limit = getattr(self.backend, "windows_per_call", 1) or len(views)
        for start in range(0, len(views), limit):
            chunk = views[start : start + limit]
            windows = [gather(x, view) for view in chunk]
            for view, window, pred in zip(chunk, windows, self.predict_all(windows), strict=True):
                x0, _ = self.rule.split(window, pred, self.level)
                # The tent is built in float64 numpy on the host; the device never sees
                # float64 (MPS has none), so it crosses as the latent's own dtype.
                tent = sch.blend_weights(view, (F, H, W)).astype(np.float32)
                weights = torch.from_numpy(tent).to(x.device, x.dtype)
                accumulate(total, weight, view, x0, weights)
        x0 = (total / weight).view_as(x)
        eps = self.rule.noise_from(x, x0, self.level)
        return self.rule.combine(x0, eps, self.next_level), sum(v.pixels for v in views)

    def predict_all(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """The model's outputs for ``windows`` at this step (see :func:`predict_windows`)."""
        return predict_windows(
            self.backend, windows, self.t, self.embeds, self.guidance, self.ctx.cancel
        )


def predict_windows(
    backend: Any,
    windows: list[torch.Tensor],
    t: float,
    embeds: Any,
    guidance: float,
    cancel: CancelToken,
) -> list[torch.Tensor]:
    """The model's output for each window (C, Fw, h, w) at timestep ``t``, in order.

    The one place windows meet the model. A backend with its own ``predict_windows``
    (the Ray workers of :mod:`.cluster`) runs the list as it likes; any other gets one
    ``predict_noise`` call per window, each after a cancellation check.
    """
    many = getattr(backend, "predict_windows", None)
    if many is not None:
        return many(windows, t, embeds, guidance, cancel)
    outs = []
    for window in windows:
        cancel.check()
        outs.append(backend.predict_noise(window, t, embeds, guidance))
    return outs


def reread_masks(views: Sequence[View], grid: tuple[int, int]) -> list[torch.Tensor | None]:
    """Per view, the (Fw, h, w) cells that views before it in the list write (None when
    there are none): the cells it must re-noise before reading. ``grid`` is (F, H·W)."""
    written = torch.zeros(grid, dtype=torch.bool)
    masks: list[torch.Tensor | None] = []
    for view in views:
        again = gather_mask(written, view)
        masks.append(again if bool(again.any()) else None)
        mark_written(written, view)
    return masks


def plan_waves(views: Sequence[View], grid: tuple[int, int]) -> list[list[int]]:
    """Group views (indices, ascending in each wave) so that running the waves in order —
    every window of a wave read first, then written back in list order — gives exactly
    what running the views one by one in list order gives. ``grid`` is (F, H·W).

    A view joins the wave after the last one that wrote a cell it reads (read after
    write), and no earlier wave than any earlier view that reads or writes a cell it
    writes (same wave is fine: reads come first, writes keep list order).
    """
    last_write = np.full(grid, -1, dtype=np.int64)
    last_access = np.full(grid, -1, dtype=np.int64)
    waves: list[list[int]] = []
    for k, view in enumerate(views):
        reads = np.ix_(view.frames, view.cells)
        writes = np.ix_(view.frames, view.cells[view.keep])
        wave = max(
            int(last_write[reads].max()) + 1,
            int(last_access[writes].max(initial=-1)),
            0,
        )
        last_access[reads] = np.maximum(last_access[reads], wave)
        last_write[writes] = np.maximum(last_write[writes], wave)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(k)
    return waves


def _upscale_and_renoise(
    x: torch.Tensor,
    factor: int,
    rule: StepRule,
    level: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Coarse clean latent → bicubic ×factor (wrapping in longitude) → noise ``level`` (the
    refine stage's first) with fresh Gaussian noise by the rule's forward rule (the refine
    pass of Global Motion Guidance)."""
    pad = 2
    C, F, H, W = x.shape
    frames = x.permute(1, 0, 2, 3)  # (F, C, H, W): frames as the batch
    wrapped = torch.cat([frames[..., -pad:], frames, frames[..., :pad]], dim=-1)
    up = nnf.interpolate(wrapped, scale_factor=factor, mode="bicubic", align_corners=False)
    up = up[..., pad * factor : up.shape[-1] - pad * factor].permute(1, 0, 2, 3).contiguous()
    x0 = up / rule.signal(rule.final_level)
    return rule.combine(x0, _noise(tuple(up.shape), generator, x.device), level)


# --------------------------------------------------------------------------- decode


def decode_video(
    backend: Any, latent: torch.Tensor, ctx: JobContext, *, wrap: bool = True
) -> list[np.ndarray]:
    """Decode every frame of the ring latent (C, F, H, W), with wrapped columns unless
    ``wrap`` is False (the reference schedule decodes as diffusers does).

    A backend whose VAE mixes frames (Wan's causal, time-compressing decoder) decodes
    the ring itself with its ``decode_video`` (wrapped temporal context); one with
    ``decode_frames`` decodes every frame itself (frames are independent)."""
    if hasattr(backend, "decode_video"):
        with ctx.timed("decode"):
            return backend.decode_video(latent, ctx)
    if hasattr(backend, "decode_frames"):  # the frames at once (Ray workers, in parallel)
        with ctx.timed("decode"):
            return backend.decode_frames(latent, ctx, wrap=wrap)
    frames = []
    count = latent.shape[1]
    with ctx.timed("decode"):
        for f in range(count):
            ctx.step("decode", f + 1, count)
            frames.append(backend.decode_frame(latent[:, f], wrap=wrap))
    return frames
