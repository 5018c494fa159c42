"""torchrun for the entry scripts, with bad input as one line:

    python launch.py [torchrun options] sample_video.py | train_video.py [the script's arguments]

`inference.sh` (with NPROC) and `finetune_multi_gpus.sh` launch through it.

1. Before any process starts, the script's own pre-build checks run here for the launch's world size (nnodes x
   nproc_per_node), the process layout included. Bad input: one `error:` line, exit status 2, no process started.
2. Then torchrun's `run`. Its processes leave bad-input messages in a folder of the launcher's
   (`input_errors.MESSAGE_FOLDER_VARIABLE`); when every failed process exited with status 2, each distinct message is
   printed once and the launcher exits 2, without torchrun's ChildFailedError report. Any other failure keeps
   torchrun's report and tracebacks.
"""

import logging
import os
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import determine_local_world_size, get_args_parser, parse_min_max_nnodes, run

from input_errors import EXIT_STATUS, MESSAGE_FOLDER_VARIABLE, input_errors_as_messages

PROCESS_REPORTS = "torch.distributed.elastic.multiprocessing.api"  # the logger of torchrun's process lines


def check_before_launch(script: str, script_args: list[str], world_size: int) -> None:
    """The entry script's checks (InputError on bad input), with what they print silenced."""
    name = Path(script).name
    if name == "sample_video.py":
        from sample_video import check_launch
    elif name == "train_video.py":
        from train_video import check_launch
    else:
        return
    logging.disable(logging.INFO)  # the processes say what they read; the check only speaks when it refuses
    try:
        with open(os.devnull, "w") as quiet, redirect_stdout(quiet):
            check_launch(script_args, world_size)
    finally:
        logging.disable(logging.NOTSET)


def planned_world_size(nnodes: str, nproc_per_node: str) -> int | None:
    """The processes of the launch, or None for an elastic range of nodes (min < max)."""
    low, high = parse_min_max_nnodes(nnodes)
    return low * determine_local_world_size(nproc_per_node) if low == high else None


def input_messages(folder: Path, failure: ChildFailedError) -> list[str] | None:
    """The distinct bad-input messages, when bad input is all the run failed on; None otherwise."""
    codes = [f.exitcode for f in failure.failures.values()]
    messages = [path.read_text(encoding="utf-8") for path in sorted(folder.glob("rank*"), key=lambda p: int(p.name[4:]))]
    if not messages or any(code > 0 and code != EXIT_STATUS for code in codes):
        return None
    return list(dict.fromkeys(messages))


class HeldRecords(logging.Handler):
    """The lines torchrun logs about stopped and failed processes, held until the launcher knows whether the run
    failed on bad input (then they are dropped) or otherwise (then they are shown, before torchrun's report)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(PROCESS_REPORTS)
        self.propagate = self.logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> "HeldRecords":
        self.logger.addHandler(self)
        self.logger.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = self.propagate

    def show(self) -> None:
        for record in self.records:
            self.logger.callHandlers(record)
        self.records.clear()


def main(argv: list[str]) -> None:
    args = get_args_parser().parse_args(argv)
    world_size = planned_world_size(args.nnodes, args.nproc_per_node)
    if world_size is not None:
        with input_errors_as_messages():
            check_before_launch(args.training_script, args.training_script_args, world_size)
    with tempfile.TemporaryDirectory(prefix="input-errors-") as folder:
        os.environ[MESSAGE_FOLDER_VARIABLE] = folder
        held = HeldRecords()
        try:
            with held:
                run(args)
        except ChildFailedError as failure:
            messages = input_messages(Path(folder), failure)
            if messages is None:
                raise
            held.records.clear()
            for message in messages:
                print(f"error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_STATUS) from None
        finally:
            held.show()


if __name__ == "__main__":
    main(sys.argv[1:])
