"""Elapsed time and ETA for SAT's training log line (`iteration 10/40 | ... | elapsed 0:00:12 | ETA 0:00:36`)."""

import time
from datetime import timedelta
from typing import Callable


def clock_text(seconds: float) -> str:
    """Whole seconds as H:MM:SS (days as `1 day, H:MM:SS`)."""
    return str(timedelta(seconds=round(seconds)))


class ProgressClock:
    """Started when SAT's loop starts at `start_iteration` (0, or a resumed run's iteration); the ETA is the mean
    time per iteration so far times the iterations left."""

    def __init__(self, start_iteration: int, now: Callable[[], float] | None = None):
        self.start_iteration = start_iteration
        self.now = now or time.monotonic
        self.started = self.now()

    def report(self, iteration: int, total_iterations: int) -> str:
        elapsed = self.now() - self.started
        done = iteration - self.start_iteration
        if done <= 0:
            return f"elapsed {clock_text(elapsed)} | ETA unknown"
        left = max(total_iterations - iteration, 0)
        return f"elapsed {clock_text(elapsed)} | ETA {clock_text(elapsed / done * left)}"
