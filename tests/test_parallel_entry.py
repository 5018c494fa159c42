"""`NPROC=2 bash inference.sh ... --cfg-parallel 2` writes the video one process writes for the same seed, run as the
README writes it: no OMP_NUM_THREADS set (every process runs parallel/threads.py's default, torchrun or not)."""

import os
import subprocess
from pathlib import Path

import decord
import numpy as np
import pytest

from parallel.threads import DEFAULT_THREADS

pytestmark = pytest.mark.slow  # torchrun runs

REPO = Path(__file__).resolve().parent.parent


def sample_all(tiny_models, tmp_path: Path, name: str, nproc: str | None, *extra: str,
               prompts: str = "a cat\n") -> dict[str, np.ndarray]:
    """Run inference.sh (with NPROC=nproc unless None) on `prompts`; returns each written video's frames (T, H, W, 3)
    by its folder name."""
    prompt_file = tmp_path / f"{name}-prompts.txt"
    prompt_file.write_text(prompts)
    model_yaml = tmp_path / "model.yaml"
    if not model_yaml.exists():
        tiny_models.write_config(model_yaml)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    for variable in ("NPROC", "OMP_NUM_THREADS"):
        env.pop(variable, None)
    if nproc is not None:
        env["NPROC"] = nproc
    out = tmp_path / name
    run = subprocess.run(
        ["timeout", "600", "bash", str(REPO / "inference.sh"), "--base", str(model_yaml), str(REPO / "configs/tiny/inference_tiny.yaml"),
         "--load", str(tiny_models.transformer), "--input-file", str(prompt_file), "--sampling-num-frames", "3",
         "--output-dir", str(out), "--seed", "5", *extra],
        env=env, cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"torch threads per process: {DEFAULT_THREADS} (" in run.stdout + run.stderr
    return {video.parts[-3]: decord.VideoReader(str(video))[:].asnumpy() for video in out.glob("*/0/000000.mp4")}


def sample(tiny_models, tmp_path: Path, name: str, nproc: str | None, *extra: str) -> np.ndarray:
    (video,) = sample_all(tiny_models, tmp_path, name, nproc, *extra).values()
    return video


def test_inference_sh_with_two_processes_guidance_parallel(tiny_models, tmp_path):
    one = sample(tiny_models, tmp_path, "one", None)
    two = sample(tiny_models, tmp_path, "two", "2", "--cfg-parallel", "2")
    assert one.shape == two.shape == (9, 64, 96, 3)
    assert np.array_equal(one, two)  # guidance parallel is exact (tests/test_parallel_sampling.py)


def test_data_parallel_beside_guidance_parallel(tiny_models, tmp_path):
    """4 processes, --cfg-parallel 2: data = 2, each pair samples one of the two prompts; the videos are the ones
    one process writes for both prompts."""
    prompts = "a cat\na dog on a skateboard\n"
    one = sample_all(tiny_models, tmp_path, "one", None, prompts=prompts)
    four = sample_all(tiny_models, tmp_path, "four", "4", "--cfg-parallel", "2", prompts=prompts)
    assert sorted(one) == sorted(four) == ["0_a_cat", "1_a_dog_on_a_skateboard"]
    for name, video in one.items():
        assert np.array_equal(four[name], video), name


def test_inference_sh_with_the_decode_split_over_the_guidance_ranks(tiny_models, tmp_path):
    """cp_size 2 with --cfg-parallel 2: the two processes of the video split its decode (5 latent frames: 3 + 2)."""
    from omegaconf import OmegaConf

    config = tiny_models.model_config()
    config.first_stage_config.params.cp_size = 2
    model_yaml = tmp_path / "model.yaml"
    OmegaConf.save(OmegaConf.create({"model": config}), model_yaml)
    frames = sample(tiny_models, tmp_path, "cp", "2", "--cfg-parallel", "2", "--sampling-num-frames", "5")
    assert frames.shape == (17, 64, 96, 3)
