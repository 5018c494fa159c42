"""`tools/precompute.py` with the VAE's context parallelism (cp_size 2): two processes under torchrun write the cache
one process writes with cp_size 1 (within 1e-5 relative), and the bad layouts are refused before any model is built."""

import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from cache_runs import make_cache
from tiny.videos import write_dataset
from input_errors import InputError
from latent_cache.manifest import MANIFEST_NAME
from latent_cache.run_inputs import check_cache
from latent_cache.store import ITEMS_DIR, POSTERIOR_KEYS, item_file, read_item
from test_train_finetune import LORA_MODEL, MODEL, REPO, SFT
from tools import precompute
from tiny.weights import make_tiny_weights, weight_paths
from vae_modules.context_parallel import check_encode_split

CP2 = {"model": {"first_stage_config": {"params": {"cp_size": 2}}}}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.slow  # torchrun with two processes
def test_two_processes_with_cp_size_2_write_the_one_process_cache(tmp_path):
    make_tiny_weights(MODEL, str(tmp_path / "weights"), seed=0)
    data = write_dataset(tmp_path / "data", 2)
    paths = tmp_path / "paths.yaml"  # the tiny weights; sft_tiny's 9 frames split over 2 processes as 5 + 4
    OmegaConf.save(OmegaConf.create({"model": weight_paths(tmp_path / "weights")}), paths)
    cp2 = tmp_path / "cp2.yaml"
    OmegaConf.save(OmegaConf.create(CP2), cp2)
    one = make_cache(MODEL, str(paths), data, tmp_path / "one")
    two = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tools/precompute.py"), "--base", MODEL, SFT, str(paths), str(cp2), "--output", str(two),
               "--data", str(data)]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote the latent cache {two}" in done.stdout
    # cp_size is not a content setting: same manifest, and a cp_size 1 run takes the cp_size 2 cache
    assert json.loads((two / MANIFEST_NAME).read_text()) == json.loads((one / MANIFEST_NAME).read_text())
    config = OmegaConf.merge(OmegaConf.load(MODEL), OmegaConf.load(paths))
    check_cache(str(two), config.model, OmegaConf.load(SFT).data.params, "fp32")
    names = sorted(p.name for p in (one / ITEMS_DIR).iterdir())
    assert names == sorted(p.name for p in (two / ITEMS_DIR).iterdir()) and len(names) == 2
    assert not any((two / "parts").glob("*"))  # every part completed into its item
    for name in ("clip0", "clip1"):
        (expected, expected_meta), (found, found_meta) = (read_item(item_file(c, ITEMS_DIR, name)) for c in (one, two))
        assert found_meta == expected_meta and set(found) == set(expected)
        for key in POSTERIOR_KEYS:
            assert relative(found[key], expected[key]) < 1e-5, (name, key, relative(found[key], expected[key]))
        assert torch.equal(found["txt_embedding"], expected["txt_embedding"])


def model_config(cp_size: int, temporal_compress_times: int | None = None):
    config = OmegaConf.load(MODEL).model
    config.first_stage_config.params.cp_size = cp_size
    if temporal_compress_times is not None:
        config.first_stage_config.params.encoder_config.params.temporal_compress_times = temporal_compress_times
    return config


@pytest.mark.parametrize("cp_size, world, frames, match", [
    (2, 1, 9, "cp_size 2 does not divide the 1 process of tools/precompute.py .*run a multiple of 2 processes"),
    (2, 3, 9, "cp_size 2 does not divide the 3 processes"),
    (2, 2, 5, "cp_size 2: data: max_num_frames: a video of 5 frames cannot be split over 2 ranks"),
    (4, 4, 9, "a video of 9 frames cannot be split over 4 ranks.*nearest valid counts: 1 and 17"),
])
def test_bad_encode_layouts_are_one_message(cp_size, world, frames, match):
    with pytest.raises(InputError, match=match):
        check_encode_split(model_config(cp_size), frames, world, "tools/precompute.py")


def test_good_encode_layouts_pass():
    check_encode_split(model_config(1), 5, 1, "tools/precompute.py")
    check_encode_split(model_config(2), 9, 4, "tools/precompute.py")
    check_encode_split(model_config(2, temporal_compress_times=2), 5, 2, "tools/precompute.py")


def test_single_process_cp_size_2_stops_before_the_models(tmp_path, monkeypatch):
    cp2 = tmp_path / "cp2.yaml"
    OmegaConf.save(OmegaConf.create(CP2), cp2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("latent_cache.from_configs.precompute", None)  # never reached
    with pytest.raises(InputError, match="does not divide the 1 process of tools/precompute.py"):
        precompute.main(["--base", MODEL, SFT, str(cp2), "--output", str(tmp_path / "out"), "--data", str(tmp_path / "data")])


def train_two_ranks(root, name: str, cp_size: int) -> list[dict]:
    """3 steps of the tiny LoRA run on 2 torchrun processes whose dataset is one video (both ranks see it)."""
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(root / "weights/transformer"), "train_data": [str(root / "data")], "valid_data": None,
                 "save": str(root / f"ckpt-{name}"), "train_iters": 3, "save_interval": 1000, "log_interval": 1,
                 "experiment_name": name, "summary_dir": str(root)},
        "deepspeed": {"optimizer": {"params": {"lr": 1.0}}},
        "model": {**weight_paths(root / "weights"), "first_stage_config": {"params": {
            "ckpt_path": str(root / "weights/vae/3d-vae.pt"), "cp_size": cp_size}}},
    }), override)
    out = root / name
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # set by an in-process run of train_video earlier in this session
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests/train_ddp_worker.py"), str(out), "--base", LORA_MODEL, SFT, str(override),
               "--seed", "1"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


@pytest.mark.slow  # two 2-process DeepSpeed runs
def test_training_with_cp_size_2_gives_the_losses_of_cp_size_1(tmp_path):
    """Both ranks see the same video (a one-video dataset), so the group's broadcast input is each rank's own and the
    split encode must give each rank the latents, hence the losses, of its unsplit encode (9 frames: 5 + 4). The ranks
    draw their timesteps from their own ranges, so a one-process run is no peer: the peer is cp_size 1 on 2 ranks."""
    make_tiny_weights(MODEL, str(tmp_path / "weights"), seed=0)
    write_dataset(tmp_path / "data", 1)
    plain, split = train_two_ranks(tmp_path, "cp1", 1), train_two_ranks(tmp_path, "cp2", 2)
    for rank in (0, 1):
        assert split[rank]["drawn"] == plain[rank]["drawn"] and len(plain[rank]["losses"]) == 3
        for a, b in zip(split[rank]["losses"], plain[rank]["losses"]):
            assert abs(a - b) <= 1e-5 * abs(b), (rank, split[rank]["losses"], plain[rank]["losses"])
