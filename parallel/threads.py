"""CPU threads per process: one default whatever the process layout, so that a seed gives one video.

torchrun sets `OMP_NUM_THREADS=1` for each process it starts when it starts several; a plain `python` process would
use every core. A CPU matmul sums in another order at another thread count, so the same seed gave other videos:
`NPROC=2 bash inference.sh --cfg-parallel 2` differed from `bash inference.sh` by up to 4/255 per pixel on the tiny
2B model, 1.5 sequence parallel by up to 60/255 (2-core CPU machine, 2026-12-05). Here every entry process runs
`OMP_NUM_THREADS` threads, default 1 (torchrun's), whether launched by torchrun or not.
"""

import os
from contextlib import contextmanager

import torch

from input_errors import InputError

DEFAULT_THREADS = 1  # torchrun's OMP_NUM_THREADS for several processes; set OMP_NUM_THREADS=N for more
THREADS_NOTE = f"OMP_NUM_THREADS, default {DEFAULT_THREADS} whatever the number of processes"


def threads_per_process(environ: dict | None = None) -> int:
    """The thread count `OMP_NUM_THREADS` asks for, or DEFAULT_THREADS; a value that is not a count is one line."""
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", str(DEFAULT_THREADS))
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError(f"OMP_NUM_THREADS={text!r}: expected a number of threads per process >= 1 "
                         f"(unset: {DEFAULT_THREADS})")
    return int(text)


@contextmanager
def cpu_threads():
    """`with cpu_threads():` runs the block at `threads_per_process()` torch threads, and restores the caller's count
    after (entry scripts called in-process leave the caller as it was)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads_per_process())
    try:
        yield
    finally:
        torch.set_num_threads(before)
