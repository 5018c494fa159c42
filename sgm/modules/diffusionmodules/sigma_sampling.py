"""Training-time draw of the diffusion step: a DDPM index per sample and its signal scale."""

import torch

from sgm.util import instantiate_from_config

from .parallel_state import data_parallel_rank_and_world_size


def rank_index_range(rank: int, world_size: int, num_idx: int) -> tuple[int, int]:
    """[low, high) DDPM indices data-parallel rank ``rank`` of ``world_size`` draws from: disjoint, near-equal ranges
    covering [0, num_idx). Matches the reference when world_size divides num_idx; deliberate difference otherwise
    (docs/faithfulness.md).
    """
    if not 0 <= rank < world_size or world_size > num_idx:
        raise ValueError(f"rank {rank} of world size {world_size} cannot split {num_idx} indices")
    return rank * num_idx // world_size, (rank + 1) * num_idx // world_size


# CogVideoX1.5's sigma_sampling.py: with `group_num`, uniform sampling is off at this many data-parallel ranks or fewer.
GROUPED_SAMPLING_MIN_RANKS = 9


def grouped_index_range(rank: int, world_size: int, num_idx: int, group_num: int) -> tuple[int, int]:
    """[low, high) of rank `rank` under CogVideoX1.5's `group_num` rule (its sigma_sampling.py): at most 8 ranks
    draw from all indices; above, the ranks form `group_num` consecutive groups of world_size / group_num, and group
    g draws from [g * num_idx // group_num, (g + 1) * num_idx // group_num)."""
    if world_size < GROUPED_SAMPLING_MIN_RANKS:
        return 0, num_idx
    check_group_num(world_size, group_num)
    group = rank // (world_size // group_num)
    width = num_idx // group_num
    return group * width, (group + 1) * width


def check_group_num(world_size: int, group_num: int) -> None:
    """ValueError unless `world_size` data-parallel ranks can form `group_num` groups (or take the plain draw)."""
    if world_size >= GROUPED_SAMPLING_MIN_RANKS and world_size % group_num:
        raise ValueError(
            f"uniform_sampling with group_num {group_num} needs a data-parallel world size of at most "
            f"{GROUPED_SAMPLING_MIN_RANKS - 1} or a multiple of {group_num}, got {world_size} (matches the reference, "
            "which asserts it)"
        )


class DiscreteSampling:
    """Uniform DDPM index per sample; with ``uniform_sampling`` each data-parallel rank covers its own range.

    Stratifying the index over ranks makes every global batch span the whole schedule. Without ``group_num`` (the
    1.0 configs) each rank has its own range (``rank_index_range``); with it (the 1.5 configs, ``group_num: 40``) the
    1.5 reference's rule applies (``grouped_index_range``).
    """

    def __init__(
        self, discretization_config: dict, num_idx: int, uniform_sampling: bool = False, group_num: int | None = None
    ):
        discretization = instantiate_from_config(discretization_config)
        if num_idx != discretization.num_timesteps:
            raise ValueError(
                f"num_idx={num_idx} must equal the discretization's num_timesteps={discretization.num_timesteps}"
            )
        if group_num is not None and not 0 < group_num <= num_idx:
            raise ValueError(f"group_num must be from 1 to num_idx={num_idx}, got {group_num}")
        self.num_idx = num_idx
        self.uniform_sampling = uniform_sampling
        self.group_num = group_num
        self.alphas_cumprod_sqrt = discretization.table()  # (num_idx,) indexed by DDPM step

    def index_range(self) -> tuple[int, int]:
        """[low, high) of the indices this process draws from."""
        if not self.uniform_sampling:
            return 0, self.num_idx
        rank, world_size = data_parallel_rank_and_world_size()
        if self.group_num is not None:
            return grouped_index_range(rank, world_size, self.num_idx, self.group_num)
        return rank_index_range(rank, world_size, self.num_idx)

    def __call__(self, n_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``torch.randint`` draw (CPU). Returns alpha_cumprod_sqrt (n,) float32 and idx (n,) int64."""
        low, high = self.index_range()
        idx = torch.randint(low, high, (n_samples,), generator=generator)
        return self.alphas_cumprod_sqrt[idx], idx
