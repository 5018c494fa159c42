"""Entry-script arguments: `--help` prints usage, seeds outside what SAT and numpy accept are refused by name."""

import pytest

import sample_video
import train_video
from arguments import build_parser, check_seed
from input_errors import InputError


@pytest.mark.parametrize("entry", [sample_video, train_video])
def test_help_prints_usage_and_exits_zero(entry, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)  # restored after the test (train_video sets them)
    with pytest.raises(SystemExit) as done:
        entry.main(["--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage:") and "--warmup" in usage and "1% of all" in usage


def test_help_keeps_our_own_format_fields_untouched():
    escaped = [action.help for action in build_parser()._actions if action.help and "%%" in action.help]
    assert escaped == ["percentage of data to warmup on (.01 = 1%% of all training iters). Default 0.01"]


@pytest.mark.parametrize("seed", [0, -3, 2**32])
def test_seed_outside_the_accepted_range_is_refused_by_name(seed):
    with pytest.raises(InputError, match=rf"--seed must be an integer from 1 to 4294967295.*got {seed}"):
        check_seed(seed, world_size=1)


@pytest.mark.parametrize("entry", [sample_video, train_video])
def test_seed_zero_on_the_command_line_is_one_message(entry, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        entry.main(["--base", "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/sft_tiny.yaml", "--seed", "0"])
    assert done.value.code == 2
    assert "error: --seed must be an integer from 1 to" in capsys.readouterr().err


def test_seed_range_leaves_room_for_every_rank():
    check_seed(1, world_size=8)
    check_seed(2**32 - 8, world_size=8)
    with pytest.raises(InputError, match="from 1 to 4294967288"):
        check_seed(2**32 - 7, world_size=8)
