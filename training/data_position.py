"""Where a resumed run picks up the data order: after the batches the interrupted run consumed.

SAT's loop sets `batch_sampler.start_iter` when `resume_dataloader` is on, but only its `DistributedBatchSampler`
(several data-parallel ranks) reads it; torch's `BatchSampler` (one rank) ignores it. `resumed_loader` gives that
case a loader that skips the consumed batches (index lists only: no item is read). The validation loader resumes
after the validation batches consumed (`validation_batches_consumed` in the checkpoint), where SAT's `start_iter`
for it, `(train_iters // save_interval) * eval_interval`, counts neither validations nor batches.
"""

import argparse
import itertools

from torch.utils.data import BatchSampler, DataLoader, Sampler


class SkipFirstBatches(Sampler):
    """The batches of `batch_sampler` after its first `skip`."""

    def __init__(self, batch_sampler: BatchSampler, skip: int):
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


def resumed_loader(loader: DataLoader | None, iteration: int, gradient_accumulation_steps: int) -> DataLoader | None:
    """`loader` continued after `iteration` optimizer steps of `gradient_accumulation_steps` micro-batches each.
    Loaders SAT already resumes (its DistributedBatchSampler) and absent ones are returned as they are."""
    if loader is None or type(loader.batch_sampler) is not BatchSampler:
        return loader
    return skipping_loader(loader, iteration * gradient_accumulation_steps)


def skipping_loader(loader: DataLoader, skip: int) -> DataLoader:
    """`loader` without its first `skip` batches."""
    return DataLoader(loader.dataset, batch_sampler=SkipFirstBatches(loader.batch_sampler, skip),
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory, collate_fn=loader.collate_fn,
                      prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None)


def validation_batches_consumed(args: argparse.Namespace, iteration: int) -> int:
    """Validation batches SAT's loop has read by the end of `iteration` (each of its validations reads `eval_iters`
    batches from one iterator; with `strict_eval` every validation starts a new iterator, so none carry over)."""
    if not args.do_valid or not args.eval_interval or args.strict_eval:
        return 0
    return (iteration // args.eval_interval) * args.eval_iters


def resumed_validation_loader(loader: DataLoader | None, consumed: int) -> DataLoader | None:
    """The validation `loader` continued after its first `consumed` batches (SAT's `start_iter` undone)."""
    if loader is None:
        return None
    if hasattr(loader.batch_sampler, "start_iter"):
        loader.batch_sampler.start_iter = 0
    return skipping_loader(loader, consumed)
