"""Context parallelism of the 3D causal VAE (the reference's ``cp_size > 1``): the time axis split over ranks.

Matches the reference (``vae_modules/cp_enc_dec.py``: ``_conv_split`` / ``_conv_gather`` with kernel 1,
``_pass_from_previous_rank``, ``ContextParallelGroupNorm``), docs/parallel.md:
- groups of ``cp_size`` consecutive ranks; the group's first rank's input is broadcast to the group;
- of T frames, rank 0 takes the first ``(T - 1) / cp + 1``, rank r the next ``(T - 1) / cp`` (so the first-frame
  rules of the time resampling act per rank as on the whole video);
- a causal conv's left padding on rank r > 0 is rank r - 1's last ``k - 1`` input frames;
- GroupNorm statistics span all ranks with ``gather_norm: true`` (the released encoder), else per rank;
- the outputs are all-gathered along time, so every rank of the group holds the whole result.
"""

import sys

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn

from input_errors import InputError


def time_split_sizes(frames: int, cp_size: int) -> list[int]:
    """Frames per rank: ``(frames - 1) / cp + 1`` on rank 0, ``(frames - 1) / cp`` on the others."""
    share = (frames - 1) // cp_size
    return [share + 1] + [share] * (cp_size - 1)


def check_time_split(frames: int, cp_size: int, step: int, what: str) -> None:
    """``frames - 1`` must split in ``cp_size`` shares, each a multiple of ``step`` (the time compression for videos:
    the per-rank pooling must pair the frames one process pairs)."""
    if (frames - 1) % (cp_size * step):
        unit = cp_size * step
        below = (frames - 1) // unit * unit + 1
        raise InputError(
            f"cp_size {cp_size}: {what} of {frames} frames cannot be split over {cp_size} ranks (the reference gives "
            f"rank 0 one frame more and each rank (frames - 1) / {cp_size} frames, a multiple of {step}); "
            f"nearest valid counts: {below} and {below + unit}"
        )


def configured_cp_size(model_config) -> int:
    """The processes that encode or decode one video together: ``first_stage_config.params.cp_size`` (0 and 1: one)."""
    return max(int(OmegaConf.select(model_config, "first_stage_config.params.cp_size", default=0) or 0), 1)


def check_cp_processes(cp_size: int, world_size: int, command: str) -> None:
    """The one rule of the process count under cp_size > 1 (every command that runs the VAE split, before its build,
    and `ContextParallelGroups`): the `world_size` processes of `command` form whole groups of `cp_size`."""
    if world_size % cp_size:
        processes = "1 process" if world_size == 1 else f"{world_size} processes"
        raise InputError(f"first_stage_config cp_size {cp_size} does not divide the {processes} of {command} (the "
                         f"VAE's context parallelism splits each video over a group of {cp_size} processes): run a "
                         f"multiple of {cp_size} processes, e.g. torchrun --nproc_per_node={cp_size} {command} ...")


def check_encode_split(model_config, max_num_frames: int, world_size: int, command: str) -> None:
    """cp_size > 1 in training or precompute (`command`): the processes must form whole groups and the videos' frames
    must split over a group; checked before any model is built."""
    cp_size = configured_cp_size(model_config)
    if cp_size == 1:
        return
    check_cp_processes(cp_size, world_size, command)
    step = int(OmegaConf.select(model_config, "first_stage_config.params.encoder_config.params.temporal_compress_times",
                                default=4))
    check_time_split(max_num_frames, cp_size, step, "data: max_num_frames: a video")


def group_norm_across(norm: nn.GroupNorm, x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """``norm(x)`` with the statistics of every rank's frames: x (b, c, t_local, h, w) -> same shape."""
    b, c = x.shape[:2]
    grouped = x.reshape(b, norm.num_groups, -1).to(torch.float64)  # (b, groups, c/groups * t_local * h * w)
    stats = torch.stack((grouped.sum(-1), torch.full_like(grouped[:, :, 0], grouped.shape[-1])))  # (2, b, groups)
    dist.all_reduce(stats, group=group)
    mean = (stats[0] / stats[1])[..., None]
    squares = (grouped - mean).square().sum(-1)
    dist.all_reduce(squares, group=group)
    inv_std = (squares / stats[1] + norm.eps).rsqrt()[..., None]
    normed = ((grouped - mean) * inv_std).to(x.dtype).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return normed * norm.weight.view(shape) + norm.bias.view(shape)


class RankContext:
    """What a causal conv and a norm need from the neighbouring ranks during one split encode or decode (the
    counterpart of ``CausalCache``, which carries the same left context between chunks of one process)."""

    def __init__(self, group: dist.ProcessGroup, ranks: list[int], gather_norm: bool):
        self.group, self.ranks, self.gather_norm = group, ranks, gather_norm
        self.index = ranks.index(dist.get_rank())

    def exchange(self, conv: nn.Module, x: torch.Tensor, pad: int) -> torch.Tensor | None:
        """Send this rank's last ``pad`` frames to the next rank; return the previous rank's (None on rank 0)."""
        if self.index < len(self.ranks) - 1:
            if x.shape[2] < pad:
                raise ValueError(f"context parallel: a rank holds {x.shape[2]} frames, fewer than a causal conv's {pad}")
            sending = dist.isend(x[:, :, -pad:].contiguous(), self.ranks[self.index + 1], group=self.group)
        else:
            sending = None
        previous = None
        if self.index > 0:
            previous = x.new_empty(x.shape[:2] + (pad,) + x.shape[3:])
            dist.recv(previous, self.ranks[self.index - 1], group=self.group)
        if sending is not None:
            sending.wait()
        return previous

    def norm(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        return group_norm_across(norm, x, self.group) if self.gather_norm else norm(x)


class ContextParallelGroups:
    """The process groups of ``cp_size`` consecutive ranks (created on every rank, in one order)."""

    def __init__(self, cp_size: int):
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        # the entry scripts check before the build with their name; here it is the program building the VAE
        check_cp_processes(cp_size, world, sys.argv[0])
        self.cp_size = cp_size
        self.group, self.ranks = None, None
        for first in range(0, world, cp_size):
            ranks = list(range(first, first + cp_size))
            group = dist.new_group(ranks)
            if dist.get_rank() in ranks:
                self.group, self.ranks = group, ranks

    @property
    def index(self) -> int:
        return self.ranks.index(dist.get_rank())

    def context(self, gather_norm: bool) -> RankContext:
        return RankContext(self.group, self.ranks, gather_norm)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(b, c, T, h, w), the group's first rank's copy -> this rank's time slice, and every rank's slice length."""
        x = x.contiguous()
        dist.broadcast(x, self.ranks[0], group=self.group)  # matches the reference: the group works on one input
        sizes = time_split_sizes(x.shape[2], self.cp_size)
        start = sum(sizes[: self.index])
        return x[:, :, start : start + sizes[self.index]], sizes

    def gather(self, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Time slices (b, c, t_r, h, w) -> (b, c, sum t_r, h, w) on every rank of the group."""
        longest = max(sizes)
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, longest - x.shape[2])).contiguous()
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([part[:, :, :size] for part, size in zip(parts, sizes)], dim=2)
