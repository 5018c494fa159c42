"""Routes five calls of SAT's `training_main` through ours, for the duration of a `with` block.

SAT's loop has no hook for checkpoint IO, so `training_main`'s module globals are swapped (and restored on exit):
- `load_checkpoint` -> `checkpoint_io.load_training_checkpoint`: base + LoRA, checked keys, resumption;
- `save_checkpoint` -> `checkpoint_io.save_training_checkpoint`: slim, atomic, resumable, no CUDA-only calls, each
  iteration written once. A save at an iteration SAT validates right after waits for that validation, so the
  checkpoint holds the RNG states and validation batches the run continues with (a resumed run equals the
  uninterrupted one);
- `evaluate_and_print_results`: SAT's validation, then the deferred checkpoint (if any);
- `train`: applies the resume state (LR schedule, optimizer moments, data positions: `data_position`), says when
  SAT's auto-warmup applies, starts the ETA clock, keeps SAT's TensorBoard writer for the validation videos;
- `report_iteration_metrics`: SAT's log line plus the elapsed time and an ETA (`progress_clock`).
A resumed run's RNG states are restored by the forward step `wrap_forward_step` returns, at its first call.
"""

import argparse
import inspect
from typing import Callable

from sat.helpers import print_rank0
from sat.training import deepspeed_training

from training.checkpoint_contents import trained_parameter_names
from training.data_position import resumed_loader, resumed_validation_loader, validation_batches_consumed
from training.checkpoint_io import SaveOptions, load_training_checkpoint, save_training_checkpoint
from training.progress_clock import ProgressClock
from training.resume import ResumeState

ROUTED = ("load_checkpoint", "save_checkpoint", "train", "report_iteration_metrics", "evaluate_and_print_results")


def validates_after_save(args: argparse.Namespace, iteration: int) -> bool:
    """matches the reference: SAT's `train` validates right after its checkpoint at `iteration` when this holds
    (its condition, `sat.training.deepspeed_training.train`)."""
    return bool(args.eval_interval and iteration % args.eval_interval == 0 and args.do_valid)


def auto_warmup_notice(lr_scheduler) -> str | None:
    """What SAT's `AnnealingLR` auto-warmup does to the coming iterations, or None once it is over.

    matches the reference: SAT builds the scheduler with `auto_warmup_steps=100, auto_warmup_rate=0.05` (except a
    pretrain run from iteration 0), so the 100 iterations after the start run at 0.05x the lr
    (or the ordinary warmup's lr, when that is lower).
    """
    remaining = lr_scheduler.init_step + lr_scheduler.auto_warmup_steps - lr_scheduler.num_iters + 1
    if remaining <= 0:
        return None
    rate, lr = lr_scheduler.auto_warmup_rate, float(lr_scheduler.start_lr)
    return (f"learning rate: the next {remaining} iterations run at {rate:g}x the configured lr "
            f"({rate * lr:g} instead of {lr:g}; SAT's fine-tuning auto-warmup, kept as the reference), then the "
            f"{lr_scheduler.decay_style} schedule")


class RoutedSatLoop:
    """`with RoutedSatLoop(args): training_main(...)`."""

    def __init__(self, args: argparse.Namespace):
        self.lora_save_base = bool(args.lora_save_base)
        self.save_optimizer = not args.no_save_optim
        self.lora_base: str | None = None  # set by load; None when training starts without a checkpoint
        self.resume: ResumeState | None = None
        self.continued_folder: str | None = None  # a resumption: the loaded run's folder, where this run goes on
        self.last_saved: int | None = None
        self.in_loop = False  # inside SAT's train(): its saves may be followed by a validation
        self.deferred_save: tuple | None = None  # (iteration, model, optimizer, lr_scheduler, args) until validated
        self.rng_restored = False
        self.clock: ProgressClock | None = None  # started by train
        self.summary_writer = None  # SAT's TensorBoard writer (rank 0), known once train starts
        self._originals: dict = {}

    def __enter__(self) -> "RoutedSatLoop":
        self._originals = {name: getattr(deepspeed_training, name) for name in ROUTED}
        deepspeed_training.load_checkpoint = self.load_checkpoint
        deepspeed_training.save_checkpoint = self.save_checkpoint
        deepspeed_training.train = self.train
        deepspeed_training.report_iteration_metrics = self.report_iteration_metrics
        deepspeed_training.evaluate_and_print_results = self.evaluate_and_print_results
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._originals.items():
            setattr(deepspeed_training, name, original)

    def load_checkpoint(self, model, args: argparse.Namespace) -> int:
        loaded = load_training_checkpoint(model, args)
        self.lora_base, self.resume, self.continued_folder = loaded.lora_base, loaded.resume, loaded.run_folder
        if loaded.resume is not None:
            args.resume_dataloader = True  # SAT's distributed sampler skips the batches already seen
        return loaded.iteration

    def save_checkpoint(self, iteration: int, model, optimizer, lr_scheduler, args: argparse.Namespace) -> None:
        if iteration == self.last_saved:
            return
        if self.in_loop and validates_after_save(args, iteration):
            self.deferred_save = (iteration, model, optimizer, lr_scheduler, args)
        else:
            self.write_checkpoint(iteration, model, optimizer, lr_scheduler, args)

    def write_checkpoint(self, iteration: int, model, optimizer, lr_scheduler, args: argparse.Namespace) -> None:
        options = SaveOptions(self.lora_save_base, self.save_optimizer, self.lora_base,
                              validation_batches_consumed(args, iteration))
        save_training_checkpoint(iteration, model, optimizer, lr_scheduler, args, options)
        self.last_saved = iteration

    def evaluate_and_print_results(self, *args, **kwargs):
        """SAT's validation; then the checkpoint deferred until after it (see the module docstring)."""
        result = self._originals["evaluate_and_print_results"](*args, **kwargs)
        if self.deferred_save is not None:
            deferred, self.deferred_save = self.deferred_save, None
            self.write_checkpoint(*deferred)
        return result

    def wrap_forward_step(self, forward_step: Callable) -> Callable:
        """`forward_step`, restoring a resumed run's RNG states before its first call."""
        def restoring_forward_step(*args, **kwargs):
            if self.resume is not None and not self.rng_restored:
                self.resume.apply_rng()
                self.rng_restored = True
            return forward_step(*args, **kwargs)

        return restoring_forward_step

    def train(self, model, optimizer, lr_scheduler, train_data, *args, **kwargs):
        original = self._originals["train"]
        # SAT calls train(model, optimizer, lr_scheduler, train_data, val_data, timers, args, ...)
        bound = inspect.signature(original).bind(model, optimizer, lr_scheduler, train_data, *args, **kwargs)
        sat_args = bound.arguments["args"]
        if self.resume is not None:
            self.resume.check_trained(trained_parameter_names(model.module))
            self.resume.apply(optimizer, lr_scheduler)
            train_data = resumed_loader(train_data, self.resume.iteration, sat_args.gradient_accumulation_steps)
            bound.arguments["val_data"] = resumed_validation_loader(bound.arguments["val_data"],
                                                                    self.resume.validation_batches)
        notice = auto_warmup_notice(lr_scheduler)
        if notice:
            print_rank0(notice)
        self.clock = ProgressClock(sat_args.iteration)
        self.summary_writer = bound.arguments.get("summary_writer")
        bound.arguments["train_data"] = train_data
        self.in_loop = True
        try:
            return original(*bound.args, **bound.kwargs)
        finally:
            self.in_loop = False

    def report_iteration_metrics(self, summary_writer, optimizer, lr, loss, elapsed_time, step, total_step, *args, **kwargs):
        """SAT's log line for iteration `step` of `total_step`, with ` | elapsed H:MM:SS | ETA H:MM:SS` appended."""
        suffix = self.clock.report(step, total_step) if self.clock is not None else "ETA unknown"
        print_line = deepspeed_training.print_rank0
        deepspeed_training.print_rank0 = lambda message, *a, **k: print_line(f"{message} | {suffix}", *a, **k)
        try:
            return self._originals["report_iteration_metrics"](
                summary_writer, optimizer, lr, loss, elapsed_time, step, total_step, *args, **kwargs)
        finally:
            deepspeed_training.print_rank0 = print_line
