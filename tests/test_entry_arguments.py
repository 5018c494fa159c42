"""Entry-script arguments: `--help` prints usage (sample_video.py's shows the sampling options only), seeds outside what
SAT and numpy accept are refused by name, a config file that is not YAML is one message."""

import glob
import re
from pathlib import Path

import pytest

import sample_video
import train_video
from arguments import TRAINING_EXAMPLE, build_parser, build_sampling_parser, check_seed
from input_errors import InputError

SAMPLING_OPTIONS = {
    "--base", "--device", "--load", "--seed", "--batch-size", "--fp16", "--bf16", "--output-dir", "--input-type",
    "--input-file", "--sampling-num-frames", "--sampling-fps", "--latent-channels", "--image2video", "--sampling-image-size",
    "--image-short-side", "--cfg-parallel", "--sequence-parallel", "--video2video", "--strength", "--first-block-cache",
}


@pytest.fixture
def one_process(monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)  # restored after the test (train_video sets them)


def help_of(entry, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        entry.main(["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_training_help_shows_the_training_options_and_an_example(capsys, one_process):
    """The training options and one example, in a screenful or two; the sampling options (read for validation
    videos) and the reference's unread ones are accepted (tests/test_arguments_flags.py) but not listed."""
    usage = help_of(train_video, capsys)
    assert usage.startswith("usage: train_video.py --base CONFIG")
    assert len(usage.splitlines()) <= 160
    assert f"\n  {TRAINING_EXAMPLE}\n" in usage
    listed = set(re.findall(r"^  (--[a-z0-9_-]+)", usage, flags=re.M))
    assert {"--base", "--train-iters", "--lr", "--save", "--load", "--lora-save-base", "--train-data"} <= listed
    assert not listed & (SAMPLING_OPTIONS - {"--base", "--device", "--load", "--seed", "--batch-size", "--fp16", "--bf16"})
    assert "not supported" not in usage and "--sdedit" not in usage and "--deepspeed" not in usage
    assert "--warmup" in usage and "1% of all" in usage
    build_parser().parse_args(["--sampling-num-frames", "5", "--log-image", "true"])  # still accepted


def test_sampling_help_shows_the_sampling_options_only(capsys, one_process):
    usage = help_of(sample_video, capsys)
    assert usage.startswith("usage: sample_video.py")
    assert set(re.findall(r"^  (--[a-z0-9-]+)", usage, flags=re.M)) == SAMPLING_OPTIONS
    assert "not supported" not in usage and "--lr" not in usage and "--zero-stage" not in usage
    load_help = " ".join(usage.split("\n  --load LOAD")[1].split("\n  --seed")[0].split())
    assert "transformer folder" in load_help and "fine-tuning run folder" in load_help


def test_sampling_parser_keeps_every_training_default():
    """SAT's model builder and loader read options the sampling parser does not offer: they are all there, at the
    training parser's defaults (and the offered ones have the same defaults)."""
    assert vars(build_sampling_parser().parse_args([])) == vars(build_parser().parse_args([]))


def test_sampling_refuses_training_options(capsys, one_process):
    with pytest.raises(SystemExit) as done:
        sample_video.main(["--base", "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml", "--lr", "1e-3"])
    assert done.value.code == 2
    assert "unrecognized arguments: --lr 1e-3" in capsys.readouterr().err


def test_sampling_configs_may_still_set_sat_options(tmp_path):
    """An args: key of SAT's parser (here one the reference's configs carry) loads in sampling as in training."""
    from arguments import apply_config_to_args, load_configs

    paths = ["configs/tiny/cogvideox_tiny.yaml", "configs/tiny/inference_tiny.yaml", "configs/tiny/sft_tiny.yaml"]
    args = apply_config_to_args(build_sampling_parser().parse_args([]), load_configs(paths), paths)
    assert args.mode == "finetune" and args.checkpoint_activations is False


def test_help_keeps_our_own_format_fields_untouched():
    escaped = [action.help for action in build_parser()._actions if action.help and "%%" in action.help]
    assert escaped == ["percentage of data to warmup on (.01 = 1%% of all training iters). Default 0.01"]


@pytest.mark.parametrize("seed", [0, -3, 2**32])
def test_seed_outside_the_accepted_range_is_refused_by_name(seed):
    with pytest.raises(InputError, match=rf"--seed must be an integer from 1 to 4294967295.*got {seed}"):
        check_seed(seed, world_size=1)


@pytest.mark.parametrize("entry", [sample_video, train_video])
def test_seed_zero_on_the_command_line_is_one_message(entry, capsys, one_process):
    with pytest.raises(SystemExit) as done:
        entry.main(["--base", "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/sft_tiny.yaml", "--seed", "0"])
    assert done.value.code == 2
    assert "error: --seed must be an integer from 1 to" in capsys.readouterr().err


def test_seed_range_leaves_room_for_every_rank():
    check_seed(1, world_size=8)
    check_seed(2**32 - 8, world_size=8)
    with pytest.raises(InputError, match="from 1 to 4294967288"):
        check_seed(2**32 - 7, world_size=8)


NOT_YAML = {
    "an unclosed list": ("args:\n  base: [1\n  seed: 2\n", "line 3, column 7: not valid YAML: did not find expected ',' or ']' "
                         "(while parsing a flow sequence at line 2, column 9)"),
    "a tab": ("args:\n\tseed: 2\n", "line 2, column 1: not valid YAML: found character that cannot start any token "
              "(while scanning for the next token at line 2, column 1)"),
    "a duplicate key": ("args:\n  seed: 2\n  seed: 3\n", "line 3, column 3: not valid YAML: found duplicate key seed "
                        "(while constructing a mapping at line 2, column 3)"),
}


@pytest.mark.parametrize("case", sorted(NOT_YAML))
@pytest.mark.parametrize("entry", [sample_video, train_video])
def test_config_file_that_is_not_yaml_is_one_message_with_line_and_column(entry, case, tmp_path, capsys, one_process):
    text, message = NOT_YAML[case]
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as done:
        entry.main(["--base", "configs/tiny/cogvideox_tiny.yaml", str(path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [f"error: config file {path}, {message}"]


def test_documented_seeds_are_accepted():
    """Every `--seed N` the README, the scripts and the config files' comments suggest passes the seed check."""
    paths = ["README.md", *glob.glob("*.sh"), *glob.glob("configs/**/*.yaml", recursive=True)]
    seeds = [(path, int(seed)) for path in paths for seed in re.findall(r"--seed (-?\d+)", Path(path).read_text())]
    assert len({path for path, _ in seeds}) >= 3  # README.md, inference.sh, configs/tiny/sft_tiny_zero3.yaml
    for path, seed in seeds:
        check_seed(seed, world_size=8)
