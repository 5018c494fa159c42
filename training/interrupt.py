"""Ctrl-C (SIGINT) during a training run: one line saying where it stopped and what it saved, exit status 130
(128 + SIGINT, what shells report for a process Ctrl-C ended), no traceback."""

import argparse
import os
import sys
from contextlib import contextmanager
from typing import Callable

import torch

INTERRUPTED_EXIT_STATUS = 130


def stop_line(args: argparse.Namespace, last_saved: int | None) -> str:
    """Where the run stopped (`args.iteration`: iterations done) and its last checkpoint, if it saved one."""
    if getattr(args, "iteration", None) is None:  # SAT sets it once the model is built and loaded
        return "interrupted before training started: nothing saved"
    if last_saved is None:
        saved = "no checkpoint saved by this run"
    else:
        saved = (f"last checkpoint: {os.path.join(args.save, str(last_saved))} "
                 f"(continue with --load {args.save})")
    return f"interrupted after {args.iteration} of {args.train_iters} iterations: {saved}"


@contextmanager
def interruption_as_message(describe: Callable[[], str]):
    """`with interruption_as_message(lambda: line): ...`: a KeyboardInterrupt prints `line` on stderr (the first
    rank only, when several run) and exits with status 130."""
    try:
        yield
    except KeyboardInterrupt:
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print(describe(), file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_STATUS) from None
