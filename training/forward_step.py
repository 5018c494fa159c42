"""SAT's per-step hooks for CogVideoX fine-tuning: `forward_step` (training) and `forward_step_eval`.

SAT calls `hook(data_iterator, model, args, timers)`; `model` is the DeepSpeed engine (attribute access reaches
the `SATVideoDiffusionEngine`). Both return `(loss, {"loss": loss})`.
"""

import argparse
import os
from typing import Callable, Iterator

import torch
from omegaconf import OmegaConf
from sat import mpu

from text_files import read_yaml
from training.batch import next_batch
from training.eval_logging import VIDEO_KEYS, write_eval_log
from training.video_summaries import log_to_tensorboard, log_to_wandb

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


def publish_videos(log: dict, written: dict[str, list[str]], batch: dict, args: argparse.Namespace, writer) -> None:
    """The decoded videos of `log` (none with only_log_video_latents) to wandb (rank 0, `--wandb`, where SAT
    started its run) and to the TensorBoard `writer` (None: none)."""
    keys = [key for key in VIDEO_KEYS if key in written]
    texts, fps = list(batch["txt"]), int(batch["fps"][0])
    if keys and args.wandb and torch.distributed.get_rank() == 0:
        log_to_wandb({key: written[key] for key in keys}, texts, fps, args.iteration)
    if keys and writer is not None:
        log_to_tensorboard(writer, {key: log[key] for key in keys}, texts, fps, args.iteration)


def forward_step_eval(
    data_iterator: Iterator[dict], model, args: argparse.Namespace, timers, only_log_video_latents: bool = False,
    every_rank_samples: bool = False, summary_writer: Callable[[], object] | None = None,
) -> tuple[torch.Tensor, dict]:
    """As `forward_step`, and the first data-parallel rank samples from the batch's prompts and writes the
    texts and latents (or, unless `only_log_video_latents`, mp4s) under `<save>/video*` (see `eval_logging`).

    The sampling noise is seeded with (seed, iteration), so a run's logged samples repeat. `every_rank_samples`
    (ZeRO-3, where every forward gathers parameters from every rank): the other ranks sample too, in step, discard it
    and put their RNG states back, so their later draws are a ZeRO-1/2 run's. The videos also go to wandb and to
    SAT's TensorBoard writer (`summary_writer()`, None on other ranks), see `video_summaries`.
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
                written = write_eval_log(log, batch, args.save, args.iteration, only_log_video_latents)
                publish_videos(log, written, batch, args, summary_writer() if summary_writer else None)
    batch["global_step"] = args.iteration
    loss, loss_dict = model.shared_step(batch)
    return loss, {key: value.float() for key, value in loss_dict.items()}
