"""Is an output folder writable? Checked before the model is built, so a bad path fails in seconds, not after sampling
or at the first checkpoint save."""

import os
import tempfile

from input_errors import InputError


def check_writable_folder(path: str, option: str) -> None:
    """InputError naming `option` and `path` unless `path` is a writable folder or can be created as one.

    The nearest existing ancestor must be a folder this process may write into, and writing is tried: a probe folder
    holding a probe file is created there and removed (permissions alone do not tell: root may "write" into /proc,
    where nothing can be created). Nothing is left behind."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{option} {path!r} cannot be created: {existing!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path!r} cannot be written: no write permission on {existing!r}")
    try:
        probe = tempfile.mkdtemp(prefix=".write-check-", dir=existing)
    except OSError as err:
        raise InputError(f"{option} {path!r} cannot be written: creating a folder in {existing!r} failed "
                         f"({err.strerror})") from None
    try:
        with open(os.path.join(probe, "probe"), "wb") as handle:
            handle.write(b"x")
    except OSError as err:
        raise InputError(f"{option} {path!r} cannot be written: creating a file in {existing!r} failed "
                         f"({err.strerror})") from None
    finally:
        for name in os.listdir(probe):
            os.remove(os.path.join(probe, name))
        os.rmdir(probe)
