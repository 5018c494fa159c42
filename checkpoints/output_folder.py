"""The rule for every folder a tool writes (docs/output_folders.md): nothing of the user's is deleted or replaced.

A tool writes into a folder that is new or empty, or that holds its own earlier output, recognised by the marker
`.cogvideox-output.json` it leaves there (`{"tool": <script>, "files": [paths relative to the folder]}`); there it
replaces only the files it writes and removes those of its earlier output it no longer writes. Any other folder is
refused (one `InputError`) unless `--overwrite`, which replaces only the files the tool writes. An output that is,
lies inside or contains an input is always refused. All of this is checked before any weight is read.

Writing (`write_output`): a new output is renamed into place whole. Into an existing folder the files staged under
`.staging-output/` (same file system) are renamed into place one by one, stale files of the earlier output removed,
the marker last; a run killed mid-move leaves the staging folder, and the next `check_output_folder` completes it.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from checkpoints.atomic_dir import fsync_dir, umask_mode, write_text_atomically
from input_errors import InputError
from checkpoints.writable_folder import check_writable_folder

# What an output must not overlap: {what: path} or [(what, path)] (a path None: not given)
Inputs = Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]]

MARKER_NAME = ".cogvideox-output.json"
STAGING_NAME = ".staging-output"
SHOWN_NAMES = 3  # a refusal names this many of the folder's entries


@dataclass(frozen=True)
class OutputFolder:
    """A checked output folder: where `tool` may write, and the files of its earlier output there."""

    path: Path
    tool: str
    earlier: tuple[str, ...] = ()
    overwrite: bool = False  # --overwrite: files of the same names as the tool's are replaced, whoever wrote them


def read_marker(folder: Path) -> dict | None:
    """The folder's marker ({"tool", "files"}), or None where there is none or it is not one of ours (files that
    are not plain relative paths inside the folder make it not ours: nothing outside is ever removed)."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("tool"), str) or not isinstance(marker.get("files"), list):
        return None
    inside = all(isinstance(name, str) and name and not os.path.isabs(name) and ".." not in Path(name).parts
                 for name in marker["files"])
    return marker if inside else None


def relation(output: str, other: str) -> str | None:
    """How path `output` stands to path `other`: "is", "lies inside", "contains", or None (resolved paths)."""
    out, oth = os.path.realpath(output), os.path.realpath(other)
    if out == oth:
        return "is"
    if out.startswith(oth.rstrip(os.sep) + os.sep):
        return "lies inside"
    if oth.startswith(out.rstrip(os.sep) + os.sep):
        return "contains"
    return None


def check_not_an_input(path: str | os.PathLike, option: str, inputs: Inputs, contains_allowed: bool = False) -> None:
    """InputError when output `path` is one of `inputs`, lies inside one, or (unless `contains_allowed`: outputs that
    only add new files) contains one."""
    for what, other in (inputs.items() if isinstance(inputs, Mapping) else inputs):
        if other is None:
            continue
        found = relation(str(path), str(other))
        if found is None or (found == "contains" and contains_allowed):
            continue
        raise InputError(f"{option} {str(path)!r} {found} {what} {str(other)!r}: writing there could change what is "
                         "read; choose another folder")


def check_output_folder(path: str | os.PathLike, tool: str, option: str, inputs: Inputs = (),
                        overwrite: bool = False) -> OutputFolder:
    """Where `tool` (its script name) may write output folder `path`, given as `option`; InputError otherwise (see
    the module docstring). A write a killed run left half moved into `path` is completed first."""
    check_writable_folder(str(path), option)
    check_not_an_input(path, option, inputs)
    folder = Path(path)
    if not folder.exists():
        return OutputFolder(folder, tool)
    finish_interrupted_write(folder)
    marker = read_marker(folder)
    if marker is not None and marker["tool"] == tool:
        return OutputFolder(folder, tool, tuple(marker["files"]), overwrite)
    others = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir() if entry.name != MARKER_NAME)
    if not others or overwrite:
        return OutputFolder(folder, tool, (), overwrite)
    shown = ", ".join(others[:SHOWN_NAMES]) + (f", ... ({len(others)} entries)" if len(others) > SHOWN_NAMES else "")
    whose = f"the output of {marker['tool']}" if marker is not None else f"files {tool} did not write"
    raise InputError(f"{option} {str(path)!r} holds {whose} ({shown}): choose a new or empty folder, or pass "
                     f"--overwrite to replace only the files {tool} writes there (the others are kept)")


def check_output_file(path: str | os.PathLike, option: str, inputs: Inputs, overwrite: bool) -> None:
    """An output that is one file (no marker can say who wrote it): refused when it exists, unless `overwrite`, or
    when it is an input or lies inside one."""
    if os.path.isdir(path):
        raise InputError(f"{option} {str(path)!r} is a folder; expected the path of the file to write")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"{option}'s folder")
    check_not_an_input(path, option, inputs)
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{option} {str(path)!r} exists: choose another path, or pass --overwrite to replace it")


def staged_files(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir())


def write_marker(folder: Path, tool: str, files: list[str]) -> None:
    write_text_atomically(folder / MARKER_NAME, json.dumps({"tool": tool, "files": files}, indent=1))


def write_output(output: OutputFolder, write: Callable[[Path], None]) -> list[str]:
    """`write(folder)` into a new folder, then put its files at `output.path` (see the module docstring); returns
    the files written, relative to the output. A failure before the files move leaves the output as it was."""
    path = output.path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
        try:
            write(temp)
            files = staged_files(temp)
            write_marker(temp, output.tool, files)
            umask_mode(temp)
            os.replace(temp, path)  # a folder made meanwhile is replaced only when empty (else OSError)
            fsync_dir(path.parent)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return files
    staging = path / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)  # what a write killed before it was complete left
    try:
        staging.mkdir()
        write(staging)
        files = staged_files(staging)
        check_no_collision(path, files, None if output.overwrite else output.earlier)
        write_marker(staging, output.tool, files)  # last: the staging folder is complete
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    move_staged_files(path, output.earlier)
    return files


def check_no_collision(folder: Path, files: list[str], ours: tuple[str, ...] | None) -> None:
    """InputError when a file to write meets a folder of that name, a folder to write meets a file, or (`ours` not
    None: no --overwrite) a file to write exists and is not one of `ours` (the earlier output's)."""
    for name in files:
        target = folder / name
        blocked = [parent for parent in target.parents if parent != folder and folder in parent.parents
                   and parent.exists() and not parent.is_dir()]
        if target.is_dir() or blocked:
            what = f"{target} is a folder" if target.is_dir() else f"{blocked[0]} is a file"
            raise InputError(f"cannot write {name} into {folder}: {what}; nothing was changed, choose another folder")
        if ours is not None and name not in ours and target.exists():
            raise InputError(f"cannot write {name} into {folder}: a file of that name is there that this tool did not "
                             "write; nothing was changed: choose another folder, or pass --overwrite to replace it")


def move_staged_files(folder: Path, earlier: tuple[str, ...]) -> None:
    """Rename the complete staging folder's files into `folder`, remove the files of the earlier output (`earlier`)
    that were not rewritten, replace the marker, remove the staging folder. Repeatable after a kill at any point."""
    staging = folder / STAGING_NAME
    files = read_marker(staging)["files"]
    for name in files:
        source, target = staging / name, folder / name
        if source.exists():  # else moved before a kill
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    for name in sorted(set(earlier) - set(files)):
        stale = folder / name
        stale.unlink(missing_ok=True)
        for parent in stale.parents:  # folders the earlier output made, once empty
            if parent == folder or folder not in parent.parents or any(parent.iterdir()):
                break
            parent.rmdir()
    fsync_dir(folder)
    os.replace(staging / MARKER_NAME, folder / MARKER_NAME)
    fsync_dir(folder)
    shutil.rmtree(staging)


def finish_interrupted_write(folder: Path) -> None:
    """Complete a write a killed run left with its staging folder complete (its marker written); drop an incomplete
    one (the output was not changed yet)."""
    staging = folder / STAGING_NAME
    if not staging.is_dir():
        return
    staged, current = read_marker(staging), read_marker(folder)
    if staged is None:
        shutil.rmtree(staging)
        return
    same_tool = current is not None and current["tool"] == staged["tool"]
    move_staged_files(folder, tuple(current["files"]) if same_tool else ())
