"""Which datasets of a training run are caches, checked against the run's configs before the model is built.

A run whose every dataset (`train_data` and `valid_data`) is a cache builds neither the T5 nor the VAE encoder
(`PrecomputedInputs`); the VAE decoder only when validation writes decoded videos.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from input_errors import InputError
from latent_cache.dataset import is_cache_folder
from latent_cache.manifest import (MANIFEST_NAME, content_settings, differences, read_manifest, weight_differences,
                                   weight_identities)
from latent_cache.store import ITEMS_DIR, POSTERIOR_KEYS, embedding_key, is_complete, item_file, read_shapes
from model_family import latent_frame_count, vae_space_compression

PRECOMPUTE_HINT = "made by `python tools/precompute.py --base <configs> --output <folder>`"


@dataclass(frozen=True)
class PrecomputedInputs:
    """Every dataset of the run is a cache: the engine takes latents and embeddings from the batch."""

    decode_videos: bool  # validation writes decoded sample videos: the VAE decoder is still needed


def expected_posterior_shape(model_config, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(c, t, h, w) of the posterior halves of an item of `frames` video frames of height x width pixels."""
    encoder = model_config.first_stage_config.params.encoder_config.params
    space = vae_space_compression(model_config)
    return (int(encoder.z_channels), latent_frame_count(frames), height // space, width // space)


def item_shape(model_config, data_params, item: dict) -> tuple[int, int, int, int]:
    """The posterior shape of a manifest item: its bucket's (with buckets), else the run's one size."""
    if "bucket" in item:
        return expected_posterior_shape(model_config, *item["bucket"])
    height, width = (int(v) for v in data_params.video_size)
    return expected_posterior_shape(model_config, int(data_params.max_num_frames), height, width)


def check_cache(folder: str, model_config, data_params, dtype: str) -> None:
    """InputError naming `folder` unless it is a complete cache made with this run's settings and weights."""
    root = Path(folder)
    manifest = read_manifest(root)  # InputError naming the file when it is damaged or foreign
    if manifest is None:
        raise InputError(f"latent cache {folder}: {MANIFEST_NAME} is missing (an interrupted precompute writes it "
                         f"first; run it again), {PRECOMPUTE_HINT}")
    found = differences(manifest["settings"], content_settings(model_config, data_params, dtype))
    try:
        found += weight_differences(manifest["weights"], weight_identities(model_config))
    except FileNotFoundError as err:
        raise InputError(f"latent cache {folder}: cannot check the weights it was made with: {err}") from None
    if found:
        raise InputError(f"latent cache {folder} was made with other settings or weights than this run's configs: "
                         + "; ".join(found) + f". Make a new cache for these configs ({PRECOMPUTE_HINT})")
    if not manifest["items"]:
        raise InputError(f"latent cache {folder} holds no item")
    keys = POSTERIOR_KEYS + tuple(embedding_key(e["input_key"]) for e in manifest["settings"]["text_embedders"])
    for item in manifest["items"]:
        shape = item_shape(model_config, data_params, item)
        path = item_file(root, ITEMS_DIR, item["name"])
        if not is_complete(path, keys):
            raise InputError(f"latent cache {folder}: item {path} is missing or truncated; run precompute again "
                             "with the same arguments to finish the cache")
        shapes = read_shapes(path)
        if any(shapes[key] != shape for key in POSTERIOR_KEYS):
            raise InputError(f"latent cache {folder}: item {path} holds latents of shape {shapes[POSTERIOR_KEYS[0]]}, "
                             f"this run's frame count and video size (or the item's bucket) need {shape}")


def dataset_kind(path: str) -> str:
    """'cache' or 'videos'; InputError for a folder that is neither (missing, empty, foreign)."""
    if is_cache_folder(path):
        return "cache"
    if (Path(path) / "videos").is_dir():
        return "videos"
    video_layout = "a video dataset (videos/<name>.mp4 + labels/<name>.txt)"
    cache_layout = f"a latent cache ({MANIFEST_NAME} + {ITEMS_DIR}/, {PRECOMPUTE_HINT})"
    if not Path(path).exists():
        raise InputError(f"dataset folder {path} does not exist; expected {video_layout} or {cache_layout}")
    raise InputError(f"dataset folder {path} is neither {video_layout} nor {cache_layout}")


def check_run_inputs(args: argparse.Namespace, dtype: str) -> PrecomputedInputs | None:
    """Check every cache among `train_data` / `valid_data`; PrecomputedInputs when all datasets are caches."""
    lists = {"train_data": args.train_data or [], "valid_data": args.valid_data or []}
    kinds = {name: [dataset_kind(path) for path in paths] for name, paths in lists.items()}
    for name, found in kinds.items():
        if len(set(found)) > 1:
            raise InputError(f"{name} {lists[name]} mixes latent caches and video folders; a batch cannot hold "
                             "both: use caches for all of them or for none")
    caches = [path for name, paths in lists.items() for path, kind in zip(paths, kinds[name]) if kind == "cache"]
    if not caches:
        return None
    if args.model_config.get("noised_image_input", False):
        raise InputError(f"{caches[0]}: training from a latent cache is not supported for image-to-video configs "
                         "(noised_image_input); train from the video folders")
    trainable = [e["input_key"] for e in args.model_config.conditioner_config.params.emb_models if e.get("is_trainable")]
    if trainable:
        raise InputError(f"{caches[0]}: the text embedder of {trainable} is trained; a cache holds frozen outputs")
    for path in dict.fromkeys(caches):
        check_cache(path, args.model_config, args.data_config.params, dtype)
    if len(caches) < sum(len(paths) for paths in lists.values()):
        return None
    return PrecomputedInputs(decode_videos=bool(lists["valid_data"]) and not args.only_log_video_latents)
