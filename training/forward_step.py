"""SAT's per-step hooks for CogVideoX fine-tuning: `forward_step` (training) and `forward_step_eval`.

SAT calls `hook(data_iterator, model, args, timers)`; `model` is the DeepSpeed engine (attribute access reaches
the `SATVideoDiffusionEngine`). Both return `(loss, {"loss": loss})`.
"""

import argparse
import os
from typing import Iterator

import torch
from omegaconf import OmegaConf
from sat import mpu

from text_files import read_yaml
from training.batch import next_batch
from training.eval_logging import write_eval_log

TRAINING_CONFIG_NAME = "training_config.yaml"


def write_training_config(args: argparse.Namespace) -> None:
    """Rank 0, once: the merged `--base` files as `<save>/training_config.yaml` (as the reference)."""
    if args.save is None or torch.distributed.get_rank() != 0:
        return
    path = os.path.join(args.save, TRAINING_CONFIG_NAME)
    if os.path.exists(path):
        return
    os.makedirs(args.save, exist_ok=True)
    OmegaConf.save(config=OmegaConf.merge(*[read_yaml(p) for p in args.base]), f=path)


def forward_step(data_iterator: Iterator[dict], model, args: argparse.Namespace, timers) -> tuple[torch.Tensor, dict]:
    """One training forward: batch -> `model.shared_step(batch)` -> (loss, {"loss": loss})."""
    batch = next_batch(data_iterator, args, timers)
    write_training_config(args)
    batch["global_step"] = args.iteration
    return model.shared_step(batch)


def forward_step_eval(
    data_iterator: Iterator[dict], model, args: argparse.Namespace, timers, only_log_video_latents: bool = False,
    every_rank_samples: bool = False,
) -> tuple[torch.Tensor, dict]:
    """As `forward_step`, and the first data-parallel rank samples from the batch's prompts and writes the
    texts and latents (or, unless `only_log_video_latents`, mp4s) under `<save>/video*` (see `eval_logging`).

    The sampling noise comes from a generator seeded with (seed, iteration), so a run's logged samples repeat.
    `every_rank_samples` (ZeRO-3, where every forward gathers parameters from every rank): the other ranks sample
    from their own batch too, in step, and discard it; they do so with their RNG states put back afterwards, so
    their later draws are those of a ZeRO-1/2 run, where they do not sample.
    """
    batch = next_batch(data_iterator, args, timers)
    if args.save is not None:
        first = mpu.get_data_parallel_rank() == 0
        if first or every_rank_samples:
            generator = torch.Generator().manual_seed(args.base_seed * 1_000_003 + args.iteration)
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices, enabled=not first):
                log = model.log_video(batch, only_log_video_latents=only_log_video_latents, generator=generator)
            if first and mpu.get_model_parallel_rank() == 0:
                write_eval_log(log, batch, args.save, args.iteration, only_log_video_latents)
    batch["global_step"] = args.iteration
    loss, loss_dict = model.shared_step(batch)
    return loss, {key: value.float() for key, value in loss_dict.items()}
