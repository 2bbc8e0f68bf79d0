"""The step rule: how a model's output becomes a step, one rule per model family.

Every noise level is written ``x_t = a·x₀ + b·ε`` (signal and noise coefficients).
The sampler only asks a rule these things, so the ring, windows, shifting, sphere
views, blended tail and camera views are one code path for every model:

* :meth:`~StepRule.level` — the noise level of a timestep (a float the rule understands);
* :meth:`~StepRule.split` — the model's output on a window → (x̂₀, ε̂);
* :meth:`~StepRule.combine` — (x̂₀, ε̂) → the latent at a level (the deterministic step:
  DDIM with η = 0, or the flow-match Euler step, which is the same formula);
* :meth:`~StepRule.signal` — the coefficient ``a`` of a level;
* :meth:`~StepRule.renoise` — the exact forward rule from a cleaner level to a noisier one,
  for a cell already denoised this step that a later view reads.

:class:`DDIMRule` is ε-prediction on a variance-preserving schedule (level = ᾱ, so
``a = √ᾱ``, ``b = √(1−ᾱ)``). :class:`FlowMatchRule` is velocity prediction on the
rectified-flow path (level = σ, ``a = 1−σ``, ``b = σ``, ``v = ε − x₀``). A backend names
its rule with a ``step_rule`` attribute; one without gets DDIM on its ``alphas_cumprod``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class StepRule(Protocol):
    """What the sampler needs to turn model outputs into steps."""

    #: the level after the last step (≈ clean)
    final_level: float

    def level(self, timestep: float) -> float: ...

    def split(
        self, x: torch.Tensor, out: torch.Tensor, level: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def combine(self, x0: torch.Tensor, eps: torch.Tensor, level: float) -> torch.Tensor: ...

    def noise_from(self, x: torch.Tensor, x0: torch.Tensor, level: float) -> torch.Tensor: ...

    def signal(self, level: float) -> float: ...

    def renoise(
        self, x: torch.Tensor, start: float, stop: float, noise: torch.Tensor
    ) -> torch.Tensor: ...

    def describe(self) -> str: ...


class DDIMRule:
    """ε-prediction, DDIM (η = 0) steps on ``alphas_cumprod`` (level = ᾱ of a timestep)."""

    def __init__(self, alphas_cumprod: Any, final_alpha: float) -> None:
        self.alphas_cumprod = alphas_cumprod
        self.final_level = float(final_alpha)

    def level(self, timestep: float) -> float:
        return float(self.alphas_cumprod[int(timestep)])

    def split(
        self, x: torch.Tensor, out: torch.Tensor, level: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ε̂ = the model's output; x̂₀ = (x − √(1−ᾱ)·ε̂) / √ᾱ."""
        return (x - (1 - level) ** 0.5 * out) / level**0.5, out

    def combine(self, x0: torch.Tensor, eps: torch.Tensor, level: float) -> torch.Tensor:
        return level**0.5 * x0 + (1 - level) ** 0.5 * eps

    def noise_from(self, x: torch.Tensor, x0: torch.Tensor, level: float) -> torch.Tensor:
        return (x - level**0.5 * x0) / (1 - level) ** 0.5

    def signal(self, level: float) -> float:
        return level**0.5

    def renoise(
        self, x: torch.Tensor, start: float, stop: float, noise: torch.Tensor
    ) -> torch.Tensor:
        """Forward diffusion from ᾱ = ``start`` (cleaner) to ᾱ = ``stop`` (noisier)."""
        ratio = stop / start
        return ratio**0.5 * x + (1 - ratio) ** 0.5 * noise

    def describe(self) -> str:
        return "ddim-epsilon"


class FlowMatchRule:
    """Velocity prediction on the rectified-flow path ``x_σ = (1−σ)·x₀ + σ·ε``.

    The level of a timestep is σ = t / ``train_steps`` (diffusers' flow-match schedulers
    set ``timesteps = σ · num_train_timesteps``, the shift already applied to σ). The
    deterministic step (1−σ')·x̂₀ + σ'·ε̂ equals the flow-match Euler step x + (σ'−σ)·v.
    """

    final_level = 0.0

    def __init__(self, train_steps: int = 1000) -> None:
        self.train_steps = train_steps

    def level(self, timestep: float) -> float:
        return float(timestep) / self.train_steps

    def split(
        self, x: torch.Tensor, out: torch.Tensor, level: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """v̂ = the model's output; x̂₀ = x − σ·v̂, ε̂ = x + (1−σ)·v̂."""
        return x - level * out, x + (1 - level) * out

    def combine(self, x0: torch.Tensor, eps: torch.Tensor, level: float) -> torch.Tensor:
        return (1 - level) * x0 + level * eps

    def noise_from(self, x: torch.Tensor, x0: torch.Tensor, level: float) -> torch.Tensor:
        return (x - (1 - level) * x0) / level

    def signal(self, level: float) -> float:
        return 1 - level

    def renoise(
        self, x: torch.Tensor, start: float, stop: float, noise: torch.Tensor
    ) -> torch.Tensor:
        """The exact forward rule from σ = ``start`` to σ = ``stop`` (noisier): scale the
        signal by (1−σ_stop)/(1−σ_start) and add the missing noise variance."""
        scale = (1 - stop) / (1 - start)
        return scale * x + max(stop**2 - (scale * start) ** 2, 0.0) ** 0.5 * noise

    def describe(self) -> str:
        return "flow-match-euler"


def step_rule(backend: Any) -> StepRule:
    """The backend's rule, or DDIM on its ``alphas_cumprod`` (AnimateDiff, the analytic field)."""
    rule = getattr(backend, "step_rule", None)
    if rule is not None:
        return rule
    return DDIMRule(backend.alphas_cumprod, backend.final_alpha)
