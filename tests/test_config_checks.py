"""Configs are checked data: the engine's `model:` keys (typed, required), transformer_args the DiT does not honour,
the VAE's double_z, and `deepspeed:` keys DeepSpeed would not read. Errors name the files and the key."""

import copy
import glob

import pytest
from omegaconf import OmegaConf

from engine_config import EngineConfig, read_engine_config
from sgm.util import ConfigError
from training.deepspeed_keys import check_deepspeed_config

MODEL_CONFIGS = sorted(glob.glob("configs/cogvideox_*.yaml") + glob.glob("configs/tiny/cogvideox_*.yaml")
                       + glob.glob("tests/data/v1.0_cogvideox*.yaml"))
SFT_CONFIGS = ["configs/sft.yaml", "configs/tiny/sft_tiny.yaml"]


@pytest.mark.parametrize("path", MODEL_CONFIGS)
def test_released_model_configs_read(path):
    config = read_engine_config(OmegaConf.load(path).model, [path])
    assert config.scale_factor in (1.15258426, 0.7)
    assert config.log_keys == ("txt",)


def test_missing_scale_factor_is_an_error_naming_the_file():
    model = OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model
    del model["scale_factor"]
    with pytest.raises(ConfigError, match=r"\['mine.yaml'\]: required key\(s\) missing: model.scale_factor: the latent scale"):
        read_engine_config(model, ["mine.yaml"])


@pytest.mark.parametrize("key, value, message", [
    ("scale_factor", "0.7", "model.scale_factor must be <class 'float'>"),
    ("compile_model", "yes", "model.compile_model must be <class 'bool'>"),
    ("not_trainable_prefixes", "all", r"model.not_trainable_prefixes must be tuple\[str, ...\]"),
    ("en_and_decode_n_samples_a_time", 0, "model.en_and_decode_n_samples_a_time must be int | None"),
    ("disable_first_stage_autocast", False, "disable_first_stage_autocast: false is not supported"),
    ("noised_image_all_concat", True, "model.noised_image_all_concat: true .* is not implemented; expected false"),
    ("lora_train", True, r"model.lora_train: true trains nothing .*sat.model.finetune.lora2.LoraMixin.*\['all'\]"),
    ("ofs", 2.0, "model.ofs is set but the network has no ofs embedding"),
    ("image_latent_sampling_scale", 1.0, "model.image_latent_sampling_scale is set but the network takes no image"),
    ("scale_facter", 0.7, r"^mine.yaml: model.scale_facter is not a known key; did you mean scale_factor\?$"),
])
def test_bad_engine_keys_are_named(key, value, message):
    model = OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model
    model[key] = value
    with pytest.raises(ConfigError, match=message):
        read_engine_config(model, ["mine.yaml"])


def test_optional_keys_have_their_defaults_in_one_place():
    config = read_engine_config(OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model, [])
    assert config == EngineConfig(scale_factor=1.15258426, disable_first_stage_autocast=True, log_keys=("txt",))
    assert config.not_trainable_prefixes == ("first_stage_model", "conditioner") and config.input_key == "mp4"


@pytest.mark.parametrize("key, off, value", [("is_gated_mlp", False, True), ("num_experts", 1, 4),
                                             ("num_multi_query_heads", 0, 2), ("hidden_dropout", 0, 0.1),
                                             ("inner_hidden_size", None, 128)])
def test_transformer_args_the_dit_ignores_are_refused(key, off, value):
    from dit_video_concat import sat_transformer_args

    args = dict(OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model.network_config.params.transformer_args)
    assert getattr(sat_transformer_args({**args, key: off}, 2, 64, 2), key) == off  # SAT's default ("off") is accepted
    with pytest.raises(ValueError, match=f"transformer_args.{key}={value!r}: the DiT's layers do not implement"):
        sat_transformer_args({**args, key: value}, 2, 64, 2)


def test_double_z_false_is_refused():
    from sgm.util import instantiate_from_config

    for part in ("encoder_config", "decoder_config"):
        config = OmegaConf.to_container(OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model.first_stage_config.params[part])
        config["params"]["double_z"] = False
        with pytest.raises(ValueError, match="double_z: false is not supported"):
            instantiate_from_config(config)


@pytest.mark.parametrize("path", SFT_CONFIGS)
def test_released_deepspeed_sections_pass(path):
    check_deepspeed_config(OmegaConf.to_object(OmegaConf.load(path).deepspeed), [path])


@pytest.mark.parametrize("edit, message", [
    (lambda ds: ds.update(gradient_clippin=1.0), r"deepspeed.gradient_clippin is a key DeepSpeed does not read; did you mean gradient_clipping\?"),
    (lambda ds: ds["activation_checkpointing"].update(partition_activation=True), r"deepspeed.activation_checkpointing.partition_activation is a key DeepSpeed does not read; did you mean partition_activations\?"),
    (lambda ds: ds["zero_optimization"].update(stag=2), r"deepspeed.zero_optimization.stag is a key DeepSpeed does not take; did you mean stage\?"),
    (lambda ds: ds["bf16"].update(enable=True), r"deepspeed.bf16.enable is a key DeepSpeed does not take; did you mean enabled\?"),
    (lambda ds: ds["zero_optimization"].update(stage=5), r"deepspeed.zero_optimization.stage: Input should be 0, 1, 2, 3"),
])
def test_deepspeed_keys_it_would_not_read_are_refused(edit, message):
    ds = copy.deepcopy(OmegaConf.to_object(OmegaConf.load("configs/sft.yaml").deepspeed))
    edit(ds)
    with pytest.raises(ConfigError, match=r"^mine.yaml: " + message):
        check_deepspeed_config(ds, ["mine.yaml"])


@pytest.mark.parametrize("value", [True, False])
def test_parallel_output_in_transformer_args_is_a_message(value):
    """The DiT sets parallel_output itself (the reference overwrites the YAML's); a YAML value used to be a TypeError."""
    from dit_video_concat import sat_transformer_args

    args = dict(OmegaConf.load("configs/tiny/cogvideox_tiny.yaml").model.network_config.params.transformer_args)
    assert sat_transformer_args(args, 2, 64, 2).parallel_output is True
    with pytest.raises(ConfigError, match=r"^transformer_args.parallel_output: set by the DiT itself \(True, as the "
                                          r"reference's DiffusionTransformer overwrites it\); remove it"):
        sat_transformer_args({**args, "parallel_output": value}, 2, 64, 2)
