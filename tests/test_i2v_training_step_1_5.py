"""The CogVideoX1.5 image-to-video training step: the reference's draw order (1.0's, which the 1.5 reference keeps),
the odd latent count padded in front, and the ofs value the reference's loss forgets (KeyError there), with the loss
recomputed independently."""

import argparse
import random

import pytest
import torch

from diffusion_video import SATVideoDiffusionEngine
from image_to_video.batch_keys import CONCAT_BATCH_KEY
from checkpoints.sat_checkpoint import load_sat_checkpoint
from test_i2v_training_step import recorded_step, seeds_with_dropout

pytestmark = pytest.mark.slow  # VAE encodes of 9-frame clips (over 10 s on 2 loaded cores)

BATCH, FRAMES, HEIGHT, WIDTH = 2, 9, 64, 96  # 9 frames -> 3 latent frames of 8x12, padded in front to 4


def engine_15(models, dropout: float) -> SATVideoDiffusionEngine:
    config = models.model_config()
    config.noised_image_dropout = dropout
    engine = SATVideoDiffusionEngine(argparse.Namespace(model_config=config, fp16=False, bf16=False))
    load_sat_checkpoint(engine, str(models.transformer))
    return engine.train()


def make_batch() -> dict:
    video = torch.rand(BATCH, FRAMES, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(7)) * 2 - 1
    return {"mp4": video, "txt": ["a red fox in the snow", "waves on a beach"]}


def independent_loss(engine, seed: int, dropout: float) -> torch.Tensor:
    torch.manual_seed(seed)
    random.seed(seed)
    batch = make_batch()
    video = batch["mp4"].permute(0, 2, 1, 3, 4)  # (b, 3, T, H, W)
    vae, scale = engine.first_stage_model, engine.scale_factor
    with torch.no_grad():
        sigma = torch.exp(torch.normal(-3.0, 0.5, size=(BATCH,)))
        frame = video[:, :, :1] + torch.randn_like(video[:, :, :1]) * sigma.view(-1, 1, 1, 1, 1)
        image = scale * vae.encode(frame, sample=True)  # (b, 16, 1, h, w): the training scale 0.7 z
        x = (scale * vae.encode(video, sample=True)).permute(0, 2, 1, 3, 4).contiguous()  # (b, 3, 16, h, w)
    x = torch.cat([x[:, :1], x], dim=1)  # (b, 4, 16, h, w): a copy of latent frame 0 in front
    condition = torch.zeros_like(x)
    condition[:, :1] = image.permute(0, 2, 1, 3, 4)
    if random.random() < dropout:
        condition = torch.zeros_like(x)
    cond = engine.conditioner(batch)
    idx = torch.randint(0, 1000, (BATCH,))
    noise = torch.randn_like(x)
    a = engine.denoiser.alphas_cumprod_sqrt[idx].view(-1, 1, 1, 1, 1)
    x_t = a * x + (1 - a**2).sqrt() * noise
    v = engine.model.diffusion_model(torch.cat([x_t, condition], dim=2), timesteps=idx, context=cond["crossattn"],
                                     ofs=torch.full((BATCH,), 2.0))  # (b, 4, 16, h, w)
    denoised = a * x_t - (1 - a**2).sqrt() * v
    return ((denoised - x) ** 2 / (1 - a**2)).mean()


@pytest.mark.parametrize("fires", [False, True])
def test_1_5_i2v_step_draws_and_loss(tiny_15_i2v_models, monkeypatch, fires):
    engine = engine_15(tiny_15_i2v_models, dropout=0.5)
    seed = seeds_with_dropout(0.5)[fires]
    draws, (loss, _), batch = recorded_step(engine, seed, monkeypatch, make_batch)
    assert draws == [
        ("normal", (BATCH,)), ("randn_like", (BATCH, 3, 1, HEIGHT, WIDTH)), ("randn_like", (BATCH, 16, 1, 8, 12)),
        ("randn_like", (BATCH, 16, 3, 8, 12)), ("random.random", ()), ("bernoulli", (BATCH,)), ("randint", (BATCH,)),
        ("randn_like", (BATCH, 4, 16, 8, 12)),
    ]
    assert batch[CONCAT_BATCH_KEY].shape == (BATCH, 4, 16, 8, 12) and bool(batch[CONCAT_BATCH_KEY].abs().sum() == 0) == fires
    assert torch.equal(batch["ofs"], torch.full((BATCH,), 2.0))
    torch.testing.assert_close(loss, independent_loss(engine, seed, dropout=0.5), atol=1e-6, rtol=1e-6)


def test_1_5_i2v_validation_samples_with_ofs(tiny_15_i2v_models):
    """log_video: the training condition without dropout, ofs 2.0 (the reference's log_video has none: KeyError)."""
    engine = engine_15(tiny_15_i2v_models, dropout=0.05).eval()
    engine.sampler.num_steps = 2
    torch.manual_seed(0)
    log = engine.log_video(make_batch(), only_log_video_latents=True, generator=torch.Generator().manual_seed(1))
    assert log["latents"].shape == (BATCH, 4, 16, 8, 12) and torch.isfinite(log["latents"]).all()
