"""Encoding a video dataset into a latent cache: the T5 pass, then the VAE pass (one model in memory at a time).

The items are the usable videos `data_video.SFTDataset` lists (same skips, same warnings), decoded by that same
dataset, so a cached item and a freshly decoded one are the same input. Each process of a `torchrun` takes every
world_size-th item; with `first_stage_config` `cp_size` c > 1 the processes form world_size / c groups of c
consecutive ranks (as `vae_modules/context_parallel.py` groups them): group g takes every (world_size / c)-th item
from g, its c processes encode each of them together (the VAE's time split), and only the group's first process runs
the T5 pass and writes the item. Resumable: an item whose file is complete and whose source files are unchanged is kept;
everything else is (re)done. Both passes write files by rename, so a crash never leaves a half-written item.
"""

import gc
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from data_video import SFTDataset
from input_errors import InputError
from latent_cache.manifest import (FORMAT, VERSION, content_settings, differences, file_identity, read_manifest,
                                   text_embedders, weight_differences, weight_identities, write_manifest)
from latent_cache.store import (ITEMS_DIR, PARTS_DIR, POSTERIOR_KEYS, embedding_key, is_complete, item_file,
                                read_item, save_atomically)
from sgm.util import instantiate_from_config
from vae_modules.context_parallel import configured_cp_size


@dataclass(frozen=True)
class Job:
    """One item to encode: dataset `dataset`'s entry `index`, written to `cache` under `name`."""

    dataset: SFTDataset
    index: int
    cache: Path
    name: str
    redo: bool  # its source changed since an earlier run: earlier files do not count


def source_record(data_dir: Path, video: Path, bucket) -> dict:
    """The manifest's record of one item; `bucket` (with buckets: the item's, encoded at its shape) or None."""
    name = video.relative_to(data_dir / "videos").with_suffix("").as_posix()
    label = (data_dir / "labels" / name).with_suffix(".txt")
    record = {"name": name, "video": file_identity(video), "label": file_identity(label)}
    return record if bucket is None else {**record, "bucket": list(bucket)}


def build_manifest(dataset: SFTDataset, data_dir: Path, model_config, data_params, dtype: str) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "settings": content_settings(model_config, data_params, dtype),
        "weights": weight_identities(model_config),
        "source": {"folder": str(data_dir.resolve())},
        "items": [source_record(data_dir, Path(entry.path), entry.bucket) for entry in dataset.entries],
    }


def stale_items(cache: Path, manifest: dict, overwrite: bool = False) -> set[str]:
    """Check an existing cache in `cache` against `manifest`; return the names whose files are stale (changed
    source). Reads only: every process calls it before process 0 rewrites the cache (`start_cache`). A folder that
    holds no cache, or a cache of other settings, is refused unless `overwrite` (--overwrite): the cache's files are
    then written there (every item encoded again), every other file kept (docs/output_folders.md)."""
    old = read_manifest(cache) if cache.is_dir() else None
    if old is None and cache.is_dir() and any(not p.name.startswith(".") for p in cache.iterdir()) and not overwrite:
        raise InputError(f"--output {cache} is a non-empty folder that is not a latent cache: choose a new or empty "
                         "one, or pass --overwrite to write the cache there (the other files are kept)")
    if old is None:
        return set()
    found = differences(old["settings"], manifest["settings"])
    found += weight_differences(old["weights"], manifest["weights"])
    if found and overwrite:
        return {item["name"] for item in manifest["items"]}
    if found:
        raise InputError(f"{cache} holds a cache made with other settings or weights: {'; '.join(found)}. "
                         "Choose another --output, or pass --overwrite to encode it again")
    previous = {item["name"]: item for item in old["items"]}
    return {item["name"] for item in manifest["items"] if previous.get(item["name"], item) != item}


def start_cache(cache: Path, manifest: dict, stale: set[str]) -> None:
    """Process 0: remove the stale items' files, write the manifest (first, so an interrupted cache is recognised
    as one)."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in stale:
        for subdir in (ITEMS_DIR, PARTS_DIR):
            item_file(cache, subdir, name).unlink(missing_ok=True)
    write_manifest(cache, manifest)


def run_t5_pass(jobs: list[Job], model_config, device: torch.device, dtype: torch.dtype, show: bool) -> None:
    """Embed each pending item's caption with every text embedder; writes `parts/<name>.safetensors`."""
    entries = text_embedders(model_config)
    keys = tuple(embedding_key(entry["input_key"]) for entry in entries)
    pending = [job for job in jobs if job.redo or not is_complete(item_file(job.cache, PARTS_DIR, job.name), keys)]
    if not pending:
        return
    embedders = [instantiate_from_config({"target": e["target"], "params": e.get("params", {})}) for e in entries]
    embedders = [embedder.to(device, dtype).eval() for embedder in embedders]
    for job in tqdm(pending, desc="T5 pass", unit="item", disable=not show):
        caption = job.dataset.entries[job.index].caption
        with torch.no_grad():
            tensors = {key: embedder([caption])[0].cpu() for key, embedder in zip(keys, embedders)}  # (L, D)
        save_atomically(tensors, {}, item_file(job.cache, PARTS_DIR, job.name))
    del embedders
    gc.collect()


def run_vae_pass(jobs: list[Job], model_config, device: torch.device, dtype: torch.dtype, show: bool,
                 writer: bool = True, build: bool | None = None) -> None:
    """Encode each pending item's video to the posterior moments and, on the `writer`, complete its item file.
    `build`: whether to build the VAE (default: when there are jobs; context parallel: when any process has one,
    since every process takes part in creating the VAE's process groups)."""
    if not (bool(jobs) if build is None else build):
        return
    vae = instantiate_from_config(model_config.first_stage_config).to(device, dtype)
    for job in tqdm(jobs, desc="VAE pass", unit="item", disable=not show):
        item = job.dataset[job.index]
        video = item["mp4"][None].to(device, dtype).permute(0, 2, 1, 3, 4).contiguous()  # (1, 3, T, H, W)
        moments = vae.encode_moments(video)[0].cpu()  # (2c, t, h, w); context parallel: the group's, on every rank
        if not writer:
            continue
        mean, logvar = torch.chunk(moments, 2, dim=0)  # (c, t, h, w) each
        part = item_file(job.cache, PARTS_DIR, job.name)
        embeddings, _ = read_item(part)
        metadata = {"caption": item["txt"], "num_frames": str(item["num_frames"]), "fps": str(item["fps"])}
        tensors = {POSTERIOR_KEYS[0]: mean, POSTERIOR_KEYS[1]: logvar, **embeddings}
        save_atomically(tensors, metadata, item_file(job.cache, ITEMS_DIR, job.name))
        part.unlink()
    del vae
    gc.collect()


def cache_folders(output: Path, data_dirs: list[str]) -> list[Path]:
    """One source folder: the output is the cache; several: one cache per source, named after its folder."""
    if len(data_dirs) == 1:
        return [output]
    names = [Path(d).resolve().name for d in data_dirs]
    if len(set(names)) != len(names):
        raise InputError(f"data folders {data_dirs} share a name; their caches would collide under {output}")
    return [output / name for name in names]


def precompute(model_config, data_params, data_dirs: list[str], output: Path, dtype_name: str,
               device: torch.device, rank: int = 0, world_size: int = 1, overwrite: bool = False) -> list[Path]:
    """Encode `data_dirs` into caches under `output`; returns the cache folders. With world_size > 1,
    torch.distributed must be initialised (`tools/precompute.py` does it). `overwrite`: see `stale_items`."""
    from dit_video_concat import DTYPES

    cp_size = configured_cp_size(model_config)
    groups, group, writer = world_size // cp_size, rank // cp_size, rank % cp_size == 0
    jobs, caches, starts = [], cache_folders(output, data_dirs), []
    keys = POSTERIOR_KEYS + tuple(embedding_key(e["input_key"]) for e in text_embedders(model_config))
    for data_dir, cache in zip(data_dirs, caches):
        if not Path(data_dir).is_dir():
            raise InputError(f"data folder {data_dir} does not exist")
        try:
            dataset = SFTDataset(data_dir, **data_params)
        except ValueError as err:
            raise InputError(str(err)) from None
        manifest = build_manifest(dataset, Path(data_dir), model_config, data_params, dtype_name)
        stale = stale_items(cache, manifest, overwrite)
        starts.append((cache, manifest, stale))
        for index, item in enumerate(manifest["items"]):
            redo = item["name"] in stale
            if index % groups == group and (redo or not is_complete(item_file(cache, ITEMS_DIR, item["name"]), keys)):
                jobs.append(Job(dataset, index, cache, item["name"], redo))
    barrier()  # every process has its jobs (the group's processes the same ones) before process 0 changes the cache
    if rank == 0:
        for start in starts:
            start_cache(*start)
    barrier()
    show = rank == 0
    if show:
        print(f"precompute: {len(jobs)} item(s) to encode on this process ({world_size} process(es), VAE cp_size "
              f"{cp_size}), on {device}")
    if writer:
        run_t5_pass(jobs, model_config, device, DTYPES[dtype_name], show)
    build = any_process_has(len(jobs), device) if cp_size > 1 else None
    run_vae_pass(jobs, model_config, device, DTYPES[dtype_name], show, writer, build)
    barrier()  # every item is written when process 0 reports the caches
    return caches


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def any_process_has(count: int, device: torch.device) -> bool:
    """Whether `count` > 0 on any process (all processes call it)."""
    total = torch.tensor([count], device=device)
    dist.all_reduce(total)
    return bool(total.item())


def precision(deepspeed_config: dict, cuda: bool) -> str:
    """The engine's precision for these configs, as `arguments.choose_precision` decides it (fp16 without CUDA
    falls back to fp32): the encoders run in it, as the engine casts them."""
    if deepspeed_config.get("bf16", {}).get("enabled", False):
        return "bf16"
    if deepspeed_config.get("fp16", {}).get("enabled", False) and cuda:
        return "fp16"
    return "fp32"


def process_layout() -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's variables; CUDA device LOCAL_RANK when there is one."""
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        return rank, world_size, torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return rank, world_size, torch.device("cpu")
