"""Config-driven construction: `target:` import paths resolved to classes, checked before calling.

A config node looks like ``{"target": "pkg.module.Class", "params": {...}}``. Every failure names
the target and the offending key, and lists what would have been accepted, so a typo in a YAML
file is reported at load time instead of silently becoming a default (or a TypeError deep inside).
"""

import importlib
import inspect
import os
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from input_errors import InputError
from text_files import read_yaml


class ConfigError(InputError, ValueError):
    """A config node names an unknown target or passes a parameter the target does not take."""


def load_config_file(path: str, option: str = "--base") -> DictConfig | ListConfig:
    """`OmegaConf.load(path)`: a missing file is a ConfigError naming it and the option; text that is not YAML an
    InputError naming the file, line and column (`text_files.read_yaml`)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} (from {option}) does not exist")
    return read_yaml(path)


def plain(node: Any) -> Any:
    """An OmegaConf node (mapping or list) as plain Python containers, interpolations resolved; other values as they
    are."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def get_obj_from_str(path: str) -> Any:
    """Import ``"pkg.module.Name"`` and return ``Name``; a clear ConfigError if either part is missing."""
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(f"target {path!r} is not an import path of the form 'module.Name'")
    module_name, attr = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"target {path!r}: module {module_name!r} cannot be imported ({err})") from err
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and inspect.isclass(getattr(module, n)))
        raise ConfigError(f"target {path!r}: module {module_name!r} has no {attr!r}; classes there: {public}")
    return getattr(module, attr)


def _as_dict(node: Any) -> dict:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def accepted_parameters(obj: Any) -> tuple[set[str], bool]:
    """Names ``obj(...)`` accepts by keyword, and whether it also takes arbitrary ``**kwargs``."""
    signature = inspect.signature(obj)
    names, takes_any = set(), False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_any = True
        elif param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(param.name)
    return names - {"self"}, takes_any


def check_parameters(target: str, obj: Any, given: Mapping[str, Any]) -> None:
    """Raise ConfigError if ``given`` holds a key ``obj`` does not accept, or misses a required one."""
    names, takes_any = accepted_parameters(obj)
    if not takes_any:
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(
                f"target {target!r}: unknown parameter(s) {unknown}; accepted: {sorted(names)}"
            )
    required = [
        p.name
        for p in inspect.signature(obj).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name != "self"
    ]
    missing = [name for name in required if name not in given]
    if missing:
        raise ConfigError(f"target {target!r}: missing required parameter(s) {missing}")


def instantiate_from_config(config: Mapping[str, Any], **extra: Any) -> Any:
    """Build ``config["target"](**config["params"], **extra)`` after checking the parameters.

    ``extra`` carries values the caller supplies at build time (e.g. ``layer_num`` for a LoRA mixin);
    they override params of the same name.
    """
    if config is None or "target" not in config:
        keys = sorted(config) if isinstance(config, Mapping) else config
        raise ConfigError(f"config node has no 'target' key (got {keys!r})")
    node = _as_dict(config)
    unknown_fields = sorted(set(node) - {"target", "params"})
    if unknown_fields:
        raise ConfigError(f"target {node['target']!r}: unknown field(s) {unknown_fields}; a node holds 'target' and 'params'")
    target = node["target"]
    obj = get_obj_from_str(target)
    params = {**(node.get("params") or {}), **extra}
    check_parameters(target, obj, params)
    return obj(**params)
