"""Guidance parallel: the unconditional and the conditional branch of classifier-free guidance on their own rank.

The guider batches a step's forward as ``[unconditional; conditional]`` (2b rows). With two guidance ranks, rank
``c`` runs rows ``c*b:(c+1)*b`` through the network and the halves are all-gathered, so both ranks hold the whole
2b result and apply the guider (and the sampler's update) to the same numbers: their latents stay identical.
"""

from typing import Callable

import torch
import torch.distributed as dist

from parallel.layout import gather_equal


def _half(value, rank: int, parts: int):
    if isinstance(value, torch.Tensor):
        return value.chunk(parts)[rank]
    return value


def cfg_parallel_denoiser(denoiser: Callable[..., torch.Tensor], group: dist.ProcessGroup, rank: int, size: int = 2):
    """``denoiser(x (2b, ...), alpha (2b,), cond {k: (2b, ...)}, idx=(2b,))`` -> the same result, each rank computing
    its ``1/size`` of the rows."""

    def denoise(x: torch.Tensor, alpha: torch.Tensor, cond: dict, idx: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % size:
            raise ValueError(f"guidance parallel: the guided batch ({x.shape[0]} rows) does not split in {size}")
        cond_part = {key: _half(value, rank, size) for key, value in cond.items()}
        mine = denoiser(_half(x, rank, size), _half(alpha, rank, size), cond_part, idx=_half(idx, rank, size))
        return torch.cat(gather_equal(mine, group, size), dim=0)  # (2b, t, c, h, w)

    return denoise
