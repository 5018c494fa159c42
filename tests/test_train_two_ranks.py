"""Two CPU processes (torchrun, gloo, ZeRO-2): the ranks stay in sync and draw timesteps from their own ranges."""

import os
import subprocess
import sys

import torch
from omegaconf import OmegaConf

from checkpoints.sat_checkpoint import checkpoint_path
from test_train_finetune import FRAMES, LORA_MODEL, REPO, SFT, write_video
from tiny.weights import make_tiny_weights
import pytest

pytestmark = pytest.mark.slow  # DeepSpeed training runs


def test_two_processes_train_in_sync(tmp_path):
    make_tiny_weights(str(REPO / "configs/tiny/cogvideox_tiny.yaml"), str(tmp_path / "weights"), seed=0)
    write_video(tmp_path / "data", "wave", "colourful waves drifting to the left")
    override = tmp_path / "run.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(tmp_path / "weights/transformer"), "train_data": [str(tmp_path / "data")],
                 "valid_data": None, "save": str(tmp_path / "ckpt"), "train_iters": 3, "save_interval": 3,
                 "log_interval": 1, "experiment_name": "ddp", "summary_dir": str(tmp_path)},
        "deepspeed": {"optimizer": {"params": {"lr": 1.0}}},
        "data": {"params": {"max_num_frames": FRAMES}},
        "model": {
            "conditioner_config": {"params": {"emb_models": [{
                "is_trainable": False, "input_key": "txt", "ucg_rate": 0.1,
                "target": "sgm.modules.encoders.modules.FrozenT5Embedder",
                "params": {"model_dir": str(tmp_path / "weights/t5"), "max_length": 226}}]}},
            "first_stage_config": {"params": {"ckpt_path": str(tmp_path / "weights/vae/3d-vae.pt")}},
        },
    }), override)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # set by an in-process run of train_video earlier in this session
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests/train_ddp_worker.py"), str(tmp_path),
               "--base", LORA_MODEL, SFT, str(override), "--seed", "1"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["trained"].keys() == ranks[1]["trained"].keys() and len(ranks[0]["trained"]) == 16
    for name, value in ranks[0]["trained"].items():
        assert torch.equal(value, ranks[1]["trained"][name]), name
    assert len(ranks[0]["drawn"]) == 3 and all(0 <= i < 500 for i in ranks[0]["drawn"])
    assert len(ranks[1]["drawn"]) == 3 and all(500 <= i < 1000 for i in ranks[1]["drawn"])
    folder = next((tmp_path / "ckpt").iterdir())
    path, iteration = checkpoint_path(folder)
    assert iteration == 3
    assert sorted(p.name for p in path.parent.glob("training_state_dp*")) == [
        "training_state_dp000_mp00.pt", "training_state_dp001_mp00.pt"]
