"""One Ctrl-C is enough: SIGINT remembered, so that an interrupt Python lost in a finalizer is raised again at the
next check (training and sampling)."""

import signal
import sys
from typing import Callable


class InterruptWatch:
    """`with InterruptWatch() as interrupts: ...`: SIGINT raises KeyboardInterrupt, as Python's default handler does,
    and is remembered, so that `check()` raises it again if it was lost (training's forward steps call it, `checked`;
    sampling, before each video and after reading an input video).

    Python loses a KeyboardInterrupt raised inside a finalizer: the signal's handler runs at the next bytecode of the
    main thread, and when that is in a `__del__` (decord's VideoReader and its frames free their C handles in one, at
    every video read; up to a second on a loaded machine) or a weakref callback, Python prints 'Exception ignored
    in: ...' and the code after it goes on (a training run went on after one Ctrl-C, seen once under load). With
    this watch the run stops at its next check, and the lost KeyboardInterrupt's traceback is not printed
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
