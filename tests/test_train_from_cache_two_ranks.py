"""Two CPU processes (torchrun, gloo): a cache made by two precompute processes, and a two-rank LoRA run from it
that equals the two-rank run from the videos (per-iteration losses and trained weights, on both ranks)."""

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from tiny.videos import write_dataset
from test_train_finetune import LORA_MODEL, MODEL, REPO, SFT, weights_config
from test_train_from_cache import assert_close_relative
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # torchrun runs

STEPS = 3


def torchrun(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # set by an in-process run of train_video earlier in this session
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_rank_run_from_cache_equals_run_from_videos(tmp_path):
    make_tiny_weights(str(MODEL), str(tmp_path / "weights"), seed=0)
    data = write_dataset(tmp_path / "data", 3)
    paths = weights_config(tmp_path, tmp_path / "paths.yaml")
    torchrun([str(REPO / "tools/precompute.py"), "--base", LORA_MODEL, SFT, paths, "--output", str(tmp_path / "cache"),
              "--data", str(data)])
    ranks = {}
    for source in ("data", "cache"):
        override = tmp_path / f"{source}.yaml"
        OmegaConf.save(OmegaConf.create({
            "args": {"load": str(tmp_path / "weights/transformer"), "train_data": [str(tmp_path / source)],
                     "valid_data": None, "save": None, "train_iters": STEPS, "log_interval": 1,
                     "experiment_name": source, "summary_dir": str(tmp_path)},
            "deepspeed": {"optimizer": {"params": {"lr": 1.0}}}}), override)
        out = tmp_path / f"out-{source}"
        out.mkdir()
        torchrun([str(REPO / "tests/train_ddp_worker.py"), str(out), "--base", LORA_MODEL, SFT, paths, str(override),
                  "--seed", "1"])
        ranks[source] = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for rank in (0, 1):
        video_run, cache_run = ranks["data"][rank], ranks["cache"][rank]
        assert len(video_run["losses"]) == STEPS
        assert_close_relative(video_run["losses"], cache_run["losses"])
        assert video_run["drawn"] == cache_run["drawn"]
        assert video_run["trained"].keys() == cache_run["trained"].keys()
        for name, value in video_run["trained"].items():
            torch.testing.assert_close(cache_run["trained"][name], value, rtol=1e-6, atol=1e-7)
