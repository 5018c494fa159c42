"""One message for a checkpoint made for another model size or DiT family, before `load_state_dict` prints one line per tensor."""

import os
from typing import Callable, Mapping

import torch

from input_errors import InputError

SHOWN_MISMATCHES = 3
LORA_ROUTED = ".original"  # SAT's LoRA layers load a file's `<layer>.weight` into `<layer>.original.weight`
# The DiT family a state dict belongs to, told by its patch-embedding weight: a Conv2d kernel (d, c, p, p) in
# CogVideoX 1.0 (reference v1.0 dit_video_concat.py), a Linear (d, c*t*h*w) in CogVideoX1.5 (reference e519ece).
PATCH_EMBED_KEY = "mixins.patch_embed.proj.weight"
DIT_FAMILIES = {4: "CogVideoX 1.0 (patch_size: 2, Conv2d patch embedding)",
                2: "CogVideoX1.5 (patch_size: [t, h, w], Linear patch embedding)"}


def _lora_routed(key: str) -> str:
    """The key a SAT LoRA layer loads a file's ``<layer>.<leaf>`` into: ``<layer>.original.<leaf>``."""
    stem, _, leaf = key.rpartition(".")
    return f"{stem}{LORA_ROUTED}.{leaf}"


def shape_mismatches(
    file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]
) -> list[tuple[str, tuple, tuple]]:
    """(key, shape in the file, shape in the model) for each file tensor whose model counterpart differs in shape."""
    mismatches = []
    for key, value in file_state.items():
        target = key if key in model_state else _lora_routed(key)
        if target in model_state and tuple(model_state[target].shape) != tuple(value.shape):
            mismatches.append((key, tuple(value.shape), tuple(model_state[target].shape)))
    return mismatches


def dit_family(state: Mapping[str, torch.Tensor]) -> str | None:
    """The CogVideoX family of a state dict holding a DiT (see DIT_FAMILIES), else None."""
    for key, value in state.items():
        if key.endswith(PATCH_EMBED_KEY):
            return DIT_FAMILIES.get(len(value.shape))
    return None


def _first(keys: list[str]) -> str:
    more = f" ... and {len(keys) - SHOWN_MISMATCHES} more" if len(keys) > SHOWN_MISMATCHES else ""
    return f"{keys[:SHOWN_MISMATCHES]}{more}"


def check_shapes(
    path: str | os.PathLike,
    file_state: Mapping[str, torch.Tensor],
    model_state: Mapping[str, torch.Tensor],
    may_be_missing: Callable[[str], bool] = lambda key: False,
) -> None:
    """InputError naming `path`, the first mismatched keys and both shapes, when any tensor has another shape.

    A DiT checkpoint of the other CogVideoX family (1.0 vs 1.5) gets one message saying so, with the shape mismatches
    and the first keys only the file / only the model has (``may_be_missing``: model keys a file may lack, e.g. the
    conditioner's)."""
    mismatches = shape_mismatches(file_state, model_state)
    if not mismatches:
        return
    shown = "; ".join(f"{key}: file {list(file_shape)}, model {list(model_shape)}"
                      for key, file_shape, model_shape in mismatches[:SHOWN_MISMATCHES])
    more = f"; ... and {len(mismatches) - SHOWN_MISMATCHES} more" if len(mismatches) > SHOWN_MISMATCHES else ""
    file_family, model_family = dit_family(file_state), dit_family(model_state)
    if file_family and model_family and file_family != model_family:
        routed = {_lora_routed(key) for key in file_state}
        only_file = [key for key in file_state if key not in model_state and _lora_routed(key) not in model_state]
        only_model = [key for key in model_state if key not in file_state and key not in routed and not may_be_missing(key)]
        raise InputError(f"{path}: a {file_family} checkpoint, but the config builds a {model_family} DiT: "
                         f"{len(mismatches)} weight(s) have another shape: {shown}{more}; keys only in the file: "
                         f"{_first(only_file)}; keys only in the model: {_first(only_model)}")
    raise InputError(f"{path}: {len(mismatches)} weight(s) have another shape than the model built from the config "
                     f"(a checkpoint for another model size?): {shown}{more}")
