"""sgm.util and arguments.py: targets and keys are checked at load time, with messages that name them."""

import os

import pytest
import torch
from omegaconf import OmegaConf

from arguments import apply_config_to_args, build_parser, explicit_options, load_configs
from input_errors import InputError
from sgm.util import ConfigError, get_obj_from_str, instantiate_from_config

REFERENCE_CONFIGS = [
    "cogvideox_2b.yaml", "cogvideox_2b_lora.yaml", "cogvideox_5b.yaml", "cogvideox_5b_lora.yaml", "cogvideox_5b_i2v.yaml",
    "cogvideox_5b_i2v_lora.yaml", "sft.yaml", "inference.yaml", "inference_5b.yaml",
]
# Byte-exact copies of the CogVideoX 1.0 release's configs (tag v1.0), as a user holds them.
RELEASED_1_0 = ["cogvideox_5b", "cogvideox_5b_lora", "cogvideox_5b_i2v", "cogvideox_5b_i2v_lora"]


def test_instantiate_builds_target_with_params():
    layer = instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_features": 2}})
    assert isinstance(layer, torch.nn.Linear) and layer.weight.shape == (2, 3)


def test_extra_overrides_params():
    layer = instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_features": 2}}, out_features=5)
    assert layer.weight.shape == (5, 3)


def test_unknown_parameter_names_target_key_and_accepted():
    with pytest.raises(ConfigError) as err:
        instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_featurs": 2}})
    message = str(err.value)
    assert "torch.nn.Linear" in message and "out_featurs" in message and "out_features" in message


def test_missing_required_parameter_is_named():
    with pytest.raises(ConfigError, match="in_features"):
        instantiate_from_config({"target": "torch.nn.Linear", "params": {"out_features": 2}})


def test_unknown_module_and_unknown_class_are_named():
    with pytest.raises(ConfigError, match="nosuchmodule"):
        get_obj_from_str("nosuchmodule.Thing")
    with pytest.raises(ConfigError, match="Lineer"):
        get_obj_from_str("torch.nn.Lineer")


def test_node_without_target_or_with_unknown_field():
    with pytest.raises(ConfigError, match="target"):
        instantiate_from_config({"params": {}})
    with pytest.raises(ConfigError, match="parms"):
        instantiate_from_config({"target": "torch.nn.Identity", "parms": {}})


@pytest.mark.parametrize("name", REFERENCE_CONFIGS)
def test_released_configs_load_unchanged(name):
    path = os.path.join("configs", name)
    config = load_configs([path])
    args = apply_config_to_args(build_parser().parse_args([]), config, [path])
    if "model" in config:
        assert args.model_config.network_config.target == "dit_video_concat.DiffusionTransformer"


def test_merged_inference_config_sets_options():
    paths = ["configs/cogvideox_2b.yaml", "configs/inference.yaml"]
    args = apply_config_to_args(build_parser().parse_args(["--seed", "7"]), load_configs(paths), paths)
    assert (args.sampling_num_frames, args.sampling_fps, args.latent_channels, args.input_type) == (13, 8, 16, "txt")
    assert args.seed == 7 and args.model_config.scale_factor == pytest.approx(1.15258426)


def test_sft_sections_become_attributes():
    paths = ["configs/cogvideox_2b_lora.yaml", "configs/sft.yaml"]
    args = apply_config_to_args(build_parser().parse_args([]), load_configs(paths), paths)
    assert args.deepspeed_config["zero_optimization"]["stage"] == 2
    assert args.data_config.target == "data_video.SFTDataset"
    assert args.train_data == ["disney"] and args.mode == "finetune"


def test_unknown_args_key_names_file_and_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("args:\n  sampling_num_frame: 13\n")
    with pytest.raises(ConfigError) as err:
        apply_config_to_args(build_parser().parse_args([]), load_configs([str(path)]), [str(path)])
    assert str(path) in str(err.value) and "sampling_num_frame" in str(err.value) and "sampling_num_frames" in str(err.value)


def test_unknown_section_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("argz:\n  seed: 1\n")
    with pytest.raises(ConfigError, match="argz"):
        load_configs([str(path)])
    with pytest.raises(InputError, match="nope.yaml"):
        load_configs([str(tmp_path / "nope.yaml")])


def test_every_target_in_the_configs_resolves():
    """Every `target:` the shipped configs name imports to one of our classes (or torch/sat's)."""

    def targets(node):
        if isinstance(node, dict):
            if "target" in node:
                yield node["target"]
            for value in node.values():
                yield from targets(value)
        elif isinstance(node, list):
            for value in node:
                yield from targets(value)

    names = set()
    for folder in ("configs", "configs/tiny"):
        for name in os.listdir(folder):
            if name.endswith(".yaml"):
                names |= set(targets(OmegaConf.to_container(OmegaConf.load(os.path.join(folder, name)))))
    assert len(names) >= 20
    for name in sorted(names):
        assert callable(get_obj_from_str(name)), name


def test_typed_options_beat_the_yaml_and_yaml_beats_defaults():
    paths = ["configs/cogvideox_2b.yaml", "configs/inference.yaml"]
    argv = ["--base", *paths, "--sampling-num-frames", "9", "--output-dir", "elsewhere"]
    args = apply_config_to_args(build_parser().parse_args(argv), load_configs(paths), paths, explicit_options(argv))
    assert (args.sampling_num_frames, args.output_dir) == (9, "elsewhere")
    assert args.sampling_fps == 8 and args.input_file == "configs/test.txt"  # from the YAML, not the defaults


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback applies only without CUDA")
def test_fp16_without_cuda_falls_back_to_fp32_with_a_warning():
    from arguments import choose_precision

    paths = ["configs/cogvideox_2b_lora.yaml", "configs/sft.yaml"]
    args = apply_config_to_args(build_parser().parse_args([]), load_configs(paths), paths)
    with pytest.warns(UserWarning, match="fp16"):
        choose_precision(args)
    assert args.fp16 is False and args.deepspeed_config["fp16"]["enabled"] is False
    assert args.lr == 0.001 and args.batch_size == 2  # taken from the deepspeed section


@pytest.mark.parametrize("name", RELEASED_1_0)
def test_released_1_0_model_configs_load_and_equal_ours(name):
    """A user's copy of the v1.0 file loads; ours holds the same values; every engine part but the weight-backed
    ones (DiT checked on the meta device in test_dit_schema, T5 and VAE need files) builds from it."""
    from engine_config import read_engine_config

    path = f"tests/data/v1.0_{name}.yaml"
    config = load_configs([path])
    assert config == load_configs([f"configs/{name}.yaml"])
    args = apply_config_to_args(build_parser().parse_args([]), config, [path])
    read_engine_config(args.model_config, [path])
    denoiser, sampler, loss = (instantiate_from_config(args.model_config[part]) for part in ("denoiser_config", "sampler_config", "loss_fn_config"))
    assert (sampler.num_steps, sampler.guider.scale, sampler.guider.num_steps) == (50, 6, 50)
    from sgm.modules.diffusionmodules.discretizer import ZeroSNRDDPMDiscretization

    table = ZeroSNRDDPMDiscretization(shift_scale=1.0).table()  # 5B's zero-SNR shift (2B: 3.0)
    for used in (sampler.discretization.table(), loss.sigma_sampler.alphas_cumprod_sqrt, denoiser.alphas_cumprod_sqrt):
        assert torch.equal(used, table)
    assert args.model_config.scale_factor == 0.7


def test_released_1_0_inference_config_loads_with_5b():
    """v1.0's inference.yaml (bf16, image2video, sampling_image_size) with the 5B-I2V config; ours is its copy."""
    paths = ["tests/data/v1.0_cogvideox_5b_i2v.yaml", "tests/data/v1.0_inference.yaml"]
    args = apply_config_to_args(build_parser().parse_args([]), load_configs(paths), paths)
    assert (args.bf16, args.image2video, args.sampling_image_size, args.latent_channels) == (True, False, [480, 720], 16)
    assert open("configs/inference_5b.yaml").read() == open("tests/data/v1.0_inference.yaml").read()


def flat_config(node, prefix: str = "") -> dict:
    """{dotted path: leaf value}; lists of nodes are indexed, lists of values are leaves."""
    if isinstance(node, dict):
        return {path: value for key, child in node.items() for path, value in flat_config(child, f"{prefix}.{key}".lstrip(".")).items()}
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return {path: value for i, child in enumerate(node) for path, value in flat_config(child, f"{prefix}[{i}]").items()}
    return {prefix: node}


# What a tiny config may change: sizes, weight paths, step counts.
TINY_CHANGES = {
    "model.network_config.params." + key for key in (
        "time_embed_dim", "latent_width", "latent_height", "num_layers", "hidden_size", "num_attention_heads",
        "transformer_args.checkpoint_activations", "modules.pos_embed_config.params.hidden_size_head",
        "modules.patch_embed_config.params.text_hidden_size", "modules.lora_config.params.r",
    )
} | {
    "model.conditioner_config.params.emb_models[0].params.model_dir", "model.first_stage_config.params.ckpt_path",
    "model.sampler_config.params.num_steps", "model.sampler_config.params.guider_config.params.num_steps",
} | {f"model.first_stage_config.params.{part}_config.params.{key}" for part in ("encoder", "decoder") for key in ("ch", "num_res_blocks")}


@pytest.mark.parametrize(
    "tiny, released",
    [("cogvideox_tiny", "cogvideox_2b"), ("cogvideox_tiny_5b", "cogvideox_5b"), ("cogvideox_tiny_i2v", "cogvideox_5b_i2v"),
     ("cogvideox_tiny_i2v_lora", "cogvideox_5b_i2v_lora")],
)
def test_tiny_configs_are_the_released_ones_shrunk(tiny, released):
    """Same keys and targets as the released config; only sizes, weight paths and step counts differ."""
    ours = flat_config(OmegaConf.to_container(OmegaConf.load(f"configs/tiny/{tiny}.yaml")))
    theirs = flat_config(OmegaConf.to_container(OmegaConf.load(f"configs/{released}.yaml")))
    assert set(ours) == set(theirs)
    assert {key for key in ours if ours[key] != theirs[key]} <= TINY_CHANGES
