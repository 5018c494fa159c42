"""Ctrl-C (SIGINT) during a training run: one line saying where it stopped and what it saved, exit status 130
(128 + SIGINT, what shells report for a process Ctrl-C ended), no traceback; one Ctrl-C is enough
(`interrupt_watch.InterruptWatch`)."""

import argparse
import os
import sys
from contextlib import contextmanager
from typing import Callable

import torch

INTERRUPTED_EXIT_STATUS = 130


def stop_line(args: argparse.Namespace) -> str:
    """Where the run stopped (`args.iteration`: iterations done) and its last published checkpoint, read from the
    run folder's `latest` (what `--load` resumes from; a save cut short leaves the previous one), if there is one."""
    if getattr(args, "iteration", None) is None:  # SAT sets it once the model is built and loaded
        return "interrupted before training started: nothing saved"
    latest = os.path.join(args.save, "latest") if args.save else None
    if latest is None or not os.path.isfile(latest):
        saved = "no checkpoint saved by this run"
    else:
        with open(latest, encoding="utf-8") as handle:
            iteration = handle.read().strip()
        saved = f"last checkpoint: {os.path.join(args.save, iteration)} (continue with --load {args.save})"
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
