"""How the processes of one sampling run share the work: data x guidance (cfg) x sequence.

Rank ``r`` of ``world = data * cfg * sequence`` sits at ``(d, c, s)`` with ``r = (d * cfg + c) * sequence + s``:
the sequence-parallel ranks of one guidance branch are neighbours (on a multi-GPU node they share the fastest
links, and they exchange the most: two all-to-alls per layer), the ``cfg * sequence`` ranks of one video come next,
and the data-parallel index ``d`` picks the prompts (prompt ``i`` goes to ``d = i % data``).
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist

from input_errors import InputError


@dataclass(frozen=True)
class ParallelLayout:
    world_size: int
    rank: int
    cfg: int = 1  # --cfg-parallel: 2 puts the unconditional and the conditional branch on their own rank
    sequence: int = 1  # --sequence-parallel: Ulysses degree of the DiT

    @property
    def video_ranks(self) -> int:
        """Processes that work on one video together."""
        return self.cfg * self.sequence

    @property
    def data(self) -> int:
        return self.world_size // self.video_ranks

    @property
    def data_rank(self) -> int:
        return self.rank // self.video_ranks

    @property
    def cfg_rank(self) -> int:
        return self.rank // self.sequence % self.cfg

    @property
    def sequence_rank(self) -> int:
        return self.rank % self.sequence

    @property
    def writes_output(self) -> bool:
        """The first rank of each video's group writes its file (the others hold the same video)."""
        return self.rank % self.video_ranks == 0

    def cfg_peers(self) -> list[int]:
        """Global ranks of this rank's guidance group (same d and s), in cfg order."""
        first = self.data_rank * self.video_ranks + self.sequence_rank
        return [first + c * self.sequence for c in range(self.cfg)]

    def sequence_peers(self) -> list[int]:
        """Global ranks of this rank's sequence-parallel group (same d and c), in sequence order."""
        first = self.rank - self.sequence_rank
        return list(range(first, first + self.sequence))

    def video_peers(self) -> list[int]:
        """Global ranks that hold this rank's video (same d)."""
        first = self.data_rank * self.video_ranks
        return list(range(first, first + self.video_ranks))


def check_layout(world_size: int, cfg: int, sequence: int, num_heads: int, guided: bool) -> None:
    """Bad degrees as one message, before anything is built."""
    for flag, degree in (("--cfg-parallel", cfg), ("--sequence-parallel", sequence)):
        if degree < 1:
            raise InputError(f"{flag} must be a positive integer, got {degree}")
    if cfg not in (1, 2):
        raise InputError(f"--cfg-parallel must be 1 or 2 (the two guidance branches), got {cfg}")
    if cfg == 2 and not guided:
        raise InputError("--cfg-parallel 2 needs classifier-free guidance, but the sampler's guider_config has none "
                         "(one branch only)")
    if world_size % (cfg * sequence):
        raise InputError(
            f"--cfg-parallel {cfg} x --sequence-parallel {sequence} = {cfg * sequence} processes per video does not "
            f"divide the {world_size} processes (expected world size = data x cfg x sequence, e.g. "
            f"--nproc_per_node={cfg * sequence * max(1, world_size // (cfg * sequence))})"
        )
    if num_heads % sequence:
        raise InputError(
            f"--sequence-parallel {sequence} does not divide the model's {num_heads} attention heads "
            f"(network_config.params.num_attention_heads); use a degree that divides it"
        )


class ProcessGroups:
    """The torch.distributed groups of a layout (every rank creates every group, in one order, as torch requires)."""

    def __init__(self, layout: ParallelLayout):
        self.layout = layout
        self.cfg = self._own_group(layout, "cfg_peers") if layout.cfg > 1 else None
        self.sequence = self._own_group(layout, "sequence_peers") if layout.sequence > 1 else None

    @staticmethod
    def _own_group(layout: ParallelLayout, peers: str) -> dist.ProcessGroup:
        mine = None
        for rank in range(layout.world_size):
            other = ParallelLayout(layout.world_size, rank, layout.cfg, layout.sequence)
            ranks = getattr(other, peers)()
            if ranks[0] != rank:
                continue  # one group per set of peers, created when its first member comes up
            group = dist.new_group(ranks)
            if layout.rank in ranks:
                mine = group
        return mine


def gather_equal(tensor: torch.Tensor, group: dist.ProcessGroup, size: int) -> list[torch.Tensor]:
    """All-gather same-shaped tensors of a group, in group-rank order."""
    parts = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return parts
