"""The shell entry scripts: arguments pass through intact (a path with a space), the exit status is the run's."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow  # entry-script subprocesses

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
    environment = {"TORCH_EXTENSIONS_DIR": os.path.expanduser("~/.cache/torch_extensions"), **os.environ, "PATH": path, **env}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        environment.pop(name, None)
    return subprocess.run(["bash", script, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)


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
    assert result.returncode != 0, result.stdout[-2000:]
    if script == "finetune_single_gpu.sh":
        assert result.returncode == 2  # an input error, reported as one line
    assert "DONE" not in result.stdout and "FAILED on" in result.stderr
    assert f"error: {config_with_a_space}: args.train_itres matches no command-line option" in result.stderr


def test_inference_script_passes_a_path_with_a_space_and_exits_with_its_status(tmp_path):
    missing = tmp_path / "my configs" / "model.yaml"
    result = run_script("inference.sh", "--base", str(missing), "--seed", "3")
    assert result.returncode == 2
    assert f"error: config file {str(missing)!r} (from --base) does not exist" in result.stderr
