"""The shell entry scripts: arguments pass through intact (a path with a space) and win over the script's own (the
seed), paths are read from the caller's folder, the exit status is the run's."""

import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow  # entry-script subprocesses

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}  # conftest: this venv's `python` first on PATH, its own extensions folder
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        environment.pop(name, None)
    return subprocess.run(["bash", str(REPO / script), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture
def config_with_a_space(tmp_path) -> Path:
    """A YAML in a folder whose name has a space, with an `args:` key no option matches: refused by name (exit 2)
    while the arguments are parsed, before DeepSpeed starts."""
    folder = tmp_path / "my configs"
    folder.mkdir()
    path = folder / "bad key.yaml"
    OmegaConf.save(OmegaConf.create({"args": {"train_itres": 3}}), path)
    return path


@pytest.mark.parametrize("script, env", [("finetune_single_gpu.sh", {}), ("finetune_multi_gpus.sh", {"NPROC": "1"})])
def test_finetune_scripts_exit_with_the_training_status(script, env, config_with_a_space):
    result = run_script(script, "configs/tiny/cogvideox_tiny_lora.yaml", "configs/tiny/sft_tiny.yaml",
                        str(config_with_a_space), **env)
    assert result.returncode == 2, result.stdout[-2000:]  # an input error, reported as one line, the last
    assert "DONE" not in result.stdout and "FAILED on" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {config_with_a_space}: args.train_itres matches no command-line option")


@pytest.mark.parametrize("script", ["finetune_single_gpu.sh", "finetune_multi_gpus.sh"])
def test_finetune_scripts_help_is_the_training_help_once(script):
    result = run_script(script, "--help", NPROC="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("usage: train_video.py") == 1
    assert "RUN on" not in result.stdout and "train_video.py --seed" not in result.stdout and "torchrun" not in result.stdout


def test_inference_script_passes_a_path_with_a_space_and_exits_with_its_status(tmp_path):
    missing = tmp_path / "my configs" / "model.yaml"
    result = run_script("inference.sh", "--base", str(missing), "--seed", "3")
    assert result.returncode == 2
    assert f"error: config file {str(missing)!r} (from --base) does not exist" in result.stderr


@pytest.mark.parametrize("script, env", [("finetune_single_gpu.sh", {}), ("finetune_multi_gpus.sh", {"NPROC": "1"})])
def test_finetune_scripts_take_the_callers_seed_and_paths(script, env, tmp_path):
    """Run from another folder: a relative config path is the caller's, and the caller's --seed beats the script's
    random one (0 is refused by name, before anything is built)."""
    (tmp_path / "mine.yaml").write_text("args:\n  experiment_name: mine\n")
    result = run_script(script, str(REPO / "configs/tiny/cogvideox_tiny_lora.yaml"), str(REPO / "configs/tiny/sft_tiny.yaml"),
                        "mine.yaml", "--seed", "0", cwd=tmp_path, **env)
    assert result.returncode == 2 and "FAILED on" not in result.stderr, result.stdout[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --seed must be an integer from 1 to") and last.endswith("got 0"), result.stderr[-2000:]


def test_inference_script_reads_the_callers_paths(tiny_models, tmp_path):
    """From another folder, the config, prompt file and output folder given as relative paths are the caller's."""
    tiny_models.write_config(tmp_path / "model.yaml")
    (tmp_path / "prompts.txt").write_text("a cat\n")
    result = run_script("inference.sh", "--base", "model.yaml", str(REPO / "configs/tiny/inference_tiny.yaml"),
                        "--load", str(tiny_models.transformer), "--input-file", "prompts.txt", "--output-dir", "out",
                        "--sampling-num-frames", "3", "--seed", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "0_a_cat" / "0" / "000000.mp4").is_file()
    assert not (REPO / "out").exists()
