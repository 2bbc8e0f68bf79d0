"""An exact denoiser for seams without weights: a stationary Gaussian field seen through a window.

The clean latent is modelled as a zero-mean stationary Gaussian field with a separable
squared-exponential covariance ``k(d) = exp(−d² / 2ℓ²)`` along frames, rows and
columns (unit variance, channels independent). For a noisy window
``x_t = √ᾱ·x₀ + √(1−ᾱ)·ε`` the posterior mean given *only the window* is exact and
cheap: with the window covariance ``K = U Λ Uᵀ`` (a Kronecker product of three small
ones), ``E[x₀ | x_t] = U · √ᾱΛ / (ᾱΛ + 1 − ᾱ) · Uᵀ x_t``. Because the field is
correlated beyond any window, a window's answer near its border differs from what its
neighbour answers: fixed tiling leaves visible seams, and the benchmark measures how
well the schedule hides them. It implements :class:`.backends.Backend`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

#: Correlation lengths (frames, rows, cols) in latent pixels: longer than a few pixels
#: so a window's border visibly lacks context, shorter than a window.
DEFAULT_LENGTHS = (2.0, 2.0, 2.0)
#: SD 1.5's noise schedule: 1000 steps, "scaled linear" betas 0.00085 → 0.012.
TRAIN_STEPS, BETA_START, BETA_END = 1000, 0.00085, 0.012


class GaussianFieldBackend:
    """The exact windowed posterior-mean denoiser of a stationary Gaussian field."""

    vae_factor = 1
    align = 1
    device = torch.device("cpu")

    def __init__(
        self,
        window: tuple[int, int, int] = (8, 8, 8),
        channels: int = 4,
        lengths: tuple[float, float, float] = DEFAULT_LENGTHS,
    ) -> None:
        self.window = window
        self.latent_channels = channels
        self.lengths = lengths
        betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, TRAIN_STEPS, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1 - betas**2, 0)
        self.final_alpha = float(self.alphas_cumprod[0])

    def timesteps(self, steps: int) -> list[int]:
        """DDIM "leading" spacing with offset 1, as SD 1.5's scheduler config sets."""
        ratio = TRAIN_STEPS // steps
        return [int(t) for t in (np.arange(steps) * ratio + 1)[::-1]]

    def previous_timestep(self, i: int, timesteps: list[int]) -> int | None:
        """Leading spacing: a step lands on the next listed timestep (None: the last)."""
        return timesteps[i + 1] if i + 1 < len(timesteps) else None

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> None:
        return None  # the field has no text condition

    def predict_noise(self, latents: torch.Tensor, timestep: int, prompt: Any, guidance: float):
        """ε̂ for a window (C, F, h, w): the exact posterior mean, turned into noise."""
        alpha = float(self.alphas_cumprod[timestep])
        x = latents.to(torch.float64)
        bases = [_eigen(n, length) for n, length in zip(x.shape[1:], self.lengths, strict=True)]
        spectrum = torch.einsum("i,j,k->ijk", *(lam for lam, _ in bases))
        gain = alpha**0.5 * spectrum / (alpha * spectrum + 1 - alpha)
        (_, uf), (_, uh), (_, uw) = bases
        coeff = torch.einsum("cfhw,fa,hb,wd->cabd", x, uf, uh, uw) * gain
        x0 = torch.einsum("cabd,fa,hb,wd->cfhw", coeff, uf, uh, uw)
        eps = (x - alpha**0.5 * x0) / (1 - alpha) ** 0.5
        return eps.to(latents.dtype)

    def decode_frame(self, latent: torch.Tensor, *, wrap: bool = True) -> np.ndarray:
        """Channel 0 as grey levels (±3σ → 0…255), for looking at, not for measuring
        (per pixel, so ``wrap`` changes nothing)."""
        grey = ((latent[0].clamp(-3, 3) + 3) / 6 * 255).round().to(torch.uint8).cpu().numpy()
        return np.repeat(grey[:, :, None], 3, axis=2)

    def describe(self) -> dict[str, Any]:
        return {"backend": "gaussian-field", "window": list(self.window),
                "lengths": list(self.lengths)}  # fmt: skip


@lru_cache(maxsize=64)
def _eigen(n: int, length: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of the n×n squared-exponential correlation matrix."""
    d = np.arange(n, dtype=np.float64)
    k = np.exp(-((d[:, None] - d[None, :]) ** 2) / (2 * length**2))
    lam, u = np.linalg.eigh(k)
    return torch.from_numpy(np.clip(lam, 0.0, None)), torch.from_numpy(u)
