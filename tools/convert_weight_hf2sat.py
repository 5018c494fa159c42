"""Convert a diffusers ``CogVideoXTransformer3DModel`` folder to a SAT transformer checkpoint folder.

    python tools/convert_weight_hf2sat.py --diffusers cogvideox-2b-diffusers/transformer --output ckpts/transformer

Writes ``<output>/latest`` and ``<output>/<iteration>/mp_rank_00_model_states.pt`` with keys
``model.diffusion_model.*`` (the inverse of ``convert_weight_sat2hf``). The fixed sin-cos table
(``mixins.pos_embed.pos_embedding``) is recomputed from the config; for the rotary (5B) variant the
rotary tables ``mixins.pos_embed.freqs_sin`` / ``freqs_cos`` are computed (the released files carry them) and
SAT's unused ``transformer.position_embeddings.weight`` is written as zeros. The learned position table of
5B-I2V (diffusers' ``patch_embed.pos_embedding``) becomes ``mixins.pos_embed.pos_embedding``.

CogVideoX1.5 (``patch_size_t`` set): no rotary tables are written (the released 1.5 files have none; the DiT computes
them), SAT's unused ``transformer.position_embeddings.weight`` is written as zeros, and the I2V
``ofs_embedding.linear_{1,2}`` becomes ``ofs_embed.{0,2}``.
"""

import argparse
from pathlib import Path

from checkpoints.output_folder import check_output_folder, write_output
from checkpoints.sat_checkpoint import MODEL_STATES_NAME, save_sat_checkpoint
from input_errors import input_errors_as_messages
from interop.diffusers_to_sat import diffusers_to_sat_state_dict, read_diffusers_folder
from interop.sat_to_diffusers import SAT_PREFIX
from option_ranges import ITERATION, check_value

TOOL = "convert_weight_hf2sat.py"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffusers", required=True, help="diffusers transformer folder (config.json + safetensors)")
    parser.add_argument("--output", required=True, help="SAT checkpoint folder to write: new or empty, or this tool's "
                                                        "earlier output")
    parser.add_argument("--iteration", type=int, default=1000, help="iteration folder name (the release uses 1000)")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder holding other files: replace only "
                                                                 "the files this tool writes (the others are kept)")
    args = parser.parse_args(argv)
    check_value("--iteration", args.iteration, ITERATION)
    output = check_output_folder(args.output, TOOL, "--output", {"the --diffusers folder": args.diffusers}, args.overwrite)
    state_dict, config = read_diffusers_folder(Path(args.diffusers))
    sat = diffusers_to_sat_state_dict(state_dict, config)
    states = {SAT_PREFIX + key: value for key, value in sat.items()}
    write_output(output, lambda folder: save_sat_checkpoint(states, folder, args.iteration))
    path = Path(args.output) / str(args.iteration) / MODEL_STATES_NAME
    print(f"wrote the SAT transformer checkpoint ({len(sat)} tensors) {path}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
