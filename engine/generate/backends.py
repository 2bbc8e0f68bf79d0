"""Model backends: the small interface the sampler needs, and AnimateDiff on diffusers.

A backend does four things (so Wan 2.1 or another video model can be added without
touching the sampler): encode a prompt; predict the noise of one latent window
(C, F, h, w) at a timestep, classifier-free guidance included; give the noise
schedule (``alphas_cumprod`` and the timesteps for a step count); decode one latent
frame (C, h, W) to pixels. Latents follow :mod:`.ring`'s layout (row 0 = +Z, centre
column faces +X).

Three optional attributes let a model family differ without a second sampler (Wan 2.1,
:mod:`.wan`, uses all three): ``step_rule`` (:mod:`.steprule`; without it, DDIM on
``alphas_cumprod`` and ``predict_noise`` returns ε), ``time_factor`` (output frames per
latent frame; 1 without it) and ``decode_video(latent, ctx)`` (the backend decodes the
whole ring itself, e.g. a causal video VAE with wrapped temporal context).

Finding, checking and loading the weights is :mod:`.loading`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import PanoLoopError

if TYPE_CHECKING:
    from .loading import ModelInfo

#: AnimateDiff's motion modules were trained on 16-frame clips.
ANIMATEDIFF_WINDOW_FRAMES = 16
#: AnimateDiff's motion modules learned motion from clips sampled at about 8 frames/s;
#: denoising at this rate keeps motion at its natural speed (REFERENCE.md).
ANIMATEDIFF_FPS = 8.0
#: Latent columns of wrapped context each side when decoding (the VAE's reach is wide).
DECODE_PAD = 8
#: AnimateDiff's motion modules were trained with linear betas; diffusers documents this
#: DDIM setup for every AnimateDiff pipeline (SD 1.5 bases ship PNDM, scaled_linear, leading).
ANIMATEDIFF_SCHEDULE = {
    "beta_schedule": "linear",
    "clip_sample": False,
    "timestep_spacing": "linspace",
    "steps_offset": 1,
}


def animatediff_scheduler(config: Any) -> Any:
    """DDIM from a base's scheduler config with AnimateDiff's recipe on top.

    Only the recipe's four fields change; the config's betas range, training length,
    ``prediction_type`` and ``set_alpha_to_one`` are kept, as diffusers'
    ``DDIMScheduler.from_pretrained(base, subfolder="scheduler", **recipe)`` does.
    """
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(dict(config), **ANIMATEDIFF_SCHEDULE)


class Backend(Protocol):
    """What the sampler needs from a model."""

    latent_channels: int
    vae_factor: int
    window: tuple[int, int, int]  # native (frames, rows, cols) of one call, latent pixels
    align: int  # latent sizes and offsets must be multiples of this
    device: Any
    alphas_cumprod: Any  # float64 numpy array on the host, index = training timestep
    final_alpha: float  # ᾱ after the last step

    def timesteps(self, steps: int) -> list[int]: ...

    def previous_timestep(self, i: int, timesteps: list[int]) -> int | None: ...

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> Any: ...

    def predict_noise(self, latents: Any, timestep: int, prompt: Any, guidance: float) -> Any: ...

    def decode_frame(self, latent: Any, *, wrap: bool = True) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- AnimateDiff


@dataclass
class PromptEmbeds:
    """Text-encoder states for the prompt and (with guidance) the negative prompt.

    ``cond`` and ``uncond`` are (1, 77·chunks, width): both have the same number of
    chunks so classifier-free guidance can batch them. ``tokens`` counts the prompt's
    own tokens (no BOS/EOS), ``negative_tokens`` the negative prompt's.
    """

    cond: Any
    uncond: Any | None
    tokens: int = 0
    negative_tokens: int = 0
    chunks: int = 1

    def describe(self) -> dict[str, int]:
        """The manifest's prompt fields."""
        return {
            "prompt_tokens": self.tokens,
            "negative_prompt_tokens": self.negative_tokens,
            "prompt_chunks": self.chunks,
        }


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """The prompt's token ids, without BOS/EOS and without any truncation."""
    return list(
        tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
    )


def chunk_count(*token_counts: int, context: int = 77) -> int:
    """Chunks of ``context − 2`` tokens the longest prompt needs (at least one)."""
    per_chunk = context - 2
    return max(1, *(math.ceil(n / per_chunk) for n in token_counts))


def chunked_token_ids(ids: list[int], tokenizer: Any, chunks: int) -> Any:
    """Ids → (chunks, context) int64: each row is BOS + up to ``context − 2`` tokens + EOS,
    padded with the tokenizer's pad token, as the widely used web UIs feed CLIP.

    Each chunk is a complete CLIP input, so every chunk is encoded with its own
    positions 0…76 and nothing past 77 tokens is cut. A prompt shorter than one chunk
    gives exactly what ``tokenizer(text, padding="max_length", truncation=True)`` gives.
    Chunks past the end of ``ids`` hold BOS + EOS + padding (the empty prompt), so a
    short negative prompt lines up with a long prompt.
    """
    import torch

    context = tokenizer.model_max_length
    per_chunk = context - 2
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for k in range(chunks):
        part = ids[k * per_chunk : (k + 1) * per_chunk]
        row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
        rows.append(row + [pad] * (context - len(row)))
    return torch.tensor(rows, dtype=torch.long)


class AnimateDiffBackend:
    """AnimateDiff (SD 1.5 UNet + motion modules) behind :class:`Backend`.

    Works on per-frame latents (4 channels, VAE factor 8 at full size), so a latent
    loop is a pixel loop. One call denoises a window of ``window_frames`` frames.
    """

    latent_channels = 4

    def __init__(self, pipe: Any, info: ModelInfo, *, window_frames: int, device: str) -> None:
        import torch

        self.pipe = pipe
        self.info = info
        self.device = torch.device(device)
        self.dtype = pipe.unet.dtype
        self.vae_factor = info.vae_factor
        self.align = info.align
        self.window = (window_frames, info.sample_size, info.sample_size)
        # The sampler takes DDIM (η = 0) steps on AnimateDiff's noise schedule (linear
        # betas, linspace spacing); a copy keeps the loaded pipeline's scheduler untouched.
        self.scheduler = animatediff_scheduler(pipe.scheduler.config)
        self.prediction_type = self.scheduler.config.prediction_type
        # ᾱ stays on the host in float64 numpy: the sampler reads Python floats from it,
        # and no float64 tensor ever reaches the device (MPS has no float64).
        self.alphas_cumprod = self.scheduler.alphas_cumprod.double().numpy()
        self.final_alpha = float(self.scheduler.final_alpha_cumprod)
        self.scaling_factor = float(pipe.vae.config.scaling_factor)
        #: True once a non-finite decode made the VAE run in float32 (see decode_frame).
        self.vae_upcast = False
        self.attention = use_sdpa_on_cuda(pipe, self.device)

    def timesteps(self, steps: int) -> list[int]:
        self.scheduler.set_timesteps(steps)
        return [int(t) for t in self.scheduler.timesteps]

    def previous_timestep(self, i: int, timesteps: list[int]) -> int | None:
        """Where diffusers' DDIM step from ``timesteps[i]`` lands: ``t − T/n`` (T training
        steps, n steps), None below 0 (the final ᾱ). With linspace spacing this is not the
        next listed timestep (999 → 959, then 958 is evaluated): kept as diffusers does."""
        prev = timesteps[i] - self.scheduler.config.num_train_timesteps // len(timesteps)
        return prev if prev >= 0 else None

    def schedule_summary(self) -> dict[str, Any]:
        """The noise schedule for the manifest (timesteps are added by the caller)."""
        config = self.scheduler.config
        return {"beta_schedule": config.beta_schedule, "timestep_spacing": config.timestep_spacing}

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> PromptEmbeds:
        """Encode prompt and negative prompt in 77-token chunks, concatenated.

        CLIP sees 77 positions; a longer prompt is split into chunks of 75 tokens, each
        encoded as its own CLIP input and the states concatenated along the sequence
        (the UNet's cross-attention takes any length). The negative prompt gets as many
        chunks as the prompt (and vice versa), so the two batch for guidance.
        """
        tokenizer = self.pipe.tokenizer
        ids = prompt_token_ids(tokenizer, prompt)
        negative_ids = prompt_token_ids(tokenizer, negative) if guidance > 1.0 else []
        chunks = chunk_count(len(ids), len(negative_ids), context=tokenizer.model_max_length)
        uncond = None
        if guidance > 1.0:
            uncond = self._encode_chunks(chunked_token_ids(negative_ids, tokenizer, chunks))
        return PromptEmbeds(
            cond=self._encode_chunks(chunked_token_ids(ids, tokenizer, chunks)),
            uncond=uncond,
            tokens=len(ids),
            negative_tokens=len(negative_ids),
            chunks=chunks,
        )

    def _encode_chunks(self, ids: Any) -> Any:
        """(chunks, 77) ids → (1, chunks·77, width) text states on the device."""
        import torch

        with torch.inference_mode():
            states = self.pipe.text_encoder(ids.to(self._module_device(self.pipe.text_encoder)))[0]
        return states.reshape(1, -1, states.shape[-1]).to(self.device, self.dtype)

    def predict_noise(
        self, latents: Any, timestep: int, prompt: PromptEmbeds, guidance: float
    ) -> Any:
        """ε for a window (C, F, h, w) at ``timestep``, with classifier-free guidance."""
        import torch

        frames = latents.shape[1]
        sample = latents.unsqueeze(0).to(self.device, self.dtype)
        states = prompt.cond
        if prompt.uncond is not None:
            sample = torch.cat([sample, sample])
            states = torch.cat([prompt.uncond, prompt.cond])
        states = states.repeat_interleave(frames, dim=0)
        with torch.inference_mode():
            out = self.pipe.unet(
                sample,
                torch.tensor(timestep, device=self.device),
                encoder_hidden_states=states,
            ).sample.float()
        if prompt.uncond is not None:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        out = out[0].to(latents.device)
        if self.prediction_type == "v_prediction":
            alpha = float(self.alphas_cumprod[timestep])
            out = alpha**0.5 * out + (1 - alpha) ** 0.5 * latents.float()
        return out

    def encode_still(self, image: Any, frames: int) -> Any:
        """A still (H, W, 3) float RGB in [0, 1] → its clean latent (C, frames, H/f, W/f),
        the same for every frame of the ring (the image-to-video init, see
        :func:`.sampler.noised_init`).

        The VAE encodes the still padded with wrapped columns (:func:`still_pixels`), so
        the seam is encoded as an interior column; the latent is the posterior's mean (no
        sampling noise: the seeded generator stays the sampler's alone), scaled by the
        VAE's ``scaling_factor``.
        """
        import torch

        pixels, pad = still_pixels(image, self.vae_factor)
        vae = self.pipe.vae
        with torch.inference_mode():
            sample = pixels.unsqueeze(0).to(self._module_device(vae), vae.dtype)
            latent = vae.encode(sample).latent_dist.mean[0].float().cpu()
        latent = latent[..., pad : latent.shape[-1] - pad] * self.scaling_factor
        return latent.unsqueeze(1).repeat(1, frames, 1, 1)

    def decode_frame(self, latent: Any, *, wrap: bool = True) -> Any:
        """One latent frame (C, h, W) → uint8 RGB (h·f, W·f, 3); see :meth:`decode_pixels`."""
        import torch

        image = self.decode_pixels(latent, wrap=wrap)
        return (image * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def decode_pixels(self, latent: Any, *, wrap: bool = True) -> Any:
        """One latent frame (C, h, W) → float RGB (3, h·f, W·f) in [0, 1] on the CPU.

        With ``wrap`` the latent is padded with ``DECODE_PAD`` wrapped columns each side,
        decoded and cropped, so no seam is added (plain VAE decoding treats the left and
        right edges as borders); without, it is decoded as diffusers' pipelines do. A
        latent or a decoded image holding NaN or ±Inf is never turned into pixels (it
        would clamp to black or white): see :meth:`decode_finite`.
        """
        import torch

        pad = min(DECODE_PAD, latent.shape[-1]) if wrap else 0
        padded = (
            torch.cat([latent[..., -pad:], latent, latent[..., :pad]], dim=-1) if pad else latent
        )
        image = self.decode_finite(padded)
        crop = pad * self.vae_factor
        image = image[:, :, crop : image.shape[-1] - crop]
        return (image / 2 + 0.5).clamp(0, 1).cpu()

    def decode_finite(self, latent: Any) -> Any:
        """Decode (C, h, w) → float image (3, h·f, w·f) in [-1, 1], finite or an error.

        A half-precision VAE can overflow (activations above 65504 become Inf, then
        NaN): when the decoded image is not finite, the VAE is upcast to float32 for
        this and every later frame (``vae_upcast`` in the manifest) and the frame is
        decoded again, as diffusers' ``upcast_vae`` does. A latent that is itself not
        finite (the UNet overflowed) cannot be rescued by the VAE: one clear error.
        """
        import torch

        if not bool(torch.isfinite(latent).all()):
            raise PanoLoopError(
                "the denoised latent holds NaN or Inf values (the model overflowed in "
                f"{str(self.dtype).removeprefix('torch.')})",
                fix="run again with --dtype float32 (or bfloat16 on a GPU that has it)",
            )
        image = self._vae_decode(latent)
        if not bool(torch.isfinite(image).all()) and self.pipe.vae.dtype != torch.float32:
            self.pipe.vae.to(torch.float32)
            self.vae_upcast = True
            image = self._vae_decode(latent)
        if not bool(torch.isfinite(image).all()):
            raise PanoLoopError(
                "the VAE decoded NaN or Inf pixels even in float32; the model's VAE "
                "weights are broken",
                fix="check the model's vae/ folder, or try another model",
            )
        return image

    def _vae_decode(self, latent: Any) -> Any:
        import torch

        vae = self.pipe.vae
        with torch.inference_mode():
            z = (latent.unsqueeze(0) / self.scaling_factor).to(self._module_device(vae), vae.dtype)
            return vae.decode(z).sample[0].float()

    def describe(self) -> dict[str, Any]:
        described = {
            "backend": "animatediff",
            "model": self.info.name,
            "revision": self.info.revision,
            "variant": self.info.variant,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "window": list(self.window),
            "vae_factor": self.vae_factor,
            "cpu_offload": self.offloaded,
            "vae_tiling": bool(getattr(self.pipe.vae, "use_tiling", False)),
            "vae_upcast": self.vae_upcast,
            "attention": self.attention,
        }
        if self.info.adapter is not None:
            described["motion_adapter"] = self.info.adapter.source.name
            described["motion_adapter_revision"] = self.info.adapter.source.revision
        return described

    #: True under model CPU offload: modules wait on the CPU and their hooks move them.
    offloaded = False

    def _module_device(self, module: Any) -> Any:
        return self.device if self.offloaded else next(module.parameters()).device


def still_pixels(image: Any, vae_factor: int) -> tuple[Any, int]:
    """(H, W, 3) float RGB in [0, 1] → ((3, H, W + 2·pad·f) float32 in [−1, 1], pad):
    padded with ``pad`` = ``DECODE_PAD`` latent columns' worth of wrapped pixels each side,
    so the encoder sees the 360° seam as an interior column (crop ``pad`` latent columns
    each side after encoding)."""
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    pixels = pixels * 2 - 1
    pad = min(DECODE_PAD, pixels.shape[-1] // vae_factor)
    cols = pad * vae_factor
    padded = torch.cat([pixels[..., -cols:], pixels, pixels[..., :cols]], dim=-1)
    return padded, pad


def use_sdpa_on_cuda(pipe: Any, device: Any) -> str:
    """On CUDA, run every attention of the UNet (spatial and motion modules) and the VAE
    through PyTorch's ``scaled_dot_product_attention`` (flash / memory-efficient kernels:
    no (tokens × tokens) score matrix, which at a 64×64 window alone would be gigabytes).

    diffusers picks this processor by itself when torch has SDPA; setting it explicitly
    keeps it so whatever a checkpoint's config asked for. Elsewhere nothing is changed
    (CPU and MPS keep diffusers' own choice). Returns what the manifest records.
    """
    import torch

    if torch.device(device).type != "cuda":
        return "default"
    from diffusers.models.attention_processor import AttnProcessor2_0

    for model in (pipe.unet, pipe.vae):
        model.set_attn_processor(AttnProcessor2_0())
    return "sdpa"
