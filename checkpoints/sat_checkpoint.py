"""Read and write checkpoints in SAT's layout (what SAT's ``save_checkpoint`` writes, ``load_checkpoint`` reads)::

    <dir>/latest                                  # the iteration as text (or "release")
    <dir>/<iteration>/mp_rank_00_model_states.pt  # {"module": state_dict, ...}

Every loader takes ``<dir>`` (the iteration ``latest`` names) or one ``<dir>/<iteration>`` folder (that iteration).
DiT keys are prefixed ``model.diffusion_model.`` (the engine holds ``OpenAIWrapper(dit)`` as ``.model``).

Loading follows SAT's ``sat.training.model_io.load_checkpoint`` (``load_state_dict(sd["module"], strict=False)``, so
SAT's LoRA layers route a base ``query_key_value.weight`` into ``.original``), but where SAT only prints we raise an
``InputError`` naming the file and the keys: an unexpected key, a missing key outside ``expected_missing_prefixes``,
a tensor of another shape, or a LoRA model's matrices missing (unless ``allow_missing_lora=True``, to start a LoRA
fine-tune from the released weights). Files are read with ``weights_only=True``, allow-listing the numpy globals of
the RNG state SAT training pickles (``NUMPY_RNG_GLOBALS``); ``trusted=True`` unpickles fully, for your own files.
A LoRA-only checkpoint holds the LoRA matrices alone (all of the model's) plus ``states[LORA_BASE_KEY]``, the base
transformer folder they apply to; ``load_sat_checkpoint`` loads that base first (``lora_chain``), then the matrices.
"""

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from checkpoints.atomic_dir import RETIRED_PREFIX, publish, save_durably, staging_dir
from checkpoints.checkpoint_shapes import check_shapes
from input_errors import InputError
from checkpoints.weight_files import check_torch_file, load_torch_file

MODEL_STATES_NAME = "mp_rank_00_model_states.pt"
LAYOUT = f"<dir>/latest holding the iteration, and <dir>/<iteration>/{MODEL_STATES_NAME} (pass <dir> or <dir>/<iteration>)"
MODEL_STATES = "a SAT model-states file (torch.save of {'module': state_dict, ...})"
LORA_MARKERS = (".matrix_A.", ".matrix_B.")
LORA_BASE_KEY = "lora_base"  # model-states entry: the base checkpoint folder of a LoRA-only checkpoint
NUMPY_RNG_GLOBALS = (np.ndarray.__reduce__(np.empty(0))[0], np.ndarray, np.dtype, type(np.dtype(np.uint32)))
SHOWN_KEYS = 5
# The rotary mixin's buffers, computed from the config when the model is built; released 5B files carry them, files of
# older conversions do not. Matches the reference: its non-strict load keeps the computed ones when they are missing.
RECOMPUTED_TABLES = ("mixins.pos_embed.freqs_sin", "mixins.pos_embed.freqs_cos")


def _first(keys: Iterable[str]) -> str:
    keys = list(keys)
    more = f" ... and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{keys[:SHOWN_KEYS]}{more}"


def is_lora_key(key: str) -> bool:
    """True for SAT LoRA matrices (``...matrix_A.<i>`` / ``...matrix_B.<i>``)."""
    return any(marker in key for marker in LORA_MARKERS)


def iteration_of(folder: Path) -> int:
    """The iteration an iteration folder holds, from its name (SAT names them by number; ``release``: 0)."""
    return int(folder.name) if folder.name.isdigit() else 0


def checkpoint_path(load_dir: str | os.PathLike) -> tuple[Path, int]:
    """The model-states file ``latest`` points to, and its iteration (0 for ``release``). ``load_dir`` may also be
    one iteration folder of a checkpoint (``<dir>/<iteration>``, what a file browser picks): that iteration's file."""
    load_dir = Path(load_dir)
    if not load_dir.is_dir():
        raise InputError(f"checkpoint folder {load_dir} does not exist; expected {LAYOUT}")
    if (load_dir / MODEL_STATES_NAME).is_file() and not (load_dir / "latest").is_file():
        check_torch_file(load_dir / MODEL_STATES_NAME, MODEL_STATES)
        return load_dir / MODEL_STATES_NAME, iteration_of(load_dir)
    latest = load_dir / "latest"
    if not latest.is_file():
        raise InputError(f"{latest} not found; a SAT checkpoint folder holds {LAYOUT}")
    tag = latest.read_text().strip()
    if tag != "release" and not tag.isdigit():
        raise InputError(f"{latest} holds {tag!r}; expected an iteration number or 'release'")
    path = load_dir / tag / MODEL_STATES_NAME
    retired = load_dir / f"{RETIRED_PREFIX}{tag}"
    if not path.is_file() and retired.is_dir():
        raise InputError(
            f"{path} not found: a save of iteration {tag} was killed between its renames and the previous copy is "
            f"in {retired}; resuming training with --load {load_dir} puts it back (or rename it to {load_dir / tag})"
        )
    if not path.is_file():
        raise InputError(f"{path} not found ({latest} says {tag!r}); expected {LAYOUT}")
    check_torch_file(path, MODEL_STATES)
    return path, 0 if tag == "release" else int(tag)


def read_checkpoint_states(path: str | os.PathLike, trusted: bool = False) -> dict:
    """The whole dict of one model-states file (``module`` and whatever else was saved), on CPU."""
    states = load_torch_file(path, MODEL_STATES, trusted=trusted, safe_globals=NUMPY_RNG_GLOBALS)
    if not isinstance(states, Mapping) or "module" not in states:
        found = sorted(states) if isinstance(states, Mapping) else type(states).__name__
        raise InputError(f"{path}: expected a dict with key 'module' (SAT model states), found {found}")
    return dict(states)


def read_model_states(path: str | os.PathLike, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The ``module`` state dict of one model-states file, on CPU."""
    return read_checkpoint_states(path, trusted=trusted)["module"]


@dataclass(frozen=True)
class ChainLink:
    """One checkpoint file of a LoRA chain."""

    path: Path  # the model-states file
    iteration: int  # its iteration (0 for 'release' or a file given directly)
    states: dict  # everything the file holds ("module", maybe LORA_BASE_KEY, ...)


def lora_chain(location: str | os.PathLike, trusted: bool = False) -> list[ChainLink]:
    """``location``'s checkpoint and the bases it records (``LORA_BASE_KEY``), the root base first.

    location: a SAT checkpoint folder (with ``latest``) or one model-states file. The one resolver of recorded
    bases (loading, merging, converting): a chain that loops back is refused, and a recorded base that no longer
    exists is named with the checkpoint that recorded it and how to point it at the new place.
    """
    location = Path(location)
    path, iteration = (location, 0) if location.is_file() else checkpoint_path(location)
    chain = []
    while True:
        if path.resolve() in {link.path.resolve() for link in chain}:
            raise InputError(f"{path}: the chain of {LORA_BASE_KEY!r} entries loops back to this file")
        states = read_checkpoint_states(path, trusted=trusted)
        chain.append(ChainLink(path, iteration, states))
        base = states.get(LORA_BASE_KEY)
        if base is None:
            return chain[::-1]
        not_lora = [key for key in states["module"] if not is_lora_key(key)]
        if not_lora:
            raise InputError(f"{path}: a LoRA-only checkpoint (its base is {base}) holds non-LoRA keys {_first(not_lora)}")
        if not Path(base).is_dir():
            raise InputError(
                f"{path} records its LoRA base as {base}, which does not exist (moved?). Point it at the new "
                f"place with: python tools/set_lora_base.py --checkpoint {path.parent.parent} --base <new base folder>"
            )
        path, iteration = checkpoint_path(base)


def composed_module_states(location: str | os.PathLike, trusted: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    """The ``module`` dict of ``location`` on top of its recorded bases, and ``location``'s iteration."""
    chain = lora_chain(location, trusted=trusted)
    return {key: value for link in chain for key, value in link.states["module"].items()}, chain[-1].iteration


def load_sat_checkpoint(
    module: nn.Module,
    load_dir: str | os.PathLike,
    expected_missing_prefixes: tuple[str, ...] = ("conditioner.", "first_stage_model."),
    *,
    allow_missing_lora: bool = False,
    trusted: bool = False,
) -> int:
    """Load ``<load_dir>``'s latest checkpoint into ``module`` (non-strict, checked); returns its iteration.

    module: the engine (keys ``model.diffusion_model.*``, ``conditioner.*``, ...) or any module whose
    keys match the file. A LoRA-only checkpoint loads its recorded base first (see the module docstring).
    """
    chain = lora_chain(load_dir, trusted=trusted)
    for position, link in enumerate(chain):
        is_base = position < len(chain) - 1
        load_checked_state_dict(
            module, link.states["module"], str(link.path), tuple(expected_missing_prefixes),
            allow_missing_lora=allow_missing_lora or is_base, lora_only=link.states.get(LORA_BASE_KEY) is not None,
        )
    return chain[-1].iteration


def load_checked_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    expected_missing_prefixes: tuple[str, ...] = ("conditioner.", "first_stage_model."),
    *,
    allow_missing_lora: bool = False,
    lora_only: bool = False,
) -> None:
    """``module.load_state_dict(state_dict, strict=False)`` (as SAT), raising InputError on a tensor of another
    shape (checked before loading), an unexpected key, or a missing one outside ``expected_missing_prefixes``;
    ``source`` names the file in the messages. ``lora_only``: the dict holds exactly the model's LoRA matrices
    (loaded on top of their base)."""
    check_shapes(source, state_dict, module.state_dict(),
                 may_be_missing=lambda key: key.startswith(expected_missing_prefixes) or is_lora_key(key))
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    if unexpected:
        raise InputError(f"{source}: {len(unexpected)} unexpected key(s) not in the model: {_first(unexpected)}")
    # SAT's LoRA layers never report their matrices as missing: check them here.
    absent_lora = [key for key in module.state_dict() if is_lora_key(key) and key not in state_dict]
    if lora_only:
        if absent_lora:
            raise InputError(f"{source}: LoRA matrices of the model missing from this LoRA-only checkpoint: {_first(absent_lora)}")
        return
    missing = [key for key in missing if not key.startswith(expected_missing_prefixes)]
    tables = [key for key in missing if key.endswith(RECOMPUTED_TABLES)]
    missing = [key for key in missing if key not in tables]
    if not allow_missing_lora:
        missing += [key for key in absent_lora if not key.startswith(expected_missing_prefixes)]
    if missing:
        hint = ""
        if state_dict and all(is_lora_key(key) for key in state_dict):
            hint = f" (the file holds only LoRA matrices: save it with {LORA_BASE_KEY}=<base checkpoint folder>)"
        raise InputError(
            f"{source}: {len(missing)} model key(s) missing from the checkpoint (allowed missing prefixes "
            f"{list(expected_missing_prefixes)}{', LoRA matrices' if allow_missing_lora else ''}): {_first(missing)}{hint}"
        )
    if tables:
        warnings.warn(f"{source} has no rotary tables {[key.rpartition('.')[2] for key in tables]} (written by an older "
                      "conversion): using the ones computed from the config, as the reference's non-strict loader does")


def save_sat_checkpoint(
    state_dict: Mapping[str, torch.Tensor], save_dir: str | os.PathLike, iteration: int, lora_base: str | os.PathLike | None = None
) -> Path:
    """Write ``{"module": state_dict}`` as ``<save_dir>/<iteration>/mp_rank_00_model_states.pt``; returns its path.

    lora_base: for a LoRA-only ``state_dict``, the base checkpoint folder it applies to (stored as an
    absolute path under ``LORA_BASE_KEY``). Atomic: the iteration folder is written under a temporary
    name and renamed into place, then ``latest`` is replaced (temp file + rename), so a crash at any
    point leaves the previous checkpoint loadable.
    """
    if not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative int, got {iteration!r}")
    states = {"module": {key: value.detach().cpu() for key, value in state_dict.items()}}
    if lora_base is not None:
        not_lora = [key for key in state_dict if not is_lora_key(key)]
        if not_lora:
            raise ValueError(f"lora_base is only for LoRA-only checkpoints; the state dict holds {_first(not_lora)}")
        states[LORA_BASE_KEY] = os.path.abspath(lora_base)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(save_dir, iteration)
    shutil.rmtree(staging, ignore_errors=True)  # left by an earlier save of this iteration that was killed
    (staging / str(iteration)).mkdir(parents=True)
    try:
        save_durably(states, staging / str(iteration) / MODEL_STATES_NAME)
    except BaseException:
        shutil.rmtree(staging)
        raise
    (final,) = publish(staging, save_dir, iteration)
    return final / MODEL_STATES_NAME
