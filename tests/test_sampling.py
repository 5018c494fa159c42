"""Samplers and guidance against diffusers' CogVideoX scheduler loops, plus RNG-order invariants."""

import math

import pytest
import torch

from diffusion_toys import DISCRETIZATION_2B, ToyVNetwork, diffusers_scheduler
from sgm.modules.diffusionmodules.denoiser import DiscreteDenoiser
from sgm.modules.diffusionmodules.discretizer import ZeroSNRDDPMDiscretization
from sgm.modules.diffusionmodules.guiders import DynamicCFG, VanillaCFG
from sgm.modules.diffusionmodules.sampling import VideoDDIMSampler, VPODEDPMPP2MSampler, VPSDEDPMPP2MSampler
from sgm.util import ConfigError

SHAPE = (1, 2, 4, 3, 3)  # (b, t, c, h, w)
SCALING = {"target": "sgm.modules.diffusionmodules.denoiser_scaling.VideoScaling"}
WEIGHTING = {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"}


def conditions(batch: int = 1):
    gen = torch.Generator().manual_seed(3)
    return {"crossattn": torch.randn(batch, 5, 8, generator=gen)}, {"crossattn": torch.zeros(batch, 5, 8)}


def dynamic_cfg(num_steps: int) -> dict:
    return {"target": "sgm.modules.diffusionmodules.guiders.DynamicCFG", "params": {"scale": 6, "exp": 5, "num_steps": num_steps}}


def diffusers_loop(kind, scheduler, net, x, cond, uc, num_steps, seed, guider_steps=None):
    """diffusers' CogVideoXPipeline denoising loop (use_dynamic_cfg=True, guidance_scale=6) on a toy network.

    diffusers forms the dynamic scale with num_inference_steps twice; `guider_steps` replaces the divisor with the
    reference's guider step count (its DynamicCFG num_steps), computed here independently of guiders.py."""
    guider_steps = num_steps if guider_steps is None else guider_steps
    scheduler.set_timesteps(num_steps)
    generator = torch.Generator().manual_seed(seed)
    batched = {"crossattn": torch.cat((uc["crossattn"], cond["crossattn"]))}
    latents, old_pred_original_sample = x.clone(), None
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        v = net(torch.cat([latents] * 2), t.expand(2 * x.shape[0]), batched)
        scale = 1 + 6 * ((1 - math.cos(math.pi * ((num_steps - t.item()) / guider_steps) ** 5.0)) / 2)
        v_uncond, v_text = v.chunk(2)
        v = v_uncond + scale * (v_text - v_uncond)
        if kind == "dpm":
            latents, old_pred_original_sample = scheduler.step(
                v, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents, generator=generator, return_dict=False
            )
        else:
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
    return latents


SAMPLERS = {"dpm": VPSDEDPMPP2MSampler, "ddim": VideoDDIMSampler}


@pytest.mark.parametrize("num_steps", [10, 50])
@pytest.mark.parametrize("kind", ["dpm", "ddim"])
def test_matches_diffusers_on_the_table_schedule(kind, num_steps):
    """With the full-table schedule, sampler + DiscreteDenoiser + DynamicCFG == diffusers' pipeline loop."""
    net = ToyVNetwork(SHAPE[2])
    cond, uc = conditions()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    discretization = {**DISCRETIZATION_2B, "params": {"shift_scale": 3.0, "rescale_selected_steps": False}}
    sampler = SAMPLERS[kind](num_steps, discretization, dynamic_cfg(num_steps))
    denoiser = DiscreteDenoiser(1000, DISCRETIZATION_2B, WEIGHTING, SCALING)
    ours = sampler(lambda x_, a, c, idx: denoiser(net, x_, a, c, idx=idx), x.clone(), cond, uc, torch.Generator().manual_seed(2))
    theirs = diffusers_loop(kind, diffusers_scheduler(kind), net, x, cond, uc, num_steps, seed=2)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sampler_steps, guider_steps", [(10, 50), (50, 10), (20, 35)])
@pytest.mark.parametrize("kind", ["dpm", "ddim"])
def test_dynamic_cfg_uses_sampler_steps_for_k_and_guider_steps_as_divisor(kind, sampler_steps, guider_steps):
    """Matches the reference: k = (sampler's num_steps) - t, divided by the guider's num_steps, whatever the two are."""
    net = ToyVNetwork(SHAPE[2])
    cond, uc = conditions()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    discretization = {**DISCRETIZATION_2B, "params": {"shift_scale": 3.0, "rescale_selected_steps": False}}
    sampler = SAMPLERS[kind](sampler_steps, discretization, dynamic_cfg(guider_steps))
    denoiser = DiscreteDenoiser(1000, DISCRETIZATION_2B, WEIGHTING, SCALING)
    ours = sampler(lambda x_, a, c, idx: denoiser(net, x_, a, c, idx=idx), x.clone(), cond, uc, torch.Generator().manual_seed(2))
    reference = diffusers_loop(kind, diffusers_scheduler(kind), net, x, cond, uc, sampler_steps, 2, guider_steps)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    both_sampler_steps = diffusers_loop(kind, diffusers_scheduler(kind), net, x, cond, uc, sampler_steps, seed=2)
    assert (ours - both_sampler_steps).abs().max() > 1e-3  # diffusers' convention differs when the counts do


def test_fractional_exp_is_refused_when_the_sampler_is_built():
    guider = {"target": "sgm.modules.diffusionmodules.guiders.DynamicCFG", "params": {"scale": 6, "exp": 2.5, "num_steps": 50}}
    with pytest.raises(ConfigError, match=r"DynamicCFG: exp=2.5 must be an integer.*k = 50 \(sampler steps\) - 999"):
        VPSDEDPMPP2MSampler(50, DISCRETIZATION_2B, guider)
    VPSDEDPMPP2MSampler(50, DISCRETIZATION_2B, {**guider, "params": {**guider["params"], "exp": 5.0}})
    VPSDEDPMPP2MSampler(1000, DISCRETIZATION_2B, guider)  # k = 1000 - t >= 0 at every step: a real power
    ramp = {**guider, "params": {**guider["params"], "schedule_input": "step_counter"}}
    VPSDEDPMPP2MSampler(50, DISCRETIZATION_2B, ramp)


@pytest.mark.parametrize("kind", ["dpm", "ddim"])
def test_step_math_matches_diffusers_on_the_reference_schedule(kind):
    """The default (reference) schedule through diffusers' step math: its table patched to our values.

    The denoiser here converts v -> x_0 with the sampler's alpha itself (no snapping), because
    diffusers uses one alpha for both; the snapping is DiscreteDenoiser's own test.
    """
    num_steps = 10
    net = ToyVNetwork(SHAPE[2])
    cond, uc = conditions()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    alphas, timesteps = ZeroSNRDDPMDiscretization(shift_scale=3.0)(num_steps)
    scheduler = diffusers_scheduler(kind)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.clone()
    scheduler.alphas_cumprod[timesteps] = alphas.double() ** 2

    def denoiser(x_, a, c, idx):
        a = a[:, None, None, None, None]
        return a * x_ - (1 - a**2) ** 0.5 * net(x_, idx, c)

    ours = SAMPLERS[kind](num_steps, DISCRETIZATION_2B, dynamic_cfg(num_steps))(denoiser, x.clone(), cond, uc, torch.Generator().manual_seed(2))
    theirs = diffusers_loop(kind, scheduler, net, x, cond, uc, num_steps, seed=2)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_network_gets_the_ddpm_indices_in_order():
    net = ToyVNetwork(SHAPE[2])
    cond, uc = conditions()
    denoiser = DiscreteDenoiser(1000, DISCRETIZATION_2B, WEIGHTING, SCALING)
    sampler = VPSDEDPMPP2MSampler(10, DISCRETIZATION_2B, dynamic_cfg(10))
    sampler(lambda x_, a, c, idx: denoiser(net, x_, a, c, idx=idx), torch.randn(SHAPE), cond, uc, torch.Generator().manual_seed(0))
    assert [t.tolist() for _, t in net.calls] == [[s, s] for s in range(999, 0, -100)]
    assert all(t.dtype == torch.int64 for _, t in net.calls)


def _identity_denoiser(x, a, c, idx):
    return x * 0.5


@pytest.mark.parametrize("num_steps", [2, 5, 10])
def test_sde_sampler_draws_2n_minus_3_times(num_steps):
    generator = torch.Generator().manual_seed(7)
    VPSDEDPMPP2MSampler(num_steps, DISCRETIZATION_2B)(_identity_denoiser, torch.zeros(SHAPE), {}, generator=generator)
    replay = torch.Generator().manual_seed(7)
    for _ in range(2 * num_steps - 3):
        torch.randn(SHAPE, generator=replay)
    assert torch.equal(generator.get_state(), replay.get_state())


def test_sde_sampler_uses_global_rng_without_generator():
    torch.manual_seed(11)
    VPSDEDPMPP2MSampler(4, DISCRETIZATION_2B)(_identity_denoiser, torch.zeros(SHAPE), {})
    after = torch.get_rng_state()
    torch.manual_seed(11)
    for _ in range(2 * 4 - 3):
        torch.randn(SHAPE)
    assert torch.equal(after, torch.get_rng_state())


@pytest.mark.parametrize("sampler_cls", [VideoDDIMSampler, VPODEDPMPP2MSampler])
def test_deterministic_samplers_draw_nothing(sampler_cls):
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    torch.manual_seed(5)
    global_state = torch.get_rng_state()
    sampler_cls(10, DISCRETIZATION_2B)(_identity_denoiser, torch.ones(SHAPE), {}, generator=generator)
    assert torch.equal(generator.get_state(), state) and torch.equal(torch.get_rng_state(), global_state)


@pytest.mark.parametrize("sampler_cls", [VPODEDPMPP2MSampler, VideoDDIMSampler])
def test_deterministic_samplers_are_exact_for_a_point_mass(sampler_cls):
    """If the data is one point x_0 (denoiser always returns it), first- and second-order steps are exact:
    every visited state is a_k x_0 + sqrt(1 - a_k^2) x_T."""
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    x_0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    visited = []

    def denoiser(x, a, c, idx):
        visited.append((x.clone(), a[0].clone()))
        return x_0.clone()

    out = sampler_cls(10, DISCRETIZATION_2B)(denoiser, x_T.clone(), {})
    torch.testing.assert_close(out, x_0)
    assert len(visited) == 10
    for x, a in visited:
        torch.testing.assert_close(x, a * x_0 + (1 - a**2) ** 0.5 * x_T, atol=1e-5, rtol=0)


@pytest.mark.parametrize("guider", [VanillaCFG(4.5), DynamicCFG(6, 5, 50)])
def test_batched_guidance_equals_two_forwards(guider):
    net = ToyVNetwork(SHAPE[2])
    denoiser = DiscreteDenoiser(1000, DISCRETIZATION_2B, WEIGHTING, SCALING)
    cond, uc = conditions(batch=2)
    x = torch.randn(2, *SHAPE[1:])
    alpha = denoiser.alphas_cumprod_sqrt[torch.tensor([499, 499])]
    idx = torch.tensor([499, 499])
    x_in, alpha_in, idx_in, cond_in = guider.prepare_inputs(x, alpha, idx, cond, uc)
    assert x_in.shape[0] == alpha_in.shape[0] == idx_in.shape[0] == cond_in["crossattn"].shape[0] == 4
    guided = guider(denoiser(net, x_in, alpha_in, cond_in, idx=idx_in), 499, 22, 50)
    unconditional = denoiser(net, x, alpha, uc, idx=idx)
    conditional = denoiser(net, x, alpha, cond, idx=idx)
    scale = guider.scale_at(499, 22, 50)
    torch.testing.assert_close(guided, unconditional + scale * (conditional - unconditional), atol=1e-6, rtol=0)


def test_dynamic_cfg_schedules():
    guider = DynamicCFG(scale=6, exp=5, num_steps=50)
    for t in (999, 979, 19):  # the reference quirk, as diffusers' use_dynamic_cfg
        assert guider.scale_at(t, step=0, sampler_steps=50) == 1 + 6 * ((1 - math.cos(math.pi * ((50 - t) / 50) ** 5.0)) / 2)
    ramp = DynamicCFG(scale=6, exp=5, num_steps=50, schedule_input="step_counter")
    scales = [ramp.scale_at(timestep=0, step=k, sampler_steps=50) for k in range(50)]
    assert scales[0] == 1 and all(b >= a for a, b in zip(scales, scales[1:])) and 6.8 < scales[-1] < 7
    with pytest.raises(ValueError, match="schedule_input must be one of"):
        DynamicCFG(6, 5, 50, schedule_input="steps")


def test_guidance_rejects_mismatched_conditions():
    with pytest.raises(ValueError, match="lacks key"):
        VanillaCFG(2).prepare_inputs(torch.zeros(SHAPE), torch.zeros(1), torch.zeros(1), {"crossattn": torch.zeros(1, 2)}, {})
