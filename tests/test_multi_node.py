"""finetune_multi_gpus.sh on several machines: two launchers of one process each, as two nodes rendezvousing on the
loopback address, train as one launcher with two processes (same per-step losses, same saved weights)."""

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from checkpoints.sat_checkpoint import checkpoint_path, read_model_states
from test_train_finetune import FRAMES, LORA_MODEL, REPO, SFT, write_video
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # DeepSpeed training runs, three processes at a time
ITERATIONS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_config(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    weights = tmp_path / "weights"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(weights / "transformer"), "train_data": [str(tmp_path / "data")], "valid_data": None,
                 "save": str(tmp_path / name), "train_iters": ITERATIONS, "save_interval": ITERATIONS,
                 "log_interval": 1, "experiment_name": name, "summary_dir": str(tmp_path)},
        "data": {"params": {"max_num_frames": FRAMES}},
        "model": {
            "conditioner_config": {"params": {"emb_models": [{
                "is_trainable": False, "input_key": "txt", "ucg_rate": 0.1,
                "target": "sgm.modules.encoders.modules.FrozenT5Embedder",
                "params": {"model_dir": str(weights / "t5"), "max_length": 226}}]}},
            "first_stage_config": {"params": {"ckpt_path": str(weights / "vae/3d-vae.pt")}},
        },
    }), path)
    return str(path)


def launch(config: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}  # conftest: this venv's torchrun and python first
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.Popen(["bash", "finetune_multi_gpus.sh", LORA_MODEL, SFT, config, "--seed", "1"], cwd=REPO,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    try:
        output, _ = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output[-4000:]
    return output


def losses(output: str) -> list[str]:
    return re.findall(r"iteration +(\d+)/ +\d+ \|.*? total loss (\S+) \|", output)


def trained_weights(save: Path) -> dict[str, torch.Tensor]:
    path, iteration = checkpoint_path(next(save.iterdir()))
    assert iteration == ITERATIONS
    return read_model_states(path)


def test_two_nodes_of_one_process_train_as_one_node_of_two(tmp_path):
    make_tiny_weights(str(REPO / "configs/tiny/cogvideox_tiny.yaml"), str(tmp_path / "weights"), seed=0)
    write_video(tmp_path / "data", "wave", "colourful waves drifting to the left")
    write_video(tmp_path / "data", "wave2", "colourful waves drifting to the right")

    one_node = finish(launch(run_config(tmp_path, "one_node"), NPROC="2"))
    assert "--standalone" in one_node
    port = str(free_port())
    nodes = [launch(run_config(tmp_path, "two_nodes"), NPROC="1", NNODES="2", NODE_RANK=str(rank),
                    MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for rank in (0, 1)]
    node0, node1 = (finish(node) for node in nodes)
    assert "--nnodes=2" in node0 and "--node_rank=1" in node1 and "--standalone" not in node0

    expected = losses(one_node)
    assert [step for step, _ in expected] == [str(i) for i in range(1, ITERATIONS + 1)]
    assert losses(node0) == expected  # rank 0 prints the losses averaged over both ranks
    one, two = trained_weights(tmp_path / "one_node"), trained_weights(tmp_path / "two_nodes")
    assert one.keys() == two.keys()
    assert all(torch.equal(value, two[key]) for key, value in one.items())
