"""The CogVideoX noise schedule against diffusers' CogVideoX schedulers (2B configuration)."""

import pytest
import torch
from diffusers.schedulers.scheduling_dpm_cogvideox import rescale_zero_terminal_snr

from diffusion_toys import diffusers_scheduler
from sgm.modules.diffusionmodules.discretizer import ZeroSNRDDPMDiscretization


@pytest.mark.parametrize("shift_scale", [3.0, 1.0])
def test_table_matches_diffusers(shift_scale):
    ours = ZeroSNRDDPMDiscretization(shift_scale=shift_scale).table()
    theirs = diffusers_scheduler("ddim", snr_shift_scale=shift_scale).alphas_cumprod.sqrt()
    assert ours.dtype == torch.float32 and ours.shape == (1000,)
    torch.testing.assert_close(ours.double(), theirs, atol=2e-7, rtol=0)
    assert ours[-1] == 0 and ours[0] > 0.99


@pytest.mark.parametrize("num_steps", [10, 50, 1000])
def test_step_indices_match_trailing_spacing(num_steps):
    scheduler = diffusers_scheduler("dpm")
    scheduler.set_timesteps(num_steps)
    _, timesteps = ZeroSNRDDPMDiscretization(shift_scale=3.0)(num_steps)
    assert timesteps.tolist() == scheduler.timesteps.tolist()


def test_step_indices_known_values():
    steps = ZeroSNRDDPMDiscretization(shift_scale=3.0).step_indices(30)
    # floor(999 - k * 33.3), reversed: differs from diffusers' trailing spacing (966, ...) here.
    assert steps[-3:].tolist() == [932, 965, 999] and steps[0].item() == 33


@pytest.mark.parametrize("num_steps", [10, 50])
def test_full_table_mode_selects_from_diffusers_table(num_steps):
    alphas, timesteps = ZeroSNRDDPMDiscretization(shift_scale=3.0, rescale_selected_steps=False)(num_steps)
    theirs = diffusers_scheduler("ddim").alphas_cumprod[timesteps].sqrt()
    torch.testing.assert_close(alphas.double(), theirs, atol=2e-7, rtol=0)


@pytest.mark.parametrize("num_steps", [10, 50])
def test_reference_mode_rescales_the_selected_steps(num_steps):
    alphas, timesteps = ZeroSNRDDPMDiscretization(shift_scale=3.0)(num_steps)
    shifted = diffusers_scheduler("ddim", rescale_betas_zero_snr=False).alphas_cumprod  # shifted, not rescaled
    ascending = timesteps.flip(0)
    expected = rescale_zero_terminal_snr(shifted[ascending].clone()).sqrt().flip(0)
    torch.testing.assert_close(alphas.double(), expected, atol=2e-7, rtol=0)
    assert alphas[0] == 0  # zero SNR at the noisiest step
    torch.testing.assert_close(alphas[-1].double(), shifted[ascending[0]].sqrt(), atol=1e-7, rtol=0)
    # The quirk is real: the sampling schedule is not the training table.
    table = ZeroSNRDDPMDiscretization(shift_scale=3.0).table()
    assert (alphas - table[timesteps]).abs().max() > 5e-4


@pytest.mark.parametrize("num_steps", [0, 1001])
def test_bad_step_count_is_rejected(num_steps):
    with pytest.raises(ValueError, match="num_steps must be in"):
        ZeroSNRDDPMDiscretization(shift_scale=3.0)(num_steps)
