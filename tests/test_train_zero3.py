"""ZeRO-3 full fine-tuning on two CPU processes (torchrun, gloo) against ZeRO-2 on the same seed.

Three runs of the tiny full fine-tune, 4 steps each, a checkpoint and a validation every 2 (validation on, as the
configs ship): ZeRO-2 (configs/tiny/sft_tiny.yaml), ZeRO-3 with optimizer and parameter offload
(configs/tiny/sft_tiny_zero3.yaml), and ZeRO-3 resumed from the second run's iteration-2 checkpoint.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from pathlib import Path
from omegaconf import OmegaConf

import sample_video
from checkpoints.sat_checkpoint import checkpoint_path, read_checkpoint_states
from test_train_finetune import INFERENCE, MODEL, REPO, weights_config, write_video
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # torchrun DeepSpeed training runs

ZERO2 = str(REPO / "configs/tiny/sft_tiny.yaml")
ZERO3 = str(REPO / "configs/tiny/sft_tiny_zero3.yaml")
STEPS = 4


def two_rank_run(root, name: str, bases: list[str], timeout: int) -> tuple[list[dict], str]:
    """tests/train_zero_worker.py on two processes (torchrun, one thread each) with the configs `bases`, writing to
    `root/out-<name>`; each rank's record and the run's output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # set by an in-process run of train_video earlier in this session
    out = root / f"out-{name}"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests/train_zero_worker.py"), str(out), "--base", *bases, "--seed", "1"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)], result.stdout + result.stderr


def torchrun(root, name: str, sft: str, load: str) -> dict:
    """Train on two processes; returns both ranks' training and validation losses, rank 0's weights, and the run
    folder."""
    override = root / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": load, "train_data": [str(root / "data")], "valid_data": [str(root / "data")],
                 "save": str(root / name), "train_iters": STEPS, "save_interval": 2, "eval_interval": 2,
                 "log_interval": 1, "experiment_name": name, "summary_dir": str(root)},
        "deepspeed": {"optimizer": {"params": {"lr": 0.01}}},
    }), override)
    ranks, log = two_rank_run(root, name, [MODEL, sft, str(root / "paths.yaml"), str(override)], timeout=600)
    # a run resumed from a run folder goes on in it (one run, one folder); any other run claims one under --save
    folder = next(p for p in (root / name).iterdir() if p.is_dir()) if (root / name).exists() else Path(load)
    return {"losses": [ranks[0]["losses"], ranks[1]["losses"]], "eval_losses": [r["eval_losses"] for r in ranks],
            "weights": ranks[0]["weights"], "folder": folder, "log": log}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3")
    make_tiny_weights(MODEL, str(root / "weights"), seed=0)
    write_video(root / "data", "wave", "colourful waves drifting to the left")
    weights_config(root, root / "paths.yaml")
    base = str(root / "weights/transformer")
    zero2 = torchrun(root, "zero2", ZERO2, base)
    zero3 = torchrun(root, "zero3", ZERO3, base)
    half = root / "half"
    shutil.copytree(zero3["folder"] / "2", half / "2")
    (half / "latest").write_text("2")
    resumed = torchrun(root, "resumed", ZERO3, str(half))
    return {"root": root, "zero2": zero2, "zero3": zero3, "resumed": resumed}


def test_zero3_losses_equal_zero2(runs):
    # Measured: the per-step losses of both ranks are bitwise equal; the trained weights differ by at most
    # ~3e-6 (the gradient reduce-scatter sums in another order).
    for rank in (0, 1):
        zero2, zero3 = runs["zero2"]["losses"][rank], runs["zero3"]["losses"][rank]
        assert len(zero2) == len(zero3) == STEPS
        torch.testing.assert_close(torch.tensor(zero3), torch.tensor(zero2), atol=1e-5, rtol=0)
    assert runs["zero2"]["losses"][0] != runs["zero2"]["losses"][1]  # each rank trains on its own draws
    weights2, weights3 = runs["zero2"]["weights"], runs["zero3"]["weights"]
    assert weights2.keys() == weights3.keys() and len(weights3) == 52
    for key in weights2:
        torch.testing.assert_close(weights3[key], weights2[key], atol=2e-5, rtol=0)


def logged_validation(log: str) -> list[tuple[str, float]]:
    """(iteration, loss) of SAT's `validation loss at iteration N | loss: X | ...` lines."""
    found = re.findall(r"validation loss at iteration (\d+) \| loss: (\S+) \|", log)
    return [(iteration, float(loss)) for iteration, loss in found]


def test_zero3_validation_logs_equal_zero2(runs):
    # every rank samples under ZeRO-3 (each forward gathers parameters from all ranks); rank 0 writes the logs
    for rank in (0, 1):
        zero2, zero3 = runs["zero2"]["eval_losses"][rank], runs["zero3"]["eval_losses"][rank]
        assert len(zero2) == len(zero3) == STEPS // 2
        torch.testing.assert_close(torch.tensor(zero3), torch.tensor(zero2), atol=1e-5, rtol=0)
    zero2, zero3 = (logged_validation(runs[name]["log"]) for name in ("zero2", "zero3"))
    assert [i for i, _ in zero2] == [i for i, _ in zero3] == ["2", "4"], (zero2, zero3)
    torch.testing.assert_close(torch.tensor([v for _, v in zero3]), torch.tensor([v for _, v in zero2]),
                               atol=1e-5, rtol=0)
    for iteration in (2, 4):
        texts = f"video_texts/{iteration:08d}"
        assert (runs["zero3"]["folder"] / texts).read_text() == (runs["zero2"]["folder"] / texts).read_text()
        latents = [torch.load(runs[name]["folder"] / f"video/latents/latents_gs-{iteration:06d}/latent.pt")
                   for name in ("zero2", "zero3")]
        # measured: 1.0e-5 at most (the sampler's steps carry the ~3e-6 weight differences of the reduce order)
        torch.testing.assert_close(latents[1], latents[0], atol=5e-5, rtol=0)


def test_zero3_checkpoint_holds_the_gathered_weights(runs):
    states = read_checkpoint_states(checkpoint_path(runs["zero3"]["folder"])[0])["module"]
    gathered = runs["zero3"]["weights"]
    assert set(gathered) < set(states) and all(key.startswith("model.") for key in states)
    for key, value in gathered.items():
        assert torch.equal(states[key], value), key
    assert sorted(p.name for p in (runs["zero3"]["folder"] / "4").glob("training_state_dp*")) == [
        "training_state_dp000_mp00.pt", "training_state_dp001_mp00.pt"]


def test_zero3_resume_continues_the_run(runs):
    straight, resumed = runs["zero3"], runs["resumed"]
    assert checkpoint_path(resumed["folder"])[1] == STEPS
    for rank in (0, 1):
        assert resumed["losses"][rank] == straight["losses"][rank][2:]
        assert resumed["eval_losses"][rank] == straight["eval_losses"][rank][1:]
    for key, value in straight["weights"].items():
        torch.testing.assert_close(resumed["weights"][key], value, atol=1e-6, rtol=0)


def test_sample_video_reads_the_zero3_checkpoint(runs, tmp_path):
    (tmp_path / "prompts.txt").write_text("colourful waves drifting to the left\n")
    override = tmp_path / "sample.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": str(runs["zero3"]["folder"]), "output_dir": str(tmp_path / "out"), "sampling_num_frames": 3,
        "input_file": str(tmp_path / "prompts.txt")}}), override)
    sample_video.main(["--base", MODEL, INFERENCE, str(runs["root"] / "paths.yaml"), str(override), "--seed", "3"])
    videos = glob.glob(str(tmp_path / "out/0_*/0/000000.mp4"))
    assert len(videos) == 1 and os.path.getsize(videos[0]) > 0
