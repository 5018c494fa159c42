"""The dataset of a cache folder: items in the order of the video dataset it was made from."""

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from buckets.spec import Bucket
from latent_cache.manifest import MANIFEST_NAME, read_manifest
from latent_cache.store import ITEMS_DIR, item_file, read_item


def is_cache_folder(path: str | Path) -> bool:
    """A folder precompute wrote into (its manifest or its items folder is there), complete or not."""
    return (Path(path) / MANIFEST_NAME).is_file() or (Path(path) / ITEMS_DIR).is_dir()


class LatentCacheDataset(Dataset):
    """Items: {"posterior_mean", "posterior_logvar": (c, t, h, w), "<input_key>_embedding": (L, D), "txt": str,
    "num_frames": int, "fps": int}. Index i is the i-th usable video of the source folder, as in `SFTDataset`,
    so a run from the cache visits the same items in the same order. Check the cache first
    (`latent_cache.run_inputs.check_cache`). `item_buckets`: each item's bucket, as `SFTDataset`'s (None without)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        if manifest is None:
            raise FileNotFoundError(f"{self.folder}: no {MANIFEST_NAME}")
        self.names = [item["name"] for item in manifest["items"]]
        bucketed = manifest["settings"]["data"].get("buckets") is not None
        self.item_buckets = [Bucket(*item["bucket"]) for item in manifest["items"]] if bucketed else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        tensors, metadata = read_item(item_file(self.folder, ITEMS_DIR, self.names[index]))
        return {**tensors, "txt": metadata["caption"], "num_frames": int(metadata["num_frames"]),
                "fps": int(metadata["fps"])}
