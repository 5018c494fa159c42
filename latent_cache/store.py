"""One safetensors file per cached item, published by rename so a half-written file never counts.

`<cache>/items/<video path relative to videos/>.safetensors` holds
    posterior_mean, posterior_logvar   (c, t, h, w): the VAE encoder's moments split in two, before any sampling
    <input_key>_embedding              (L, D): each text embedder's output for the caption (e.g. txt_embedding)
and, as metadata, the caption, the item's frame count and fps. The T5 pass first writes the embeddings alone to
`<cache>/parts/<name>.safetensors`; the VAE pass completes the item and removes the part.
"""

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sgm.modules.encoders.precomputed import embedding_key  # noqa: F401  (the embeddings' keys, re-exported)

ITEMS_DIR = "items"
PARTS_DIR = "parts"
POSTERIOR_KEYS = ("posterior_mean", "posterior_logvar")
METADATA_KEYS = ("caption", "num_frames", "fps")


def item_file(folder: Path, subdir: str, name: str) -> Path:
    return folder / subdir / f"{name}.safetensors"


def save_atomically(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Write beside the target under a dot-name, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(temp), metadata=metadata)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def complete_size(path: Path) -> int | None:
    """The size a safetensors file must have according to its header; None when the header is unreadable."""
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
    except (struct.error, ValueError, OSError):
        return None
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return 8 + header_len + max(ends, default=0)


def is_complete(path: Path, keys: tuple[str, ...]) -> bool:
    """The file exists, is as long as its header says, and holds `keys`."""
    if not path.is_file() or complete_size(path) != path.stat().st_size:
        return False
    with safe_open(str(path), framework="pt") as handle:
        return set(keys) <= set(handle.keys())


def read_item(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
