"""Reading the JSON and YAML files the user gives (configs, pipeline folders, manifests, tokenizer files): one reader
per format, whose every failure is one `InputError` naming the file, and the line and column of the problem
(1-based, as editors count them), never a JSONDecodeError or YAML traceback. Weight files: `checkpoints/weight_files.py`.
"""

import io
import json
import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from input_errors import InputError


def _text(path: Path, expected: str) -> str:
    """The file's text; InputError for a missing file, a folder, or bytes that are not UTF-8."""
    if not path.is_file():
        raise InputError(f"{path} not found; expected {expected}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(f"{path} is not UTF-8 text (line {line}, column {column}: byte 0x{data[err.start]:02x}); "
                         f"expected {expected}") from None


def read_json(path: str | os.PathLike, expected: str, kind: type = dict) -> Any:
    """The JSON value of `path`, which must be a `kind` (a dict: an object; None: any value); `expected` says what
    the file should be, for the message."""
    path = Path(path)
    try:
        value = json.loads(_text(path, expected))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                         f"expected {expected}") from None
    if kind is not None and not isinstance(value, kind):
        raise InputError(f"{path} holds a JSON {type(value).__name__}, not an {'object' if kind is dict else kind.__name__}; "
                         f"expected {expected}")
    return value


def check_json_files(folder: str | os.PathLike, expected: str) -> None:
    """Every `*.json` file directly in `folder` parses (a tokenizer or model folder that a library reads later)."""
    for path in sorted(Path(folder).glob("*.json")):
        read_json(path, expected, kind=None)


def read_yaml(path: str | os.PathLike, what: str = "config file") -> DictConfig | ListConfig:
    """`OmegaConf.load(path)`; text that is not YAML is an InputError with the line and column of the problem (and of
    its context, e.g. the opening bracket of a list never closed)."""
    text = _text(Path(path), f"a {what} (YAML)")
    try:
        return OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        context_mark = getattr(err, "context_mark", None)
        if context and context_mark is not None:
            problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
        raise InputError(f"{what} {where}: not valid YAML: {problem}") from None
