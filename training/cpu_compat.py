"""The one compatibility shim for SAT's CUDA-only calls, applied only when CUDA is absent.

SAT's `sat.training.utils.Timers` call `torch.cuda.synchronize()` on start and stop, which raises without CUDA; for the
duration of a `with` block (the training run) the shim swaps in a timer that measures the same wall time without
synchronising. SAT's other CUDA-only calls are on paths we own: `arguments.py` (device, gloo), `training.forward_step`
(batches to `args.device`), `training.checkpoint_io` (save and load).
"""

import time
from contextlib import contextmanager
from typing import Iterator

import torch
from sat.training import utils as sat_training_utils


class CpuTimer(sat_training_utils.Timers.Timer):
    """SAT's Timer without `torch.cuda.synchronize()` (there is no device queue to wait for)."""

    def start(self) -> None:
        if self.started_:
            raise RuntimeError(f"timer {self.name_!r} has already been started")
        self.start_time = time.time()
        self.started_ = True

    def stop(self) -> None:
        if not self.started_:
            raise RuntimeError(f"timer {self.name_!r} is not started")
        self.elapsed_ += time.time() - self.start_time
        self.started_ = False


@contextmanager
def cpu_compat() -> Iterator[bool]:
    """`with cpu_compat() as active:` SAT's timers are `CpuTimer` inside the block when CUDA is absent (`active`),
    and SAT's own class again after it."""
    if torch.cuda.is_available():
        yield False
        return
    original = sat_training_utils.Timers.Timer
    sat_training_utils.Timers.Timer = CpuTimer
    try:
        yield True
    finally:
        sat_training_utils.Timers.Timer = original
