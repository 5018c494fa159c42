"""Buckets on two CPU processes (torchrun, gloo): each rank reads its slots of the bucketed order (rank r the r-th
micro-batch of each step; the ranks may train different buckets in the same step), and ZeRO-3 full fine-tuning equals
ZeRO-2 on the same seed, per step and in the trained weights (the tiny CogVideoX1.5 T2V model, mixed clips)."""

import pytest
import torch
from omegaconf import OmegaConf

from tiny.videos import write_mixed
from buckets.batches import BucketBatches
from data_video import SFTDataset
from test_train_1_5 import T2V, paths_config
from test_train_finetune import REPO
from test_train_zero3_1_5 import STEPS, torchrun
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # torchrun DeepSpeed training runs

SFT_BUCKETS = str(REPO / "configs/tiny/sft_tiny_1.5_buckets.yaml")
ZERO3 = str(REPO / "configs/tiny/sft_tiny_zero3.yaml")
SEED = 1  # test_train_zero3_15's runs


def test_two_ranks_read_their_buckets_and_zero3_equals_zero2(tmp_path):
    make_tiny_weights(T2V, str(tmp_path / "weights"), seed=0)
    write_mixed(tmp_path / "data")
    paths_config(T2V, tmp_path / "weights", tmp_path / "paths.yaml")
    params = OmegaConf.to_container(OmegaConf.load(SFT_BUCKETS).data.params)
    data = {**params, "video_size": None, "max_num_frames": None}  # sft_tiny_zero3.yaml's one size replaced
    zero2, zero3 = torchrun(tmp_path, "zero2", SFT_BUCKETS, data), torchrun(tmp_path, "zero3", ZERO3, data)

    dataset = SFTDataset(str(tmp_path / "data"), **OmegaConf.to_container(OmegaConf.load(SFT_BUCKETS).data.params))
    order = BucketBatches(dataset.entries, dataset.item_buckets, micro_batch=1, seed=SEED, epochs=1)
    for rank in (0, 1):
        expected = []
        for step in range(STEPS):  # micro-batch 1: rank r reads position 2 * step + r
            bucket = order[2 * step + rank].bucket
            expected.append((1, bucket.frames, 3, bucket.height, bucket.width))
        assert zero2["shapes"][rank] == zero3["shapes"][rank] == expected
        torch.testing.assert_close(torch.tensor(zero3["losses"][rank]), torch.tensor(zero2["losses"][rank]),
                                   rtol=1e-5, atol=1e-6)
    assert any(zero2["shapes"][0][step] != zero2["shapes"][1][step] for step in range(STEPS))  # different buckets
    assert zero2["weights"].keys() == zero3["weights"].keys() and zero2["weights"]
    for key, value in zero2["weights"].items():
        torch.testing.assert_close(zero3["weights"][key], value, rtol=1e-4, atol=1e-6)
