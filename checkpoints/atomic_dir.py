"""Publishing a checkpoint folder atomically: write under a staging name, rename into place, then `latest`.

A crash at any point leaves `latest` naming a complete folder: the new folders appear only by rename, and
`latest` is replaced (temp file + rename) only after them. Re-saving an iteration whose folder exists swaps the
two folders in one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`); where the file system cannot exchange,
the old folder is first moved to `.staging-retired-<name>`, and a run resumed after a crash between the two
renames puts it back (`clear_stale_staging`). Renames are made durable by fsyncing the folder. Files and folders
written here get the modes the umask gives (temporary files are created 0600 / 0700 and are widened). The tools'
output folders are written by `checkpoints.output_folder.write_output`, which never replaces a folder of the user's whole.
"""

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import torch

STAGING_PREFIX = ".staging-"
RETIRED_PREFIX = f"{STAGING_PREFIX}retired-"
RENAME_EXCHANGE = 2  # linux/fs.h: swap the two paths atomically
AT_FDCWD = -100


def staging_dir(save_dir: str | os.PathLike, iteration: int) -> Path:
    """Where every rank writes its part of checkpoint `iteration` before it is published."""
    return Path(save_dir) / f"{STAGING_PREFIX}{iteration}"


def umask_mode(path: str | os.PathLike) -> None:
    """Give `path` the mode a plain `open` / `mkdir` would (0666 / 0777 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the renames inside folder `path` durable."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def clear_stale_staging(save_dir: str | os.PathLike) -> None:
    """Clean what a killed run left in `save_dir`: a retired folder whose published copy is gone (a crash between
    publish's two renames) is renamed back into place; every other `.staging-*` folder is removed."""
    save_dir = Path(save_dir)
    for retired in sorted(save_dir.glob(f"{RETIRED_PREFIX}*")):
        final = save_dir / retired.name[len(RETIRED_PREFIX):]
        if not final.exists():
            os.replace(retired, final)
    for path in save_dir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path)
    if save_dir.is_dir():
        fsync_dir(save_dir)


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
    umask_mode(handle.name)
    os.replace(handle.name, path)
    fsync_dir(path.parent)


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, f"cannot exchange {first} and {second}: {os.strerror(code)}")


def replace_folder(new: Path, final: Path) -> None:
    """Put folder `new` at `final`, which exists; at every instant one complete folder is at `final` or (after
    a crash on file systems without exchange) at its retired name, where `clear_stale_staging` finds it."""
    if exchange(new, final):
        shutil.rmtree(new)  # now holds the old folder
        return
    retired = final.parent / f"{RETIRED_PREFIX}{final.name}"
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(final, retired)
    os.replace(new, final)
    fsync_dir(final.parent)
    shutil.rmtree(retired)


def publish(staging: Path, save_dir: str | os.PathLike, iteration: int) -> list[Path]:
    """Rename every folder under `staging` into `save_dir` (replacing same-named ones), then point `latest` at
    `iteration` and remove `staging`. Returns the published folders."""
    save_dir = Path(save_dir)
    published = []
    for child in sorted(staging.iterdir()):
        final = save_dir / child.name
        if final.exists():
            replace_folder(child, final)
        else:
            os.replace(child, final)
        published.append(final)
    fsync_dir(save_dir)
    write_text_atomically(save_dir / "latest", str(iteration))
    shutil.rmtree(staging)
    return published


def save_torch_atomically(obj: object, path: Path) -> None:
    """`torch.save` (durably) under a temporary name, given the umask's mode, then renamed to `path`."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_durably(obj, temp)
        umask_mode(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file` (which creates files 0600) under a temporary name, given the umask's mode, then
    renamed to `path`."""
    from safetensors.torch import save_file

    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(temp), metadata=metadata)
        umask_mode(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
