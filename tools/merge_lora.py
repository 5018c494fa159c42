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
the output folders are checked writable before anything is merged; each output is named in one line at the end.
"""

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from checkpoints.atomic_dir import save_safetensors
from input_errors import InputError, input_errors_as_messages
from checkpoints.sat_checkpoint import composed_module_states, is_lora_key, save_sat_checkpoint
from sgm.util import load_config_file
from interop.checkpoint_family import check_checkpoint_family
from interop.sat_to_diffusers import (
    LORA_WEIGHTS_NAME,
    SAT_PREFIX,
    extract_transformer_state_dict,
    lora_params,
    lora_to_diffusers_peft,
    merge_lora_state_dict,
    network_config_of,
)
from checkpoints.writable_folder import check_writable_folder


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


def export_lora(lora: dict[str, torch.Tensor], out_dir: str | Path) -> Path:
    """Write the diffusers/peft LoRA as `<out_dir>/pytorch_lora_weights.safetensors`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LORA_WEIGHTS_NAME
    save_safetensors(lora, path, metadata={"format": "pt"})
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the LoRA model YAML the checkpoint was trained with (gives r)")
    parser.add_argument("--checkpoint", required=True, help="LoRA checkpoint folder (SAT layout, with 'latest')")
    parser.add_argument("--output", required=True, help="merged transformer checkpoint folder to write")
    parser.add_argument("--export-lora", help="also write DIR/pytorch_lora_weights.safetensors (diffusers/peft)")
    args = parser.parse_args(argv)

    if not Path(args.config).is_file():
        raise InputError(f"--config {args.config!r} does not exist (expected the LoRA model YAML, e.g. configs/cogvideox_2b_lora.yaml)")
    check_writable_folder(args.output, "--output")
    if args.export_lora:
        check_writable_folder(args.export_lora, "--export-lora")
    config = OmegaConf.to_container(load_config_file(args.config, "--config"), resolve=True)
    network_config = network_config_of(config, args.config)
    r, lora_alpha = lora_params(config)
    merged, dit, iteration = merged_transformer(args.checkpoint, r, lora_alpha, network_config, args.config)
    lora = lora_to_diffusers_peft({key: value for key, value in dit.items() if is_lora_key(key)}, r, lora_alpha)
    path = save_sat_checkpoint(merged, args.output, iteration)
    print(f"wrote merged transformer ({len(merged)} tensors, LoRA scale {lora_alpha}/{r}) to {path}")
    if args.export_lora:
        print(f"wrote diffusers/peft LoRA to {export_lora(lora, args.export_lora)}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
