"""The cache manifest: what a cache was made from, and the comparison with a training run's configs.

`<cache>/cache_manifest.json` holds:
    format, version        this file's kind
    settings               every config value that changes the cached content: the `data:` parameters (frame
                           selection and resizing), the VAE encoder and posterior configs, the text embedders'
                           configs (weight folder excepted), and the precision the encoders ran in; not
                           `cp_size`: the VAE's time split changes the posterior by under 1e-5 relative, so a cache
                           made with one cp_size serves a run with another
    weights                identity of the VAE and T5 weight files: name, size, modification time (stat only, so a
                           training run checks them without reading 10 GB)
    source                 the video folder, and each source file's size and modification time (a changed file is
                           re-encoded when precompute runs again)
    items                  the items the cache must hold, in the dataset's order (sorted by video path); with
                           `data.params.buckets`, each item's bucket [frames, height, width] too
"""

import json
import os
from pathlib import Path
from typing import Any

from input_errors import InputError, listed
from sgm.util import plain
from text_files import read_json

MANIFEST_NAME = "cache_manifest.json"
FORMAT = "cogvideox-latent-cache"
VERSION = 1
# data: parameters that change what a cached item holds (all of SFTDataset's parameters do).
DATA_SETTINGS = ("video_size", "fps", "max_num_frames", "skip_frms_num", "buckets")
VAE_WEIGHT_KEY = "ckpt_path"
T5_WEIGHT_KEY = "model_dir"
T5_WEIGHT_FILES = ("config.json", "spiece.model", "model.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin")


def file_identity(path: Path) -> list[int]:
    """[size, mtime_ns]: what tells one weight or source file from another without reading it."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def weight_identity(path: str, kind: str) -> dict:
    """{"path": absolute path, "files": {name: [size, mtime_ns]}} of a VAE file or a T5 folder (its shards too)."""
    root = Path(path).expanduser().resolve()
    if kind == "vae":
        files = {root.name: file_identity(root)} if root.is_file() else {}
    else:
        names = [n for n in T5_WEIGHT_FILES if (root / n).is_file()]
        names += sorted(p.name for p in root.glob("model-*-of-*.safetensors"))
        files = {name: file_identity(root / name) for name in names}
    if not files:
        raise FileNotFoundError(f"{kind} weights {str(root)!r} (named by the configs) not found")
    return {"path": str(root), "files": files}


def text_embedders(model_config) -> list[dict]:
    """The conditioner's `emb_models` entries, as plain dicts."""
    return plain(model_config.conditioner_config.params.emb_models)


def content_settings(model_config, data_params, dtype: str) -> dict:
    """The config values that change a cached item (weight paths excepted: they are compared by identity)."""
    vae = plain(model_config.first_stage_config.params)
    embedders = []
    for entry in text_embedders(model_config):
        params = {k: v for k, v in entry.get("params", {}).items() if k != T5_WEIGHT_KEY}
        embedders.append({"target": entry["target"], "input_key": entry["input_key"], "params": params})
    data = plain(data_params)
    return {
        "data": {key: data[key] for key in DATA_SETTINGS if key in data},
        "vae": {"encoder_config": vae["encoder_config"], "regularizer_config": vae["regularizer_config"]},
        "text_embedders": embedders,
        "dtype": dtype,
    }


def weight_identities(model_config) -> dict:
    vae = weight_identity(model_config.first_stage_config.params[VAE_WEIGHT_KEY], "vae")
    t5 = [weight_identity(entry["params"][T5_WEIGHT_KEY], "t5") for entry in text_embedders(model_config)]
    return {"vae": vae, "text_embedders": t5}


def differences(made: Any, wanted: Any, where: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values, e.g. 'data.max_num_frames: cache 9, run 5'."""
    if isinstance(made, dict) and isinstance(wanted, dict):
        found = []
        for key in sorted(set(made) | set(wanted)):
            name = f"{where}.{key}" if where else str(key)
            if key not in made:
                found.append(f"{name}: not in the cache, run has {wanted[key]!r}")
            elif key not in wanted:
                found.append(f"{name}: cache has {made[key]!r}, not in the run")
            else:
                found += differences(made[key], wanted[key], name)
        return found
    lists_of_dicts = isinstance(made, list) and isinstance(wanted, list) and all(
        isinstance(v, dict) for v in made + wanted)
    if lists_of_dicts and len(made) == len(wanted):
        return [d for i, (a, b) in enumerate(zip(made, wanted)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if made == wanted else [f"{where}: cache {made!r}, run {wanted!r}"]


def weight_differences(made: dict, wanted: dict) -> list[str]:
    """Weights differ when a file's name, size or modification time differs (the folder may have moved)."""
    found = []
    pairs = [("VAE", made["vae"], wanted["vae"])]
    pairs += [(f"T5 #{i}", a, b) for i, (a, b) in enumerate(zip(made["text_embedders"], wanted["text_embedders"]))]
    if len(made["text_embedders"]) != len(wanted["text_embedders"]):
        found.append(f"text embedders: cache has {len(made['text_embedders'])}, run {len(wanted['text_embedders'])}")
    for name, a, b in pairs:
        changed = [file for file in sorted(set(a["files"]) | set(b["files"])) if a["files"].get(file) != b["files"].get(file)]
        if changed:
            found.append(f"{name} weights: {listed(changed)} differ in name, size or time (cache made from {a['path']}, "
                         f"run uses {b['path']})")
    return found


def write_manifest(folder: Path, manifest: dict) -> None:
    """Atomically (temp file + rename): a crash never leaves a half-written manifest."""
    temp = folder / f".{MANIFEST_NAME}.{os.getpid()}"
    temp.write_text(json.dumps(manifest, indent=1))
    os.replace(temp, folder / MANIFEST_NAME)


def read_manifest(folder: Path) -> dict | None:
    """The manifest, or None when there is none; InputError naming the file when it is not one of ours (or damaged:
    `text_files.read_json`, with the line and column)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = read_json(path, "a latent cache manifest (tools/precompute.py writes it)")
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a cache manifest (no 'format': {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path}: cache format version {manifest.get('version')}, this code reads {VERSION}")
    return manifest
