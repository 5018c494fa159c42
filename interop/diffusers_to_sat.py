"""diffusers -> SAT for the CogVideoX transformer: the key map (`diffusers_to_sat_state_dict`, the inverse of
`interop.sat_to_diffusers`), the position and rotary tables SAT files carry, and the checked reading of a diffusers
model folder. `tools/convert_weight_hf2sat.py` is the command line; its docstring describes each family's mapping.
"""

from pathlib import Path
from typing import Any, Mapping

import torch

from checkpoints.weight_files import check_safetensors_file, load_safetensors_file
from dit.rotary_table import rotary_angles
from dit.sincos import sincos_3d_table
from input_errors import InputError
from model_family import latent_frame_count
from text_files import read_json
from interop.sat_to_diffusers import (
    DIFFUSERS_POSITION_TABLE,
    SAT_POSITION_TABLE,
    WEIGHTS_NAME,
    move_renamed,
    num_layers_of,
)

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
    move_renamed(source, out, num_layers, to_diffusers=False)
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


