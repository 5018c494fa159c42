"""Merge a LoRA fine-tune into a plain transformer checkpoint; optionally export the LoRA for diffusers/peft.

    python tools/merge_lora.py --config configs/cogvideox_2b_lora.yaml \
        --checkpoint ckpts_2b_lora/lora-disney-08-01-12-00 --output cogvideox-2b-merged/transformer \
        [--export-lora lora-diffusers/]

--checkpoint is a folder `train_video.py` wrote (LoRA-only, following its recorded base, or self-contained) or any
SAT checkpoint of a LoRA model. The output is a SAT checkpoint folder with the released transformer's keys
(`W = W0 + (B @ A) * lora_alpha / r`), to sample with the plain config (configs/cogvideox_2b.yaml). With
--export-lora, `<dir>/pytorch_lora_weights.safetensors` holds the matrices in the diffusers/peft layout, SAT's
scale alpha / r (1/r) folded into lora_B so that diffusers loads it at adapter weight 1.
The conversions are those of tools/convert_weight_sat2hf.py; to get a diffusers transformer folder, run that tool on
the merged output. The checkpoint is checked against the model the config describes (tools.checkpoint_family) and
the output folders are checked (docs/output_folders.md) before anything is merged; each output is named in one line
at the end.
"""

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from checkpoints.atomic_dir import save_safetensors
from checkpoints.output_folder import OutputFolder, check_output_folder, write_output
from checkpoints.sat_checkpoint import MODEL_STATES_NAME, composed_module_states, is_lora_key, save_sat_checkpoint
from input_errors import InputError, input_errors_as_messages
from interop.checkpoint_family import check_checkpoint_family
from sgm.util import load_config_file
from interop.sat_to_diffusers import (
    LORA_WEIGHTS_NAME,
    SAT_PREFIX,
    extract_transformer_state_dict,
    lora_params,
    lora_to_diffusers_peft,
    merge_lora_state_dict,
    network_config_of,
)

TOOL = "merge_lora.py"


def merged_transformer(load_dir: str | Path, r: int, lora_alpha: float, network_config: dict,
                       config_path: str) -> tuple[dict[str, torch.Tensor], dict, int]:
    """(merged DiT with engine keys `model.diffusion_model.*`, the DiT's LoRA-bearing dict, iteration)."""
    engine_state, iteration = composed_module_states(load_dir)
    dit = extract_transformer_state_dict(engine_state, source=str(load_dir))
    check_checkpoint_family(dit, network_config, str(load_dir), config_path)
    if not any(is_lora_key(key) for key in dit):
        raise InputError(f"{load_dir}: no LoRA matrices in the checkpoint (nothing to merge)")
    merged = merge_lora_state_dict(dit, r, lora_alpha)
    return {SAT_PREFIX + key: value for key, value in merged.items()}, dit, iteration


def export_lora(lora: dict[str, torch.Tensor], output: OutputFolder) -> Path:
    """Write the diffusers/peft LoRA as `<output>/pytorch_lora_weights.safetensors`."""
    write_output(output, lambda folder: save_safetensors(lora, folder / LORA_WEIGHTS_NAME, metadata={"format": "pt"}))
    return output.path / LORA_WEIGHTS_NAME


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the LoRA model YAML the checkpoint was trained with (gives r)")
    parser.add_argument("--checkpoint", required=True, help="LoRA checkpoint folder (SAT layout, with 'latest'), or one of its iteration folders")
    parser.add_argument("--output", required=True, help="merged transformer checkpoint folder to write: new or empty, "
                                                        "or this tool's earlier output")
    parser.add_argument("--export-lora", help="also write DIR/pytorch_lora_weights.safetensors (diffusers/peft)")
    parser.add_argument("--overwrite", action="store_true", help="write into folders holding other files: replace only "
                                                                 "the files this tool writes (the others are kept)")
    args = parser.parse_args(argv)

    if not Path(args.config).is_file():
        raise InputError(f"--config {args.config!r} does not exist (expected the LoRA model YAML, e.g. configs/cogvideox_2b_lora.yaml)")
    config = OmegaConf.to_container(load_config_file(args.config, "--config"), resolve=True)
    network_config = network_config_of(config, args.config)
    output = check_output_folder(args.output, TOOL, "--output", {"the --checkpoint": args.checkpoint}, args.overwrite)
    lora_output = None if args.export_lora is None else check_output_folder(
        args.export_lora, TOOL, "--export-lora", {"the --checkpoint": args.checkpoint, "the --output": args.output},
        args.overwrite)
    r, lora_alpha = lora_params(config)
    merged, dit, iteration = merged_transformer(args.checkpoint, r, lora_alpha, network_config, args.config)
    lora = lora_to_diffusers_peft({key: value for key, value in dit.items() if is_lora_key(key)}, r, lora_alpha)
    write_output(output, lambda folder: save_sat_checkpoint(merged, folder, iteration))
    path = output.path / str(iteration) / MODEL_STATES_NAME
    print(f"wrote merged transformer ({len(merged)} tensors, LoRA scale {lora_alpha}/{r}) to {path}")
    if lora_output is not None:
        print(f"wrote diffusers/peft LoRA to {export_lora(lora, lora_output)}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
