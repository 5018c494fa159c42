"""Fine-tuning the tiny 5B-I2V-shaped model end to end (CPU): LoRA through finetune_single_gpu.sh, full fine-tune
through train_video.py, both with the training-time I2V sampling (eval) on; checkpoints stay slim."""

import glob
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import train_video
from checkpoints.sat_checkpoint import LORA_BASE_KEY, checkpoint_path, is_lora_key, read_checkpoint_states
from test_train_finetune import REPO, SFT, weights_config, write_video
from tiny_models import TINY_I2V_CONFIG
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # DeepSpeed training runs, an entry-script subprocess

I2V_MODEL = str(REPO / TINY_I2V_CONFIG)
I2V_LORA_MODEL = str(REPO / "configs/tiny/cogvideox_tiny_i2v_lora.yaml")
POS_EMBEDDING = "model.diffusion_model.mixins.pos_embed.pos_embedding"


@pytest.fixture(scope="module")
def tiny_i2v(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2v_finetune")
    make_tiny_weights(I2V_MODEL, str(root / "weights"), seed=0)
    write_video(root / "data", "wave", "colourful waves drifting to the left")
    paths = root / "paths.yaml"
    weights_config(root, paths)
    base_path, _ = checkpoint_path(root / "weights/transformer")
    return {"root": root, "paths": str(paths), "base": str(root / "weights/transformer"),
            "base_state": read_checkpoint_states(base_path)["module"]}


def run_args(tiny_i2v, name: str, **args) -> Path:
    override = tiny_i2v["root"] / f"{name}.yaml"
    data = str(tiny_i2v["root"] / "data")
    OmegaConf.save(OmegaConf.create({"args": {
        "load": tiny_i2v["base"], "train_data": [data], "valid_data": [data], "save": str(tiny_i2v["root"] / name),
        "save_interval": 1000, "log_interval": 10, "experiment_name": name,
        "summary_dir": str(tiny_i2v["root"]), **args}}), override)
    return override


def test_i2v_lora_with_finetune_script_saves_only_lora(tiny_i2v):
    override = run_args(tiny_i2v, "lora", train_iters=4, eval_interval=4)
    env = {**os.environ, "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # set by an in-process run of train_video earlier in this session
    command = ["bash", "finetune_single_gpu.sh", I2V_LORA_MODEL, SFT, tiny_i2v["paths"], str(override)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    folder = next((tiny_i2v["root"] / "lora").iterdir())
    path, iteration = checkpoint_path(folder)
    states = read_checkpoint_states(path)
    meta = json.loads((path.parent / "training_state.json").read_text())
    assert iteration == 4
    assert len(meta["trained_parameters"]) == 16 and all(is_lora_key(k) for k in meta["trained_parameters"])
    assert POS_EMBEDDING not in meta["trained_parameters"]  # frozen by not_trainable_prefixes: ['all']
    assert sorted(states["module"]) == sorted(meta["trained_parameters"])
    assert states[LORA_BASE_KEY] == os.path.abspath(tiny_i2v["base"])
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in states["module"].items() if ".matrix_B." in k)
    assert (folder / "video/latents/latents_gs-000004/latent.pt").is_file()  # the I2V eval sampling ran


def test_i2v_full_finetune_trains_the_position_table(tiny_i2v):
    override = run_args(tiny_i2v, "full", train_iters=3, eval_interval=3, only_log_video_latents=False)
    engine = train_video.main(["--base", I2V_MODEL, SFT, tiny_i2v["paths"], str(override), "--seed", "1"]).module
    folder = next((tiny_i2v["root"] / "full").iterdir())
    states = read_checkpoint_states(checkpoint_path(folder)[0])["module"]
    final = engine.state_dict()
    assert set(states) == {key for key in final if key.startswith("model.")}
    assert {"model.diffusion_model.mixins.pos_embed.freqs_sin", "model.diffusion_model.mixins.pos_embed.freqs_cos",
            POS_EMBEDDING} <= set(states)
    assert not torch.equal(states[POS_EMBEDDING], tiny_i2v["base_state"][POS_EMBEDDING])  # trained
    for key, value in states.items():
        assert torch.equal(value, final[key]), key
    assert glob.glob(str(folder / "video/samples_gs-000003/000000.mp4"))
