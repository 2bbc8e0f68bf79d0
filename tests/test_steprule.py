"""The sampler's step rules against diffusers' own schedulers (behaviour, no model weights).

Proves: a DDIM-rule step is ``DDIMScheduler.step`` (η = 0) and a flow-match-rule step is
``FlowMatchEulerDiscreteScheduler.step`` on the same sample and model output, with the
schedulers' own timesteps and shift; each rule's re-noising is the exact forward rule
(a cell at a clean level pushed to a noisier one has that level's mean and spread).
"""

from __future__ import annotations

import torch
from analytic import GaussianFieldBackend
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from engine.generate.steprule import DDIMRule, FlowMatchRule, step_rule


def _sample_and_output(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 5, 6, generator=generator), torch.randn(
        4, 3, 5, 6, generator=generator
    )


def test_flow_match_step_is_the_schedulers_euler_step_with_its_shift():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(6)
    rule = FlowMatchRule(scheduler.config.num_train_timesteps)
    levels = [rule.level(float(t)) for t in scheduler.timesteps] + [rule.final_level]
    assert torch.allclose(torch.tensor(levels, dtype=torch.float32), scheduler.sigmas, atol=1e-6)
    assert levels[1] > 5 / 6  # the shift keeps the early steps noisy (unshifted: 5/6)
    x, v = _sample_and_output(0)
    for i, t in enumerate(scheduler.timesteps):
        x0, eps = rule.split(x, v, levels[i])
        ours = rule.combine(x0, eps, levels[i + 1])
        theirs = scheduler.step(v, t, x, return_dict=False)[0]
        assert torch.allclose(ours, theirs, atol=1e-5), i
        x = theirs


def test_ddim_step_is_the_schedulers_step_with_eta_zero():
    scheduler = DDIMScheduler(
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    scheduler.set_timesteps(5)
    rule = DDIMRule(scheduler.alphas_cumprod, float(scheduler.final_alpha_cumprod))
    timesteps = [int(t) for t in scheduler.timesteps]
    levels = [rule.level(t) for t in timesteps] + [rule.final_level]
    x, eps = _sample_and_output(1)
    for i, t in enumerate(timesteps):
        x0, eps_hat = rule.split(x, eps, levels[i])
        ours = rule.combine(x0, eps_hat, levels[i + 1])
        theirs = scheduler.step(eps, t, x, eta=0.0, return_dict=False)[0]
        assert torch.allclose(ours, theirs, atol=1e-5), i
        assert torch.allclose(rule.noise_from(x, x0, levels[i]), eps, atol=1e-4)


def test_renoise_is_the_exact_forward_rule_for_both_rules():
    """x at a clean level (clean signal 1, noise level's spread) pushed to a noisier level
    has the noisier level's signal coefficient and noise spread."""
    generator = torch.Generator().manual_seed(2)
    n = 400_000
    cases = [(FlowMatchRule(), 0.3, 0.7), (DDIMRule(None, 1.0), 0.8, 0.3)]
    for rule, clean, noisy in cases:
        x = rule.combine(torch.ones(n), torch.randn(n, generator=generator), clean)
        pushed = rule.renoise(x, clean, noisy, torch.randn(n, generator=generator))
        expected_noise = noisy if isinstance(rule, FlowMatchRule) else (1 - noisy) ** 0.5
        assert abs(float(pushed.mean()) - rule.signal(noisy)) < 5e-3
        assert abs(float(pushed.std()) - expected_noise) < 5e-3


def test_a_backend_without_a_rule_gets_ddim_on_its_schedule():
    backend = GaussianFieldBackend()
    rule = step_rule(backend)
    assert isinstance(rule, DDIMRule) and rule.final_level == backend.final_alpha
    assert rule.level(500) == float(backend.alphas_cumprod[500])
