"""ZeRO-3 full fine-tuning of the tiny CogVideoX1.5 model on two CPU processes (torchrun, gloo) against ZeRO-2 on the
same seed: equal per-step losses and trained weights (9 frames: 3 latent frames padded in front to 4; the 1.5 DiT's
rotary tables are computed per call, not parameters, and its Linear patch embedding is partitioned like the rest)."""


import pytest
import torch
from omegaconf import OmegaConf

from test_train_1_5 import T2V, paths_config
from test_train_finetune import REPO, write_video
from test_train_zero3 import two_rank_run
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # torchrun DeepSpeed training runs

ZERO2 = str(REPO / "configs/tiny/sft_tiny_1.5.yaml")
ZERO3 = str(REPO / "configs/tiny/sft_tiny_zero3.yaml")
STEPS = 3


def torchrun(root, name: str, sft: str, data: dict | None = None) -> dict:
    """`sft` on two processes (data params: 9 frames at 16 fps, or `data`); per rank its losses and video shapes."""
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(root / "weights/transformer"), "train_data": [str(root / "data")], "valid_data": None,
                 "save": None, "train_iters": STEPS, "log_interval": 1, "experiment_name": name,
                 "summary_dir": str(root)},
        "data": {"params": data or {"max_num_frames": 9, "fps": 16}},
        "deepspeed": {"optimizer": {"params": {"lr": 0.01}}},
    }), override)
    ranks, _ = two_rank_run(root, name, [T2V, sft, str(root / "paths.yaml"), str(override)], timeout=900)
    return {"losses": [ranks[0]["losses"], ranks[1]["losses"]], "shapes": [ranks[0]["shapes"], ranks[1]["shapes"]],
            "weights": ranks[0]["weights"]}


def test_zero3_equals_zero2_for_1_5(tmp_path):
    make_tiny_weights(T2V, str(tmp_path / "weights"), seed=0)
    write_video(tmp_path / "data", "wave", "colourful waves drifting to the left")
    paths_config(T2V, tmp_path / "weights", tmp_path / "paths.yaml")
    zero2, zero3 = torchrun(tmp_path, "zero2", ZERO2), torchrun(tmp_path, "zero3", ZERO3)
    for rank in (0, 1):
        assert len(zero2["losses"][rank]) == STEPS
        torch.testing.assert_close(torch.tensor(zero3["losses"][rank]), torch.tensor(zero2["losses"][rank]),
                                   rtol=1e-5, atol=1e-6)
    assert zero2["weights"].keys() == zero3["weights"].keys() and zero2["weights"]
    for key, value in zero2["weights"].items():
        torch.testing.assert_close(zero3["weights"][key], value, rtol=1e-4, atol=1e-6)
