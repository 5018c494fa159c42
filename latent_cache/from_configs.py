"""A latent cache from a training run's config files, as `tools/precompute.py` makes it: every input checked first
(the output folder, the configs' sections, the data folders, the frame split between processes), then the
encoding (`latent_cache/precompute.py`), under `torchrun` with one process group for the run."""

from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from arguments import load_configs
from buckets.model_fit import check_buckets_fit
from buckets.spec import read_buckets
from checkpoints.output_folder import check_not_an_input
from checkpoints.writable_folder import check_writable_folder
from data_video import check_data_config
from engine_config import read_engine_config
from input_errors import InputError
from latent_cache.manifest import T5_WEIGHT_KEY, VAE_WEIGHT_KEY, text_embedders
from latent_cache.precompute import precision, precompute, process_layout
from vae_modules.context_parallel import check_encode_split

COMMAND = "tools/precompute.py"


def data_folders(config, given: list[str] | None) -> list[str]:
    if given:
        return list(dict.fromkeys(given))
    args = config.get("args", {})
    folders = [*(args.get("train_data") or []), *(args.get("valid_data") or [])]
    if not folders:
        raise InputError("no dataset: the configs set neither train_data nor valid_data; pass --data <folder>")
    return list(dict.fromkeys(folders))


def weight_inputs(model_config) -> list[tuple[str, str]]:
    """The VAE file and T5 folders the configs name, as (what, path) for `check_not_an_input`."""
    vae = OmegaConf.select(model_config, f"first_stage_config.params.{VAE_WEIGHT_KEY}", default=None)
    t5 = [entry.get("params", {}).get(T5_WEIGHT_KEY) for entry in text_embedders(model_config)]
    return [("the VAE file", vae)] + [("the T5 folder", folder) for folder in t5]


def precompute_from_configs(base: list[str], output: str, data: list[str] | None, overwrite: bool) -> list[Path]:
    """Encode the datasets `data` (default: the configs' train_data + valid_data) with the VAE, T5 and `data:`
    parameters of the config files `base`, into the cache folder `output`; returns the caches written (one per data
    folder: `output` itself for one, `output/<folder name>` each for several). `overwrite`: --overwrite."""
    check_writable_folder(output, "--output")
    try:
        config = load_configs(base)
    except FileNotFoundError as err:
        raise InputError(str(err)) from None
    for section in ("model", "data", "deepspeed"):
        if section not in config:
            raise InputError(f"the --base files {base} have no '{section}:' section (give the run's configs)")
    check_data_config(config.data, base)
    read_engine_config(config.model, base)  # the model section's keys, as training reads them
    if config.model.get("noised_image_input", False):
        raise InputError("image-to-video configs (noised_image_input) cannot train from a latent cache")
    rank, world_size, device = process_layout()
    dtype = precision(OmegaConf.to_container(config.deepspeed, resolve=True), torch.cuda.is_available())
    data_params = OmegaConf.to_container(config.data.params, resolve=True)
    folders = data_folders(config, data)
    check_not_an_input(output, "--output", [("the data folder", folder) for folder in folders] + weight_inputs(config.model))
    buckets = read_buckets(data_params, base)
    if buckets is None:
        check_encode_split(config.model, int(data_params["max_num_frames"]), world_size, COMMAND)
    else:  # each item is encoded at its bucket's shape (docs/buckets.md)
        check_buckets_fit(config.model, buckets, world_size, base, COMMAND)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        caches = precompute(config.model, data_params, folders, Path(output), dtype, device, rank, world_size, overwrite)
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank == 0:
        for cache in caches:
            print(f"wrote the latent cache {cache}")
    return caches
