"""Getting one training batch onto this process's device, the same on every rank of a model-parallel group."""

import argparse
from typing import Iterator

import torch
from sat import mpu

# A batch after SAT's default collate: tensors (SFTDataset: mp4 (b, T, 3, H, W) float, fps (b,) and num_frames (b,)
# int64; a latent cache: posterior halves and text embeddings instead of mp4) and txt, a list of b strings.


def to_device(batch: dict, device: torch.device | str) -> dict:
    """Tensors of the batch moved to `device` (the reference calls `.cuda()`); other values unchanged."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def broadcast_batch(batch: dict | None, device: torch.device | str) -> dict:
    """Model parallelism: give every rank of the group the batch its first rank read.

    The first rank passes its batch, the others None; shapes and texts go as objects, tensors by broadcast.
    """
    group = mpu.get_model_parallel_group()
    src = mpu.get_model_parallel_src_rank()
    header = [None, None]
    if batch is not None:
        tensors = {key: value for key, value in batch.items() if isinstance(value, torch.Tensor)}
        header = [batch["txt"], {key: (tuple(value.shape), value.dtype) for key, value in tensors.items()}]
    torch.distributed.broadcast_object_list(header, src=src, group=group)
    texts, specs = header
    if batch is None:
        batch = {key: torch.empty(shape, dtype=dtype, device=device) for key, (shape, dtype) in specs.items()}
        batch["txt"] = texts
    for key in specs:
        torch.distributed.broadcast(batch[key], src=src, group=group)
    return batch


def next_batch(data_iterator: Iterator[dict], args: argparse.Namespace, timers) -> dict:
    """Read the next batch (first rank of the model-parallel group), move it to `args.device`, share it.

    Matches the reference's data path; with model-parallel size 1 no broadcast is made.
    """
    batch = None
    if mpu.get_model_parallel_rank() == 0:
        timers("data loader").start()
        batch = next(data_iterator)
        timers("data loader").stop()
        batch = to_device(batch, args.device)
    if mpu.get_model_parallel_world_size() > 1:
        batch = broadcast_batch(batch, args.device)
    return batch
