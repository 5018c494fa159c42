"""Which weights a fine-tuning checkpoint holds: what training changes, not the frozen VAE and T5 (the reference saves
the whole engine, docs/faithfulness.md).
- full fine-tune: the transformer (`model.*`: every DiT weight, the fixed position table included, so the file is a
  complete transformer checkpoint like the released one), plus any other trained parameter;
- LoRA (every trained parameter is a LoRA matrix): the LoRA matrices alone, and the checkpoint records the base
  transformer folder they apply to (`checkpoints.sat_checkpoint.LORA_BASE_KEY`); with `lora_save_base` the transformer
  too, which makes the file self-contained (SAT's own loader reads it).
"""

from dataclasses import dataclass

import torch
from torch import nn

from checkpoints.sat_checkpoint import is_lora_key
from sgm.util import ConfigError

TRANSFORMER_PREFIX = "model."


@dataclass(frozen=True)
class CheckpointContents:
    kind: str  # "lora" (LoRA matrices only) or "transformer" (the whole DiT, LoRA included when present)
    keys: tuple[str, ...]  # state-dict keys of the engine to save, in state-dict order


def trained_parameter_names(engine: nn.Module) -> list[str]:
    return [name for name, param in engine.named_parameters() if param.requires_grad]


def select_contents(engine: nn.Module, lora_save_base: bool) -> CheckpointContents:
    """Decide the saved keys from which parameters require grad (call after `disable_untrainable_params`)."""
    trained = trained_parameter_names(engine)
    if not trained:
        raise ConfigError("no parameter requires grad: nothing to train or save (check not_trainable_prefixes)")
    state_keys = list(engine.state_dict().keys())
    if all(is_lora_key(name) for name in trained) and not lora_save_base:
        return CheckpointContents("lora", tuple(key for key in state_keys if key in set(trained)))
    wanted = set(trained)
    return CheckpointContents("transformer", tuple(k for k in state_keys if k.startswith(TRANSFORMER_PREFIX) or k in wanted))


def gather_state(engine: nn.Module, contents: CheckpointContents) -> dict[str, torch.Tensor]:
    """The selected tensors, detached, on the CPU."""
    state = engine.state_dict()
    return {key: state[key].detach().cpu() for key in contents.keys}
