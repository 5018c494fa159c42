"""Text-to-video sampling end to end on the tiny model set: against diffusers' CogVideoXPipeline, seeding, CLI."""

import os
import subprocess
import sys

import decord
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from omegaconf import OmegaConf
from transformers import T5EncoderModel, T5Tokenizer

from model_family import allowed_sampling_frames
from checkpoints.sat_checkpoint import read_model_states
from tiny_models import build_engine
from interop import vae_keys
from interop.diffusers_scheduler import scheduler_config
from interop.sat_to_diffusers import diffusers_config, extract_transformer_state_dict, sat_to_diffusers_state_dict
from video_sampling import Prompt, SamplingPlan, encode_prompt, generate_video, sample_seed

PROMPT = "a red fox trots across a snowy meadow"
DIFFUSERS_2B_SCHEDULER = scheduler_config({"shift_scale": 3.0})  # the 2B sampler's schedule in diffusers


def diffusers_pipeline(models, model_config) -> CogVideoXPipeline:
    sat_states = read_model_states(models.transformer / "1" / "mp_rank_00_model_states.pt")
    network_config = OmegaConf.to_container(model_config.network_config, resolve=True)
    transformer = CogVideoXTransformer3DModel(**diffusers_config(network_config))
    converted = sat_to_diffusers_state_dict(extract_transformer_state_dict(sat_states), transformer.config.use_learned_positional_embeddings)
    transformer.load_state_dict(converted, strict=True)
    vae_states = torch.load(models.vae, map_location="cpu", weights_only=True)["state_dict"]
    vae = AutoencoderKLCogVideoX(**vae_keys.diffusers_config(vae_states, scaling_factor=model_config.scale_factor))
    vae.load_state_dict(vae_keys.sat_to_diffusers(vae_states), strict=True)
    return CogVideoXPipeline(
        tokenizer=T5Tokenizer.from_pretrained(models.t5),
        text_encoder=T5EncoderModel.from_pretrained(models.t5),
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=CogVideoXDDIMScheduler(**DIFFUSERS_2B_SCHEDULER),
    )


def ddim_config(models, num_steps: int, shift_scale: float = 3.0):
    """Deterministic DDIM with DynamicCFG on diffusers' full-table schedule (the reference's own rescales the selected
    steps only, see ZeroSNRDDPMDiscretization); zero-SNR shift 3.0 (2B) or 1.0 (5B)."""
    config = models.model_config()
    discretization = {"target": "sgm.modules.diffusionmodules.discretizer.ZeroSNRDDPMDiscretization",
                      "params": {"shift_scale": shift_scale, "rescale_selected_steps": False}}
    config.sampler_config = {
        "target": "sgm.modules.diffusionmodules.sampling.VideoDDIMSampler",
        "params": {"num_steps": num_steps, "discretization_config": discretization,
                   "guider_config": {"target": "sgm.modules.diffusionmodules.guiders.DynamicCFG",
                                     "params": {"scale": 6, "exp": 5, "num_steps": num_steps}}},
    }
    return config


def test_ddim_sampling_matches_diffusers_pipeline(tiny_models):
    num_steps, num_latent_frames = 8, 5
    config = ddim_config(tiny_models, num_steps)
    engine = build_engine(tiny_models, config)
    plan = SamplingPlan(num_latent_frames, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused")
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed)  # (T, 3, H, W) in [0, 1]

    height, width = 8 * config.network_config.params.latent_height, 8 * config.network_config.params.latent_width
    noise = torch.randn(1, num_latent_frames, 16, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))
    pipe = diffusers_pipeline(tiny_models, config)
    with torch.no_grad():
        theirs = pipe(
            prompt_embeds=cond["crossattn"], negative_prompt_embeds=torch.zeros_like(cond["crossattn"]),
            height=height, width=width, num_frames=4 * (num_latent_frames - 1) + 1, num_inference_steps=num_steps,
            guidance_scale=6, use_dynamic_cfg=True, latents=noise, output_type="pt",
        ).frames[0]  # (T, 3, H, W) in [0, 1]
    assert ours.shape == theirs.shape == (17, 3, height, width)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01  # a real video, not a constant


def test_seed_controls_the_video(tiny_models):
    engine = build_engine(tiny_models)
    plan = SamplingPlan(3, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused")
    cond, uc = encode_prompt(engine, PROMPT)
    first, again, other = (generate_video(engine, cond, uc, plan, seed) for seed in (11, 11, 12))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.05


def test_allowed_sampling_frames_follow_position_table(tiny_models):
    assert allowed_sampling_frames(tiny_models.model_config()) == [3, 5, 7, 9, 11, 13]


def run_sample_video(tmp_path, models, *extra):
    model_yaml = models.write_config(tmp_path / "model.yaml")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\na dog on a skateboard\n")
    command = [sys.executable, "sample_video.py", "--base", str(model_yaml), "configs/tiny/inference_tiny.yaml",
               "--load", str(models.transformer), "--input-file", str(prompts), "--output-dir", str(tmp_path / "out"),
               "--sampling-num-frames", "3", *extra]
    env = {**os.environ, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_sample_video_script_writes_expected_mp4s(tmp_path, tiny_models):
    result = run_sample_video(tmp_path, tiny_models, "--seed", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    expected = [out / "0_a_cat" / "0" / "000000.mp4", out / "1_a_dog_on_a_skateboard" / "0" / "000000.mp4"]
    assert sorted(p for p in out.rglob("*.mp4")) == expected
    for path in expected:
        reader = decord.VideoReader(str(path))
        assert len(reader) == 9 and reader[0].shape == (64, 96, 3) and round(reader.get_avg_fps()) == 8
        frames = reader.get_batch(list(range(9))).asnumpy()
        assert np.ptp(frames) > 10


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (("--sampling-num-frames", "4"), "sampling_num_frames=4"),
        (("--load", "/nonexistent/ckpt"), "/nonexistent/ckpt"),
        (("--input-file", "/nonexistent/prompts.txt"), "/nonexistent/prompts.txt"),
    ],
)
def test_sample_video_bad_input_gives_one_clear_message(tmp_path, tiny_models, extra, message):
    result = run_sample_video(tmp_path, tiny_models, *extra)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sample_video_missing_t5_folder_gives_one_clear_message(tmp_path, tiny_models):
    bad = tmp_path / "bad_t5.yaml"
    bad.write_text("model:\n  conditioner_config:\n    params:\n      emb_models:\n"
                   "      - {is_trainable: false, input_key: txt, ucg_rate: 0.1,\n"
                   "         target: sgm.modules.encoders.modules.FrozenT5Embedder,\n"
                   "         params: {model_dir: /nonexistent/t5-v1_1-xxl, max_length: 226}}\n")
    result = run_sample_video(tmp_path, tiny_models, "--base", str(tiny_models.write_config(tmp_path / "m.yaml")),
                              "configs/tiny/inference_tiny.yaml", str(bad))
    assert result.returncode != 0
    assert "/nonexistent/t5-v1_1-xxl" in result.stderr and "spiece.model" in result.stderr
    assert "Traceback" not in result.stderr


def test_reference_config_setting_device_on_sampler_and_t5_loads_and_samples_the_same(tiny_models):
    """The reference's sampler and FrozenT5Embedder take `device`; a config that sets it builds and gives the same video."""
    config = tiny_models.model_config()
    config.sampler_config.params.num_steps = 3
    config.sampler_config.params.guider_config.params.num_steps = 3
    with_device = config.copy()
    with_device.sampler_config.params.device = "cpu"
    with_device.conditioner_config.params.emb_models[0].params.device = "cpu"
    plan = SamplingPlan(3, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused")
    videos = []
    for model_config in (config, with_device):
        engine = build_engine(tiny_models, model_config)
        cond, uc = encode_prompt(engine, PROMPT)
        videos.append(generate_video(engine, cond, uc, plan, seed=11))
    assert engine.sampler.device == torch.device("cpu") and engine.conditioner.embedders[0].device == torch.device("cpu")
    assert torch.equal(videos[0], videos[1])


def test_vae_decode_shows_a_progress_bar_over_its_chunks(tiny_models, capsys):
    engine = build_engine(tiny_models)
    cond, uc = encode_prompt(engine, PROMPT)
    capsys.readouterr()
    generate_video(engine, cond, uc, SamplingPlan(5, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused"), 11)
    err = capsys.readouterr().err
    assert "VAE decode: 100%" in err and "2/2" in err  # chunks [0:3], [3:5]
