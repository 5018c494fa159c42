"""SAT -> diffusers for the CogVideoX transformer: the key map (`sat_to_diffusers_state_dict`), diffusers' config
of a SAT `network_config` (`diffusers_config`), LoRA merging and the diffusers/peft LoRA layout, and the diffusers
folder writer. `tools/convert_weight_sat2hf.py` is the command line; its docstring describes each family's mapping.
"""

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from checkpoints.atomic_dir import save_safetensors
from checkpoints.output_folder import OutputFolder, write_output
from checkpoints.sat_checkpoint import is_lora_key
from dit.patching import PatchSize
from input_errors import InputError
from sgm.util import ConfigError

SAT_PREFIX = "model.diffusion_model."
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
# Keys diffusers has no parameter for: the rotary tables (diffusers recomputes them, as v1.0's converter drops them)
# and SAT's unused learned position table of the rotary variant.
DROPPED_KEYS = ("mixins.pos_embed.freqs_sin", "mixins.pos_embed.freqs_cos", "transformer.position_embeddings.weight")
# The position table: the fixed sin-cos one (2B) is recomputed by diffusers and dropped; the learned one (5B-I2V)
# becomes diffusers' persistent `patch_embed.pos_embedding`.
SAT_POSITION_TABLE, DIFFUSERS_POSITION_TABLE = "mixins.pos_embed.pos_embedding", "patch_embed.pos_embedding"
DIFFUSERS_15_TEXT_LENGTH = 226  # max_text_seq_length of the released CogVideoX1.5 diffusers transformer configs


def global_renames() -> list[tuple[str, str]]:
    """(SAT module path, diffusers module path) pairs outside the layers; weight and bias follow."""
    return [
        ("mixins.patch_embed.proj", "patch_embed.proj"),
        ("mixins.patch_embed.text_proj", "patch_embed.text_proj"),
        ("time_embed.0", "time_embedding.linear_1"),
        ("time_embed.2", "time_embedding.linear_2"),
        ("ofs_embed.0", "ofs_embedding.linear_1"),  # CogVideoX1.5-I2V
        ("ofs_embed.2", "ofs_embedding.linear_2"),
        ("transformer.final_layernorm", "norm_final"),
        ("mixins.final_layer.norm_final", "norm_out.norm"),
        ("mixins.final_layer.adaLN_modulation.1", "norm_out.linear"),
        ("mixins.final_layer.linear", "proj_out"),
    ]


def layer_renames(i: int) -> list[tuple[str, str]]:
    """Plain renames of layer ``i`` (the fused qkv and the 12-way adaLN are handled separately)."""
    sat, hf = f"transformer.layers.{i}", f"transformer_blocks.{i}"
    return [
        (f"{sat}.input_layernorm", f"{hf}.norm1.norm"),
        (f"{sat}.post_attention_layernorm", f"{hf}.norm2.norm"),
        (f"{sat}.attention.dense", f"{hf}.attn1.to_out.0"),
        (f"{sat}.mlp.dense_h_to_4h", f"{hf}.ff.net.0.proj"),
        (f"{sat}.mlp.dense_4h_to_h", f"{hf}.ff.net.2"),
        (f"mixins.adaln_layer.query_layernorm_list.{i}", f"{hf}.attn1.norm_q"),
        (f"mixins.adaln_layer.key_layernorm_list.{i}", f"{hf}.attn1.norm_k"),
    ]


def move_renamed(source: dict[str, torch.Tensor], out: dict[str, torch.Tensor], num_layers: int,
                 to_diffusers: bool) -> None:
    """Pop every plainly renamed weight and bias (`global_renames`, `layer_renames` of each layer) from `source` into
    `out` under its name on the other side."""
    for sat, hf in global_renames() + [pair for i in range(num_layers) for pair in layer_renames(i)]:
        old, new = (sat, hf) if to_diffusers else (hf, sat)
        for suffix in (".weight", ".bias"):
            if old + suffix in source:
                out[new + suffix] = source.pop(old + suffix)


def num_layers_of(keys: Mapping[str, Any], pattern: str) -> int:
    """1 + the largest layer index in keys matching ``pattern`` (a regex with one group)."""
    indices = [int(match.group(1)) for key in keys if (match := re.match(pattern, key))]
    if not indices:
        raise ValueError(f"no transformer layers found (no key matches {pattern!r})")
    return max(indices) + 1


def extract_transformer_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = SAT_PREFIX,
                                   source: str = "the state dict") -> dict[str, torch.Tensor]:
    """The DiT's entries of an engine state dict, selected by ``prefix`` and stripped of it; InputError naming
    ``source`` when there are none (not a CogVideoX transformer checkpoint)."""
    selected = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not selected:
        raise InputError(f"{source}: no key starts with {prefix!r}, so it holds no CogVideoX transformer "
                         f"(first keys: {list(state_dict)[:5]})")
    return selected


def merge_lora_state_dict(state_dict: Mapping[str, torch.Tensor], r: int, lora_alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Fold SAT ``lora2`` matrices into plain weights: ``W = W0 + cat_i(B_i @ A_i) * lora_alpha / r``.

    The base weight may be ``<layer>.original.weight`` (a LoRA model's checkpoint) or
    ``<layer>.weight`` (a base checkpoint combined with a LoRA-only one). Computed in fp32, cast back.
    """
    merged = {key: value for key, value in state_dict.items() if not is_lora_key(key)}
    layers = sorted({key.split(".matrix_")[0] for key in state_dict if is_lora_key(key)})
    for layer in layers:
        base_key = f"{layer}.original.weight" if f"{layer}.original.weight" in state_dict else f"{layer}.weight"
        if base_key not in state_dict:
            raise ValueError(f"LoRA matrices for {layer!r} but no base weight ({layer}.original.weight or {layer}.weight)")
        count = sum(1 for key in state_dict if key.startswith(f"{layer}.matrix_A."))
        if count == 0 or any(f"{layer}.matrix_{m}.{i}" not in state_dict for m in "AB" for i in range(count)):
            raise ValueError(f"{layer!r}: expected matrix_A.0..{count - 1} and matrix_B.0..{count - 1}")
        base = state_dict[base_key]
        delta = torch.cat(
            [state_dict[f"{layer}.matrix_B.{i}"].float() @ state_dict[f"{layer}.matrix_A.{i}"].float() for i in range(count)], dim=0
        )  # (out, in)
        if delta.shape != base.shape:
            raise ValueError(f"{layer!r}: LoRA update has shape {tuple(delta.shape)}, base weight {tuple(base.shape)}")
        merged.pop(f"{layer}.original.weight", None)
        merged[f"{layer}.weight"] = (base.float() + delta * (lora_alpha / r)).to(base.dtype)
        if f"{layer}.original.bias" in state_dict:
            merged[f"{layer}.bias"] = merged.pop(f"{layer}.original.bias")
    return merged


def sat_to_diffusers_state_dict(state_dict: Mapping[str, torch.Tensor], learned_positional_embedding: bool = False) -> dict[str, torch.Tensor]:
    """Rename a DiT state dict (no ``model.diffusion_model.`` prefix, LoRA merged) to diffusers keys.

    ``learned_positional_embedding`` (5B-I2V, diffusers' ``use_learned_positional_embeddings``): the SAT table
    ``mixins.pos_embed.pos_embedding`` is a trained parameter and becomes ``patch_embed.pos_embedding``; otherwise
    a table in the dict is the fixed sin-cos one (2B), which diffusers recomputes, and is dropped.

    ``query_key_value`` rows [q; k; v] split into ``to_q/to_k/to_v``; the 12 adaLN chunks (video msa,
    video mlp, text msa, text mlp; 3 each) regroup as ``norm1`` = [video msa | text msa] and
    ``norm2`` = [video mlp | text mlp]. Every input key must be consumed.
    """
    if any(is_lora_key(key) or ".original." in key for key in state_dict):
        raise ValueError("the state dict holds LoRA layers; merge them first (merge_lora_state_dict / --merge-lora)")
    source = dict(state_dict)
    for key in DROPPED_KEYS:
        source.pop(key, None)
    out: dict[str, torch.Tensor] = {}
    if learned_positional_embedding:
        if SAT_POSITION_TABLE not in source:
            raise ValueError(f"a learned position embedding was expected but the state dict has no {SAT_POSITION_TABLE!r}")
        out[DIFFUSERS_POSITION_TABLE] = source.pop(SAT_POSITION_TABLE)
    else:
        source.pop(SAT_POSITION_TABLE, None)
    num_layers = num_layers_of(source, r"transformer\.layers\.(\d+)\.")
    move_renamed(source, out, num_layers, to_diffusers=True)
    for i in range(num_layers):
        for suffix in (".weight", ".bias"):
            qkv = source.pop(f"transformer.layers.{i}.attention.query_key_value{suffix}")
            for name, part in zip(("to_q", "to_k", "to_v"), qkv.chunk(3, dim=0)):
                out[f"transformer_blocks.{i}.attn1.{name}{suffix}"] = part.clone()
            chunks = source.pop(f"mixins.adaln_layer.adaLN_modulations.{i}.1{suffix}").chunk(12, dim=0)
            out[f"transformer_blocks.{i}.norm1.linear{suffix}"] = torch.cat(chunks[0:3] + chunks[6:9])
            out[f"transformer_blocks.{i}.norm2.linear{suffix}"] = torch.cat(chunks[3:6] + chunks[9:12])
    if source:
        raise ValueError(f"{len(source)} SAT key(s) have no diffusers counterpart: {sorted(source)[:5]}")
    return out


def diffusers_config(network_config: Mapping[str, Any]) -> dict[str, Any]:
    """``CogVideoXTransformer3DModel`` config from the SAT YAML's ``model.network_config``."""
    params = OmegaConf.to_container(OmegaConf.create(dict(network_config)), resolve=True)["params"]
    modules = params["modules"]
    pos = modules["pos_embed_config"]
    pos_params = pos.get("params") or {}
    rotary = pos["target"].endswith("Rotary3DPositionEmbeddingMixin")
    if not (modules["adaln_layer_config"].get("params") or {}).get("qk_ln", True):
        raise ValueError("diffusers' CogVideoX always uses q/k LayerNorm; qk_ln: false has no counterpart")
    height_interp = pos_params.get("height_interpolation", 1.0)
    if not rotary and height_interp != pos_params.get("width_interpolation", 1.0):
        raise ValueError("diffusers has one spatial_interpolation_scale; the config's height/width interpolations differ")
    patch = PatchSize.from_config(params["patch_size"])
    if patch.h != patch.w:
        raise ValueError(f"diffusers' CogVideoX has square spatial patches; patch_size {params['patch_size']} has none")
    return {
        "_class_name": "CogVideoXTransformer3DModel",
        "num_attention_heads": params["num_attention_heads"],
        "attention_head_dim": params["hidden_size"] // params["num_attention_heads"],
        "in_channels": params["in_channels"],
        "out_channels": params["out_channels"],
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "time_embed_dim": params["time_embed_dim"],
        "text_embed_dim": modules["patch_embed_config"]["params"]["text_hidden_size"],
        "num_layers": params["num_layers"],
        "dropout": 0.0,
        "attention_bias": True,
        "sample_width": params["latent_width"],
        "sample_height": params["latent_height"],
        "sample_frames": params["num_frames"],
        "patch_size": patch.h,
        "patch_size_t": patch.t if patch.temporal else None,  # CogVideoX1.5: Linear patch embedding, sliced rotary
        # the released 1.5 diffusers configs' false: it affects only the 1.0 Conv2d (diffusers' 1.5 Linear has a bias)
        "patch_bias": False if patch.temporal else bool((modules["patch_embed_config"].get("params") or {}).get("bias", True)),
        "ofs_embed_dim": params.get("ofs_embed_dim"),
        "temporal_compression_ratio": params["time_compressed_rate"],
        # 1.5: the released diffusers configs' 226 (diffusers reads it only for position tables, which 1.5 has none of;
        # the SAT config's text_length 224 is unused too: the DiT takes the text length from the context)
        "max_text_seq_length": DIFFUSERS_15_TEXT_LENGTH if patch.temporal else pos_params["text_length"],
        "activation_fn": "gelu-approximate",
        "timestep_activation_fn": "silu",
        "norm_elementwise_affine": params["elementwise_affine"],
        "norm_eps": 1e-5,
        # rotary: the released diffusers configs' values, unused (the rotary mixin ignores its interpolations too)
        "spatial_interpolation_scale": 1.875 if rotary else height_interp,
        "temporal_interpolation_scale": 1.0 if rotary else pos_params.get("time_interpolation", 1.0),
        "use_rotary_positional_embeddings": rotary,
        "use_learned_positional_embeddings": bool(pos_params.get("learnable_pos_embed", False)),
    }


def check_against_diffusers(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``state_dict`` has exactly the keys and shapes of the diffusers model (built on meta)."""
    from diffusers import CogVideoXTransformer3DModel

    with torch.device("meta"):
        reference = CogVideoXTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    expected = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    got = {key: tuple(value.shape) for key, value in state_dict.items()}
    if expected != got:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise ValueError(f"converted keys do not match diffusers: missing {missing[:5]}, extra {extra[:5]}, wrong shape {wrong[:5]}")


def save_diffusers_folder(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], output: OutputFolder) -> None:
    """Write ``config.json`` and the safetensors weights that ``from_pretrained`` reads, all or nothing, into the
    checked ``output`` (``checkpoints.output_folder.write_output``: other files there are kept)."""
    write_output(output, lambda folder: write_diffusers_model(state_dict, config, folder))


def write_diffusers_model(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], folder: Path) -> None:
    """``config.json`` (with ``_diffusers_version``) and the safetensors weights of one diffusers model in ``folder``
    (created; not atomic on its own)."""
    import diffusers

    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(state_dict, folder / WEIGHTS_NAME)
    (folder / "config.json").write_text(json.dumps({**config, "_diffusers_version": diffusers.__version__}, indent=2))


def lora_to_diffusers_peft(state_dict: Mapping[str, torch.Tensor], r: int, lora_alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """SAT LoRA matrices -> diffusers/peft keys ``transformer.transformer_blocks.{i}.attn1.<proj>.lora_{A,B}.weight``.

    SAT's ``alpha / r`` is folded into ``lora_B`` because peft, without stored alphas, uses scale 1.
    """
    out: dict[str, torch.Tensor] = {}
    scale = lora_alpha / r
    targets = {"query_key_value": ("to_q", "to_k", "to_v"), "dense": ("to_out.0",)}
    num_layers = num_layers_of(state_dict, r"transformer\.layers\.(\d+)\.attention\.\w+\.matrix_A\.")
    for i in range(num_layers):
        for sat_name, hf_names in targets.items():
            for j, hf_name in enumerate(hf_names):
                stem = f"transformer.layers.{i}.attention.{sat_name}"
                if f"{stem}.matrix_A.{j}" not in state_dict:
                    raise ValueError(f"missing LoRA matrix {stem}.matrix_A.{j}")
                hf = f"transformer.transformer_blocks.{i}.attn1.{hf_name}"
                out[f"{hf}.lora_A.weight"] = state_dict[f"{stem}.matrix_A.{j}"].clone()
                out[f"{hf}.lora_B.weight"] = (state_dict[f"{stem}.matrix_B.{j}"].float() * scale).to(state_dict[f"{stem}.matrix_B.{j}"].dtype)
    return out


def network_config_of(sat_config: Any, path: str) -> dict[str, Any]:
    """The YAML's ``model.network_config`` (with ``params.modules``); InputError naming ``path`` if it has none."""
    try:
        network_config = sat_config["model"]["network_config"]
        network_config["params"]["modules"]
    except (KeyError, TypeError):
        raise InputError(f"{path} has no model.network_config.params.modules: expected a model YAML "
                         "(e.g. configs/cogvideox_2b.yaml)") from None
    return network_config


def lora_params(sat_config: Mapping[str, Any]) -> tuple[int, float]:
    """(r, lora_alpha) of the YAML's ``modules.lora_config``; ValueError if it has none."""
    modules = sat_config["model"]["network_config"]["params"]["modules"]
    if "lora_config" not in modules:
        raise ConfigError("the SAT config has no modules.lora_config, so the LoRA rank is unknown")
    params = modules["lora_config"].get("params") or {}
    return int(params["r"]), float(params.get("lora_alpha", 1.0))


def base_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA model's state dict without its matrices: ``<layer>.original.*`` become ``<layer>.*`` (W0)."""
    return {key.replace(".original.", "."): value for key, value in state_dict.items() if not is_lora_key(key)}
