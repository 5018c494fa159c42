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
(``interop.checkpoint_family``) and the output folders are checked writable; each output is named in one line at the end.

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
import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints.atomic_dir import save_safetensors
from dit.patching import PatchSize
from input_errors import InputError, input_errors_as_messages
from output_folder import OutputFolder, check_output_folder, write_output
from checkpoints.sat_checkpoint import composed_module_states, is_lora_key
from sgm.util import ConfigError, load_config_file
from checkpoints.atomic_dir import save_safetensors, write_folder_atomically
from checkpoints.sat_checkpoint import composed_module_states, is_lora_key
from checkpoints.writable_folder import check_writable_folder

TOOL = "convert_weight_sat2hf.py"
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
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    renames = global_renames() + [pair for i in range(num_layers) for pair in layer_renames(i)]
    for sat, hf in renames:
        for suffix in (".weight", ".bias"):
            if sat + suffix in source:
                out[hf + suffix] = source.pop(sat + suffix)
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
    checked ``output`` (``output_folder.write_output``: other files there are kept)."""
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

    from interop.checkpoint_family import check_checkpoint_family  # here: that module imports this one

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
