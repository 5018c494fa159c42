"""Export a SAT model (config + transformer checkpoint + its VAE and T5) as a complete diffusers pipeline folder.

    python tools/export_diffusers_pipeline.py --base configs/cogvideox_2b.yaml \
        --checkpoint CogVideoX-2b-sat/transformer --output cogvideox-2b-diffusers

writes (a failure leaves the output as it was; the folder rule of docs/output_folders.md: a new or empty folder, or
this tool's earlier output, whose files are replaced, every other file kept; --overwrite for another folder):

    <output>/model_index.json        CogVideoXPipeline (CogVideoXImageToVideoPipeline for noised_image_input configs)
    <output>/transformer/            CogVideoXTransformer3DModel (tools/convert_weight_sat2hf.py's conversion)
    <output>/vae/                    AutoencoderKLCogVideoX, scaling_factor = model.scale_factor (tools/convert_vae.py),
                                     invert_scale_latents from the I2V sampling image-latent scale (see below)
    <output>/text_encoder/           the config's T5 folder's model files (conditioner ... FrozenT5Embedder model_dir)
    <output>/tokenizer/              the same folder's tokenizer files
    <output>/scheduler/              the config's sampler as a diffusers scheduler (interop/diffusers_scheduler.py)
    <output>/lora/                   with --lora adapter: pytorch_lora_weights.safetensors (pipe.load_lora_weights)

The weights keep their dtypes. ``--checkpoint`` is a transformer folder or a training run folder (a LoRA-only run
brings the base it records). A LoRA run is merged into the transformer (``--lora merge``, the default:
``W0 + B A alpha / r`` with r from the LoRA config given in --base) or exported as a separate adapter
(``--lora adapter``: the base transformer plus the diffusers/peft LoRA file, scale folded into lora_B).

CogVideoX 1.0 and 1.5 (T2V and I2V) export alike. diffusers' ``CogVideoXImageToVideoPipeline`` feeds the image latent
as ``scaling_factor * z`` (VAE ``invert_scale_latents: false``) or ``z / scaling_factor`` (true), z the raw posterior
sample; the config samples ``image_latent_sampling_scale * z`` (default: scale_factor for 1.0, 1.0 for 1.5, as the
references). A scale of scale_factor or 1 / scale_factor is written exactly; any other (the 1.5 default z among them)
writes the family's released value (1.0: false; 1.5: true, which feeds z / 0.7) and a note saying the videos differ.
"""

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from checkpoints.atomic_dir import save_safetensors
from checkpoints.output_folder import check_output_folder, write_output
from checkpoints.sat_checkpoint import checkpoint_path, composed_module_states, is_lora_key
from input_errors import InputError, input_errors_as_messages
from interop import vae_keys
from interop.checkpoint_family import check_checkpoint_family
from interop.image_latent_scale import DIFFUSERS_OFS, invert_scale_latents, is_cogvideox_15
from sgm.util import load_config_file
from text_files import read_json
from interop.sat_to_diffusers import (
    LORA_WEIGHTS_NAME,
    check_against_diffusers,
    diffusers_config,
    extract_transformer_state_dict,
    lora_params,
    lora_to_diffusers_peft,
    merge_lora_state_dict,
    sat_to_diffusers_state_dict,
    write_diffusers_model,
)
from interop.diffusers_scheduler import build_scheduler, scheduler_for_sampler, spacing_agrees
from vae_modules.autoencoder import check_vae_file, load_vae_state_dict

# The files of a released T5 folder (t5-v1_1-xxl/) that make up the tokenizer; every other file is the encoder's.
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
LORA_FOLDER = "lora"
# The model: keys an export reads (the DiT, the VAE and its latent scale, the T5 folder, the sampler).
TOOL = "export_diffusers_pipeline.py"
MODEL_KEYS = ("network_config", "first_stage_config", "scale_factor", "conditioner_config", "sampler_config")


def load_model_config(paths: list[str]) -> dict[str, Any]:
    """The merged YAMLs as a plain dict (InputError for a missing file or no ``model:`` section)."""
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"--base {path!r} does not exist (expected a model YAML, e.g. configs/cogvideox_2b.yaml)")
    config = OmegaConf.to_container(OmegaConf.merge(*(load_config_file(path) for path in paths)), resolve=True)
    if "model" not in config:
        raise InputError(f"--base {' '.join(paths)}: no 'model:' section")
    missing = [key for key in MODEL_KEYS if key not in config["model"]]
    if missing:
        raise InputError(f"--base {' '.join(paths)}: model: has no {', '.join(missing)} (an export needs {', '.join(MODEL_KEYS)})")
    return config


def t5_folder(model: Mapping[str, Any]) -> Path:
    """The T5 folder the conditioner loads (``conditioner_config.params.emb_models[0].params.model_dir``)."""
    folder = Path(model["conditioner_config"]["params"]["emb_models"][0]["params"]["model_dir"])
    if not (folder / "config.json").is_file():
        raise InputError(f"T5 folder {str(folder)!r} (conditioner_config ... model_dir) has no config.json")
    return folder


def pipeline_class(model: Mapping[str, Any]) -> str:
    return "CogVideoXImageToVideoPipeline" if model.get("noised_image_input", False) else "CogVideoXPipeline"


def strip_lora(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base weights of a LoRA model's DiT: LoRA matrices dropped, ``<layer>.original.*`` back to ``<layer>.*``."""
    return {key.replace(".original.", "."): value for key, value in state_dict.items() if not is_lora_key(key)}


def transformer_part(config: Mapping[str, Any], checkpoint: str, lora_mode: str, config_paths: str, trusted: bool = False):
    """(diffusers transformer state dict, its config, the peft LoRA dict or None). A checkpoint of another model
    than the one `config_paths` describe (another family or size) is one InputError naming both."""
    network = diffusers_config(config["model"]["network_config"])
    dit = extract_transformer_state_dict(composed_module_states(checkpoint, trusted=trusted)[0])
    check_checkpoint_family(dit, config["model"]["network_config"], checkpoint, config_paths)
    lora = None
    if any(is_lora_key(key) for key in dit):
        r, alpha = lora_params(config)
        if lora_mode == "merge":
            dit = merge_lora_state_dict(dit, r, alpha)
        else:
            lora = lora_to_diffusers_peft({key: value for key, value in dit.items() if is_lora_key(key)}, r, alpha)
            dit = strip_lora(dit)
    converted = sat_to_diffusers_state_dict(dit, network["use_learned_positional_embeddings"])
    check_against_diffusers(converted, network)
    return converted, network, lora


def vae_part(model: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(diffusers VAE state dict, its config) from ``first_stage_config.params.ckpt_path``."""
    params = model["first_stage_config"]["params"]
    states = load_vae_state_dict(params["ckpt_path"], params.get("ignore_keys", ["loss"]))
    config = {"_class_name": "AutoencoderKLCogVideoX", **vae_keys.diffusers_config(states, scaling_factor=float(model["scale_factor"])),
              "invert_scale_latents": invert_scale_latents(model)[0]}
    return vae_keys.sat_to_diffusers(states), config


def copy_t5(t5_dir: Path, folder: Path) -> str:
    """Copy the T5 folder's files into ``folder/text_encoder`` and ``folder/tokenizer``; returns the tokenizer class."""
    for name in ("text_encoder", "tokenizer"):
        (folder / name).mkdir()
    for path in sorted(t5_dir.iterdir()):
        if path.is_file():
            shutil.copy2(path, folder / ("tokenizer" if path.name in TOKENIZER_FILES else "text_encoder") / path.name)
    tokenizer_config = folder / "tokenizer" / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        return "T5Tokenizer"
    return read_json(tokenizer_config, "a tokenizer_config.json of the T5 folder").get("tokenizer_class", "T5Tokenizer")


def model_index(pipeline: str, scheduler: str, tokenizer: str) -> dict[str, Any]:
    import diffusers

    return {
        "_class_name": pipeline,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", scheduler],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", tokenizer],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }


def sampling_notes(model: Mapping[str, Any]) -> list[str]:
    """What the exported pipeline cannot reproduce of the config's sampling, and the call that matches the rest."""
    params = model["sampler_config"]["params"]
    num_steps = int(params["num_steps"])
    discretization = params["discretization_config"].get("params") or {}
    notes = []
    if discretization.get("rescale_selected_steps", True):
        notes.append("the config rescales to zero SNR over the selected steps (the reference's quirk); diffusers "
                     "rescales the 1000-step table (as rescale_selected_steps: false), so schedules differ slightly")
    if not spacing_agrees(num_steps):
        notes.append(f"at {num_steps} steps diffusers' 'trailing' spacing visits other DDPM indices than the SAT "
                     "sampler (they agree at 1, 2, 4, 5, 7, 8, 10, 11, 13, 20, 25, 40, 50, ...)")
    guider = params["guider_config"]
    scale = (guider.get("params") or {}).get("scale")
    dynamic = guider["target"].endswith("DynamicCFG")
    image_note = invert_scale_latents(model)[1]
    if image_note is not None:
        notes.append(image_note)
    ofs = model.get("ofs", DIFFUSERS_OFS)
    if model["network_config"]["params"].get("ofs_embed_dim") is not None and ofs != DIFFUSERS_OFS:
        notes.append(f"the config samples with model.ofs: {ofs}; diffusers always passes ofs {DIFFUSERS_OFS}")
    notes.append(f"sample with num_inference_steps={num_steps}, guidance_scale={scale}, use_dynamic_cfg={dynamic}")
    if is_cogvideox_15(model):
        notes.append("CogVideoX1.5: num_frames = 4 * (sampling_num_frames - 2) + 1 (22 latent frames -> 81): diffusers "
                     "pads the latent frames to even with one frame in front and drops it before decoding, as ours")
    return notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", nargs="+", required=True, help="model YAML(s), merged in order (the sampling configs)")
    parser.add_argument("--checkpoint", required=True, help="SAT transformer folder or training run folder (with 'latest'), or one of its iteration folders")
    parser.add_argument("--output", required=True, help="pipeline folder to write: new or empty, or this tool's earlier output")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder holding other files: replace only the files this tool writes")
    parser.add_argument("--lora", choices=("merge", "adapter"), default="merge",
                        help="a LoRA run: merge it into the transformer (default) or write it to <output>/lora/")
    parser.add_argument("--trusted", action="store_true", help="allow full unpickling of checkpoint files you wrote")
    args = parser.parse_args(argv)

    # Inputs are checked before any weight is read.
    config = load_model_config(args.base)
    model = config["model"]
    t5_dir = t5_folder(model)
    check_vae_file(model["first_stage_config"]["params"]["ckpt_path"])
    checkpoint_path(args.checkpoint)
    scheduler_name, scheduler_args = scheduler_for_sampler(model["sampler_config"])
    scheduler = build_scheduler(scheduler_name, scheduler_args)
    inputs = {"the --checkpoint": args.checkpoint, "the T5 folder": t5_dir,
              "the VAE file": model["first_stage_config"]["params"]["ckpt_path"]}
    output = check_output_folder(args.output, TOOL, "--output", inputs, args.overwrite)

    transformer, transformer_config, lora = transformer_part(config, args.checkpoint, args.lora, " ".join(args.base),
                                                            args.trusted)
    vae, vae_config = vae_part(model)

    def write(folder: Path) -> None:
        write_diffusers_model(transformer, transformer_config, folder / "transformer")
        write_diffusers_model(vae, vae_config, folder / "vae")
        scheduler.save_pretrained(str(folder / "scheduler"))
        tokenizer = copy_t5(t5_dir, folder)
        if lora is not None:
            (folder / LORA_FOLDER).mkdir()
            save_safetensors(lora, folder / LORA_FOLDER / LORA_WEIGHTS_NAME, metadata={"format": "pt"})
        index = model_index(pipeline_class(model), scheduler_name, tokenizer)
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))

    write_output(output, write)
    print(f"wrote {pipeline_class(model)} to {args.output}" + (f" (LoRA adapter in {LORA_FOLDER}/)" if lora is not None else ""))
    for note in sampling_notes(model):
        print(f"note: {note}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
