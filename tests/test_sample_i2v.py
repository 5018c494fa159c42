"""Image-to-video sampling end to end on the tiny 5B-I2V-shaped model set: against diffusers'
CogVideoXImageToVideoPipeline with the same noise, seeding, and the `--image2video` script."""

import os
import subprocess
import sys

import decord
import numpy as np
import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline
from PIL import Image

from image_to_video.conditioning import image_condition_pixels
from test_sample_pipeline import ddim_config, diffusers_pipeline
from tiny_models import build_engine
from interop.diffusers_scheduler import scheduler_config
from video_sampling import Prompt, SamplingPlan, encode_prompt, generate_video, sample_seed

PROMPT = "a yellow sun drifts over a gradient"
FULL_LATENT_FRAMES = 13  # diffusers uses its learned table only at the configured length (the reference slices it)


def write_image(path, height=64, width=96, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_i2v_sampling_matches_diffusers_pipeline(tiny_i2v_models, tmp_path):
    """Same image latent draw (first, from the seed's generator), same initial noise (next), same video.

    The image is already 64x96, so diffusers' own preprocessing (a plain resize to the size) and the reference's
    (cover + center crop) agree; the crop path is tested against PIL in test_image_conditioning."""
    num_steps = 4  # a step count whose DDPM indices agree between the reference (linspace) and diffusers (trailing)
    config = ddim_config(tiny_i2v_models, num_steps, shift_scale=1.0)  # the 5B shift
    engine = build_engine(tiny_i2v_models, config)
    plan = SamplingPlan(FULL_LATENT_FRAMES, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused", image2video=True)
    image_path = write_image(tmp_path / "image.png")
    pixels = image_condition_pixels(image_path, (64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed, pixels)  # (T, 3, H, W) in [0, 1]

    replay = torch.Generator().manual_seed(seed)
    torch.randn(1, 16, 1, 8, 12, generator=replay)  # the image latent's draw
    noise = torch.randn(1, FULL_LATENT_FRAMES, 16, 8, 12, generator=replay)
    t2v = diffusers_pipeline(tiny_i2v_models, config)
    scheduler = type(t2v.scheduler)(**scheduler_config({"shift_scale": 1.0}))  # the 5B shift
    pipe = CogVideoXImageToVideoPipeline(tokenizer=t2v.tokenizer, text_encoder=t2v.text_encoder, vae=t2v.vae,
                                         transformer=t2v.transformer, scheduler=scheduler)
    with torch.no_grad():
        theirs = pipe(
            image=(pixels[None] + 1) / 2, prompt_embeds=cond["crossattn"], negative_prompt_embeds=torch.zeros_like(cond["crossattn"]),
            height=64, width=96, num_frames=4 * (FULL_LATENT_FRAMES - 1) + 1, num_inference_steps=num_steps,
            guidance_scale=6, use_dynamic_cfg=True, latents=noise, generator=torch.Generator().manual_seed(seed),
            output_type="pt",
        ).frames[0]  # (T, 3, H, W) in [0, 1]
    assert ours.shape == theirs.shape == (49, 3, 64, 96)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


def test_same_seed_same_video_and_the_image_matters(tiny_i2v_models, tmp_path):
    engine = build_engine(tiny_i2v_models)
    plan = SamplingPlan(3, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused", image2video=True)
    cond, uc = encode_prompt(engine, PROMPT)
    image = image_condition_pixels(write_image(tmp_path / "a.png"), (64, 96))
    other_image = image_condition_pixels(write_image(tmp_path / "b.png", seed=1), (64, 96))
    first, again, other_seed = (generate_video(engine, cond, uc, plan, seed, image) for seed in (11, 11, 12))
    assert torch.equal(first, again)
    assert (first - other_seed).abs().max() > 0.05
    assert (first - generate_video(engine, cond, uc, plan, 11, other_image)).abs().max() > 0.01


def run_i2v_script(tmp_path, models, prompt_lines, *extra):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(prompt_lines)
    command = [sys.executable, "sample_video.py", "--base", str(models.write_config(tmp_path / "model.yaml")),
               "configs/tiny/inference_tiny_i2v.yaml", "--load", str(models.transformer), "--input-file", str(prompts),
               "--output-dir", str(tmp_path / "out"), "--sampling-num-frames", "3", *extra]
    env = {**os.environ, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_image2video_script_writes_the_mp4(tmp_path, tiny_i2v_models):
    result = run_i2v_script(tmp_path, tiny_i2v_models, "a sun over a gradient@@configs/tiny/i2v_image.png\n", "--seed", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = list((tmp_path / "out").rglob("*.mp4"))
    assert path == tmp_path / "out" / "0_a_sun_over_a_gradient" / "0" / "000000.mp4"
    reader = decord.VideoReader(str(path))
    assert len(reader) == 9 and reader[0].shape == (64, 96, 3)
    assert np.ptp(reader.get_batch(list(range(9))).asnumpy()) > 10


@pytest.mark.slow
@pytest.mark.parametrize(
    "lines, message",
    [
        ("a prompt without an image\n", "is not of the form"),
        ("a prompt@@/nonexistent/image.png\n", "/nonexistent/image.png"),
    ],
)
def test_image2video_bad_lines_give_one_message_before_the_build(tmp_path, tiny_i2v_models, lines, message):
    result = run_i2v_script(tmp_path, tiny_i2v_models, lines)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "building SATVideoDiffusionEngine" not in result.stdout + result.stderr


def test_bf16_engine_samples_with_bf16_tables(tiny_i2v_models, tmp_path):
    """As the 1.0 inference.yaml (bf16: the whole engine, rotary buffers included, is cast); same seed, close to fp32."""
    import argparse

    from diffusion_video import SATVideoDiffusionEngine
    from checkpoints.sat_checkpoint import load_sat_checkpoint

    args = argparse.Namespace(model_config=tiny_i2v_models.model_config(), fp16=False, bf16=True)
    engine = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(engine, tiny_i2v_models.transformer)
    engine = engine.bfloat16().eval()
    rotary = engine.model.diffusion_model.get_mixin("pos_embed")
    assert rotary.freqs_sin.dtype == rotary.freqs_cos.dtype == rotary.pos_embedding.dtype == torch.bfloat16
    plan = SamplingPlan(3, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused", image2video=True)
    image = image_condition_pixels("configs/tiny/i2v_image.png", (64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    video = generate_video(engine, cond, uc, plan, 5, image)
    fp32 = build_engine(tiny_i2v_models)
    reference = generate_video(fp32, *encode_prompt(fp32, PROMPT), plan, 5, image)  # measured: mean |diff| 0.010
    assert video.shape == reference.shape and torch.isfinite(video).all()
    assert (video - reference).abs().mean() < 0.05
