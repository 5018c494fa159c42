"""One message for a checkpoint made for another model size, before `load_state_dict` prints one line per tensor."""

import os
from typing import Mapping

import torch

from input_errors import InputError

SHOWN_MISMATCHES = 3
LORA_ROUTED = ".original"  # SAT's LoRA layers load a file's `<layer>.weight` into `<layer>.original.weight`


def shape_mismatches(
    file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]
) -> list[tuple[str, tuple, tuple]]:
    """(key, shape in the file, shape in the model) for each file tensor whose model counterpart differs in shape."""
    mismatches = []
    for key, value in file_state.items():
        stem, _, leaf = key.rpartition(".")
        target = key if key in model_state else f"{stem}{LORA_ROUTED}.{leaf}"
        if target in model_state and tuple(model_state[target].shape) != tuple(value.shape):
            mismatches.append((key, tuple(value.shape), tuple(model_state[target].shape)))
    return mismatches


def check_shapes(path: str | os.PathLike, file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> None:
    """InputError naming `path`, the first mismatched keys and both shapes, when any tensor has another shape."""
    mismatches = shape_mismatches(file_state, model_state)
    if not mismatches:
        return
    shown = "; ".join(f"{key}: file {list(file_shape)}, model {list(model_shape)}"
                      for key, file_shape, model_shape in mismatches[:SHOWN_MISMATCHES])
    more = f"; ... and {len(mismatches) - SHOWN_MISMATCHES} more" if len(mismatches) > SHOWN_MISMATCHES else ""
    raise InputError(f"{path}: {len(mismatches)} weight(s) have another shape than the model built from the config "
                     f"(a checkpoint for another model size?): {shown}{more}")
