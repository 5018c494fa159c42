"""--first-block-cache (dit/first_block_cache.py): the same skipped DiT calls and latents as diffusers' first-block
cache on the exported tiny 2B and 1.5 models, threshold 0 = no cache bit for bit, bad values refused."""

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXPipeline

import sample_video
import train_video
from arguments import build_parser
from benchmarks.diffusers_peer import record_first_block_cache
from diffusion_video import SATVideoDiffusionEngine
from dit.first_block_cache import FirstBlockCacheSettings, first_block_cache_threshold
from input_errors import InputError
from parallel_worker import latent_frames, one_video, run_parallel
from checkpoints.sat_checkpoint import load_sat_checkpoint
from test_diffusers_pipeline_export import export, pipe_call, sampling_config
from tiny_models import build_engine
from video_sampling import SamplingPlan, encode_prompt

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red fox trots across a snowy meadow"
NUM_STEPS = 10  # a step count at which diffusers' trailing spacing visits the reference's DDPM indices
SEED = 3


def sample_both(models, tmp_path, num_latent_frames: int, thresholds: list[float]):
    """Per threshold: our latents and skips, diffusers' latents and skips (same exported weights, noise, SDE draws)."""
    config = sampling_config(models, models.config_path, NUM_STEPS)
    exported = export(tmp_path, config, models.transformer)
    engine = build_engine(models, config)
    cond, uc = encode_prompt(engine, PROMPT)
    shape = (num_latent_frames, 16, 8, 12)  # (t, c, h, w)
    for threshold in thresholds:
        engine.first_block_cache = FirstBlockCacheSettings(threshold)
        ours = engine.sample(cond, uc, 1, shape, torch.Generator().manual_seed(SEED))[0]  # (t, c, h, w)
        pipe = CogVideoXPipeline.from_pretrained(exported)
        theirs_skipped = record_first_block_cache(pipe, threshold)
        replay = torch.Generator().manual_seed(SEED)
        noise = torch.randn(1, *shape, generator=replay)  # as engine.sample draws it
        frames = num_latent_frames - (1 if pipe.transformer.config.patch_size_t else 0)  # 1.5: diffusers adds the padding
        theirs = pipe_call(pipe, cond, frames, NUM_STEPS, noise, replay, output_type="latent")  # (t, c, h, w)
        yield ours, engine.first_block_cache_record.skipped, theirs, theirs_skipped


@pytest.mark.slow
@pytest.mark.parametrize("models_fixture, num_latent_frames", [("tiny_models", 3), ("tiny_15_models", 6)])
def test_skips_and_latents_match_diffusers(models_fixture, num_latent_frames, request, tmp_path):
    """Two thresholds on each tiny model (its random weights change the residual by 0.7-2.9 per call): the same
    calls skipped (counted on both sides), latents within the T2V tests' tolerance."""
    models = request.getfixturevalue(models_fixture)
    expected_skips = {"tiny_models": [1, 7], "tiny_15_models": [2, 5]}[models_fixture]
    runs = sample_both(models, tmp_path, num_latent_frames, [1.0, 1.3])
    for (ours, ours_skipped, theirs, theirs_skipped), skips in zip(runs, expected_skips, strict=True):
        assert ours_skipped == theirs_skipped
        assert len(ours_skipped) == NUM_STEPS and sum(ours_skipped) == skips and not ours_skipped[0]
        assert (ours - theirs).abs().max().item() < 1e-3


def test_threshold_zero_is_no_cache_and_a_cache_that_never_skips_changes_no_bit(tiny_models):
    """--first-block-cache 0 builds no cache; a threshold no change reaches runs the hooks and measures every call,
    and gives the uncached latents bit for bit; the hook is gone after the run."""
    engine = build_engine(tiny_models)
    assert SATVideoDiffusionEngine(argparse.Namespace(model_config=tiny_models.model_config(), fp16=False, bf16=False,
                                                      first_block_cache="0")).first_block_cache is None
    cond, uc = encode_prompt(engine, PROMPT)
    shape = (3, 16, 8, 12)  # (t, c, h, w)
    plain = engine.sample(cond, uc, 1, shape, torch.Generator().manual_seed(SEED))
    engine.first_block_cache = FirstBlockCacheSettings(1e-9)
    measured = engine.sample(cond, uc, 1, shape, torch.Generator().manual_seed(SEED))
    assert torch.equal(measured, plain)
    assert engine.first_block_cache_record.skipped == [False] * 10
    assert "first_block_cache" not in engine.model.diffusion_model.mixins


def test_validation_videos_of_training_use_the_cache(tiny_models):
    """The training parser's --first-block-cache reaches the engine SAT builds, and its validation sampling skips,
    through SAT's activation-checkpointing layer loop (the released training configs turn it on)."""
    args = build_parser().parse_args(["--first-block-cache", "1.3"])
    args.model_config, args.fp16, args.bf16 = tiny_models.model_config(), False, False
    args.model_config.network_config.params.transformer_args.checkpoint_activations = True
    args.first_block_cache = first_block_cache_threshold(args.first_block_cache)  # as train_video.py
    engine = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(engine, str(tiny_models.transformer))
    batch = {"mp4": torch.rand(1, 9, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1, "txt": [PROMPT],
             "num_frames": torch.tensor([9]), "fps": torch.tensor([8])}
    engine.eval().log_video(batch, only_log_video_latents=True, generator=torch.Generator().manual_seed(1))
    skipped = engine.first_block_cache_record.skipped
    assert len(skipped) == 10 and 0 < sum(skipped) < 10


@pytest.mark.slow
@pytest.mark.parametrize("models_fixture, cfg, sequence", [("tiny_models", 2, 1), ("tiny_15_models", 1, 2)])
def test_two_ranks_take_the_one_process_decisions(models_fixture, cfg, sequence, request, tmp_path):
    """Guidance parallel (a branch per rank) and sequence parallel (half the tokens per rank): the ranks' summed
    measure gives the one-process skips, and the video equals the one-process one as the uncached runs do
    (tests/test_parallel_sampling.py: bit for bit with guidance parallel, 1e-5 relative with sequence parallel)."""
    models = request.getfixturevalue(models_fixture)
    torch.set_num_threads(1)  # as each spawned rank
    engine = build_engine(models)
    engine.first_block_cache = FirstBlockCacheSettings(1.2)
    frames = latent_frames(models)
    expected = one_video(engine, SamplingPlan(frames, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused"))
    skipped = engine.first_block_cache_record.skipped
    assert 0 < sum(skipped) < len(skipped)
    ranks = run_parallel(models, world=2, cfg=cfg, sequence=sequence, frames=frames, out=tmp_path, first_block_cache=1.2)
    for result in ranks:
        assert result["skipped"].tolist() == skipped
        difference = float((result["video"] - expected).abs().max() / expected.abs().max())
        assert difference == 0 if cfg == 2 else difference < 1e-5


@pytest.mark.parametrize("entry, value", [(sample_video, "-0.5"), (train_video, "abc")])
def test_bad_threshold_on_the_command_line_is_one_error_line(entry, value, capsys, monkeypatch):
    for name, setting in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, setting)
    base = ["configs/tiny/cogvideox_tiny.yaml", "configs/tiny/sft_tiny.yaml"]
    with pytest.raises(SystemExit) as done:
        entry.main(["--base", *base, "--first-block-cache", value])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --first-block-cache (or args.first_block_cache in {base}) must be a number >= 0 (0 = off; e.g. 0.05 "
        f"or 0.1), got {value!r}")


def test_zero3_training_refuses_the_cache(capsys, monkeypatch):
    for name, setting in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, setting)
    with pytest.raises(SystemExit) as done:
        train_video.main(["--base", "configs/tiny/cogvideox_tiny.yaml", "configs/tiny/sft_tiny_zero3.yaml",
                          "--first-block-cache", "0.1"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --first-block-cache 0.1 with ZeRO-3: every rank samples its own validation batch")


@pytest.mark.parametrize("value", ["nan", "inf", None, True])
def test_threshold_that_is_no_finite_number_is_refused(value):
    with pytest.raises(InputError, match=r"--first-block-cache must be a number >= 0"):
        first_block_cache_threshold(value)


@pytest.mark.slow
def test_the_documented_demo_line_runs_as_written(tmp_path):
    """docs/first_block_cache.md's tiny demo, run by bash in a scratch folder that links the repository's files (so the
    weights and videos it writes land there): three videos, each with its summary line, some calls skipped."""
    text = (REPO / "docs" / "first_block_cache.md").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("python tools/make_tiny_weights.py")]
    for entry in REPO.iterdir():
        if not entry.name.startswith((".", "tiny_weights", "outputs")):
            (tmp_path / entry.name).symlink_to(entry)
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env['PATH']}"
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "outputs_first_block_cache").rglob("*.mp4"))) == 3
    skipped = [int(n) for n in re.findall(r"^first-block cache 1: skipped (\d+) of 10 DiT calls", done.stdout, re.M)]
    assert len(skipped) == 3 and all(0 < n < 10 for n in skipped), done.stdout[-3000:]
