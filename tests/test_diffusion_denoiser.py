"""DiscreteDenoiser (v-prediction with VideoScaling) against diffusers' v -> x_0 conversion, and its snapping."""

import pytest
import torch

from diffusion_toys import DISCRETIZATION_2B, ToyVNetwork, diffusers_scheduler
from sgm.modules.diffusionmodules.denoiser import DiscreteDenoiser

SCALING = {"target": "sgm.modules.diffusionmodules.denoiser_scaling.VideoScaling"}
WEIGHTING = {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"}


def make_denoiser(**overrides) -> DiscreteDenoiser:
    return DiscreteDenoiser(**{"num_idx": 1000, "discretization_config": DISCRETIZATION_2B, "weighting_config": WEIGHTING, "scaling_config": SCALING, **overrides})


@pytest.mark.parametrize("step", [999, 500, 0])
def test_denoised_matches_diffusers_pred_original_sample(step):
    net = ToyVNetwork(4)
    cond = {"crossattn": torch.randn(2, 3, 5)}
    x = torch.randn(2, 2, 4, 3, 3)
    denoiser = make_denoiser()
    idx = torch.full((2,), step)
    ours = denoiser(net, x, denoiser.alphas_cumprod_sqrt[idx], cond, idx=idx)
    scheduler = diffusers_scheduler("ddim")
    scheduler.set_timesteps(1000)
    _, theirs = scheduler.step(net(x, idx, cond), step, x, return_dict=False)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-6, rtol=0)


def test_alpha_is_snapped_to_the_table_but_idx_is_passed_through():
    denoiser = make_denoiser()
    table = denoiser.alphas_cumprod_sqrt
    between = 0.7 * table[95] + 0.3 * table[96]  # nearer to entry 95
    seen = []

    def network(x, t, c):
        seen.append(t.clone())
        return torch.ones_like(x)

    x = torch.ones(1, 1, 1, 1, 1)
    out = denoiser(network, x, between[None], {}, idx=torch.tensor([99]))
    a = table[95]
    torch.testing.assert_close(out.flatten(), (a - (1 - a**2) ** 0.5)[None])
    assert seen[0].tolist() == [99]
    assert denoiser.nearest_index(table[[0, 500, 999]]).tolist() == [0, 500, 999]


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="quantize_c_noise=True is not supported"):
        make_denoiser(quantize_c_noise=True)
    with pytest.raises(ValueError, match="num_idx=500 must equal"):
        make_denoiser(num_idx=500)
    with pytest.raises(ValueError, match=r"must both be \(batch,\) = \(2,\)"):
        make_denoiser()(ToyVNetwork(4), torch.zeros(2, 1, 4, 1, 1), torch.zeros(3), {}, idx=torch.zeros(2, dtype=torch.long))


def test_table_is_not_state():
    """The table is no buffer: no extra checkpoint key, and it stays fp32."""
    denoiser = make_denoiser()
    assert not hasattr(denoiser, "state_dict") and denoiser.alphas_cumprod_sqrt.dtype == torch.float32
