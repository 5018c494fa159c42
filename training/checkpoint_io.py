"""Saving and loading fine-tuning checkpoints in SAT's layout, slim and atomic, resumable.

A checkpoint folder `<save>/<experiment>-<date>/` holds:
    latest                                        the iteration (text), replaced only after a complete save
    <iteration>/mp_rank_00_model_states.pt        {"module": trained weights (see checkpoint_contents),
                                                   "lora_base": base folder, for LoRA-only checkpoints}
    <iteration>/training_state.json               iteration, contents, LR schedule, world sizes, validation
                                                  batches read
    <iteration>/training_state_dp<r>_mp<m>.pt     per rank: RNG and (unless --no-save-optim) optimizer states
    <iteration>-ema/mp_rank_00_model_states.pt    with sat.ops.FusedEmaAdam (GPU): the EMA weights, as SAT
The model-states file is what SAT's loader and `sample_video.py` read (`checkpoints.sat_checkpoint`).
"""

import argparse
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from sat import mpu
from sat.helpers import print_rank0
from sat.training.model_io import restore_ema_parameters_back, update_ema_parameters_to_model

from checkpoints.atomic_dir import STAGING_PREFIX, clear_stale_staging, publish, save_durably, staging_dir
from checkpoints.sat_checkpoint import LORA_BASE_KEY, checkpoint_path, is_lora_key, load_sat_checkpoint
from text_files import read_json
from training.checkpoint_contents import CheckpointContents, gather_state, select_contents, trained_parameter_names
from training.resume import ResumeState, capture_rng, optimizer_state, scheduler_state
from training.run_folder import continued_run_folder
from training.zero3 import gathered_state, is_partitioned

TRAINING_STATE_NAME = "training_state.json"
TRAINING_STATE = f"the {TRAINING_STATE_NAME} a fine-tuning run writes beside its weights"
FROZEN_PREFIXES = ("conditioner.", "first_stage_model.")  # loaded from their own files, never from a checkpoint


def has_lora(engine: torch.nn.Module) -> bool:
    return any(is_lora_key(name) for name, _ in engine.named_parameters())


def model_states_name(mp_rank: int) -> str:
    return f"mp_rank_{mp_rank:02d}_model_states.pt"


def rank_state_name(dp_rank: int, mp_rank: int) -> str:
    return f"training_state_dp{dp_rank:03d}_mp{mp_rank:02d}.pt"


@dataclass(frozen=True)
class SaveOptions:
    lora_save_base: bool  # LoRA checkpoints hold the transformer too
    save_optimizer: bool  # write the optimizer states (exact resumption)
    lora_base: str | None  # absolute base folder a LoRA-only checkpoint applies to; None forces saving the base
    validation_batches: int  # validation batches read by the end of the saved iteration (data_position)


def ema_optimizer_ready(optimizer) -> bool:
    """True when the optimizer is SAT's FusedEmaAdam under ZeRO and every partition has its EMA ('shadow').

    matches the reference's EMA save, but the reference raises KeyError: 'shadow' when no step has been taken yet
    (every early fp16 step overflowed): then there is no EMA to save and it is skipped with a warning.
    """
    inner = getattr(optimizer, "optimizer", None)
    if type(inner).__name__ != "FusedEmaAdam":
        return False
    if all("shadow" in inner.state.get(p, {}) for p in optimizer.single_partition_of_fp32_groups):
        return True
    warnings.warn("FusedEmaAdam has taken no step yet (all steps overflowed?): no EMA weights to save at this iteration")
    return False


def save_training_checkpoint(iteration: int, model, optimizer, lr_scheduler, args: argparse.Namespace,
                             options: SaveOptions) -> None:
    """SAT's `save_checkpoint(iteration, model, optimizer, lr_scheduler, args)` contract, collective over ranks."""
    engine = model.module if hasattr(model, "module") else model
    contents = select_contents(engine, options.lora_save_base or options.lora_base is None)
    dp_rank, mp_rank = mpu.get_data_parallel_rank(), mpu.get_model_parallel_rank()
    staging = staging_dir(args.save, iteration)
    if torch.distributed.get_rank() == 0:
        os.makedirs(args.save, exist_ok=True)
        clear_stale_staging(args.save)
        (staging / str(iteration)).mkdir(parents=True)
    torch.distributed.barrier()

    rank_state = {"rng": capture_rng(), "optimizer": optimizer_state(optimizer) if options.save_optimizer else None}
    save_durably(rank_state, staging / str(iteration) / rank_state_name(dp_rank, mp_rank))
    state = collect_state(engine, contents, dp_rank)  # collective under ZeRO-3
    if dp_rank == 0:
        write_model_states(state, contents, options, staging / str(iteration), mp_rank)
    if optimizer is not None and ema_optimizer_ready(optimizer):
        update_ema_parameters_to_model(optimizer)  # collective
        if dp_rank == 0:
            ema_folder = staging / f"{iteration}-ema"
            ema_folder.mkdir(exist_ok=True)
            write_model_states(gather_state(engine, contents), contents, options, ema_folder, mp_rank)
        restore_ema_parameters_back(optimizer)  # collective
    torch.distributed.barrier()

    if torch.distributed.get_rank() == 0:
        meta = {
            "iteration": iteration,
            "contents": contents.kind,
            LORA_BASE_KEY: options.lora_base if contents.kind == "lora" else None,
            "lr_scheduler": scheduler_state(lr_scheduler),
            "dp_world_size": mpu.get_data_parallel_world_size(),
            "mp_world_size": mpu.get_model_parallel_world_size(),
            "optimizer_states": options.save_optimizer,
            "validation_batches": options.validation_batches,
            "has_lora": has_lora(engine),
            "trained_parameters": trained_parameter_names(engine),
        }
        (staging / str(iteration) / TRAINING_STATE_NAME).write_text(json.dumps(meta, indent=2))
        published = publish(staging, args.save, iteration)
        report_sizes(published, contents, iteration)
    torch.distributed.barrier()


def collect_state(engine: torch.nn.Module, contents: CheckpointContents, dp_rank: int) -> dict | None:
    """The weights to save, whole, on the first data-parallel rank (None elsewhere). Under ZeRO-3 the
    parameters are partitioned: every rank takes part in gathering them (`zero3.gathered_state`)."""
    if any(is_partitioned(param) for param in engine.parameters()):
        return gathered_state(engine, contents.keys, keep=dp_rank == 0)
    return gather_state(engine, contents) if dp_rank == 0 else None


def write_model_states(state: dict, contents: CheckpointContents, options: SaveOptions, folder: Path, mp_rank: int) -> None:
    model_states = {"module": state}
    if contents.kind == "lora":
        model_states[LORA_BASE_KEY] = options.lora_base
    save_durably(model_states, folder / model_states_name(mp_rank))


def report_sizes(folders: list[Path], contents: CheckpointContents, iteration: int) -> None:
    """Log the checkpoint's size: weights and the rest (optimizer, RNG) separately."""
    def megabytes(paths) -> float:
        return sum(p.stat().st_size for p in paths) / 2**20

    files = [p for folder in folders for p in folder.iterdir()]
    weights = [p for p in files if p.name.endswith("_model_states.pt")]
    print_rank0(
        f"saved checkpoint {iteration} to {folders[0].parent}: weights {megabytes(weights):.2f} MB "
        f"({contents.kind}: {len(contents.keys)} tensors), training state {megabytes(set(files) - set(weights)):.2f} MB"
    )


@dataclass(frozen=True)
class LoadedCheckpoint:
    iteration: int  # where training continues
    lora_base: str  # the base a LoRA-only save of this run applies to
    resume: ResumeState | None  # None: a fresh start from these weights
    run_folder: str | None = None  # a resumption: the loaded run's folder, where this run goes on (run_folder.py)


def load_training_checkpoint(engine: torch.nn.Module, args: argparse.Namespace) -> LoadedCheckpoint:
    """Load `args.load` into the engine for training; decide whether this is a fresh start or a resumption.

    - A checkpoint this script wrote (with `training_state.json`) from the same kind of run (LoRA or full): resume
      at its iteration, in its run folder; the rest of its state is restored when SAT's loop starts.
    - Any other SAT checkpoint (released, merged, a full fine-tune loaded by a LoRA run): its weights, at iteration
      0 in finetune mode (matches the reference; pretrain mode: the file's iteration); LoRA matrices stay fresh.
    VAE and T5 weights never load from here. What a crashed save left in `args.load` is cleaned first.
    """
    if torch.distributed.get_rank() == 0 and any(Path(args.load).glob(f"{STAGING_PREFIX}*")):
        clear_stale_staging(args.load)
    torch.distributed.barrier()
    path, file_iteration = checkpoint_path(args.load)
    load_sat_checkpoint(engine, args.load, expected_missing_prefixes=FROZEN_PREFIXES, allow_missing_lora=True)
    meta_path = path.parent / TRAINING_STATE_NAME
    meta = read_json(meta_path, TRAINING_STATE) if meta_path.is_file() else None
    if meta is None or meta["has_lora"] != has_lora(engine):
        iteration = file_iteration if args.mode == "pretrain" else 0
        return LoadedCheckpoint(iteration, os.path.abspath(args.load), None)

    dp_rank, dp_size = mpu.get_data_parallel_rank(), mpu.get_data_parallel_world_size()
    same_layout = meta["dp_world_size"] == dp_size and meta["mp_world_size"] == mpu.get_model_parallel_world_size()
    if not same_layout:
        warnings.warn(f"{args.load} was saved by {meta['dp_world_size']} data-parallel ranks, this run has {dp_size}: "
                      "resuming weights, iteration and LR schedule only (optimizer moments and RNG restart)")
    mp_rank = mpu.get_model_parallel_rank()
    resume = ResumeState(
        iteration=meta["iteration"],
        trained_parameters=tuple(meta["trained_parameters"]),
        scheduler=meta["lr_scheduler"],
        rank_state_paths=tuple(path.parent / rank_state_name(r, mp_rank) for r in range(meta["dp_world_size"])),
        rank=dp_rank,
        restore_optimizer=same_layout and meta["optimizer_states"],
        restore_rng=same_layout and not args.no_load_rng,
        validation_batches=meta.get("validation_batches", 0),  # absent from checkpoints written before it was kept
    )
    print_rank0(f"resuming from {path.parent} at iteration {resume.iteration}")
    run_folder = continued_run_folder(path.parent, resume.iteration)
    if run_folder is None:
        print_rank0(f"{path.parent.parent} holds checkpoints after iteration {resume.iteration}: this run writes to a "
                    "new run folder, so they are kept")
    return LoadedCheckpoint(meta["iteration"], meta[LORA_BASE_KEY] or os.path.abspath(args.load), resume, run_folder)
