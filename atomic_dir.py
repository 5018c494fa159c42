"""Publishing a checkpoint folder atomically: write under a staging name, rename into place, then `latest`.

A crash at any point leaves `latest` naming a complete folder: the new folders appear only by rename, and
`latest` is replaced (temp file + rename) only after them.
"""

import os
import shutil
import tempfile
from pathlib import Path

import torch

STAGING_PREFIX = ".staging-"


def staging_dir(save_dir: str | os.PathLike, iteration: int) -> Path:
    """Where every rank writes its part of checkpoint `iteration` before it is published."""
    return Path(save_dir) / f"{STAGING_PREFIX}{iteration}"


def clear_stale_staging(save_dir: str | os.PathLike) -> None:
    """Remove staging folders a killed run left behind (only our own `.staging-*` names)."""
    for path in Path(save_dir).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path)


def save_durably(obj: object, path: str | os.PathLike) -> None:
    """`torch.save` and fsync, so a published folder never holds a file still in the page cache only."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def publish(staging: Path, save_dir: str | os.PathLike, iteration: int) -> list[Path]:
    """Rename every folder under `staging` into `save_dir` (replacing same-named ones), then point `latest` at
    `iteration` and remove `staging`. Returns the published folders."""
    save_dir = Path(save_dir)
    published = []
    for child in sorted(staging.iterdir()):
        final = save_dir / child.name
        if final.exists():
            retired = Path(tempfile.mkdtemp(dir=save_dir, prefix=f"{STAGING_PREFIX}retired-"))
            os.replace(final, retired / child.name)
            os.replace(child, final)
            shutil.rmtree(retired)
        else:
            os.replace(child, final)
        published.append(final)
    write_text_atomically(save_dir / "latest", str(iteration))
    shutil.rmtree(staging)
    return published
