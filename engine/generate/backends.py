"""Model backends: the small interface the sampler needs, and AnimateDiff on diffusers.

A backend does four things (so Wan 2.1 or another video model can be added without
touching the sampler): encode a prompt; predict the noise of one latent window
(C, F, h, w) at a timestep, classifier-free guidance included; give the noise
schedule (``alphas_cumprod`` and the timesteps for a step count); decode one latent
frame (C, h, W) to pixels. Latents follow :mod:`.ring`'s layout (row 0 = +Z, centre
column faces +X).

Finding, checking and loading the weights is :mod:`.loading`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .loading import ModelInfo

#: AnimateDiff's motion modules were trained on 16-frame clips.
ANIMATEDIFF_WINDOW_FRAMES = 16
#: Latent columns of wrapped context each side when decoding (the VAE's reach is wide).
DECODE_PAD = 8


class Backend(Protocol):
    """What the sampler needs from a model."""

    latent_channels: int
    vae_factor: int
    window: tuple[int, int, int]  # native (frames, rows, cols) of one call, latent pixels
    align: int  # latent sizes and offsets must be multiples of this
    device: Any
    alphas_cumprod: Any  # torch float64 tensor, index = training timestep
    final_alpha: float  # ᾱ after the last step

    def timesteps(self, steps: int) -> list[int]: ...

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> Any: ...

    def predict_noise(self, latents: Any, timestep: int, prompt: Any, guidance: float) -> Any: ...

    def decode_frame(self, latent: Any) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- AnimateDiff


@dataclass
class PromptEmbeds:
    """Text-encoder states for the prompt and (with guidance) the negative prompt."""

    cond: Any
    uncond: Any | None


class AnimateDiffBackend:
    """AnimateDiff (SD 1.5 UNet + motion modules) behind :class:`Backend`.

    Works on per-frame latents (4 channels, VAE factor 8 at full size), so a latent
    loop is a pixel loop. One call denoises a window of ``window_frames`` frames.
    """

    latent_channels = 4

    def __init__(self, pipe: Any, info: ModelInfo, *, window_frames: int, device: str) -> None:
        import torch
        from diffusers import DDIMScheduler

        self.pipe = pipe
        self.info = info
        self.device = torch.device(device)
        self.dtype = pipe.unet.dtype
        self.vae_factor = info.vae_factor
        self.align = info.align
        self.window = (window_frames, info.sample_size, info.sample_size)
        # The sampler takes DDIM (η = 0) steps on the model's own noise schedule, as
        # DynamicScaler does; a copy keeps the loaded pipeline's scheduler untouched.
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.scheduler.config.prediction_type
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)
        self.final_alpha = float(self.scheduler.final_alpha_cumprod)
        self.scaling_factor = float(pipe.vae.config.scaling_factor)

    def timesteps(self, steps: int) -> list[int]:
        self.scheduler.set_timesteps(steps)
        return [int(t) for t in self.scheduler.timesteps]

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> PromptEmbeds:
        import torch

        def encode(text: str) -> Any:
            tokens = self.pipe.tokenizer(
                text,
                padding="max_length",
                max_length=self.pipe.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                ids = tokens.input_ids.to(self._module_device(self.pipe.text_encoder))
                return self.pipe.text_encoder(ids)[0].to(self.device, self.dtype)

        uncond = encode(negative) if guidance > 1.0 else None
        return PromptEmbeds(cond=encode(prompt), uncond=uncond)

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

    def decode_frame(self, latent: Any) -> Any:
        """One latent frame (C, h, W) → uint8 RGB (h·f, W·f, 3), wrapped so no seam is added.

        The latent is padded with ``DECODE_PAD`` wrapped columns each side, decoded and
        cropped: plain VAE decoding treats the left and right edges as borders.
        """
        import torch

        pad = min(DECODE_PAD, latent.shape[-1])
        padded = torch.cat([latent[..., -pad:], latent, latent[..., :pad]], dim=-1)
        vae = self.pipe.vae
        with torch.inference_mode():
            z = (padded.unsqueeze(0) / self.scaling_factor).to(self._module_device(vae), vae.dtype)
            image = vae.decode(z).sample[0].float()
        crop = pad * self.vae_factor
        image = image[:, :, crop : image.shape[-1] - crop]
        image = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return image.permute(1, 2, 0).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        described = {
            "backend": "animatediff",
            "model": self.info.source,
            "revision": self.info.revision,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "window": list(self.window),
            "vae_factor": self.vae_factor,
            "cpu_offload": self.offloaded,
        }
        if self.info.adapter is not None:
            described["motion_adapter"] = self.info.adapter.source
            described["motion_adapter_revision"] = self.info.adapter.revision
        return described

    #: True under model CPU offload: modules wait on the CPU and their hooks move them.
    offloaded = False

    def _module_device(self, module: Any) -> Any:
        return self.device if self.offloaded else next(module.parameters()).device
