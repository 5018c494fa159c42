"""Encode a fine-tuning dataset once: each item's VAE posterior and T5 embedding, into a latent cache.

    python tools/precompute.py --base configs/cogvideox_2b_lora.yaml configs/sft.yaml --output <cache_dir>
    torchrun --nproc_per_node=N tools/precompute.py ...       # the items are split between the processes

With `cp_size: c` in the model config's `first_stage_config`, groups of c processes encode each video together
(the VAE's time split, as in training); N must be a multiple of c.

The datasets are those `train_data` / `valid_data` of the configs name, or the folders given with `--data`; the
VAE, the T5 and the `data:` parameters are the configs'. With one source folder `<cache_dir>` is the cache; with
several, `<cache_dir>/<folder name>/` each. Then train with `train_data` / `valid_data` pointing at the caches and
the same configs (see README, "Fine-tuning from a latent cache"). Run it again after a crash: complete items are
kept. The T5 pass runs first, then the VAE pass, so only one of them is in memory at a time; on the GPU when there
is one.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from arguments import load_configs
from data_video import check_data_config
from engine_config import read_engine_config
from input_errors import InputError, input_errors_as_messages
from latent_cache.manifest import T5_WEIGHT_KEY, VAE_WEIGHT_KEY, text_embedders
from latent_cache.precompute import precision, precompute, process_layout
from vae_modules.context_parallel import check_encode_split
from checkpoints.output_folder import check_not_an_input
from checkpoints.writable_folder import check_writable_folder
from buckets.model_fit import check_buckets_fit
from buckets.spec import read_buckets


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", nargs="+", required=True, help="the training run's YAML config files, in order")
    parser.add_argument("--output", required=True, help="cache folder (created; resumed when it holds a cache)")
    parser.add_argument("--overwrite", action="store_true", help="write the cache into a folder holding other files (they "
                                                                 "are kept), or encode a cache of other settings again")
    parser.add_argument("--data", nargs="+", help="video folders to encode (default: train_data + valid_data)")
    return parser.parse_args(argv)


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


def main(argv: list[str]) -> list[Path]:
    options = parse_args(argv)
    check_writable_folder(options.output, "--output")
    try:
        config = load_configs(options.base)
    except FileNotFoundError as err:
        raise InputError(str(err)) from None
    for section in ("model", "data", "deepspeed"):
        if section not in config:
            raise InputError(f"the --base files {options.base} have no '{section}:' section (give the run's configs)")
    check_data_config(config.data, options.base)
    read_engine_config(config.model, options.base)  # the model section's keys, as training reads them
    if config.model.get("noised_image_input", False):
        raise InputError("image-to-video configs (noised_image_input) cannot train from a latent cache")
    rank, world_size, device = process_layout()
    dtype = precision(OmegaConf.to_container(config.deepspeed, resolve=True), torch.cuda.is_available())
    data_params = OmegaConf.to_container(config.data.params, resolve=True)
    folders = data_folders(config, options.data)
    check_not_an_input(options.output, "--output", [("the data folder", folder) for folder in folders] + weight_inputs(config.model))
    buckets = read_buckets(data_params, options.base)
    if buckets is None:
        check_encode_split(config.model, int(data_params["max_num_frames"]), world_size, "tools/precompute.py")
    else:  # each item is encoded at its bucket's shape (docs/buckets.md)
        check_buckets_fit(config.model, buckets, world_size, options.base, "tools/precompute.py")
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        caches = precompute(config.model, data_params, folders, Path(options.output), dtype, device, rank, world_size,
                            options.overwrite)
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank == 0:
        for cache in caches:
            print(f"wrote the latent cache {cache}")
    return caches


if __name__ == "__main__":
    with input_errors_as_messages():
        main(sys.argv[1:])
