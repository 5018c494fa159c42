"""Each run its own checkpoint folder.

SAT names a run's folder `<save>/<experiment_name>-MM-DD-HH-MM/` (`training_main`), so two runs started in the same
minute with the same `--save` and experiment name would write into one folder and overwrite each other's
checkpoints and `training_config.yaml`. `claim_run_folder` creates the folder SAT chose with `os.mkdir`, which
either creates a folder or fails when it exists, atomically: of runs racing for one name exactly one gets it, the
others take the first free `<name>-2`, `<name>-3`, ... The first rank claims, the others take its choice.

Not claimed: a `--mode pretrain` run that loads a checkpoint, which SAT continues inside the loaded run's folder on
purpose (`<save>/<basename of --load>`).
"""

import argparse
import itertools
import os

import torch


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


def claim_save_folder(args: argparse.Namespace, model=None) -> None:
    """SAT's `init_function(args, model)` hook, called on every rank once `args.save` names the run's folder: the
    first rank claims it, and every rank sets `args.save` / `args.experiment_name` to the folder claimed."""
    if args.save is None or (args.load and args.mode == "pretrain"):
        return
    chosen = [claim_run_folder(args.save) if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(chosen, src=0)
    suffix = chosen[0][len(args.save):]
    args.save, args.experiment_name = chosen[0], args.experiment_name + suffix
