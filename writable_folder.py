"""Is an output folder writable? Checked before the model is built, so a bad path fails in seconds, not after sampling
or at the first checkpoint save."""

import os

from input_errors import InputError


def check_writable_folder(path: str, option: str) -> None:
    """InputError naming `option` and `path` unless `path` is a writable folder or can be created as one.

    Nothing is created: the nearest existing ancestor must be a folder this process may write into."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{option} {path!r} cannot be created: {existing!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path!r} cannot be written: no write permission on {existing!r}")
