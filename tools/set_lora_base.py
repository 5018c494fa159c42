"""Point a LoRA-only checkpoint at its base's new place, after the base folder was moved.

    python tools/set_lora_base.py --checkpoint ckpts_2b_lora/lora-disney-08-01-12-00 --base /new/place/transformer

A LoRA-only checkpoint (what LoRA training saves) records the absolute folder of the base transformer it applies to
(`checkpoints.sat_checkpoint.LORA_BASE_KEY`, and `training_state.json` for resuming). This rewrites both records of the
checkpoint's latest iteration, each file replaced atomically (nothing else in the folder changes), after checking
that the new base is a SAT checkpoint folder other than the checkpoint (not it, inside it, or holding it).
"""

import argparse
import json
import os
from pathlib import Path

from checkpoints.atomic_dir import save_durably, umask_mode, write_text_atomically
from input_errors import InputError, input_errors_as_messages
from checkpoints.output_folder import relation
from checkpoints.sat_checkpoint import LORA_BASE_KEY, checkpoint_path, read_checkpoint_states
from text_files import read_json
from training.checkpoint_io import TRAINING_STATE, TRAINING_STATE_NAME


def set_lora_base(checkpoint: str | os.PathLike, base: str | os.PathLike) -> list[Path]:
    """Record `base` (made absolute) as the base of `checkpoint`'s latest LoRA-only file; returns the files rewritten
    (that file, and its training_state.json where there is one)."""
    found = relation(str(base), str(checkpoint))
    if found is not None:
        raise InputError(f"--base {str(base)!r} {found} the --checkpoint {str(checkpoint)!r}: a LoRA checkpoint's base "
                         "is another checkpoint folder (the transformer it was trained on)")
    checkpoint_path(base)  # the new base must be a checkpoint folder
    path, _ = checkpoint_path(checkpoint)
    states = read_checkpoint_states(path)
    if states.get(LORA_BASE_KEY) is None:
        raise InputError(f"{path} is not a LoRA-only checkpoint (it records no {LORA_BASE_KEY!r}): nothing to point")
    meta_path = path.parent / TRAINING_STATE_NAME  # read before anything is rewritten: a damaged one changes nothing
    meta = read_json(meta_path, TRAINING_STATE) if meta_path.is_file() else None
    states[LORA_BASE_KEY] = os.path.abspath(base)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_durably(states, temp)
    umask_mode(temp)
    os.replace(temp, path)
    rewritten = [path]
    if meta is not None:
        meta[LORA_BASE_KEY] = os.path.abspath(base)
        write_text_atomically(meta_path, json.dumps(meta, indent=2))
        rewritten.append(meta_path)
    return rewritten


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the LoRA-only checkpoint folder (with 'latest'), or one of its iteration folders")
    parser.add_argument("--base", required=True, help="the base transformer checkpoint folder's new place")
    args = parser.parse_args(argv)
    with input_errors_as_messages():
        rewritten = set_lora_base(args.checkpoint, args.base)
    for path in rewritten:
        print(f"wrote {path} (base: {os.path.abspath(args.base)})")


if __name__ == "__main__":
    main()
