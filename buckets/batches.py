"""The order of a bucketed dataset's items: every micro-batch one bucket, every epoch every item, shuffled from the seed.

SAT's loaders read a dataset by position, rank r taking the r-th micro-batch of each global batch (its
`BatchSampler` / `DistributedBatchSampler`). In `BucketBatches` position p is slot p // micro_batch, each slot one
micro-batch of the schedule, so each rank's micro-batch holds one bucket. A position's item is a pure function of
(position, seed, items), so a resumed run that skips the batches already read (`training.data_position`) continues
the same order.

Epoch e: the items of each bucket shuffled by numpy's generator seeded [seed, e] and cut into micro-batches (a last
incomplete one is completed with that bucket's first items of the epoch), then all micro-batches shuffled by the
same generator.
"""

import math
from functools import lru_cache
from typing import Hashable, Sequence

import numpy as np
from torch.utils.data import Dataset


class BucketBatches(Dataset):
    def __init__(self, dataset: Dataset, item_buckets: Sequence[Hashable], micro_batch: int, seed: int,
                 epochs: int) -> None:
        """`dataset[i]` belongs to bucket `item_buckets[i]`; `epochs` passes over it (the length SAT needs)."""
        self.dataset = dataset
        self.micro_batch = micro_batch
        self.seed = seed
        groups: dict[Hashable, list[int]] = {}
        for index, bucket in enumerate(item_buckets):
            groups.setdefault(bucket, []).append(index)
        self.groups = [groups[bucket] for bucket in sorted(groups)]  # items per bucket, in listing order
        self.batches_per_epoch = sum(math.ceil(len(members) / micro_batch) for members in self.groups)
        self.length = epochs * self.batches_per_epoch * micro_batch

    def __len__(self) -> int:
        return self.length

    @lru_cache(maxsize=2)
    def epoch_batches(self, epoch: int) -> tuple[tuple[int, ...], ...]:
        """The micro-batches (item indices, one bucket each) of `epoch`, in training order."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for members in self.groups:
            order = [members[i] for i in rng.permutation(len(members))]
            count = math.ceil(len(order) / self.micro_batch) * self.micro_batch
            padded = [order[i % len(order)] for i in range(count)]  # the last micro-batch completed from the start
            batches += [tuple(padded[k:k + self.micro_batch]) for k in range(0, count, self.micro_batch)]
        return tuple(batches[i] for i in rng.permutation(len(batches)))

    def item_index(self, position: int) -> int:
        """The dataset index read at `position`."""
        slot, within = divmod(position, self.micro_batch)
        epoch, batch = divmod(slot, self.batches_per_epoch)
        return self.epoch_batches(epoch)[batch][within]

    def __getitem__(self, position: int):
        return self.dataset[self.item_index(position)]
