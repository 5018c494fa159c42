"""Every diffusion target the released configs name builds from them, with the reference's values."""

import pytest
import torch
from omegaconf import OmegaConf

from sgm.modules.diffusionmodules.denoiser import DiscreteDenoiser
from sgm.modules.diffusionmodules.guiders import DynamicCFG
from sgm.modules.diffusionmodules.loss import VideoDiffusionLoss
from sgm.modules.diffusionmodules.sampling import VPSDEDPMPP2MSampler
from sgm.util import ConfigError, instantiate_from_config


@pytest.mark.parametrize("path", ["configs/cogvideox_2b.yaml", "configs/cogvideox_2b_lora.yaml", "configs/cogvideox_5b.yaml",
                                  "configs/tiny/cogvideox_tiny.yaml", "tests/data/v1.5_cogvideox1.5_5b.yaml",
                                  "tests/data/v1.5_cogvideox1.5_5b_i2v.yaml", "configs/cogvideox1.5_5b_lora.yaml"])
def test_released_diffusion_configs_build(path):
    model = OmegaConf.load(path).model
    denoiser = instantiate_from_config(model.denoiser_config)
    loss = instantiate_from_config(model.loss_fn_config)
    sampler = instantiate_from_config(model.sampler_config)
    assert isinstance(denoiser, DiscreteDenoiser) and isinstance(loss, VideoDiffusionLoss)
    assert isinstance(sampler, VPSDEDPMPP2MSampler) and isinstance(sampler.guider, DynamicCFG)
    assert sampler.num_steps == sampler.guider.num_steps and loss.sigma_sampler.uniform_sampling
    assert torch.equal(denoiser.alphas_cumprod_sqrt, loss.sigma_sampler.alphas_cumprod_sqrt)


def test_unknown_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match="shift_scal"):
        instantiate_from_config({"target": "sgm.modules.diffusionmodules.discretizer.ZeroSNRDDPMDiscretization", "params": {"shift_scal": 3.0}})


def test_released_1_5_schedule_is_the_reference_default_shift():
    """The released 1.5 files give ZeRoSNRDDPMDiscretization no params: the reference's default shift_scale 1.0 (the
    5B's value)."""
    model = OmegaConf.load("tests/data/v1.5_cogvideox1.5_5b.yaml").model
    five = OmegaConf.load("configs/cogvideox_5b.yaml").model
    assert "params" not in model.denoiser_config.params.discretization_config
    torch.testing.assert_close(instantiate_from_config(model.denoiser_config).alphas_cumprod_sqrt,
                               instantiate_from_config(five.denoiser_config).alphas_cumprod_sqrt, rtol=0, atol=0)
    loss = instantiate_from_config(model.loss_fn_config)
    assert loss.sigma_sampler.group_num == 40
