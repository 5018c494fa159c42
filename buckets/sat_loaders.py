"""Bucketed datasets in SAT's loaders, for the duration of a `with` block: `with BucketedLoaders(args): training_main`.

SAT's `make_loaders` builds each dataset with `make_dataset_full`: the paths' datasets concatenated, then a random
mapping over positions (`RandomMappingDataset` / `RandomDataset`), which would mix buckets in a micro-batch. So
`make_dataset_full` (a module global of `sat.data_utils.configure_data`) is swapped for one that puts
`buckets.batches.BucketBatches` in place of the mapping when the datasets are bucketed (`item_buckets` set), over as
many epochs as the mapping's scale. Datasets without buckets are returned as SAT made them.

Refused with buckets, before the build (`check_bucketed_run`): a `split` other than one dataset (SAT's split wraps
items in blocks) and `strict_eval` (it reads the validation set unmapped).
"""

import argparse

from sat.data_utils import configure_data

from buckets.batches import BucketBatches
from input_errors import InputError


def concat_item_buckets(concat: configure_data.ConcatDataset) -> list | None:
    """The bucket of each position of SAT's `ConcatDataset` (as its `__getitem__` maps positions), or None when a
    member has no buckets."""
    if any(getattr(dataset, "item_buckets", None) is None for dataset in concat.datasets):
        return None
    buckets, start = [], 0
    for dataset, end in zip(concat.datasets, concat.cumulative_sizes):
        buckets += [dataset.item_buckets[(index - start) % len(dataset)] for index in range(start, end)]
        start = end
    return buckets


def bucketed(made, args: argparse.Namespace, is_train_data: bool):
    """`made` (what SAT's make_dataset_full returned), its random mapping replaced by `BucketBatches` when its
    datasets are bucketed."""
    mappings = (configure_data.RandomMappingDataset, configure_data.RandomDataset)
    if not isinstance(made, mappings) or not isinstance(made.wrapped_data, configure_data.ConcatDataset):
        return made
    item_buckets = concat_item_buckets(made.wrapped_data)
    if item_buckets is None:
        return made
    micro_batch = args.batch_size if is_train_data else (args.eval_batch_size or args.batch_size)
    # the run's seed (arguments.get_args: args.seed is seed + data-parallel rank): one order for every rank
    return BucketBatches(made.wrapped_data, item_buckets, micro_batch, args.base_seed, epochs=made.scale)


class BucketedLoaders:
    def __enter__(self) -> "BucketedLoaders":
        self.original = configure_data.make_dataset_full

        def make_dataset_full(path, split, args, create_dataset_function, **kwargs):
            made = self.original(path, split, args, create_dataset_function, **kwargs)
            return bucketed(made, args, kwargs.get("is_train_data", False))

        configure_data.make_dataset_full = make_dataset_full
        return self

    def __exit__(self, *exc) -> None:
        configure_data.make_dataset_full = self.original


def check_bucketed_run(args: argparse.Namespace) -> None:
    """Before the build: the SAT options whose data paths bypass the bucketed order."""
    if args.strict_eval:
        raise InputError("strict_eval: true reads the validation set in listing order, which mixes buckets in a "
                         "batch; with data.params.buckets leave strict_eval off (validation then reads eval_iters "
                         "batches per validation)")
    if configure_data.should_split(configure_data.get_split(args)):
        raise InputError(f"split {args.split}: SAT's train/valid split is not supported with data.params.buckets; "
                         "use split 1,0,0 and name the validation folders in valid_data")
