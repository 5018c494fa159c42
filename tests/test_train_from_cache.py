"""Training from a latent cache is training from the videos: same per-iteration losses, same trained weights
(fp32, 1e-6 relative), LoRA and full fine-tune, validation included; and the run never reads the T5 or VAE
encoder weights."""

import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cache_runs import LossRecorder, OpenedFiles, make_cache, train
from tiny.videos import write_dataset
from test_train_finetune import LORA_MODEL, MODEL, weights_config
from tiny.weights import make_tiny_weights

pytestmark = pytest.mark.slow  # DeepSpeed training runs

VIDEOS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("from_cache")
    make_tiny_weights(MODEL, str(root / "weights"), seed=0)
    data = write_dataset(root / "data", VIDEOS)
    paths = weights_config(root, root / "paths.yaml")
    cache = make_cache(LORA_MODEL, paths, data, root / "cache")
    return {"root": root, "paths": paths, "data": str(data), "cache": str(cache)}


def assert_close_relative(a: list[float], b: list[float], rel: float = 1e-6) -> None:
    assert len(a) == len(b) and len(a) > 0, (a, b)
    for x, y in zip(a, b):
        assert math.isclose(x, y, rel_tol=rel, abs_tol=0.0), (a, b)


def assert_same_trained(a: torch.nn.Module, b: torch.nn.Module) -> None:
    trained_a = {n: p for n, p in a.named_parameters() if p.requires_grad}
    trained_b = {n: p for n, p in b.named_parameters() if p.requires_grad}
    assert trained_a.keys() == trained_b.keys() and trained_a
    for name, value in trained_a.items():
        torch.testing.assert_close(trained_b[name], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_cached_run_equals_video_run(setup, kind, monkeypatch):
    """6 steps with a validation at steps 3 and 6 (LoRA: latents only; full: decoded videos too)."""
    model, lr = (LORA_MODEL, 1.0) if kind == "lora" else (MODEL, 0.1)
    runs, recorder = {}, LossRecorder(monkeypatch)
    for source in ("data", "cache"):
        engine, folder = train(setup["root"], setup["paths"], f"{kind}-{source}", model, [setup[source]], lr=lr,
                               train_iters=6, valid_data=[setup[source]], eval_interval=3,
                               only_log_video_latents=kind == "lora")
        runs[source] = (engine, recorder.take(), folder)
    assert len(runs["data"][1]) == 6 + 2  # 6 training steps, 2 evaluations
    assert_close_relative(runs["data"][1], runs["cache"][1])
    assert_same_trained(runs["data"][0], runs["cache"][0])
    cached_engine, _, folder = runs["cache"]
    if kind == "lora":
        assert cached_engine.first_stage_model is None
        assert (folder / "video/latents/latents_gs-000006/latent.pt").is_file()
    else:  # the decoder alone, for the decoded samples
        assert cached_engine.first_stage_model.encoder is None
        assert (folder / "video/samples_gs-000006/000000.mp4").is_file()
    assert not [n for n, _ in cached_engine.named_parameters() if n.startswith("conditioner.")]


def test_cached_run_never_opens_t5_or_vae_weights(setup):
    weights = Path(setup["root"]) / "weights"
    with OpenedFiles() as opened:
        engine, _ = train(setup["root"], setup["paths"], "audit", LORA_MODEL, [setup["cache"]], train_iters=2)
    read = [p for p in opened.paths if Path(p).resolve().is_relative_to(weights / "t5")
            or Path(p).resolve() == (weights / "vae/3d-vae.pt").resolve()]
    assert read == []
    assert any(Path(p).resolve().is_relative_to(weights / "transformer") for p in opened.paths)  # the hook works
    assert engine.first_stage_model is None


def test_cache_for_another_frame_count_is_refused_before_the_model_is_built(setup, monkeypatch, capsys):
    from diffusion_video import SATVideoDiffusionEngine
    from input_errors import EXIT_STATUS

    def not_built(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(SATVideoDiffusionEngine, "__init__", not_built)
    nine_frames = OmegaConf.load(setup["paths"])
    nine_frames.data.params.max_num_frames = 9
    paths = Path(setup["root"]) / "nine_frames.yaml"
    OmegaConf.save(nine_frames, paths)
    with pytest.raises(SystemExit) as exited:  # train_video.main reports the InputError as one line, exit 2
        train(setup["root"], str(paths), "refused", LORA_MODEL, [setup["cache"]], train_iters=1)
    assert exited.value.code == EXIT_STATUS
    assert re.search(r"error: latent cache .* was made with other settings.*data\.max_num_frames: cache 5, run 9",
                     capsys.readouterr().err)
