"""Values that make no sense are one `error:` line and exit status 2, before anything is built: one bad value for
every option and config value of `option_ranges.py`'s table, through the entry scripts' `main` in-process (the
check runs while the arguments are read, before torch.distributed, the model or the data)."""

import pytest

import sample_video
import train_video
from option_ranges import CONFIG_RANGES, OPTION_RANGES
from test_entry_inputs import error_of
from test_tool_entry_points import run_tool

TINY_MODEL, TINY_INFERENCE, TINY_SFT = ("configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml",
                                        "configs/tiny/sft_tiny.yaml")

# (entry, option, bad value as typed, the value as the message shows it, the range as the message states it)
OPTION_CASES = [
    (sample_video, "--sampling-fps", "0", "0", "an integer >= 1"),
    (sample_video, "--sampling-num-frames", "0", "0", "an integer >= 1"),
    (sample_video, "--latent-channels", "-16", "-16", "an integer >= 1"),
    (sample_video, "--batch-size", "0", "0", "an integer >= 1"),
    (sample_video, "--sampling-image-size", "0 720", "[0, 720]", "a list of integers >= 1"),
    (sample_video, "--image-short-side", "0", "0", "an integer >= 1"),
    (sample_video, "--cfg-parallel", "3", "3", "an integer from 1 to 2"),
    (sample_video, "--sequence-parallel", "0", "0", "an integer >= 1"),
    (train_video, "--train-iters", "0", "0", "an integer >= 1"),
    (train_video, "--epochs", "0", "0", "an integer >= 1"),
    (train_video, "--eval-batch-size", "0", "0", "an integer >= 1"),
    (train_video, "--eval-interval", "0", "0", "an integer >= 1"),
    (train_video, "--eval-iters", "0", "0", "an integer >= 1"),
    (train_video, "--exit-interval", "0", "0", "an integer >= 1"),
    (train_video, "--log-interval", "0", "0", "an integer >= 1"),
    (train_video, "--save-interval", "-1", "-1", "an integer >= 1"),
    (train_video, "--num-workers", "-1", "-1", "an integer >= 0"),
    (train_video, "--prefetch-factor", "0", "0", "an integer >= 1"),
    (train_video, "--lr", "0", "0.0", "a number > 0"),
    (train_video, "--weight-decay", "-0.1", "-0.1", "a number >= 0"),
    (train_video, "--warmup", "1.5", "1.5", "a number from 0 to 1"),
    (train_video, "--lr-decay-iters", "0", "0", "an integer >= 1"),
    (train_video, "--lr-decay-ratio", "-1", "-1.0", "a number from 0 to 1"),
    (train_video, "--gradient-accumulation-steps", "0", "0", "an integer >= 1"),
    (train_video, "--checkpoint-num-layers", "0", "0", "an integer >= 1"),
    (train_video, "--model-parallel-size", "0", "0", "an integer >= 1"),
    (train_video, "--checkpoint-skip-layers", "-1", "-1", "an integer >= 0"),
    (train_video, "--train-data-weights", "-1", "[-1]", "a list of integers >= 0"),
    (train_video, "--block-size", "0", "0", "an integer >= 1"),
    (train_video, "--profiling", "-2", "-2", "an integer >= -1"),
    (sample_video, "--device", "-2", "-2", "an integer >= -1"),
]

# (entry, dotted config key, a bad YAML value, the value as the message shows it, the range)
CONFIG_CASES = [
    (sample_video, "model.scale_factor", "0", "0", "a number > 0"),
    (train_video, "model.noised_image_dropout", "1.5", "1.5", "a number from 0 to 1"),
    (sample_video, "model.sampler_config.params.num_steps", "0", "0", "an integer >= 1"),
    (sample_video, "model.sampler_config.params.guider_config.params.scale", "-6", "-6", "a number >= 0"),
    (sample_video, "model.sampler_config.params.guider_config.params.num_steps", "0", "0", "an integer >= 1"),
    (train_video, "data.params.fps", "0", "0", "an integer >= 1"),
    (train_video, "data.params.max_num_frames", "0", "0", "an integer >= 1"),
    (train_video, "data.params.video_size", "[0, 96]", "[0, 96]", "a list of integers >= 1"),
    (train_video, "data.params.skip_frms_num", "-3.0", "-3.0", "a number >= 0"),
    (train_video, "deepspeed.train_micro_batch_size_per_gpu", "0", "0", "an integer >= 1"),
    (train_video, "deepspeed.gradient_accumulation_steps", "0", "0", "an integer >= 1"),
    (train_video, "deepspeed.gradient_clipping", "-0.1", "-0.1", "a number >= 0"),
    (train_video, "deepspeed.optimizer.params.lr", "0.0", "0.0", "a number > 0"),
    (train_video, "deepspeed.optimizer.params.weight_decay", "-1.0e-4", "-0.0001", "a number >= 0"),
]


@pytest.fixture(autouse=True)
def nothing_is_built(monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sample_video, "get_model", lambda *a: pytest.fail("the model was built"))
    monkeypatch.setattr(train_video, "training_main", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr("arguments.initialize_distributed", lambda *a: pytest.fail("torch.distributed was set up"))


def base_files(entry) -> list[str]:
    return [TINY_MODEL, TINY_INFERENCE] if entry is sample_video else [TINY_MODEL, TINY_SFT]


def test_every_table_row_has_a_case():
    assert sorted(option for _, option, *_ in OPTION_CASES) == sorted(f"--{n.replace('_', '-')}" for n in OPTION_RANGES)
    assert sorted(key for _, key, *_ in CONFIG_CASES) == sorted(CONFIG_RANGES)


@pytest.mark.parametrize("entry, option, typed, shown, expected", OPTION_CASES, ids=[c[1] for c in OPTION_CASES])
def test_an_option_out_of_range_is_one_line(entry, option, typed, shown, expected, capsys):
    files = base_files(entry)
    line = error_of(entry, ["--base", *files, option, *typed.split()], capsys)
    name = option[2:].replace("-", "_")
    assert line == f"error: {option} is {shown} (command line or args.{name} in {files}); expected {expected}"


@pytest.mark.parametrize("entry, key, yaml_value, shown, expected", CONFIG_CASES, ids=[c[1] for c in CONFIG_CASES])
def test_a_config_value_out_of_range_is_one_line(entry, key, yaml_value, shown, expected, tmp_path, capsys):
    override = tmp_path / "override.yaml"
    *parents, leaf = key.split(".")
    override.write_text("".join("  " * depth + f"{part}:\n" for depth, part in enumerate(parents))
                        + "  " * len(parents) + f"{leaf}: {yaml_value}\n")
    files = [*base_files(entry), str(override)]
    line = error_of(entry, ["--base", *files], capsys)
    assert line == f"error: {key} is {shown} in {files}; expected {expected}"


@pytest.mark.parametrize("script, argv, message", [
    ("tools/convert_weight_hf2sat.py", ["--diffusers", "{tmp}", "--output", "{tmp}/o", "--iteration", "-1"],
     "--iteration is -1; expected an integer >= 0"),
    ("tools/import_diffusers_pipeline.py", ["{tmp}", "--output", "{tmp}/o", "--iteration", "-1"],
     "--iteration is -1; expected an integer >= 0"),
    ("tools/convert_vae.py", ["to-diffusers", "{tmp}/3d-vae.pt", "{tmp}/o", "--scaling-factor", "0"],
     "--scaling-factor is 0.0; expected a number > 0"),
])
def test_a_tool_option_out_of_range_is_one_line(monkeypatch, capsys, tmp_path, script, argv, message):
    assert run_tool(monkeypatch, capsys, script, *(arg.format(tmp=tmp_path) for arg in argv)) == f"error: {message}"
    assert not (tmp_path / "o").exists()


def test_a_value_of_the_wrong_type_in_args_is_refused(tmp_path, capsys):
    override = tmp_path / "override.yaml"
    override.write_text("args:\n  sampling_fps: eight\n")
    files = [TINY_MODEL, TINY_INFERENCE, str(override)]
    assert error_of(sample_video, ["--base", *files], capsys) == (
        f"error: --sampling-fps is 'eight' (command line or args.sampling_fps in {files}); expected an integer >= 1")
