"""Buckets on two CPU processes (torchrun, gloo): each rank reads its slots of the bucketed order (rank r the r-th
micro-batch of each step; the ranks may train different buckets in the same step), and ZeRO-3 full fine-tuning equals
ZeRO-2 on the same seed, per step and in the trained weights (the tiny CogVideoX1.5 T2V model, mixed clips)."""

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from bucket_clips import write_mixed
from buckets.batches import BucketBatches
from data_video import SFTDataset
from test_train_15 import T2V, paths_config
from test_train_finetune import REPO
from tools.make_tiny_weights import make_tiny_weights

pytestmark = pytest.mark.slow  # torchrun DeepSpeed training runs

SFT_BUCKETS = str(REPO / "configs/tiny/sft_tiny_1.5_buckets.yaml")
ZERO3 = str(REPO / "configs/tiny/sft_tiny_zero3.yaml")
STEPS, SEED = 3, 1


def torchrun(root, name: str, sft: str) -> list[dict]:
    override = root / f"{name}.yaml"
    params = OmegaConf.to_container(OmegaConf.load(SFT_BUCKETS).data.params)
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(root / "weights/transformer"), "train_data": [str(root / "data")], "valid_data": None,
                 "save": None, "train_iters": STEPS, "log_interval": 1, "experiment_name": name,
                 "summary_dir": str(root)},
        "data": {"params": {**params, "video_size": None, "max_num_frames": None}},
        "deepspeed": {"optimizer": {"params": {"lr": 0.01}}},
    }), override)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = root / f"out-{name}"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests/train_zero_worker.py"), str(out),
               "--base", T2V, sft, str(root / "paths.yaml"), str(override), "--seed", str(SEED)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_two_ranks_read_their_buckets_and_zero3_equals_zero2(tmp_path):
    make_tiny_weights(T2V, str(tmp_path / "weights"), seed=0)
    write_mixed(tmp_path / "data")
    paths_config(T2V, tmp_path / "weights", tmp_path / "paths.yaml")
    zero2, zero3 = torchrun(tmp_path, "zero2", SFT_BUCKETS), torchrun(tmp_path, "zero3", ZERO3)

    dataset = SFTDataset(str(tmp_path / "data"), **OmegaConf.to_container(OmegaConf.load(SFT_BUCKETS).data.params))
    order = BucketBatches(dataset.entries, dataset.item_buckets, micro_batch=1, seed=SEED, epochs=1)
    for rank in (0, 1):
        expected = []
        for step in range(STEPS):  # micro-batch 1: rank r reads position 2 * step + r
            bucket = order[2 * step + rank].bucket
            expected.append((1, bucket.frames, 3, bucket.height, bucket.width))
        assert zero2[rank]["shapes"] == zero3[rank]["shapes"] == expected
        torch.testing.assert_close(torch.tensor(zero3[rank]["losses"]), torch.tensor(zero2[rank]["losses"]),
                                   rtol=1e-5, atol=1e-6)
    assert any(zero2[0]["shapes"][step] != zero2[1]["shapes"][step] for step in range(STEPS))  # different buckets
    assert zero2[0]["weights"].keys() == zero3[0]["weights"].keys() and zero2[0]["weights"]
    for key, value in zero2[0]["weights"].items():
        torch.testing.assert_close(zero3[0]["weights"][key], value, rtol=1e-4, atol=1e-6)
