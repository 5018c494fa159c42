"""arguments.py: boolean options parse `false` as False, and options nothing reads are refused, not ignored."""

import glob

import pytest
from omegaconf import OmegaConf

from arguments import apply_config_to_args, build_parser, check_options_are_read, load_configs
from sgm.util import ConfigError


def parsed(*argv: str, paths: tuple[str, ...] = ()):
    config = load_configs(list(paths))
    return apply_config_to_args(build_parser().parse_args(list(argv)), config, list(paths))


@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False), ("True", True), ("yes", True)])
def test_boolean_options_parse_their_value(text, value):
    assert parsed("--only-log-video-latents", text).only_log_video_latents is value


def test_a_boolean_option_refuses_other_words(capsys):
    with pytest.raises(SystemExit):
        parsed("--only-log-video-latents", "maybe")
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--sdedit"], ["--lcm_steps", "4"], ["--final-size", "512"], ["--grid-num-rows", "2"], ["--input-dir", "x"],
     ["--force-pretrain"], ["--debug"], ["--log-image", "false"], ["--only-save-latents", "true"]],
)
def test_options_nothing_reads_are_refused(argv):
    name = argv[0].lstrip("-").replace("-", "_")
    with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')} .*never reads it"):
        check_options_are_read(parsed(*argv), [])


def test_refused_option_from_a_config_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    OmegaConf.save({"args": {"sdedit": True}}, path)
    with pytest.raises(ConfigError, match=f"args.sdedit in \\['{path}'\\]"):
        check_options_are_read(parsed(paths=(str(path),)), [str(path)])


def test_sdedit_names_the_video_to_video_options():
    with pytest.raises(ConfigError, match="never reads it.*; video-to-video \\(SDEdit\\) is --video2video --strength S"):
        check_options_are_read(parsed("--sdedit"), [])


def test_force_inference_false_is_refused():
    with pytest.raises(ConfigError, match="force_inference is false"):
        check_options_are_read(parsed("--force-inference", "false"), [])
    check_options_are_read(parsed("--force-inference"), [])


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml") + glob.glob("configs/tiny/*.yaml")))
def test_released_configs_pass_the_check(path):
    check_options_are_read(parsed(paths=(path,)), [path])
