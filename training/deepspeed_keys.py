"""Keys of the `deepspeed:` section that DeepSpeed will not read, found before the model is built.

DeepSpeed reads its top-level keys with `dict.get` (a typo is silently a default), and its pydantic sections refuse
unknown keys only when the engine starts, after the build. Here, from DeepSpeed's own definitions: a top-level key
must be one of its config key constants or a section name `deepspeed/runtime/config.py` reads by literal;
`activation_checkpointing` keys must be that section's constants; `zero_optimization`, `fp16`, `bf16` go through
DeepSpeed's pydantic models. The constants over-approximate the keys, so a key refused here is certainly not read;
errors name the config file, the key and the close matches.
"""

import inspect
import re
import typing
from types import ModuleType
from typing import Any, Mapping, Sequence

from sgm.util import ConfigError, files_setting, unknown_key_error


def _string_constants(module: ModuleType) -> set[str]:
    return {value for name, value in vars(module).items() if name.isupper() and isinstance(value, str)}


def top_level_keys() -> set[str]:
    """Every top-level key DeepSpeed's config parser may read."""
    from deepspeed.runtime import config as ds_config
    from deepspeed.runtime.activation_checkpointing import config as ds_activation

    literals = set(re.findall(r'param_dict(?:\.get)?[\[(]"(\w+)"', inspect.getsource(ds_config)))
    return _string_constants(ds_config) | {ds_activation.ACT_CHKPT} | literals


def activation_checkpointing_keys() -> set[str]:
    from deepspeed.runtime.activation_checkpointing import config as ds_activation

    return _string_constants(ds_activation) - {ds_activation.ACT_CHKPT}


def _refuse_unread(keys: Sequence[str], allowed: set[str], sources: Sequence[str], section: str) -> None:
    unread = sorted(set(keys) - allowed)
    if unread:
        raise unknown_key_error(sources, f"{section}.{unread[0]}", allowed, "is a key DeepSpeed does not read")


def check_deepspeed_config(config: Mapping[str, Any], sources: Sequence[str]) -> None:
    """Raise ConfigError naming the files and key for a `deepspeed:` key DeepSpeed would ignore or refuse."""
    from deepspeed.runtime.precision_config import (DeepSpeedBF16Config, DeepSpeedFP16Config, get_bfloat16_config,
                                                    get_float16_config)
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig, get_zero_config

    _refuse_unread(list(config), top_level_keys(), sources, "deepspeed")
    section = config.get("activation_checkpointing") or {}
    _refuse_unread(list(section), activation_checkpointing_keys(), sources, "deepspeed.activation_checkpointing")
    where = f"deepspeed section of {list(sources)}"
    for name, parse, model in (("zero_optimization", get_zero_config, DeepSpeedZeroConfig),
                               ("fp16", get_float16_config, DeepSpeedFP16Config),
                               ("bf16", get_bfloat16_config, DeepSpeedBF16Config)):
        try:
            parse(dict(config))
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            if not hasattr(err, "errors"):
                raise ConfigError(f"{where}: {name}: {err}") from None
            first = err.errors()[0]
            dotted = ".".join(["deepspeed", name, *map(str, first["loc"])])
            if first["type"] == "extra_forbidden":
                raise unknown_key_error(sources, dotted, pydantic_keys(model, first["loc"][:-1]),
                                        "is a key DeepSpeed does not take") from None
            raise ConfigError(f"{', '.join(files_setting(sources, dotted))}: {dotted}: {first['msg']}") from None


def pydantic_keys(model: type, path: Sequence[str]) -> set[str]:
    """The field names and aliases of the pydantic `model`'s sub-model at `path` (DeepSpeed's config sections)."""
    from pydantic import BaseModel

    for part in path:
        field = next(f for n, f in model.model_fields.items() if part in (n, f.alias))
        model = next(t for t in (field.annotation, *typing.get_args(field.annotation))
                     if isinstance(t, type) and issubclass(t, BaseModel))
    return {alias for n, f in model.model_fields.items() for alias in (n, f.alias) if alias}
