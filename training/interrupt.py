"""Ctrl-C (SIGINT) during a training run: one line saying where it stopped and what it saved, exit status 130
(128 + SIGINT, what shells report for a process Ctrl-C ended), no traceback; one Ctrl-C is enough (`InterruptWatch`)."""

import argparse
import os
import signal
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


class InterruptWatch:
    """`with InterruptWatch() as interrupts: ...`: SIGINT raises KeyboardInterrupt, as Python's default handler does,
    and is remembered, so that `check()` (the forward steps call it, `checked`) raises it again if it was lost.

    Python loses a KeyboardInterrupt raised inside a finalizer: the signal's handler runs at the next bytecode of the
    main thread, and when that is in a `__del__` (decord's VideoReader and its frames free their C handles in one, at
    every video read; up to a second on a loaded machine) or a weakref callback, Python prints 'Exception ignored
    in: ...' and the code after it goes on (a training run went on after one Ctrl-C, seen once under load). With
    this watch the run stops at its next step, and the lost KeyboardInterrupt's traceback is not printed
    (`sys.unraisablehook`): the run still ends in one line.
    """

    def __init__(self):
        self.received = False
        self.previous_handler = None
        self.previous_hook = None

    def __enter__(self) -> "InterruptWatch":
        self.previous_handler = signal.signal(signal.SIGINT, self.handle)
        self.previous_hook, sys.unraisablehook = sys.unraisablehook, self.unraisable
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous_handler)
        sys.unraisablehook = self.previous_hook

    def handle(self, signum, frame) -> None:
        self.received = True
        raise KeyboardInterrupt

    def unraisable(self, unraisable) -> None:
        """`sys.unraisablehook`: silent for our lost KeyboardInterrupt (`check()` raises it again), the previous hook
        for the rest."""
        if not (self.received and unraisable.exc_type is KeyboardInterrupt):
            self.previous_hook(unraisable)

    def check(self) -> None:
        if self.received:
            raise KeyboardInterrupt

    def checked(self, step: Callable) -> Callable:
        """`step`, calling `check()` first."""
        def checked_step(*args, **kwargs):
            self.check()
            return step(*args, **kwargs)

        return checked_step


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
