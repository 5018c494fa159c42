"""The engine-level keys of the YAML's `model:` section, read once into a typed, checked `EngineConfig`.

Required: the keys every released config sets (a missing `scale_factor` would silently scale latents by 1.0).
Optional keys have their default written here, the one place; a key outside both lists is an error. Each error
names the config files and the key.
"""

from dataclasses import MISSING, dataclass, fields
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from sgm.modules.diffusionmodules.sigma_sampling import check_group_num
from sgm.util import ConfigError, check_config_tree, plain, unknown_key_error

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
    # true (the released 1.5 T2V config): a batch's `mp4` may hold unscaled VAE latents (b, c, t, h, w) as the
    # reference reads them; batches of pixels (video folders) and latent caches are taken as with false
    latent_input: bool = False
    noised_image_dropout: float = 0.0  # image-to-video: probability of dropping the image condition (the
    # reference's default; the released I2V configs set 0.05)
    noised_image_all_concat: bool = False  # read by no reference code at false (the released 1.5 I2V config);
    # true (the image latent concatenated to every frame) is not implemented and refused
    augmentation_dropout: float = 0.0  # read by no reference code (the released 1.5 I2V config sets 0.15): no effect
    lora_train: bool = False  # the reference 1.5's switch, which trains nothing; true is refused (see LORA_ROUTE)
    # CogVideoX1.5-I2V's ofs embedding input (networks with ofs_embed_dim only): the reference's 1.5
    # sample_video.py passes tensor([2.0]), diffusers' training scripts 2.0; sampling, training and validation use it
    ofs: float | None = 2.0
    # The image latent as a multiple of the raw posterior sample z (image-to-video). Training: None = scale_factor
    # (the reference's shared_step, 0.7 z). Sampling: None = the family's reference value (model_family.py:
    # scale_factor for 1.0, 1.0 for 1.5, i.e. z). diffusers' CogVideoXImageToVideoPipeline with the 1.5 VAE's
    # `invert_scale_latents: true` feeds z / 0.7 (1 / scale_factor).
    image_latent_training_scale: float | None = None
    image_latent_sampling_scale: float | None = None


LORA_ROUTE = ("network_config.params.modules.lora_config: {target: sat.model.finetune.lora2.LoraMixin, params: "
              "{r: 128}} with model.not_trainable_prefixes: ['all'] (configs/cogvideox1.5_5b_lora.yaml)")

REQUIRED_HINTS = {
    "scale_factor": "the latent scale: 1.15258426 for CogVideoX-2B, 0.7 for 5B",
    "disable_first_stage_autocast": "true, as the released configs",
    "log_keys": "e.g. [txt], as the released configs",
}


def _valid(expected: Any, value: Any) -> bool:
    if expected == float | None:
        return value is None or _valid(float, value)
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
        raise unknown_key_error(sources, f"model.{unknown[0]}", allowed)
    check_config_tree(model_config, "model", sources)  # the targets' params, before anything is built
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
    if config.noised_image_all_concat:
        raise ConfigError(f"{where}: model.noised_image_all_concat: true (the image latent concatenated to every "
                          "frame) is not implemented; expected false (the released 1.5 I2V config's value)")
    if config.lora_train:
        raise ConfigError(f"{where}: model.lora_train: true trains nothing in the reference (no parameter matches its "
                          f"'lora_layer' names); for LoRA use {LORA_ROUTE}, and remove lora_train")
    if config.latent_input and config.noised_image_input:
        raise ConfigError(f"{where}: model.latent_input: true with noised_image_input: true: the image condition is "
                          "encoded from the batch's pixels; expected latent_input: false (the released 1.5 I2V config)")
    check_ofs(config, model_config, where)
    return config


def check_ofs(config: EngineConfig, model_config: DictConfig, where: str) -> None:
    """`ofs` must be a number for a network with an ofs embedding (CogVideoX1.5-I2V)."""
    has_ofs = OmegaConf.select(model_config, "network_config.params.ofs_embed_dim", default=None) is not None
    if has_ofs and config.ofs is None:
        raise ConfigError(f"{where}: model.ofs is null but the network has an ofs embedding (ofs_embed_dim); "
                          "expected a number: 2.0, the reference's value")
    if not has_ofs and "ofs" in model_config:
        raise ConfigError(f"{where}: model.ofs is set but the network has no ofs embedding (network_config.params."
                          "ofs_embed_dim, CogVideoX1.5-I2V): remove it")
    params = model_config.network_config.params
    image_input = int(params.in_channels) == 2 * int(params.out_channels)
    for name in ("image_latent_training_scale", "image_latent_sampling_scale"):
        if name in model_config and not image_input:
            raise ConfigError(f"{where}: model.{name} is set but the network takes no image latent (in_channels = "
                              "2 x out_channels for image-to-video): remove it")


def check_sigma_sampler_groups(model_config: DictConfig, data_parallel_world_size: int, sources: Sequence[str]) -> None:
    """Before the model is built: the loss's `uniform_sampling` / `group_num` can split this many ranks."""
    params = OmegaConf.select(model_config, "loss_fn_config.params.sigma_sampler_config.params", default=None)
    if params is None or not params.get("uniform_sampling", False) or params.get("group_num") is None:
        return
    try:
        check_group_num(data_parallel_world_size, int(params.group_num))
    except ValueError as err:
        raise ConfigError(f"{list(sources)}: model.loss_fn_config.params.sigma_sampler_config.params: {err}") from None
