"""The optimizer DeepSpeed builds from the `deepspeed:` section, with a CPU fallback for SAT's fused EMA Adam.

`sat.ops.FusedEmaAdam` (the released configs' optimizer) is a CUDA kernel: on a machine without CUDA its build
fails. There we train with the same update rule, AdamW (decoupled weight decay, bias correction, same lr, betas,
eps, weight decay), built by DeepSpeed as `torch.optim.AdamW` (`torch_adam: true`, which also avoids compiling
DeepSpeed's CPU Adam, about 30 s and 4.5 GB). The EMA copy of the weights that FusedEmaAdam keeps (saved as
`<iteration>-ema/` on GPU) has no counterpart on the CPU; a warning says so.
"""

import copy
import warnings

from sgm.util import ConfigError

FUSED_EMA_ADAM = "sat.ops.FusedEmaAdam"
ADAMW_PARAMS = ("lr", "betas", "eps", "weight_decay")


def resolve_optimizer_config(deepspeed_config: dict, cuda_available: bool) -> dict:
    """The DeepSpeed config to train with: unchanged with CUDA; on CPU FusedEmaAdam becomes torch AdamW.

    Returns a new dict (the input is not modified). Raises ValueError when FusedEmaAdam on the CPU has
    parameters AdamW cannot honour (a different `adam_w_mode`, `bias_correction` off, `amsgrad`).
    """
    config = copy.deepcopy(deepspeed_config)
    optimizer = config.get("optimizer")
    if cuda_available or optimizer is None or optimizer.get("type") != FUSED_EMA_ADAM:
        return config
    params = dict(optimizer.get("params", {}))
    for key, required in (("adam_w_mode", True), ("bias_correction", True), ("amsgrad", False)):
        if params.get(key, required) != required:
            raise ConfigError(f"deepspeed.optimizer.params.{key}={params[key]} has no CPU equivalent (AdamW needs {required})")
    dropped = sorted(set(params) - set(ADAMW_PARAMS) - {"adam_w_mode", "bias_correction", "amsgrad"})
    warnings.warn(
        f"{FUSED_EMA_ADAM} needs CUDA; training on the CPU with torch.optim.AdamW (same update rule, no EMA "
        f"weights{'; ignoring ' + str(dropped) if dropped else ''})"
    )
    adamw_params = {key: params[key] for key in ADAMW_PARAMS if key in params}
    config["optimizer"] = {"type": "AdamW", "params": {**adamw_params, "torch_adam": True}}
    return config
