"""`latent_input: true` (the released CogVideoX1.5 T2V config): a batch whose `mp4` holds unscaled VAE latents
(b, c, t, h, w) gives the reference's `shared_step` loss (scale by scale_factor; draws: text dropout, timestep,
noise only), recomputed independently; pixel batches are still encoded."""

import argparse

import pytest
import torch
from torch.overrides import TorchFunctionMode

from diffusion_video import SATVideoDiffusionEngine
from checkpoints.sat_checkpoint import load_sat_checkpoint

pytestmark = pytest.mark.slow  # engines with a VAE (over 10 s on 2 loaded cores)

BATCH = 2
RNG_FUNCTIONS = {"normal", "randn", "randn_like", "rand", "rand_like", "randint", "bernoulli", "normal_", "uniform_"}


class RecordDraws(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.draws = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in RNG_FUNCTIONS:
            self.draws.append((func.__name__, tuple(result.shape)))
        return result


def latent_input_engine(models) -> SATVideoDiffusionEngine:
    config = models.model_config()
    config.latent_input = True
    engine = SATVideoDiffusionEngine(argparse.Namespace(model_config=config, fp16=False, bf16=False))
    load_sat_checkpoint(engine, str(models.transformer))
    return engine.train()


def latent_batch(frames: int) -> dict:
    latents = torch.randn(BATCH, 16, frames, 8, 12, generator=torch.Generator().manual_seed(5))  # (b, c, t, h, w)
    return {"mp4": latents, "txt": ["a red fox in the snow", "waves on a beach"]}


def reference_loss(engine, batch: dict, seed: int) -> torch.Tensor:
    """The reference's shared_step with latent_input: x = scale_factor * mp4 as (b, t, c, h, w); then the loss."""
    torch.manual_seed(seed)
    x = (engine.scale_factor * batch["mp4"]).permute(0, 2, 1, 3, 4).contiguous()  # (b, t, c, h, w)
    cond = engine.conditioner(batch)  # text dropout: bernoulli
    idx = torch.randint(0, 1000, (BATCH,))
    noise = torch.randn_like(x)
    a = engine.denoiser.alphas_cumprod_sqrt[idx].view(-1, 1, 1, 1, 1)
    x_t = a * x + (1 - a**2).sqrt() * noise
    v = engine.model.diffusion_model(x_t, timesteps=idx, context=cond["crossattn"], y=cond.get("vector"))  # (b, t, c, h, w)
    denoised = a * x_t - (1 - a**2).sqrt() * v
    return ((denoised - x) ** 2 / (1 - a**2)).mean()


@pytest.fixture(params=["1.0", "1.5"])
def models(request, tiny_models, tiny_15_models):
    return {"1.0": tiny_models, "1.5": tiny_15_models}[request.param]


def test_given_latents_give_the_reference_loss(models):
    engine = latent_input_engine(models)
    batch = latent_batch(frames=4 if engine.family.temporal_patch == 2 else 3)
    assert engine.holds_given_latents(batch)
    torch.manual_seed(11)
    recorder = RecordDraws()
    with recorder:
        loss, _ = engine.shared_step(dict(batch))
    t = batch["mp4"].shape[2]
    assert recorder.draws == [("bernoulli", (BATCH,)), ("randint", (BATCH,)), ("randn_like", (BATCH, t, 16, 8, 12))]
    torch.testing.assert_close(loss, reference_loss(engine, batch, 11), atol=1e-6, rtol=1e-6)


def test_pixel_batches_are_encoded_with_latent_input(models):
    engine = latent_input_engine(models)
    video = torch.rand(BATCH, 9, 3, 64, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1  # (b, T, 3, H, W)
    batch = {"mp4": video, "txt": ["a", "b"]}
    assert not engine.holds_given_latents(batch)
    torch.manual_seed(3)
    latents = engine.batch_latents(batch)  # the VAE posterior sample, scaled (and padded for 1.5)
    assert latents.shape[0] == BATCH and latents.shape[2:] == (16, 8, 12)
    assert latents.shape[1] % engine.family.temporal_patch == 0


def test_odd_given_latents_are_padded_in_front_for_1_5(tiny_15_models):
    """13 or 21 latent frames (49 / 81 video frames, the reference crashes on them): a copy of frame 0 in front."""
    engine = latent_input_engine(tiny_15_models)
    batch = latent_batch(frames=3)
    latents = engine.batch_latents(batch)  # (b, 4, c, h, w)
    scaled = engine.scale_factor * batch["mp4"].permute(0, 2, 1, 3, 4)
    assert latents.shape == (BATCH, 4, 16, 8, 12)
    assert torch.equal(latents[:, 0], scaled[:, 0]) and torch.equal(latents[:, 1:], scaled)
    loss, _ = engine.shared_step(dict(batch))
    assert torch.isfinite(loss)
