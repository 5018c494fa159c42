"""A run that waits on a stale build lock says so. DeepSpeed and SAT compile their ops on first use (on the CPU
DeepSpeed's `deepspeed_shm_comm`, on a GPU SAT's fused EMA Adam) through torch's `cpp_extension`, which makes other
processes wait while `<TORCH_EXTENSIONS_DIR>/<op>/lock` exists. A run killed during that build leaves the file
behind, and every later run waits for it in silence, forever. `op_build_watch` prints one line, naming the file, once
the run has waited on it for a minute."""

import os
import sys
import threading
import time
from contextlib import contextmanager
from types import FrameType

NOTICE_AFTER_S = 60.0  # a build takes 20 s to a few minutes: the line is advice, not an error
POLL_S = 5.0
BATON_FILE = os.path.join("torch", "utils", "file_baton.py")


def waited_lock(frame: FrameType | None) -> str | None:
    """The lock file a thread (its innermost `frame`) waits on in torch's `FileBaton.wait`, or None."""
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith(BATON_FILE):
            return frame.f_locals["self"].lock_file_path
        frame = frame.f_back
    return None


def notice(lock: str, waited_s: float) -> str:
    return (f"waiting {waited_s:.0f} s for {lock}: another process is building this op (the first run on a machine "
            f"compiles it once); if none is, a run killed during the build left this file: delete it and the run goes on")


@contextmanager
def op_build_watch():
    """`with op_build_watch(): ...`: while the block runs, a thread looks every POLL_S at where the calling thread
    is; once it has waited NOTICE_AFTER_S on one build lock, one line on stderr names the file."""
    watched, stop = threading.get_ident(), threading.Event()
    notice_after_s, poll_s = NOTICE_AFTER_S, POLL_S

    def watch() -> None:
        waiting, told = None, set()  # (lock, since) of the current wait; the locks already named
        while not stop.wait(poll_s):
            lock = waited_lock(sys._current_frames().get(watched))
            if lock is None:
                waiting = None
                continue
            if waiting is None or waiting[0] != lock:
                waiting = (lock, time.monotonic())
            waited_s = time.monotonic() - waiting[1]
            if lock not in told and waited_s >= notice_after_s:
                told.add(lock)
                print(notice(lock, waited_s), file=sys.stderr, flush=True)

    thread = threading.Thread(target=watch, name="op-build-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
