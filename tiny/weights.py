"""The tiny random-initialised CogVideoX model set in the REAL file formats, written deterministically from a seed
(command line: `tools/make_tiny_weights.py`).

For the sizes in a tiny config (configs/tiny/), `make_tiny_weights` writes:
  <out>/transformer/latest, <out>/transformer/1/mp_rank_00_model_states.pt   SAT checkpoint ({"module": ...},
                                                                              keys `model.diffusion_model.*`)
  <out>/vae/3d-vae.pt                                                         {"state_dict": ...} as the release
  <out>/t5/                                                                   T5 encoder folder + sentencepiece model
The videos these weights make are noise; the pipeline that makes them is the real one.
"""

import os

import torch
from omegaconf import OmegaConf

from checkpoints.output_folder import check_output_folder, write_output
from checkpoints.sat_checkpoint import save_sat_checkpoint
from input_errors import InputError
from sgm.modules.diffusionmodules.wrappers import OpenAIWrapper
from sgm.util import instantiate_from_config, load_config_file
from tiny.t5 import make_tiny_t5

TOOL = "make_tiny_weights.py"
VAE_FILE, T5_FOLDER = os.path.join("vae", "3d-vae.pt"), "t5"


def randomize_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded values of a sensible scale for every trainable parameter, in name order (no zero-inits left):
    matrices/kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.02), norm scales ~ 1 + N(0, 0.1).
    The draws happen on the generator's device (a CUDA generator fills full-size models fast)."""
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if not param.requires_grad:
                continue  # fixed tables (the 3D sin-cos position embedding) keep their computed values
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32, device=generator.device)
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(noise / fan_in**0.5)
            elif name.endswith("bias"):
                param.copy_(0.02 * noise)
            else:
                param.copy_(1.0 + 0.1 * noise)


def build_network(model_config) -> torch.nn.Module:
    network_config = OmegaConf.to_container(model_config.network_config, resolve=True)
    network_config["params"]["dtype"] = "fp32"
    return OpenAIWrapper(instantiate_from_config(network_config))


def build_vae(model_config) -> torch.nn.Module:
    vae_config = OmegaConf.to_container(model_config.first_stage_config, resolve=True)
    vae_config["params"]["ckpt_path"] = None
    return instantiate_from_config(vae_config)


def default_out(config_path: str, model_config) -> str:
    """The folder the config reads its weights from: `<out>` of its VAE `<out>/vae/3d-vae.pt` and T5 `<out>/t5`."""
    vae = str(model_config.first_stage_config.params.get("ckpt_path") or "")
    out = os.path.dirname(os.path.dirname(vae))
    t5_dirs = [str(entry.params.get("model_dir")) for entry in model_config.conditioner_config.params.emb_models
               if str(entry.target).endswith("FrozenT5Embedder")]
    if not vae.endswith(VAE_FILE) or t5_dirs != [os.path.join(out, T5_FOLDER)]:
        raise InputError(f"{config_path}: its VAE ckpt_path {vae!r} and T5 model_dir(s) {t5_dirs} are not "
                         f"<folder>/{VAE_FILE} and <folder>/{T5_FOLDER}: give the output folder with --out")
    return out


def make_tiny_weights(config_path: str, out_dir: str | None, seed: int, overwrite: bool = False) -> list[str]:
    """Write the model set; returns the outputs (transformer folder, VAE file, T5 folder). `out_dir` None: the
    folder the config reads its weights from; it follows docs/output_folders.md (`overwrite`: --overwrite)."""
    if not os.path.isfile(config_path):
        raise InputError(f"--config {config_path!r} does not exist (expected a model YAML, e.g. configs/tiny/cogvideox_tiny.yaml)")
    model_config = load_config_file(config_path, "--config").model
    out_dir = default_out(config_path, model_config) if out_dir is None else out_dir
    output = check_output_folder(out_dir, TOOL, "--out", {"the --config": config_path}, overwrite)
    generator = torch.Generator().manual_seed(seed)

    network = build_network(model_config)
    randomize_parameters(network, generator)
    state = {f"model.{key}": value for key, value in network.state_dict().items()}
    vae = build_vae(model_config)
    randomize_parameters_of_frozen(vae, generator)

    def write(folder) -> None:
        save_sat_checkpoint(state, folder / "transformer", iteration=1)
        (folder / VAE_FILE).parent.mkdir()
        torch.save({"state_dict": vae.state_dict()}, folder / VAE_FILE)
        make_tiny_t5(str(folder / T5_FOLDER), seed=seed)

    write_output(output, write)
    return [os.path.join(out_dir, "transformer"), os.path.join(out_dir, VAE_FILE), os.path.join(out_dir, T5_FOLDER)]


def weight_paths(weights_dir) -> dict:
    """The `model:` part of a --base YAML that points the tiny configs' T5 and VAE at a folder `make_tiny_weights`
    wrote (the emb_models list is replaced whole when OmegaConf merges it)."""
    return {
        "conditioner_config": {"params": {"emb_models": [{
            "is_trainable": False, "input_key": "txt", "ucg_rate": 0.1,
            "target": "sgm.modules.encoders.modules.FrozenT5Embedder",
            "params": {"model_dir": os.path.join(str(weights_dir), "t5"), "max_length": 226}}]}},
        "first_stage_config": {"params": {"ckpt_path": os.path.join(str(weights_dir), "vae", "3d-vae.pt")}},
    }


def randomize_parameters_of_frozen(module: torch.nn.Module, generator: torch.Generator) -> None:
    """The VAE wrapper freezes itself on construction; unfreeze for the seeded fill, then freeze again."""
    for param in module.parameters():
        param.requires_grad_(True)
    randomize_parameters(module, generator)
    for param in module.parameters():
        param.requires_grad_(False)
