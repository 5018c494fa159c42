"""End-to-end fine-tuning on the tiny model (CPU): LoRA and full fine-tune through train_video.py's SAT loop.

One synthetic video (made here with imageio) is the dataset. The loss is measured with `training.fixed_loss`
(posterior mean latents, no text dropout) at fixed high-noise DDPM indices with fixed noise: at high noise the
v-target is mostly the clean video, so the probe measures how much of the video the weights have learned, not
generic denoising skill.
"""

import argparse
import glob
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import sample_video
import train_video
from data_video import SFTDataset
from diffusion_video import SATVideoDiffusionEngine
from checkpoints.sat_checkpoint import (
    LORA_BASE_KEY,
    checkpoint_path,
    is_lora_key,
    load_sat_checkpoint,
    read_checkpoint_states,
)
from tiny.weights import make_tiny_weights, weight_paths
from tiny.videos import write_video
from training.fixed_loss import fixed_loss, make_probe

pytestmark = pytest.mark.slow  # DeepSpeed training runs

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "configs/tiny/cogvideox_tiny.yaml")
LORA_MODEL = str(REPO / "configs/tiny/cogvideox_tiny_lora.yaml")
SFT = str(REPO / "configs/tiny/sft_tiny.yaml")
INFERENCE = str(REPO / "configs/tiny/inference_tiny.yaml")
FRAMES = 5  # 2 latent frames: the cheapest clip the VAE takes
PROBE_INDICES = (600, 700, 800, 900)


def weights_config(root: Path, path: Path) -> str:
    """The YAML pointing the tiny configs at the weights under `root/weights` (and FRAMES frames per item)."""
    OmegaConf.save(OmegaConf.create({
        "data": {"params": {"max_num_frames": FRAMES}},
        "model": weight_paths(root / "weights"),
    }), path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny weights, a one-video dataset, and the YAML pointing the configs at them."""
    root = tmp_path_factory.mktemp("finetune")
    make_tiny_weights(MODEL, str(root / "weights"), seed=0)
    write_video(root / "data", "wave", "colourful waves drifting to the left")
    paths = root / "paths.yaml"
    weights_config(root, paths)
    dataset = SFTDataset(str(root / "data"), [64, 96], fps=8, max_num_frames=FRAMES, skip_frms_num=3.0)
    item = dataset[0]
    return {"root": root, "paths": str(paths), "base": str(root / "weights/transformer"),
            "batch": {"mp4": item["mp4"][None], "txt": [item["txt"]]}}


def train(tiny, name: str, model: str, lr: float, deepspeed: dict | None = None, **args):
    """Run train_video.main in-process; returns (the trained engine, its checkpoint folder or None).
    `deepspeed` adds keys to the `deepspeed:` section."""
    save = tiny["root"] / f"ckpt-{name}"
    run_args = {"load": tiny["base"], "train_data": [str(tiny["root"] / "data")], "valid_data": None,
                "save": str(save), "save_interval": 1000, "log_interval": 10, "experiment_name": name,
                "summary_dir": str(tiny["root"]), **args}
    override = tiny["root"] / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"args": run_args, "deepspeed": {"optimizer": {"params": {"lr": lr}}, **(deepspeed or {})}}),
                   override)
    model_out = train_video.main(["--base", model, SFT, tiny["paths"], str(override), "--seed", "1"])
    folders = glob.glob(str(save / f"{name}-*"))
    return getattr(model_out, "module", model_out), (Path(folders[0]) if folders else None)


def built_engine(tiny, model: str) -> SATVideoDiffusionEngine:
    """The engine train_video.py builds from `model` and loads before its first step (LoRA freshly initialised)."""
    config = OmegaConf.merge(OmegaConf.load(model), OmegaConf.load(tiny["paths"])).model
    engine = SATVideoDiffusionEngine(argparse.Namespace(model_config=config, fp16=False, bf16=False))
    load_sat_checkpoint(engine, tiny["base"], allow_missing_lora=True)
    return engine


def probe_loss(engine, tiny) -> float:
    engine.eval()
    return fixed_loss(engine, make_probe(engine, tiny["batch"], PROBE_INDICES, seed=0))


@pytest.fixture(scope="module")
def start(tiny):
    """The LoRA engine before training (LoRA B = 0, so it is the base model) and its probe loss."""
    engine = built_engine(tiny, LORA_MODEL)
    return {"state": {k: v.clone() for k, v in engine.state_dict().items()}, "loss": probe_loss(engine, tiny)}


@pytest.fixture(scope="module")
def lora_run(tiny):
    engine, folder = train(tiny, "lora", LORA_MODEL, lr=1.0, train_iters=40,
                           valid_data=[str(tiny["root"] / "data")], eval_interval=40)
    return {"engine": engine, "folder": folder, "loss": probe_loss(engine, tiny)}


def test_lora_cuts_the_loss(start, lora_run):
    # Attention-only LoRA on a random tiny base needs a rank near a quarter of the width (r=16 of 64) to reach the
    # halving; r=4 plateaus at ~0.55x because the update to the residual stream is confined to a few directions.
    # Measured: 0.46x after 40 steps.
    assert lora_run["loss"] <= 0.5 * start["loss"], (start["loss"], lora_run["loss"])


def test_lora_trains_only_lora_matrices(start, lora_run):
    final = lora_run["engine"].state_dict()
    assert final.keys() == start["state"].keys()
    lora_keys = [k for k in final if is_lora_key(k)]
    assert len(lora_keys) == 16
    for key, value in final.items():
        if is_lora_key(key):
            continue
        assert torch.equal(value, start["state"][key]), key
    assert all(not torch.equal(final[k], start["state"][k]) for k in lora_keys if ".matrix_B." in k)


def test_lora_checkpoint_holds_lora_and_records_base(tiny, lora_run):
    path, iteration = checkpoint_path(lora_run["folder"])
    states = read_checkpoint_states(path)
    assert iteration == 40
    assert set(states["module"]) == {k for k in lora_run["engine"].state_dict() if is_lora_key(k)}
    assert states[LORA_BASE_KEY] == os.path.abspath(tiny["base"])
    assert (lora_run["folder"] / "training_config.yaml").is_file()
    assert (lora_run["folder"] / "video/latents/latents_gs-000040/latent.pt").is_file()
    assert (lora_run["folder"] / "video_texts/00000040").read_text().strip() == "colourful waves drifting to the left"


def test_sample_video_reads_the_lora_checkpoint(tiny, lora_run, tmp_path):
    """From the run's iteration folder (`<run>/40`, what a file browser picks), as from the run folder."""
    (tmp_path / "prompts.txt").write_text("colourful waves drifting to the left\n")
    override = tmp_path / "sample.yaml"
    OmegaConf.save(OmegaConf.create({"args": {
        "load": str(lora_run["folder"] / "40"), "output_dir": str(tmp_path / "out"), "sampling_num_frames": 3,
        "input_file": str(tmp_path / "prompts.txt")}}), override)
    sample_video.main(["--base", LORA_MODEL, INFERENCE, tiny["paths"], str(override), "--seed", "3"])
    videos = glob.glob(str(tmp_path / "out/0_*/0/000000.mp4"))
    assert len(videos) == 1 and os.path.getsize(videos[0]) > 0


def test_merged_and_exported_lora_match_the_lora_model(tiny, lora_run, tmp_path):
    from safetensors.torch import load_file

    from tools import merge_lora
    from interop.sat_to_diffusers import extract_transformer_state_dict, sat_to_diffusers_state_dict

    merge_lora.main(["--config", LORA_MODEL, "--checkpoint", str(lora_run["folder"]),
                     "--output", str(tmp_path / "merged"), "--export-lora", str(tmp_path / "peft")])
    plain = built_engine(tiny, MODEL)
    load_sat_checkpoint(plain, tmp_path / "merged")
    lora = lora_run["engine"]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 16, 8, 12, generator=generator)  # (b, t, c, h, w)
    context = {"crossattn": torch.randn(2, 226, 32, generator=generator)}
    timesteps = torch.tensor([100, 700])
    with torch.no_grad():
        torch.testing.assert_close(plain.model(x, timesteps, context), lora.model(x, timesteps, context), atol=1e-4, rtol=0)

    # diffusers/peft export: base weight + lora_B @ lora_A (scale folded into B) == the merged weight
    merged_hf = sat_to_diffusers_state_dict(extract_transformer_state_dict(plain.state_dict()))
    exported = load_file(str(tmp_path / "peft/pytorch_lora_weights.safetensors"))
    base_hf = sat_to_diffusers_state_dict(extract_transformer_state_dict(start_free_base(tiny)))
    assert len(exported) == 16
    for key in (k for k in exported if k.endswith("lora_A.weight")):
        stem = key[len("transformer."):-len(".lora_A.weight")]
        delta = exported[key.replace("lora_A", "lora_B")] @ exported[key]
        torch.testing.assert_close(base_hf[stem + ".weight"] + delta, merged_hf[stem + ".weight"], atol=1e-6, rtol=0)


def start_free_base(tiny) -> dict:
    path, _ = checkpoint_path(tiny["base"])
    return read_checkpoint_states(path)["module"]


def test_full_finetune_halves_the_loss_and_keeps_vae_and_t5(tiny, start):
    engine, folder = train(tiny, "full", MODEL, lr=0.1, train_iters=30, valid_data=[str(tiny["root"] / "data")],
                           eval_interval=30, only_log_video_latents=False)
    loss = probe_loss(engine, tiny)
    assert loss <= 0.5 * start["loss"], (start["loss"], loss)
    final = engine.state_dict()
    for key, value in final.items():
        if key.startswith(("first_stage_model.", "conditioner.")):
            assert torch.equal(value, start["state"][key]), key
    assert not torch.equal(final["model.diffusion_model.mixins.final_layer.linear.weight"],
                           start["state"]["model.diffusion_model.mixins.final_layer.linear.weight"])
    path, _ = checkpoint_path(folder)
    states = read_checkpoint_states(path)
    assert set(states["module"]) == {k for k in final if k.startswith("model.")}
    assert states.get(LORA_BASE_KEY) is None
    assert glob.glob(str(folder / "video/samples_gs-000030/000000.mp4"))


def test_bf16_lora_finetune_runs_on_the_cpu(tiny, start):
    """bf16 end to end on the CPU (the VAE's time pooling had no bf16 CPU kernel): trains, saves, and the
    trained matrices move the probe loss the way fp32 training does."""
    engine, folder = train(tiny, "bf16", LORA_MODEL, lr=1.0, train_iters=20, save_interval=20,
                           deepspeed={"bf16": {"enabled": True}})
    assert checkpoint_path(folder)[1] == 20
    matrices = {k: v for k, v in engine.state_dict().items() if is_lora_key(k)}
    assert {v.dtype for v in matrices.values()} == {torch.bfloat16}
    assert any(v.abs().max() > 0 for k, v in matrices.items() if ".matrix_B." in k)  # B starts at 0
    assert probe_loss(engine, tiny) < start["loss"]  # probed in bf16


def test_resume_continues_the_run(tiny):
    """8 straight steps == 4 steps, save, resume for 4 (same seed, fp32), from a folder a crashed save left."""
    _, straight = train(tiny, "straight", LORA_MODEL, lr=1.0, train_iters=8, save_interval=4)
    half = tiny["root"] / "half"
    # as a run killed between publish's two renames (re-saving 4 where exchange is unsupported) leaves it
    (half / ".staging-retired-4").mkdir(parents=True)
    for file in (straight / "4").iterdir():
        (half / ".staging-retired-4" / file.name).write_bytes(file.read_bytes())
    (half / ".staging-8" / "8").mkdir(parents=True)  # and a half-written later save
    (half / "latest").write_text("4")
    (half / "notes.txt").write_text("a user's file")
    _, new_folder = train(tiny, "resumed", LORA_MODEL, lr=1.0, train_iters=8, load=str(half))
    # put back and cleaned on resume; the resumed run went on in the folder (one run, one folder), keeping other files
    assert new_folder is None and not (tiny["root"] / "ckpt-resumed").exists()
    assert sorted(p.name for p in half.iterdir()) == ["4", "8", "latest", "notes.txt", "training_config.yaml"]
    resumed = half
    assert checkpoint_path(resumed)[1] == 8
    _, from_iteration = train(tiny, "from_iteration", LORA_MODEL, lr=1.0, train_iters=8, load=str(straight / "4"))
    a = read_checkpoint_states(checkpoint_path(straight)[0])["module"]
    for other in (resumed, from_iteration):  # from a run folder, and from one of its iteration folders
        assert checkpoint_path(other)[1] == 8
        b = read_checkpoint_states(checkpoint_path(other)[0])["module"]
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


def test_crash_mid_save_keeps_the_previous_checkpoint(tiny, monkeypatch, capsys):
    from training import checkpoint_io

    real_save = checkpoint_io.save_durably

    def crash_on_second_save(obj, path):
        if Path(path).parent.name == "2" and Path(path).name.endswith("_model_states.pt"):
            raise KeyboardInterrupt("simulated kill while writing checkpoint 2")
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_io, "save_durably", crash_on_second_save)
    with pytest.raises(SystemExit) as stopped:  # a KeyboardInterrupt ends train_video in one line, status 130
        train(tiny, "crash", LORA_MODEL, lr=1.0, train_iters=3, save_interval=1)
    folder = Path(glob.glob(str(tiny["root"] / "ckpt-crash/crash-*"))[0])
    assert stopped.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted after 2 of 3 iterations: last checkpoint: {folder}/1 (continue with --load {folder})")
    path, iteration = checkpoint_path(folder)
    assert iteration == 1 and not (folder / "2").exists()
    assert set(read_checkpoint_states(path)["module"]) and (folder / "1/training_state.json").is_file()
