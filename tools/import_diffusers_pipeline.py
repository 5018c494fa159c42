"""Import a diffusers CogVideoX pipeline folder (e.g. a downloaded THUDM/CogVideoX-2b) into this framework's layout.

    python tools/import_diffusers_pipeline.py CogVideoX-2b --output cogvideox-2b-sat

writes (a failure leaves the output as it was; the folder rule of docs/output_folders.md: a new or empty folder, or
this tool's earlier output, whose files are replaced, every other file kept; --overwrite for another folder; never
the pipeline folder itself, a folder inside it or one that holds it):

    <output>/transformer/               SAT checkpoint folder (tools/convert_weight_hf2sat.py's conversion)
    <output>/vae/3d-vae.pt              SAT VAE (tools/convert_vae.py's conversion)
    <output>/t5-v1_1-xxl/               text_encoder/ and tokenizer/ together, as FrozenT5Embedder loads them
    <output>/<family>.yaml              the matching shipped config (configs/cogvideox_2b.yaml, _5b, _5b_i2v,
    <output>/<family>_lora.yaml         cogvideox1.5_5b.yaml, 1.5_5b_i2v) with the T5 and VAE paths set to the folders
                                        above (absolute), the sizes, scale factor and schedule read from the
                                        pipeline's configs, the sampler of its scheduler (interop/diffusers_scheduler.py)
                                        and, for I2V, the image-latent scale of the VAE's invert_scale_latents (see
                                        set_image_latent_scale); and the LoRA variant of it
    <output>/inference.yaml             the family's shipped sampling config with load: <output>/transformer and a
                                        size the model samples (sampling_config)

so that ``bash inference.sh --base <output>/cogvideox_2b.yaml <output>/inference.yaml`` (the line it prints)
and ``bash finetune_single_gpu.sh <output>/cogvideox_2b_lora.yaml configs/sft.yaml`` (with ``load`` set to
``<output>/transformer``) take them as they are. The weights keep their dtypes; export -> import gives back the same
tensors bit for bit. A pipeline configuration the SAT model cannot express is refused before anything is written.
"""

import argparse
import math
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from checkpoints.output_folder import check_output_folder, write_output
from checkpoints.sat_checkpoint import save_sat_checkpoint
from input_errors import InputError, input_errors_as_messages
from interop import vae_keys
from interop.diffusers_scheduler import (
    DEFAULT_DISCRETIZATION,
    DISCRETIZATION,
    SAMPLER_OF_SCHEDULER,
    discretization_params,
)
from interop.diffusers_to_sat import diffusers_to_sat_state_dict, read_diffusers_folder
from interop.sat_to_diffusers import SAT_PREFIX, diffusers_config
from model_family import COGVIDEOX_1_5, SIZE_MULTIPLE, model_family, sampling_pixel_size
from option_ranges import ITERATION, check_value
from text_files import check_json_files, read_json, read_yaml
from interop.image_latent_scale import image_latent_sampling_scale, is_cogvideox_15

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
T5_FOLDER, VAE_FILE = "t5-v1_1-xxl", "vae/3d-vae.pt"
# The shipped sampling config of each family (the README's inference.sh lines), written for the imported model as:
INFERENCE_CONFIG = {"cogvideox_2b": "inference.yaml", "cogvideox_5b": "inference_5b.yaml", "cogvideox1.5_5b": "inference_1.5.yaml"}
TOOL = "import_diffusers_pipeline.py"
SAMPLING_CONFIG = "inference.yaml"
PIPELINE_PARTS = ("model_index.json", "transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def family(transformer: Mapping[str, Any]) -> str:
    """The shipped config whose structure the transformer config has: cogvideox_2b, _5b, _5b_i2v (CogVideoX 1.0:
    no ``patch_size_t``) or cogvideox1.5_5b, 1.5_5b_i2v (``patch_size_t`` 2; I2V: ``ofs_embed_dim``)."""
    patch_size_t = transformer.get("patch_size_t")
    if patch_size_t is not None:
        if patch_size_t != COGVIDEOX_1_5.temporal_patch:
            raise InputError(f"transformer/config.json: patch_size_t={patch_size_t!r}; a CogVideoX1.5 model has "
                             f"{COGVIDEOX_1_5.temporal_patch} (or null: CogVideoX 1.0)")
        return "cogvideox1.5_5b" if transformer.get("ofs_embed_dim") is None else "cogvideox1.5_5b_i2v"
    if not transformer["use_rotary_positional_embeddings"]:
        return "cogvideox_2b"
    return "cogvideox_5b_i2v" if transformer["use_learned_positional_embeddings"] else "cogvideox_5b"


def set_network(network, transformer: Mapping[str, Any]) -> None:
    """The SAT ``network_config`` sizes of a diffusers transformer config (the inverse of ``diffusers_config``)."""
    params = network.params
    params.num_layers = transformer["num_layers"]
    params.num_attention_heads = transformer["num_attention_heads"]
    params.hidden_size = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    params.time_embed_dim = transformer["time_embed_dim"]
    params.in_channels, params.out_channels = transformer["in_channels"], transformer["out_channels"]
    patch_size_t = transformer.get("patch_size_t")
    params.patch_size = transformer["patch_size"] if patch_size_t is None else [patch_size_t, transformer["patch_size"], transformer["patch_size"]]
    if transformer.get("ofs_embed_dim") is not None:
        params.ofs_embed_dim = transformer["ofs_embed_dim"]
    params.latent_width, params.latent_height = transformer["sample_width"], transformer["sample_height"]
    params.num_frames = transformer["sample_frames"]
    params.time_compressed_rate = transformer["temporal_compression_ratio"]
    params.elementwise_affine = transformer["norm_elementwise_affine"]
    params.modules.patch_embed_config.params.text_hidden_size = transformer["text_embed_dim"]
    pos = params.modules.pos_embed_config.params
    if patch_size_t is None:  # 1.5: the DiT reads the text length off the context; the template's 224 stays
        pos.text_length = transformer["max_text_seq_length"]
    if transformer["use_rotary_positional_embeddings"]:
        pos.hidden_size_head = transformer["attention_head_dim"]
    else:
        pos.height_interpolation = pos.width_interpolation = transformer["spatial_interpolation_scale"]


def set_vae(first_stage, vae: Mapping[str, Any], vae_path: str) -> None:
    """The SAT VAE's encoder/decoder sizes of a diffusers VAE config, and its file."""
    first_stage.params.ckpt_path = vae_path
    channels = vae["block_out_channels"]
    for part in (first_stage.params.encoder_config, first_stage.params.decoder_config):
        part.params.ch = channels[0]
        part.params.ch_mult = [c // channels[0] for c in channels]
        part.params.num_res_blocks = vae["layers_per_block"]
        part.params.z_channels = vae["latent_channels"]
        part.params.in_channels, part.params.out_ch = vae["in_channels"], vae["out_channels"]


def set_schedule(model, scheduler: Mapping[str, Any]) -> None:
    """Every ZeroSNRDDPMDiscretization of the config (denoiser, training sigmas, sampler) and the sampler target."""
    name = scheduler["_class_name"]
    if name not in SAMPLER_OF_SCHEDULER:
        raise InputError(f"scheduler/scheduler_config.json: _class_name {name!r} has no SAT sampler (expected one of {sorted(SAMPLER_OF_SCHEDULER)})")
    params = discretization_params(scheduler)
    model.sampler_config.target = SAMPLER_OF_SCHEDULER[name]
    for node in (model.denoiser_config.params, model.loss_fn_config.params.sigma_sampler_config.params, model.sampler_config.params):
        discretization = node.discretization_config
        assert discretization.target == DISCRETIZATION
        existing = dict(discretization.get("params") or {})
        # a default the template leaves out stays out (the 1.5 configs set no params at all)
        merged = {**existing, **{key: value for key, value in params.items() if key in existing or value != DEFAULT_DISCRETIZATION[key]}}
        if merged or "params" in discretization:
            discretization.params = merged


def set_image_latent_scale(model, vae: Mapping[str, Any]) -> None:
    """An I2V config's sampling image-latent scale from the VAE's ``invert_scale_latents`` (diffusers' default false
    when absent), the inverse of the export's choice: the family's released value (1.0 false, 1.5 true) keeps the
    template's default (the reference's scale: 0.7 z for 1.0, z for 1.5); the other value sets
    ``image_latent_sampling_scale`` to what diffusers feeds (false: scaling_factor z; true: z / scaling_factor)."""
    if not model.get("noised_image_input", False):
        return  # only diffusers' image-to-video pipeline reads it
    invert = bool(vae.get("invert_scale_latents", False))
    if invert != is_cogvideox_15({"network_config": OmegaConf.to_container(model.network_config, resolve=True)}):
        model.image_latent_sampling_scale = diffusers_image_latent_scale(vae)


def diffusers_image_latent_scale(vae: Mapping[str, Any]) -> float:
    """The image latent diffusers' CogVideoXImageToVideoPipeline feeds, as a multiple of z."""
    return 1 / vae["scaling_factor"] if vae.get("invert_scale_latents", False) else vae["scaling_factor"]


def image_latent_note(model, vae: Mapping[str, Any]) -> str | None:
    """A note where the written I2V config samples another image latent than the diffusers pipeline (the 1.5
    release: the reference's z against diffusers' z / 0.7)."""
    if not model.get("noised_image_input", False):
        return None
    ours = image_latent_sampling_scale(OmegaConf.to_container(model, resolve=True))
    theirs = diffusers_image_latent_scale(vae)
    if math.isclose(ours, theirs):
        return None
    return (f"the written configs sample the image latent as the reference does ({ours:g} z, z the VAE posterior "
            f"sample); the diffusers pipeline fed {theirs:g} z (vae invert_scale_latents: "
            f"{str(bool(vae.get('invert_scale_latents', False))).lower()}); model.image_latent_sampling_scale: {theirs!r} "
            "samples as it does")


def derive_config(template: Path, transformer: Mapping[str, Any], vae: Mapping[str, Any], scheduler: Mapping[str, Any],
                  t5_dir: str, vae_path: str):
    """The shipped ``template`` with the pipeline's sizes, scale factor, schedule and the given weight paths."""
    config = read_yaml(template)
    model = config.model
    set_network(model.network_config, transformer)
    set_vae(model.first_stage_config, vae, vae_path)
    set_schedule(model, scheduler)
    model.scale_factor = vae["scaling_factor"]
    set_image_latent_scale(model, vae)
    model.conditioner_config.params.emb_models[0].params.model_dir = t5_dir
    expressed = diffusers_config(OmegaConf.to_container(model.network_config, resolve=True))
    differing = sorted(key for key, value in expressed.items() if not key.startswith("_") and transformer.get(key) != value)
    if differing:
        raise InputError(f"transformer/config.json: {', '.join(f'{k}={transformer.get(k)!r}' for k in differing)} cannot be "
                         f"expressed by {template.name} (it gives {', '.join(f'{k}={expressed[k]!r}' for k in differing)})")
    return config


def sampling_config(name: str, model, output: Path):
    """The family's shipped sampling config (INFERENCE_CONFIG) for the imported model, so that the printed command
    runs as printed: `load` is the imported transformer, and the video size is one the model samples (1.0: its own
    size; 1.5: the release's 768x1360, or the DiT table's whole size where that is smaller, as for a tiny model;
    1.5 I2V: the release's image short side 768, or a smaller one with which a 16:9 image fits the table)."""
    config = OmegaConf.load(CONFIGS / INFERENCE_CONFIG[name.removesuffix("_i2v")])
    config.args.load = str(output / "transformer")
    constants = model_family(model)
    most = sampling_pixel_size(model)
    if constants.default_sampling_image_size is None:
        config.args.sampling_image_size = list(most)
        return config
    config.args.sampling_image_size = [min(wanted, (top // SIZE_MULTIPLE) * SIZE_MULTIPLE)
                                       for wanted, top in zip(constants.default_sampling_image_size, most)]
    if name.endswith("_i2v"):  # the image decides the size: a 16:9 image's video must fit the table too
        del config.args.sampling_image_size
        short = min(constants.image_short_side, (min(min(most), max(most) * 9 // 16) // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        if short != constants.image_short_side:
            config.args.image_short_side = short
    return config


def read_part_config(source: Path, part: str) -> dict[str, Any]:
    """One JSON file of the pipeline folder (`part`: e.g. vae/config.json); InputError naming it when it is missing
    or damaged (`text_files.read_json`: line and column)."""
    return read_json(source / part, f"the {part} of a diffusers pipeline folder ({', '.join(PIPELINE_PARTS)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="diffusers pipeline folder (model_index.json, transformer/, vae/, ...)")
    parser.add_argument("--output", required=True, help="folder to write: new or empty, or this tool's earlier output")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder holding other files: replace only the files this tool writes")
    parser.add_argument("--iteration", type=int, default=1000, help="the transformer checkpoint's iteration folder (the release uses 1000)")
    args = parser.parse_args(argv)
    check_value("--iteration", args.iteration, ITERATION)

    source, output = Path(args.pipeline), Path(args.output).resolve()
    read_part_config(source, "model_index.json")
    target = check_output_folder(args.output, TOOL, "--output", {"the pipeline folder": source}, args.overwrite)
    vae_config = read_part_config(source, "vae/config.json")
    scheduler_config = read_part_config(source, "scheduler/scheduler_config.json")
    transformer_config = read_part_config(source, "transformer/config.json")
    for part in ("text_encoder", "tokenizer"):
        if not (source / part).is_dir():
            raise InputError(f"{source / part} not found (expected a diffusers pipeline folder: {', '.join(PIPELINE_PARTS)})")
        check_json_files(source / part, f"a JSON file of a diffusers pipeline's {part}/ (copied into {T5_FOLDER}/)")
    name = family(transformer_config)
    configs = {
        f"{name}{suffix}.yaml": derive_config(CONFIGS / f"{name}{suffix}.yaml", transformer_config, vae_config,
                                              scheduler_config, str(output / T5_FOLDER), str(output / VAE_FILE))
        for suffix in ("", "_lora")
    }
    configs[SAMPLING_CONFIG] = sampling_config(name, configs[f"{name}.yaml"].model, output)

    transformer, _ = read_diffusers_folder(source / "transformer")
    dit = diffusers_to_sat_state_dict(transformer, transformer_config)
    vae_states, _ = read_diffusers_folder(source / "vae")
    vae = vae_keys.diffusers_to_sat(vae_states)
    expressed = vae_keys.diffusers_config(vae, scaling_factor=vae_config["scaling_factor"])
    differing = sorted(key for key, value in expressed.items() if vae_config.get(key) != value)
    if differing:
        raise InputError(f"vae/config.json: {', '.join(f'{k}={vae_config.get(k)!r}' for k in differing)} cannot be expressed "
                         f"by the SAT VAE (its weights give {', '.join(f'{k}={expressed[k]!r}' for k in differing)})")

    def write(folder: Path) -> None:
        save_sat_checkpoint({SAT_PREFIX + key: value for key, value in dit.items()}, folder / "transformer", args.iteration)
        (folder / "vae").mkdir()
        torch.save({"state_dict": vae}, folder / VAE_FILE)
        (folder / T5_FOLDER).mkdir()
        for part in ("text_encoder", "tokenizer"):
            for path in sorted((source / part).iterdir()):
                if path.is_file():
                    shutil.copy2(path, folder / T5_FOLDER / path.name)
        for file_name, config in configs.items():
            OmegaConf.save(config, folder / file_name)

    write_output(target, write)
    print(f"wrote {output}/transformer, {VAE_FILE}, {T5_FOLDER}/ and {', '.join(configs)}")
    note = image_latent_note(configs[f"{name}.yaml"].model, vae_config)
    if note is not None:
        print(f"note: {note}")
    image = " --image2video --input-file <prompts: text@@image path>" if name.endswith("_i2v") else ""
    print(f"sample: bash inference.sh --base {output / f'{name}.yaml'} {output / SAMPLING_CONFIG}{image}")


if __name__ == "__main__":
    with input_errors_as_messages():
        main()
