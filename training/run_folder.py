"""Each run its own checkpoint folder; a resumed run goes on in the folder of the run it resumes.

SAT names a run's folder `<save>/<experiment_name>-MM-DD-HH-MM/` (`training_main`), so two runs started in the same
minute would share it. `claim_run_folder` creates the folder with `os.mkdir` (atomic): of runs racing for one name
exactly one gets it, the others the first free `<name>-2`, `<name>-3`, ... The first rank claims, the others take
its choice. A run resuming a checkpoint `train_video.py` wrote (`--load <run folder>`) writes into that folder,
unless it holds checkpoints after the one resumed (they would be replaced): then it claims a new one.
"""

import argparse
import itertools
import os
from pathlib import Path

import torch
from sat.helpers import print_rank0


def claim_run_folder(folder: str) -> str:
    """Create `folder`, or the first of `folder-2`, `folder-3`, ... that does not exist yet; returns the one made."""
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    for number in itertools.count(1):
        candidate = folder if number == 1 else f"{folder}-{number}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate


def continued_run_folder(iteration_folder: Path, iteration: int) -> str | None:
    """The run folder holding `iteration_folder` (`<run>/<iteration>`), where a run resumed from it goes on; None
    when the run folder holds a later checkpoint (`<n>` or `<n>-ema`, n > iteration), which going on would replace."""
    run = iteration_folder.parent
    later = [path.name for path in run.iterdir()
             if path.is_dir() and path.name.split("-")[0].isdigit() and int(path.name.split("-")[0]) > iteration]
    return None if later else str(run)


def claim_save_folder(args: argparse.Namespace, continued: str | None) -> None:
    """SAT's `init_function(args, model)` hook (bound to the resumed run's folder, `continued`, or None), called on
    every rank once `args.save` names the run's folder: the first rank claims it (or takes `continued`), and every
    rank sets `args.save` / `args.experiment_name` to the folder chosen."""
    if args.save is None:
        return
    if torch.distributed.get_rank() == 0:
        chosen = [continued if continued is not None else claim_run_folder(args.save)]
    else:
        chosen = [None]
    torch.distributed.broadcast_object_list(chosen, src=0)
    args.save, args.experiment_name = chosen[0], os.path.basename(chosen[0])
    if continued is not None:
        print_rank0(f"resuming the run in its folder: its next checkpoints go to {chosen[0]}")
