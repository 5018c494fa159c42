"""The one exception type for bad user input, and how entry scripts report it.

`InputError` is raised for what the user can fix: a missing or unreadable path, a config key or value, a data
folder, a checkpoint that does not fit the config. Entry scripts print its message alone and exit with status 2;
every other exception is a bug and keeps its traceback. Under `launch.py` (several processes) the message
goes to the launcher instead, which prints it once, after every process has stopped.
"""

import difflib
import os
import sys
from contextlib import contextmanager


class InputError(Exception):
    """Bad input from the user; the message names the file, key or value and what was expected."""


EXIT_STATUS = 2
# Set by launch.py for its processes: a folder where each one leaves its bad-input message (`rank<N>`).
MESSAGE_FOLDER_VARIABLE = "COGVIDEOX_INPUT_ERRORS"
SHOWN_ITEMS = 5  # a message lists at most this many names, then "and N more"


def listed(items, shown: int = SHOWN_ITEMS) -> str:
    """`a, b, c` for a message, or the first `shown` items and `and N more`: a message stays one short line."""
    items = [str(item) for item in items]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def suggestion(name: str, accepted) -> str:
    """`did you mean <closest>?` for a mistyped name, else `accepted: <the first few>`: what to change, in short."""
    accepted = sorted(str(item) for item in accepted)
    close = difflib.get_close_matches(str(name), accepted, n=1)
    return f"did you mean {close[0]}?" if close else f"accepted: {listed(accepted)}"


@contextmanager
def input_errors_as_messages():
    """`with input_errors_as_messages(): ...` turns an `InputError` into `error: <message>` on stderr (or into the
    launcher's message folder) and exit 2."""
    try:
        yield
    except InputError as err:
        if not left_with_the_launcher(str(err)):
            print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None


def left_with_the_launcher(message: str) -> bool:
    """Under launch.py: write `message` to its folder, as `rank<RANK>`; False elsewhere (or if that fails)."""
    folder = os.environ.get(MESSAGE_FOLDER_VARIABLE)
    if not folder:
        return False
    try:
        with open(os.path.join(folder, f"rank{os.environ.get('RANK', '0')}"), "w", encoding="utf-8") as handle:
            handle.write(message)
    except OSError:
        return False
    return True
