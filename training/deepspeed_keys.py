"""Keys of the `deepspeed:` section that DeepSpeed will not read, found before the model is built.

DeepSpeed reads its top-level keys with `dict.get` (a typo is silently a default) while its `zero_optimization`,
`fp16` and `bf16` sections are pydantic models that refuse unknown keys, but only when the engine starts, after the
model was built. Here, from DeepSpeed's own definitions:
- a top-level key must be one of DeepSpeed's config key constants (`deepspeed.runtime.config` and the modules it
  reads sections with) or a section name `deepspeed/runtime/config.py` reads by literal;
- `activation_checkpointing` keys must be that section's constants (also read with `dict.get`);
- `zero_optimization`, `fp16`, `bf16` are validated by DeepSpeed's pydantic models now.
The constants over-approximate what DeepSpeed reads (they include some values that are not keys), so a key refused
here is certainly not read; errors name the config files, the key and the close matches.
"""

import difflib
import inspect
import re
from types import ModuleType
from typing import Any, Mapping, Sequence

from sgm.util import ConfigError


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


def _refuse_unread(keys: Sequence[str], allowed: set[str], where: str, section: str) -> None:
    unread = sorted(set(keys) - allowed)
    if unread:
        hints = [f"{key} (did you mean {close}?)" if (close := difflib.get_close_matches(key, allowed, n=2)) else key
                 for key in unread]
        raise ConfigError(f"{where}: {section} key(s) DeepSpeed does not read: {', '.join(hints)}")


def check_deepspeed_config(config: Mapping[str, Any], sources: Sequence[str]) -> None:
    """Raise ConfigError naming the files and key for a `deepspeed:` key DeepSpeed would ignore or refuse."""
    from deepspeed.runtime.precision_config import get_bfloat16_config, get_float16_config
    from deepspeed.runtime.zero.config import get_zero_config

    where = f"deepspeed section of {list(sources)}"
    _refuse_unread(list(config), top_level_keys(), where, "top-level")
    section = config.get("activation_checkpointing") or {}
    _refuse_unread(list(section), activation_checkpointing_keys(), where, "activation_checkpointing")
    for name, parse in (("zero_optimization", get_zero_config), ("fp16", get_float16_config), ("bf16", get_bfloat16_config)):
        try:
            parse(dict(config))
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            problems = [f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()] if hasattr(err, "errors") else [f"{name}: {err}"]
            raise ConfigError(f"{where}: {'; '.join(problems)}") from None
