"""Convert a CogVideoX SAT transformer checkpoint to a diffusers ``CogVideoXTransformer3DModel`` folder.

    python tools/convert_weight_sat2hf.py --sat-config configs/cogvideox_2b.yaml \
        --checkpoint CogVideoX-2b-sat/transformer --output cogvideox-2b-diffusers/transformer

The folder gets ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``from_pretrained`` loads it).
Keys are selected by the prefix ``model.diffusion_model.``. A LoRA-only checkpoint (what LoRA training saves)
brings the base it records. A LoRA checkpoint needs ``--merge-lora``
(``W = W0 + (B @ A) * lora_alpha / r``, alpha 1 as in SAT) or ``--export-lora DIR``, or both; ``--lora-checkpoint``
adds a LoRA-only checkpoint on top of a base one. ``--export-lora DIR`` writes the LoRA matrices alone as
``DIR/pytorch_lora_weights.safetensors`` in the diffusers/peft layout, with SAT's ``alpha / r``
folded into ``lora_B`` (peft loads it with scale 1); without ``--merge-lora`` the output is then the base
transformer (``W0``), to which diffusers' ``load_lora_weights`` adds the adapter.

Before anything is converted, the checkpoint's keys and shapes are checked against the model the config describes
(``interop.checkpoint_family``) and the output folders are checked (docs/output_folders.md); each output is named in one line at the end.

5B and 5B-I2V (``--sat-config configs/cogvideox_5b.yaml`` / ``cogvideox_5b_i2v.yaml``): the rotary tables
``mixins.pos_embed.freqs_sin`` / ``freqs_cos`` are dropped (diffusers recomputes them), as v1.0's converter does; the
I2V learned table ``mixins.pos_embed.pos_embedding`` becomes ``patch_embed.pos_embedding`` and ``in_channels`` is 32.

CogVideoX1.5 (``--sat-config configs/cogvideox1.5_5b.yaml`` / ``cogvideox1.5_5b_i2v.yaml``, ``patch_size: [2, 2, 2]``):
diffusers' 1.5 layout, ``patch_size`` 2 with ``patch_size_t`` 2 (the Linear patch embedding maps key for key), rotary
tables computed by slicing (nothing to drop: a 1.5 checkpoint stores none), the I2V ``ofs_embed.{0,2}`` as
``ofs_embedding.linear_{1,2}`` with ``ofs_embed_dim``; ``sample_height`` / ``sample_width`` / ``sample_frames`` are the
config's table size (300, 300, 81: the released diffusers 1.5 configs' values).
"""

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from checkpoints.atomic_dir import save_safetensors
from checkpoints.output_folder import check_output_folder, write_output
from checkpoints.sat_checkpoint import composed_module_states, is_lora_key
from input_errors import InputError, input_errors_as_messages
from interop.checkpoint_family import check_checkpoint_family
from interop.sat_to_diffusers import (LORA_WEIGHTS_NAME, base_state_dict, check_against_diffusers, diffusers_config,
                                      extract_transformer_state_dict, lora_params, lora_to_diffusers_peft,
                                      merge_lora_state_dict, network_config_of, sat_to_diffusers_state_dict,
                                      save_diffusers_folder)
from sgm.util import load_config_file

TOOL = "convert_weight_sat2hf.py"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sat-config", required=True, help="SAT YAML (e.g. configs/cogvideox_2b.yaml)")
    parser.add_argument("--checkpoint", required=True, help="SAT checkpoint folder (with 'latest'), one of its iteration folders, or a model-states .pt file")
    parser.add_argument("--output", required=True, help="diffusers transformer folder to write: new or empty, or this "
                                                        "tool's earlier output")
    parser.add_argument("--merge-lora", action="store_true", help="merge LoRA matrices into the base weights")
    parser.add_argument("--lora-checkpoint", help="a LoRA-only SAT checkpoint folder to merge on top of --checkpoint")
    parser.add_argument("--export-lora", help="write the LoRA matrices as DIR/pytorch_lora_weights.safetensors "
                                              "(without --merge-lora, --output is then the base transformer)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="cast the weights (default: keep)")
    parser.add_argument("--trusted", action="store_true", help="allow full unpickling of checkpoint files you wrote")
    parser.add_argument("--overwrite", action="store_true", help="write into folders holding other files: replace only "
                                                                 "the files this tool writes (the others are kept)")
    args = parser.parse_args(argv)

    if not Path(args.sat_config).is_file():
        raise InputError(f"--sat-config {args.sat_config!r} does not exist (expected a SAT YAML, e.g. configs/cogvideox_2b.yaml)")
    sat_config = OmegaConf.to_container(load_config_file(args.sat_config, "--sat-config"), resolve=True)
    network_config = network_config_of(sat_config, args.sat_config)
    inputs = {"the --checkpoint": args.checkpoint, "the --lora-checkpoint": args.lora_checkpoint}
    output = check_output_folder(args.output, TOOL, "--output", inputs, args.overwrite)
    lora_output = None if args.export_lora is None else check_output_folder(
        args.export_lora, TOOL, "--export-lora", {**inputs, "the --output": args.output}, args.overwrite)
    config = diffusers_config(network_config)

    def read(location: str) -> dict[str, torch.Tensor]:
        """The DiT of a checkpoint folder or file, on top of the base it records (a LoRA-only checkpoint)."""
        return extract_transformer_state_dict(composed_module_states(location, trusted=args.trusted)[0], source=location)

    # Everything is computed before anything is written, so a failure leaves no partial output.
    state_dict = read(args.checkpoint)
    if args.lora_checkpoint:
        state_dict.update(read(args.lora_checkpoint))
    source = args.checkpoint + (f" + {args.lora_checkpoint}" if args.lora_checkpoint else "")
    check_checkpoint_family(state_dict, network_config, source, args.sat_config)
    lora = None
    if any(is_lora_key(key) for key in state_dict):
        if not (args.merge_lora or args.export_lora):
            raise InputError(f"{source} holds LoRA matrices: pass --merge-lora to fold them into the weights, and/or "
                             "--export-lora DIR to write them as a diffusers/peft adapter")
        r, alpha = lora_params(sat_config)
        lora = lora_to_diffusers_peft(state_dict, r, alpha) if args.export_lora else None
        state_dict = merge_lora_state_dict(state_dict, r, alpha) if args.merge_lora else base_state_dict(state_dict)
    elif args.merge_lora or args.export_lora:
        raise InputError(f"{source} holds no LoRA matrices: --merge-lora / --export-lora have nothing to do")
    converted = sat_to_diffusers_state_dict(state_dict, config["use_learned_positional_embeddings"])
    if args.dtype:
        converted = {key: value.to(DTYPES[args.dtype]) for key, value in converted.items()}
        lora = None if lora is None else {key: value.to(DTYPES[args.dtype]) for key, value in lora.items()}
    check_against_diffusers(converted, config)
    save_diffusers_folder(converted, config, output)
    what = "merged" if args.merge_lora else "base" if lora is not None else "the"
    print(f"wrote {what} transformer ({len(converted)} tensors) to {args.output}")
    if lora is not None:
        write_output(lora_output, lambda folder: save_safetensors(lora, folder / LORA_WEIGHTS_NAME))
        print(f"wrote the diffusers/peft LoRA to {Path(args.export_lora) / LORA_WEIGHTS_NAME}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
