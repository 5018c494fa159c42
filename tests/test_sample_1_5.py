"""CogVideoX1.5 sampling on the tiny 1.5 model sets: text-to-video against diffusers' CogVideoXPipeline and
image-to-video against CogVideoXImageToVideoPipeline with the same noise, the padding frame and the ofs value, and
the entry script with the shipped tiny configs.

Differences from diffusers, each handled here: the reference's sampling schedule rescales only the selected steps
(`rescale_selected_steps: false` gives diffusers' full-table schedule, as in test_sample_pipeline); the image latent
scale (diffusers' 1.5 VAE config `invert_scale_latents: true` feeds z / 0.7, the reference z: matched with our
`image_latent_sampling_scale: 1 / 0.7`). Otherwise the layouts agree: diffusers also samples the padding frame in
front (noise of T = 21 + 1 frames for 81), puts the image in latent frame 0 only, passes ofs 2.0 and drops frame 0
before a decode with the first-frame rule.
"""

import os
import subprocess
import sys

import decord
import numpy as np
import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline
from PIL import Image

from image_to_video.conditioning import conditioning_image_size, image_condition_pixels
from test_sample_pipeline import DIFFUSERS_2B_SCHEDULER, ddim_config, diffusers_pipeline
from tiny_models import build_engine
from video_sampling import Prompt, SamplingPlan, encode_prompt, generate_video, sample_seed

pytestmark = pytest.mark.slow  # each decodes videos with the tiny VAE (tens of seconds on 2 cores)

PROMPT = "a paper boat drifts down a rainy street"
LATENT_FRAMES = 6  # 5 + the padding frame: 17 video frames
STEPS = 4  # a step count whose DDPM indices agree between the reference (linspace) and diffusers (trailing)


def diffusers_peer(models, config, i2v: bool):
    t2v = diffusers_pipeline(models, config)
    t2v.scheduler = type(t2v.scheduler)(**{**DIFFUSERS_2B_SCHEDULER, "snr_shift_scale": 1.0})  # the 5B / 1.5 shift
    if not i2v:
        return t2v
    t2v.vae.register_to_config(invert_scale_latents=True)  # the released CogVideoX1.5-5B-I2V VAE config
    return CogVideoXImageToVideoPipeline(tokenizer=t2v.tokenizer, text_encoder=t2v.text_encoder, vae=t2v.vae,
                                         transformer=t2v.transformer, scheduler=t2v.scheduler)


def test_t2v_matches_diffusers_pipeline(tiny_15_models):
    config = ddim_config(tiny_15_models, STEPS, shift_scale=1.0)
    engine = build_engine(tiny_15_models, config)
    plan = SamplingPlan(LATENT_FRAMES, 16, fps=16, samples_per_prompt=1, seed=3, output_dir="unused",
                        image_size=(64, 96))
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed)  # (T, 3, H, W) in [0, 1]

    noise = torch.randn(1, LATENT_FRAMES, 16, 8, 12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        theirs = diffusers_peer(tiny_15_models, config, i2v=False)(
            prompt_embeds=cond["crossattn"], negative_prompt_embeds=torch.zeros_like(cond["crossattn"]),
            height=64, width=96, num_frames=4 * (LATENT_FRAMES - 2) + 1, num_inference_steps=STEPS,
            guidance_scale=6, use_dynamic_cfg=True, latents=noise, output_type="pt",
        ).frames[0]  # diffusers pads 5 latent frames to 6 in front, drops frame 0 before decoding
    assert ours.shape == theirs.shape == (17, 3, 64, 96)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


def write_image(path, width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_i2v_matches_diffusers_pipeline(tiny_15_i2v_models, tmp_path):
    """Image 90x50 -> short side 64: 64x112, LANCZOS (diffusers' preprocessing too); same image draw (first, from
    the prompt's generator), same noise (next), ofs 2.0 on both sides."""
    config = ddim_config(tiny_15_i2v_models, STEPS, shift_scale=1.0)
    config.image_latent_sampling_scale = 1 / 0.7  # diffusers' invert_scale_latents: z / 0.7 (the reference: z)
    engine = build_engine(tiny_15_i2v_models, config)
    assert engine.ofs == 2.0
    path = write_image(tmp_path / "image.png", 90, 50)
    size = conditioning_image_size(config, path, short_side=64)
    assert size == (64, 112)
    pixels = image_condition_pixels(path, size, config)
    plan = SamplingPlan(LATENT_FRAMES, 16, fps=16, samples_per_prompt=1, seed=3, output_dir="unused",
                        image2video=True, image_short_side=64)
    cond, uc = encode_prompt(engine, PROMPT)
    seed = sample_seed(plan.seed, Prompt(0, PROMPT), 0)
    ours = generate_video(engine, cond, uc, plan, seed, pixels)

    replay = torch.Generator().manual_seed(seed)
    torch.randn(1, 16, 1, 8, 14, generator=replay)  # the image latent's draw
    noise = torch.randn(1, LATENT_FRAMES, 16, 8, 14, generator=replay)
    with Image.open(path) as image, torch.no_grad():
        theirs = diffusers_peer(tiny_15_i2v_models, config, i2v=True)(
            image=image.convert("RGB"), prompt_embeds=cond["crossattn"],
            negative_prompt_embeds=torch.zeros_like(cond["crossattn"]), height=64, width=112,
            num_frames=4 * (LATENT_FRAMES - 2) + 1, num_inference_steps=STEPS, guidance_scale=6, use_dynamic_cfg=True,
            latents=noise, generator=torch.Generator().manual_seed(seed), output_type="pt",
        ).frames[0]
    assert ours.shape == theirs.shape == (17, 3, 64, 112)
    assert (ours - theirs).abs().max().item() < 1e-3
    assert ours.std() > 0.01


def test_ofs_and_the_image_reach_the_network(tiny_15_i2v_models, tmp_path):
    engine = build_engine(tiny_15_i2v_models)
    plan = SamplingPlan(4, 16, fps=16, samples_per_prompt=1, seed=0, output_dir="unused", image2video=True)
    cond, uc = encode_prompt(engine, PROMPT)
    image = image_condition_pixels(write_image(tmp_path / "a.png", 96, 64), (64, 96), engine.model_config)
    other = image_condition_pixels(write_image(tmp_path / "b.png", 96, 64, seed=1), (64, 96), engine.model_config)
    first, again = (generate_video(engine, cond, uc, plan, 7, image) for _ in range(2))
    assert first.shape == (9, 3, 64, 96) and torch.equal(first, again)
    assert (first - generate_video(engine, cond, uc, plan, 7, other)).abs().max() > 0.01
    engine.ofs = 3.0
    assert (first - generate_video(engine, cond, uc, plan, 7, image)).abs().max() > 1e-4


def test_decode_drops_the_padding_frame_and_keeps_the_first_frame_rule(tiny_15_models):
    """6 latent frames -> 5 decoded -> 1 + 4 x 4 = 17 video frames (22 -> 81), the 1.0 decode of frames 1..5."""
    engine = build_engine(tiny_15_models)
    latents = torch.randn(1, 16, 6, 8, 12, generator=torch.Generator().manual_seed(0))  # (b, c, t, h, w)
    video = engine.decode_first_stage_chunked(latents)
    one_oh = engine.first_stage_model.decode_chunked(latents[:, :, 1:] / engine.scale_factor)  # plan [0:3], [3:5]
    assert video.shape == (1, 3, 17, 64, 96)
    torch.testing.assert_close(video, one_oh, rtol=0, atol=0)
    torch.testing.assert_close(engine.decode_first_stage(latents), video, rtol=0, atol=0)  # 1.5: chunked too


def run_script(tmp_path, models, inference_config, *extra):
    command = [sys.executable, "sample_video.py", "--base", str(models.write_config(tmp_path / "model.yaml")),
               inference_config, "--load", str(models.transformer), "--output-dir", str(tmp_path / "out"), *extra]
    env = {**os.environ, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_shipped_tiny_i2v_config_writes_the_video(tmp_path, tiny_15_i2v_models):
    """The README's tiny 1.5 I2V line: configs/tiny/inference_tiny_1.5_i2v.yaml as shipped (14 latent frames: 49
    video frames at 16 fps, 64x112 from the 80x48 image)."""
    result = run_script(tmp_path, tiny_15_i2v_models, "configs/tiny/inference_tiny_1.5_i2v.yaml", "--seed", "42")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = list((tmp_path / "out").rglob("*.mp4"))
    reader = decord.VideoReader(str(path))
    assert len(reader) == 49 and reader[0].shape == (64, 112, 3) and reader.get_avg_fps() == 16
    assert np.ptp(reader.get_batch([0, 24, 48]).asnumpy()) > 10


def test_t2v_script_with_the_released_frame_rule(tmp_path, tiny_15_models):
    """configs/tiny/inference_tiny_1.5.yaml with 4 latent frames: 9 frames at 16 fps; an odd count is refused before
    the build with the allowed values."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a kite over the sea\n")
    result = run_script(tmp_path, tiny_15_models, "configs/tiny/inference_tiny_1.5.yaml", "--input-file", str(prompts),
                        "--sampling-num-frames", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = list((tmp_path / "out").rglob("*.mp4"))
    reader = decord.VideoReader(str(path))
    assert len(reader) == 9 and reader[0].shape == (64, 96, 3) and reader.get_avg_fps() == 16
    bad = run_script(tmp_path, tiny_15_models, "configs/tiny/inference_tiny_1.5.yaml", "--input-file", str(prompts),
                     "--sampling-num-frames", "13")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "sampling_num_frames=13 latent frames cannot be sampled by this CogVideoX1.5" in bad.stderr
    assert "allowed: [4, 6, 8" in bad.stderr and "building SATVideoDiffusionEngine" not in bad.stdout + bad.stderr


def test_i2v_prompt_without_an_image_is_one_message(tmp_path, tiny_15_i2v_models):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a prompt without an image\n")
    result = run_script(tmp_path, tiny_15_i2v_models, "configs/tiny/inference_tiny_1.5_i2v.yaml", "--input-file",
                        str(prompts))
    assert result.returncode == 2 and "is not of the form" in result.stderr and "Traceback" not in result.stderr
