"""The valid range of every numeric option and config value, in one table, checked before any model is built.

`check_ranges(args, config, paths)` runs in `arguments.get_args` for both entry scripts (and for the pre-launch
check of `launch.py`): a value outside its range (`--sampling-fps 0`, `--batch-size 0`, a learning rate of
0, `num_steps: 0` in the sampler config) is one `InputError` naming the option or key, the value and the range.
Rules that depend on the model or the process count (frame counts of a family, sizes that must match the latent grid,
layouts, `--seed`'s upper bound: `arguments.check_seed`) live beside what they depend on and run after these; this
table only says what makes no sense whatever the model.
"""

import math
from dataclasses import dataclass
from typing import Any, Sequence

from omegaconf import OmegaConf

from input_errors import InputError
from sgm.util import plain


@dataclass(frozen=True)
class Range:
    """An integer or a number between `low` and `high` (either may be open: None); `above` excludes `low` itself."""

    kind: type  # int, or float (which takes integers too)
    low: float | None = None
    high: float | None = None
    above: bool = False  # low < value instead of low <= value
    unset: bool = False  # None (the option left unset) is valid
    each: bool = False  # the value is a list whose items must each be in range

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            text = f"{noun} from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            text = f"{noun} {'>' if self.above else '>='} {self.low:g}"
        else:
            text = f"{noun} <= {self.high:g}"
        return f"a list of {text.replace('an integer', 'integers').replace('a number', 'numbers')}" if self.each else text

    def violated_by(self, value: Any) -> bool:
        if value is None:
            return not self.unset
        if self.each:
            return not isinstance(value, (list, tuple)) or not value or not all(self.holds(item) for item in value)
        return not self.holds(value)


POSITIVE, COUNT = Range(int, 1), Range(int, 0)  # an integer >= 1; an integer >= 0
UNSET_OR_POSITIVE = Range(int, 1, unset=True)
FRACTION = Range(float, 0, 1)

# Command-line options (also set by a config's `args:` section), by attribute name.
OPTION_RANGES: dict[str, Range] = {
    # sampling
    "sampling_fps": POSITIVE,
    "sampling_num_frames": POSITIVE,
    "latent_channels": POSITIVE,
    "batch_size": POSITIVE,
    "sampling_image_size": Range(int, 1, unset=True, each=True),
    "image_short_side": UNSET_OR_POSITIVE,
    "cfg_parallel": Range(int, 1, 2),
    "sequence_parallel": POSITIVE,
    # training
    "train_iters": UNSET_OR_POSITIVE,
    "epochs": UNSET_OR_POSITIVE,
    "eval_batch_size": UNSET_OR_POSITIVE,
    "eval_interval": UNSET_OR_POSITIVE,
    "eval_iters": POSITIVE,
    "exit_interval": UNSET_OR_POSITIVE,
    "log_interval": POSITIVE,
    "save_interval": POSITIVE,
    "num_workers": COUNT,
    "prefetch_factor": POSITIVE,
    "lr": Range(float, 0, above=True),
    "weight_decay": Range(float, 0),
    "warmup": FRACTION,
    "lr_decay_iters": UNSET_OR_POSITIVE,
    "lr_decay_ratio": FRACTION,
    "gradient_accumulation_steps": POSITIVE,
    "checkpoint_num_layers": POSITIVE,
    "model_parallel_size": POSITIVE,
    "checkpoint_skip_layers": COUNT,
    "train_data_weights": Range(int, 0, unset=True, each=True),
    "block_size": POSITIVE,
    "profiling": Range(int, -1),  # -1: off
    # both
    "device": Range(int, -1),  # -1: LOCAL_RANK's GPU (or the CPU)
}

# Config values (dotted keys of the merged --base files); a key that is absent is not checked here.
CONFIG_RANGES: dict[str, Range] = {
    "model.scale_factor": Range(float, 0, above=True),
    "model.noised_image_dropout": FRACTION,
    "model.sampler_config.params.num_steps": POSITIVE,
    "model.sampler_config.params.guider_config.params.scale": Range(float, 0),
    "model.sampler_config.params.guider_config.params.num_steps": POSITIVE,
    "data.params.fps": POSITIVE,
    # null where `buckets` give each item its size and length (a config merged over a one-size file sets them so)
    "data.params.max_num_frames": UNSET_OR_POSITIVE,
    "data.params.video_size": Range(int, 1, unset=True, each=True),
    "data.params.skip_frms_num": Range(float, 0),
    "deepspeed.train_micro_batch_size_per_gpu": POSITIVE,
    "deepspeed.gradient_accumulation_steps": POSITIVE,
    "deepspeed.gradient_clipping": Range(float, 0),
    "deepspeed.optimizer.params.lr": Range(float, 0, above=True),
    "deepspeed.optimizer.params.weight_decay": Range(float, 0),
}


# The tools' numeric options (`check_value`).
ITERATION = Range(int, 0)  # a checkpoint's iteration folder
SCALING_FACTOR = Range(float, 0, above=True)  # the VAE's latent scale


def check_value(flag: str, value: Any, valid: Range) -> None:
    """One option of a tool: InputError naming it, the value and the range."""
    if valid.violated_by(value):
        raise InputError(f"{flag} is {value!r}; expected {valid.describe()}")


def option_flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def check_ranges(args, config, paths: Sequence[str]) -> None:
    """InputError for the first option (then config value) outside its range."""
    for name, valid in OPTION_RANGES.items():
        value = getattr(args, name)
        if valid.violated_by(value):
            raise InputError(f"{option_flag(name)} is {value!r} (command line or args.{name} in {list(paths)}); "
                             f"expected {valid.describe()}")
    for key, valid in CONFIG_RANGES.items():
        if OmegaConf.select(config, key, default="<absent>") == "<absent>":
            continue
        value = plain(OmegaConf.select(config, key))
        if valid.violated_by(value):
            raise InputError(f"{key} is {value!r} in {list(paths)}; expected {valid.describe()}")
