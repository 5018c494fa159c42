"""ZeRO stage 3 (parameters partitioned over the data-parallel ranks) for full fine-tuning: what it needs from our
engine, in one place (docs/fine-tuning.md, "5B, 5B-I2V and ZeRO-3").

- Building: SAT's `get_model` builds inside `deepspeed.zero.Init()`, which partitions each module as it is
  constructed; the VAE's weight loading and our checkpoint's shape checks need whole tensors, so `build_engine`
  builds without that context and `deepspeed.initialize` partitions the loaded engine.
- Parameters read outside their own module's `forward` (DeepSpeed gathers a module's parameters only when it is
  called): the SAT mixins' own parameters become external parameters of the network, and modules whose children's
  weights are used functionally (SAT's MLP through `mlp_forward`, the VAE's resamplers through `F.conv3d`) become
  ZeRO-3 leaf modules. `prepare_engine` does both, before `deepspeed.initialize`.
- Saving: `gathered_state` gathers the selected weights one parameter at a time, so checkpoints hold full tensors.
"""

import argparse

import deepspeed
import torch
from deepspeed.runtime.zero.partition_parameters import register_external_parameter
from deepspeed.utils import set_z3_leaf_modules
from sat.model.base_model import BaseMixin
from sat.model.transformer import MLP
from torch import nn

from sgm.util import ConfigError
from training.optimizer_config import FUSED_EMA_ADAM
from vae_modules.resample import DownSample3D, Upsample3D

# Modules whose forward reads the weights of their children without calling them.
LEAF_MODULE_CLASSES = (MLP, DownSample3D, Upsample3D)


def zero_stage(deepspeed_config: dict | None) -> int:
    if deepspeed_config is None:
        return 0
    return int(deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def is_zero3(args: argparse.Namespace) -> bool:
    return zero_stage(getattr(args, "deepspeed_config", None)) >= 3


def check_zero3_optimizer(deepspeed_config: dict) -> None:
    """SAT's FusedEmaAdam keeps its EMA weights in ZeRO-1/2 partitions that SAT's EMA save reads; under ZeRO-3
    they cannot be saved: refuse the combination before anything is built."""
    optimizer_type = deepspeed_config.get("optimizer", {}).get("type")
    if zero_stage(deepspeed_config) >= 3 and optimizer_type == FUSED_EMA_ADAM:
        raise ConfigError(f"deepspeed.optimizer.type {FUSED_EMA_ADAM} cannot be used with zero_optimization.stage 3 "
                          "(its EMA weights live in ZeRO-1/2 partitions); use type AdamW "
                          "(see configs/sft_5b_zero3.yaml)")


def build_engine(args: argparse.Namespace, model_cls: type) -> nn.Module:
    """`sat.model.base_model.get_model` without `deepspeed.zero.Init`: built in fp32, cast to the run's dtype
    (the whole engine, as SAT), moved to `args.device`, and prepared for partitioning."""
    engine = model_cls(args, params_dtype=torch.float32)
    if args.fp16:
        engine.half()
    elif args.bf16:
        engine.bfloat16()
    engine = engine.to(args.device)
    prepare_engine(engine)
    return engine


def prepare_engine(engine: nn.Module) -> None:
    """Register the parameters that DeepSpeed's per-module hooks would not gather (see the module docstring)."""
    leaf_classes = [cls for cls in LEAF_MODULE_CLASSES if any(isinstance(m, cls) for m in engine.modules())]
    if leaf_classes:
        set_z3_leaf_modules(engine, leaf_classes)
    network = engine.model.diffusion_model
    for module in network.modules():
        if isinstance(module, BaseMixin):
            for param in module.parameters(recurse=False):
                register_external_parameter(network, param)


def is_partitioned(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "ds_id")


def gathered_state(engine: nn.Module, keys: tuple[str, ...], keep: bool) -> dict[str, torch.Tensor] | None:
    """The engine's state-dict entries `keys`, whole, detached, on the CPU, where `keep`; None elsewhere.

    Collective (every rank must call it): each partitioned parameter is gathered on its own, copied, released,
    so at most one whole parameter is gathered at a time. Buffers are not partitioned and are read directly.
    """
    params = dict(engine.named_parameters(remove_duplicate=False))
    buffers = dict(engine.named_buffers(remove_duplicate=False))
    state = {}
    for key in keys:
        if key in params and is_partitioned(params[key]):
            with deepspeed.zero.GatheredParameters([params[key]], modifier_rank=None):
                if keep:
                    state[key] = params[key].detach().cpu().clone()
        elif keep:
            state[key] = (params[key] if key in params else buffers[key]).detach().cpu().clone()
    return state if keep else None
