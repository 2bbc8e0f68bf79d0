"""Our sampler and decode against diffusers' own ``AnimateDiffPipeline``, frame for frame.

On a latent that is exactly one window (``schedule="single"``: no shifting, no sphere
views, no blended tail, no coarse pass, no wrapped decode) our code must compute what
diffusers computes with the same tiny components, scheduler, initial latents, steps,
guidance and negative prompt. This ties the per-window arithmetic — VAE scaling factor,
classifier-free guidance order, prompt embeddings per frame, the DDIM step, decoding —
to the code real AnimateDiff weights were tuned with. The weights are random (tiny real
diffusers classes), so this proves the arithmetic, not the pictures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.progress import JobContext

PROMPT = "a misty pine forest at dawn"
NEGATIVE = "blurry, low quality"
FRAMES, HEIGHT, WIDTH, STEPS, GUIDANCE = 4, 64, 128, 3, 7.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend(tiny_model):
    from engine.generate.loading import inspect_model, load_animatediff

    return load_animatediff(inspect_model(str(tiny_model)), window_frames=FRAMES, device="cpu")


@pytest.fixture(scope="module")
def initial_latents() -> torch.Tensor:
    shape = (1, 4, FRAMES, HEIGHT // 8, WIDTH // 8)
    return torch.randn(shape, generator=torch.Generator().manual_seed(42))


@pytest.fixture(scope="module")
def reference_frames(tiny_model, backend, initial_latents) -> np.ndarray:
    """diffusers' pipeline on our loaded components, its scheduler built as diffusers'
    AnimateDiff docs say (independently of our recipe code): (F, H, W, 3) in [0, 1]."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    scheduler = DDIMScheduler.from_pretrained(
        tiny_model,
        subfolder="scheduler",
        beta_schedule="linear",
        clip_sample=False,
        timestep_spacing="linspace",
        steps_offset=1,
    )
    parts = backend.pipe.components
    pipe = AnimateDiffPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["unet"],
        motion_adapter=None,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        PROMPT,
        negative_prompt=NEGATIVE,
        num_frames=FRAMES,
        height=HEIGHT,
        width=WIDTH,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        latents=initial_latents.clone(),
        output_type="np",
    )
    return np.asarray(out.frames[0], dtype=np.float32)


def our_frames(backend, latents: torch.Tensor, guidance: float = GUIDANCE) -> np.ndarray:
    from engine.generate.sampler import GenerateRequest, sample_latent

    request = GenerateRequest(PROMPT, WIDTH, HEIGHT, FRAMES, STEPS, guidance=guidance,
                              negative=NEGATIVE, schedule="single")  # fmt: skip
    latent = sample_latent(backend, request, JobContext(), latents=latents[0].clone()).latent
    frames = [backend.decode_pixels(latent[:, f], wrap=False) for f in range(FRAMES)]
    return torch.stack(frames).permute(0, 2, 3, 1).numpy()


def test_one_window_matches_diffusers_animatediff_pipeline(
    backend, initial_latents, reference_frames
):
    ours = our_frames(backend, initial_latents)
    assert ours.shape == reference_frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert reference_frames.std() > 0.01  # a real picture, not a constant
    assert np.abs(ours - reference_frames).max() <= 1e-4


def test_the_comparison_sees_a_small_change(backend, initial_latents, reference_frames):
    """The tolerance is tight enough to notice a guidance of 7.4 instead of 7.5."""
    nudged = our_frames(backend, initial_latents, guidance=GUIDANCE - 0.1)
    assert np.abs(nudged - reference_frames).max() > 1e-3


def test_animatediff_recipe_timesteps(backend):
    """Linear betas and linspace spacing: 25 steps start at 999 (SD 1.5's own config
    would start at 961), and a DDIM step lands T/n below, as diffusers' DDIM does."""
    steps = backend.timesteps(25)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 25
    assert backend.previous_timestep(0, steps) == 999 - 40
    assert backend.previous_timestep(24, steps) is None
    assert backend.schedule_summary() == {"beta_schedule": "linear", "timestep_spacing": "linspace"}
