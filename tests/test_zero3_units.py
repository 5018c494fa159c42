"""ZeRO-3 pieces without training: the configs DeepSpeed will read, the optimizer check, what `prepare_engine`
registers for partitioning. (Training under ZeRO-3 is tests/test_train_zero3.py.)"""

import pytest
import torch
from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
from deepspeed.utils.z3_leaf_module import z3_leaf_module
from omegaconf import OmegaConf
from sat.model.transformer import MLP

from sgm.util import ConfigError
from tiny_models import TINY_I2V_CONFIG, build_engine
from training.zero3 import check_zero3_optimizer, gathered_state, is_zero3, prepare_engine, zero_stage
from vae_modules.resample import DownSample3D, Upsample3D


@pytest.mark.parametrize("path", ["configs/sft_5b_zero3.yaml", "configs/tiny/sft_tiny_zero3.yaml"])
def test_zero3_configs_are_valid_deepspeed_stage3_with_cpu_offload(path):
    section = OmegaConf.to_object(OmegaConf.load(path).deepspeed)
    zero = DeepSpeedZeroConfig(**section["zero_optimization"])  # refuses unknown keys
    assert zero.stage == 3 and zero.offload_optimizer.device == "cpu" and zero.offload_param.device == "cpu"
    assert section["optimizer"]["type"] == "AdamW"
    check_zero3_optimizer(section)


def test_fused_ema_adam_is_refused_under_zero3():
    fused = {"optimizer": {"type": "sat.ops.FusedEmaAdam"}}
    check_zero3_optimizer({**fused, "zero_optimization": {"stage": 2}})
    with pytest.raises(ConfigError, match="cannot be used with zero_optimization.stage 3"):
        check_zero3_optimizer({**fused, "zero_optimization": {"stage": 3}})


def test_zero_stage_of_the_deepspeed_section():
    assert zero_stage(None) == 0 and zero_stage({}) == 0 and zero_stage({"zero_optimization": {"stage": 3}}) == 3
    assert is_zero3(type("Args", (), {"deepspeed_config": OmegaConf.to_object(
        OmegaConf.load("configs/tiny/sft_tiny_zero3.yaml").deepspeed)})())


def test_prepare_engine_registers_what_hooks_would_miss(tiny_i2v_models):
    engine = build_engine(tiny_i2v_models, tiny_i2v_models.model_config(TINY_I2V_CONFIG))
    prepare_engine(engine)
    network = engine.model.diffusion_model
    position_table = network.mixins.pos_embed.pos_embedding  # read by a mixin hook, not by a module call
    assert id(position_table) in network._external_params
    leaves = [m for m in engine.modules() if z3_leaf_module(m)]
    assert leaves and all(isinstance(m, (MLP, DownSample3D, Upsample3D)) for m in leaves)
    assert {type(m) for m in leaves} == {MLP, DownSample3D, Upsample3D}


def test_gathered_state_of_an_unpartitioned_engine_is_its_state(tiny_models):
    engine = build_engine(tiny_models)
    keys = tuple(key for key in engine.state_dict() if key.startswith("model."))
    state = gathered_state(engine, keys, keep=True)
    assert tuple(state) == keys
    for key, value in engine.state_dict().items():
        if key in state:
            assert torch.equal(state[key], value) and state[key].data_ptr() != value.data_ptr()
    assert gathered_state(engine, keys, keep=False) is None
