"""Reading weight files the user names: an empty, truncated or foreign file is one InputError naming the file and
what was expected, never a torch or safetensors traceback.

The container checks (`check_torch_file`, `check_safetensors_file`) read only a file's size and its directory (a
zip's central directory, a safetensors header), so entry scripts run them before the model is built; the loaders
run them again and turn what the full read still finds (a damaged member, a pickle that is no checkpoint) into the
same kind of message.
"""

import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Iterable

import torch

from input_errors import InputError

LEGACY_TORCH_MAGIC = b"\x80"  # torch.save before torch 1.6 (or with _use_new_zipfile_serialization=False): a pickle
SAFETENSORS_HEADER_BYTES = 8  # little-endian u64: the JSON header's length


def check_torch_file(path: str | os.PathLike, expected: str) -> None:
    """InputError unless `path` is a non-empty file in torch.save's format (a zip archive with its directory, as
    torch >= 1.6 writes; or a legacy pickle). `expected` says what the file should be, for the message."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found; expected {expected}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; expected {expected}")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as handle:
        if handle.read(1) == LEGACY_TORCH_MAGIC:
            return
    raise InputError(f"{path} is not a torch checkpoint (truncated, or another kind of file); expected {expected}")


def load_torch_file(
    path: str | os.PathLike, expected: str, *, trusted: bool = False, mmap: bool = False, safe_globals: Iterable = ()
) -> object:
    """`torch.load(path)` on CPU with `weights_only=True` (plus `safe_globals`), or full unpickling when `trusted`;
    InputError naming the file and `expected` when it cannot be read."""
    check_torch_file(path, expected)
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        reason = f"it pickles {refused[1]}, which weights_only loading refuses" if refused else _first_line(err)
        raise InputError(f"{path} cannot be read safely ({reason}); expected {expected}") from None
    except (EOFError, RuntimeError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"{path} cannot be read as a torch checkpoint ({_first_line(err)}); expected {expected}") from None


def check_safetensors_file(path: str | os.PathLike, expected: str) -> None:
    """InputError unless `path` is a complete safetensors file: an 8-byte header length, a JSON header, and the
    tensors' data ending exactly at the end of the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found; expected {expected}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path} is empty; expected {expected}")
    problem = None
    with open(path, "rb") as handle:
        prefix = handle.read(SAFETENSORS_HEADER_BYTES)
        header_length = struct.unpack("<Q", prefix)[0] if len(prefix) == SAFETENSORS_HEADER_BYTES else size
        if SAFETENSORS_HEADER_BYTES + header_length > size:
            problem = "its header runs past the end of the file"
        else:
            try:
                header = json.loads(handle.read(header_length))
                end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError):
                problem = "its header is not a safetensors header"
            else:
                if SAFETENSORS_HEADER_BYTES + header_length + end != size:
                    problem = f"its tensors need {SAFETENSORS_HEADER_BYTES + header_length + end} bytes, the file has {size}"
    if problem:
        raise InputError(f"{path} is not a complete safetensors file ({problem}: truncated, or another kind of file); "
                         f"expected {expected}")


def load_safetensors_file(path: str | os.PathLike, expected: str) -> dict[str, torch.Tensor]:
    """safetensors' `load_file` after `check_safetensors_file`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors_file(path, expected)
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise InputError(f"{path} cannot be read as safetensors ({_first_line(err)}); expected {expected}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
