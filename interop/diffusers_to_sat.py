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
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dit.rotary_table import rotary_angles  # noqa: E402
from dit.sincos import sincos_3d_table  # noqa: E402
from input_errors import InputError, input_errors_as_messages  # noqa: E402
from output_folder import check_output_folder, write_output  # noqa: E402
from model_family import latent_frame_count  # noqa: E402
from checkpoints.sat_checkpoint import MODEL_STATES_NAME, save_sat_checkpoint  # noqa: E402
from option_ranges import ITERATION, check_value  # noqa: E402
from text_files import read_json  # noqa: E402
from checkpoints.weight_files import check_safetensors_file, load_safetensors_file  # noqa: E402
from interop.sat_to_diffusers import (  # noqa: E402
    DIFFUSERS_POSITION_TABLE,
    SAT_POSITION_TABLE,
    SAT_PREFIX,
    WEIGHTS_NAME,
    global_renames,
    layer_renames,
    num_layers_of,
)

TOOL = "convert_weight_hf2sat.py"
# transformer_args.max_sequence_length of the released configs: the row count of SAT's unused table.
RELEASED_MAX_SEQUENCE_LENGTH = 64


def position_table(config: Mapping[str, Any]) -> torch.Tensor:
    """The SAT ``pos_embedding`` parameter (1, text + T*H*W, hidden) for a diffusers config."""
    p = config["patch_size"]
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    video = sincos_3d_table(
        hidden,
        latent_frame_count(config["sample_frames"], config["temporal_compression_ratio"]),
        config["sample_height"] // p,
        config["sample_width"] // p,
        height_interpolation=config["spatial_interpolation_scale"],
        width_interpolation=config["spatial_interpolation_scale"],
        time_interpolation=config["temporal_interpolation_scale"],
    )  # (T*H*W, d)
    return torch.cat((torch.zeros(config["max_text_seq_length"], hidden), video))[None]


def rotary_tables(config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The rotary mixin's buffers ``freqs_sin`` / ``freqs_cos`` (T*H*W, head) for a diffusers config."""
    p = config["patch_size"]
    angles = rotary_angles(
        latent_frame_count(config["sample_frames"], config["temporal_compression_ratio"]),
        config["sample_height"] // p,
        config["sample_width"] // p,
        config["attention_head_dim"],
    )  # (T*H*W, head)
    return {"mixins.pos_embed.freqs_sin": angles.sin(), "mixins.pos_embed.freqs_cos": angles.cos()}


def diffusers_to_sat_state_dict(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers keys -> SAT DiT keys (no prefix). Every input key must be consumed."""
    source = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    if config["use_learned_positional_embeddings"]:
        out[SAT_POSITION_TABLE] = source.pop(DIFFUSERS_POSITION_TABLE)
    num_layers = num_layers_of(source, r"transformer_blocks\.(\d+)\.")
    renames = global_renames() + [pair for i in range(num_layers) for pair in layer_renames(i)]
    for sat, hf in renames:
        for suffix in (".weight", ".bias"):
            if hf + suffix in source:
                out[sat + suffix] = source.pop(hf + suffix)
    for i in range(num_layers):
        block = f"transformer_blocks.{i}"
        for suffix in (".weight", ".bias"):
            parts = [source.pop(f"{block}.attn1.{name}{suffix}") for name in ("to_q", "to_k", "to_v")]
            out[f"transformer.layers.{i}.attention.query_key_value{suffix}"] = torch.cat(parts)
            msa = source.pop(f"{block}.norm1.linear{suffix}").chunk(6)  # video msa 3 | text msa 3
            mlp = source.pop(f"{block}.norm2.linear{suffix}").chunk(6)  # video mlp 3 | text mlp 3
            out[f"mixins.adaln_layer.adaLN_modulations.{i}.1{suffix}"] = torch.cat(msa[:3] + mlp[:3] + msa[3:] + mlp[3:])
    if source:
        raise ValueError(f"{len(source)} diffusers key(s) have no SAT counterpart: {sorted(source)[:5]}")
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    if config["use_rotary_positional_embeddings"]:
        if config.get("patch_size_t") is None:  # 1.0: the released files carry the tables; 1.5 computes them
            out.update(rotary_tables(config))
        out["transformer.position_embeddings.weight"] = torch.zeros(RELEASED_MAX_SEQUENCE_LENGTH, hidden)
    else:
        out["mixins.pos_embed.pos_embedding"] = position_table(config)
    return out


def read_diffusers_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) of a diffusers model folder (one safetensors file or a sharded index)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(f"{config_path} not found; expected a diffusers model folder (config.json + {WEIGHTS_NAME})")
    config = read_json(config_path, "the config.json of a diffusers CogVideoXTransformer3DModel")
    index = folder / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        weight_map = read_json(index, "a diffusers weight index ({'weight_map': {key: shard file}})").get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(f"{index} has no 'weight_map' mapping; expected a diffusers weight index")
        shards = sorted(set(weight_map.values()))
    elif (folder / WEIGHTS_NAME).is_file():
        shards = [WEIGHTS_NAME]
    else:
        raise InputError(f"{folder}: neither {WEIGHTS_NAME} nor {WEIGHTS_NAME}.index.json found")
    expected = "the weights of a diffusers CogVideoXTransformer3DModel (safetensors)"
    for shard in shards:  # every file checked before any is read
        check_safetensors_file(folder / shard, expected)
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        state_dict.update(load_safetensors_file(folder / shard, expected))
    return state_dict, config


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
