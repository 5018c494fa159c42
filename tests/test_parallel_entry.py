"""`NPROC=2 bash inference.sh ... --cfg-parallel 2` writes the video one process writes for the same seed."""

import os
import subprocess
from pathlib import Path

import decord
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # torchrun runs

REPO = Path(__file__).resolve().parent.parent


def sample(tiny_models, tmp_path: Path, name: str, nproc: str | None, *extra: str) -> np.ndarray:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    model_yaml = tmp_path / "model.yaml"
    if not model_yaml.exists():
        tiny_models.write_config(model_yaml)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("NPROC", None)
    if nproc is not None:
        env["NPROC"] = nproc
    out = tmp_path / name
    subprocess.run(
        ["timeout", "600", "bash", str(REPO / "inference.sh"), "--base", str(model_yaml), str(REPO / "configs/tiny/inference_tiny.yaml"),
         "--load", str(tiny_models.transformer), "--input-file", str(prompts), "--sampling-num-frames", "3",
         "--output-dir", str(out), "--seed", "5", *extra],
        check=True, env=env, cwd=REPO,
    )
    (video,) = list(out.glob("*/0/000000.mp4"))
    return decord.VideoReader(str(video))[:].asnumpy()


def test_inference_sh_with_two_processes_guidance_parallel(tiny_models, tmp_path):
    one = sample(tiny_models, tmp_path, "one", None)
    two = sample(tiny_models, tmp_path, "two", "2", "--cfg-parallel", "2")
    assert one.shape == two.shape == (9, 64, 96, 3)
    assert np.abs(one.astype(int) - two.astype(int)).max() <= 1  # 1e-5 apart before the 8-bit encode


def test_inference_sh_with_the_decode_split_over_the_guidance_ranks(tiny_models, tmp_path):
    """cp_size 2 with --cfg-parallel 2: the two processes of the video split its decode (5 latent frames: 3 + 2)."""
    from omegaconf import OmegaConf

    config = tiny_models.model_config()
    config.first_stage_config.params.cp_size = 2
    model_yaml = tmp_path / "model.yaml"
    OmegaConf.save(OmegaConf.create({"model": config}), model_yaml)
    frames = sample(tiny_models, tmp_path, "cp", "2", "--cfg-parallel", "2", "--sampling-num-frames", "5")
    assert frames.shape == (17, 64, 96, 3)
