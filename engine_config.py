"""The engine-level keys of the YAML's `model:` section, read once into a typed, checked `EngineConfig`.

Required: the keys every released config sets (a missing `scale_factor` would silently scale latents by 1.0).
Optional keys have their default written here, the one place; a key outside both lists is an error. Each error
names the config files and the key.
"""

from dataclasses import MISSING, dataclass, fields
from typing import Any, Sequence

from omegaconf import DictConfig

from sgm.util import ConfigError, plain

DEFAULT_NETWORK_WRAPPER = "sgm.modules.diffusionmodules.wrappers.OpenAIWrapper"
# Sub-configs the engine instantiates (`target:` + `params:`); the optional ones may be absent (sampling without a
# loss, training without a sampler).
REQUIRED_SUBCONFIGS = ("network_config", "denoiser_config", "conditioner_config", "first_stage_config")
OPTIONAL_SUBCONFIGS = ("sampler_config", "loss_fn_config")


@dataclass(frozen=True)
class EngineConfig:
    """The `model:` keys that are not sub-configs."""

    scale_factor: float  # latents = scale_factor * VAE posterior sample (1.15258426 for 2B, 0.7 for 5B)
    disable_first_stage_autocast: bool  # matches the reference's true: the VAE runs without autocast (false refused)
    log_keys: tuple[str, ...]  # the reference's conditioning-logging keys; eval logs always write the captions
    not_trainable_prefixes: tuple[str, ...] = ("first_stage_model", "conditioner")  # frozen (LoRA: "all")
    input_key: str = "mp4"  # batch key of the video
    network_wrapper: str = DEFAULT_NETWORK_WRAPPER
    compile_model: bool = False  # torch.compile the DiT's forward at its first call (after loading)
    en_and_decode_n_samples_a_time: int | None = None  # VAE batch per call in decode_first_stage (None: all)
    noised_image_input: bool = False  # image-to-video: the first frame's latent is concatenated (the i2v configs)
    latent_input: bool = False  # batches hold pre-encoded latents: not supported (the i2v configs set false)
    noised_image_dropout: float = 0.0  # image-to-video: probability of dropping the image condition (the
    # reference's default; the released I2V configs set 0.05)


REQUIRED_HINTS = {
    "scale_factor": "the latent scale: 1.15258426 for CogVideoX-2B, 0.7 for 5B",
    "disable_first_stage_autocast": "true, as the released configs",
    "log_keys": "e.g. [txt], as the released configs",
}


def _valid(expected: Any, value: Any) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is bool or expected is str:
        return isinstance(value, expected)
    if expected == tuple[str, ...]:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)  # int | None


def read_engine_config(model_config: DictConfig, sources: Sequence[str]) -> EngineConfig:
    """Check the `model:` keys and read the engine-level ones; `sources` (the --base files) name the files."""
    where = f"{list(sources)}"
    allowed = {field.name for field in fields(EngineConfig)} | set(REQUIRED_SUBCONFIGS) | set(OPTIONAL_SUBCONFIGS)
    unknown = sorted(set(model_config) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) model.{unknown}; accepted: {sorted(allowed)}")
    missing = [name for name in REQUIRED_SUBCONFIGS if name not in model_config]
    missing += [field.name for field in fields(EngineConfig) if field.default is MISSING and field.name not in model_config]
    if missing:
        hints = "; ".join(f"model.{name}: {REQUIRED_HINTS.get(name, 'a target: + params: node')}" for name in missing)
        raise ConfigError(f"{where}: required key(s) missing: {hints}")
    values = {}
    for field in fields(EngineConfig):
        if field.name not in model_config:
            continue
        value = model_config[field.name]
        value = plain(value)
        if not _valid(field.type, value):
            raise ConfigError(f"{where}: model.{field.name} must be {field.type}, got {value!r}")
        values[field.name] = tuple(value) if isinstance(value, list) else value
    config = EngineConfig(**values)
    if not config.disable_first_stage_autocast:
        raise ConfigError(f"{where}: model.disable_first_stage_autocast: false is not supported; the VAE always runs "
                          "without autocast here (the released configs set true)")
    if config.latent_input:
        raise ConfigError(f"{where}: model.latent_input: true (training on pre-encoded latents) is not supported; "
                          "expected false")
    return config
