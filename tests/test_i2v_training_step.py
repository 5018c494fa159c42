"""The image-to-video training step (`noised_image_input`): random draws in the reference's order and count, and
the loss of a step recomputed independently from the same seed, with the image dropout firing and not firing."""

import argparse
import random

import pytest
import torch
from torch.overrides import TorchFunctionMode

from diffusion_video import SATVideoDiffusionEngine
from engine_config import read_engine_config
from image_to_video.batch_keys import CONCAT_BATCH_KEY
from image_to_video.noised_image import from_engine_config
from checkpoints.sat_checkpoint import load_sat_checkpoint
from sgm.util import ConfigError
from tiny_models import TINY_CONFIG, TINY_I2V_CONFIG
BATCH, FRAMES, HEIGHT, WIDTH = 2, 5, 64, 96  # 5 frames -> 2 latent frames of 8x12
RNG_FUNCTIONS = {"normal", "randn", "randn_like", "rand", "rand_like", "randint", "randint_like", "bernoulli",
                 "multinomial", "randperm", "normal_", "uniform_", "bernoulli_", "random_", "exponential_"}


def i2v_model_config(models, dropout: float):
    config = models.model_config(TINY_I2V_CONFIG)
    config.noised_image_dropout = dropout
    return config


def i2v_engine(models, dropout: float) -> SATVideoDiffusionEngine:
    """The tiny I2V engine (configs/tiny/cogvideox_tiny_i2v.yaml) with its weights, in training mode."""
    args = argparse.Namespace(model_config=i2v_model_config(models, dropout), fp16=False, bf16=False)
    engine = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(engine, str(models.transformer))
    return engine.train()


def make_batch() -> dict:
    generator = torch.Generator().manual_seed(7)
    video = torch.rand(BATCH, FRAMES, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1  # (b, T, 3, H, W)
    return {"mp4": video, "txt": ["a red fox in the snow", "waves on a beach"]}


class RecordDraws(TorchFunctionMode):
    """Records (name, shape) of every torch random function called."""

    def __init__(self):
        super().__init__()
        self.draws = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in RNG_FUNCTIONS:
            self.draws.append((name, tuple(result.shape)))
        return result


def seeded_step(engine, seed: int):
    torch.manual_seed(seed)
    random.seed(seed)
    batch = make_batch()
    loss, _ = engine.shared_step(batch)
    return loss, batch


def first_python_random(seed: int) -> float:
    return random.Random(seed).random()


def seeds_with_dropout(dropout: float) -> dict[bool, int]:
    """A seed where this step's dropout draw fires and one where it does not."""
    seeds = {}
    for seed in range(100):
        seeds.setdefault(first_python_random(seed) < dropout, seed)
    return seeds


def recorded_step(engine, seed: int, monkeypatch, batch_maker=make_batch) -> tuple[list, object, dict]:
    """One seeded ``shared_step`` (on ``batch_maker()``, drawn after the seeding) with every torch draw and Python's ``random.random`` recorded in one list, in
    order; returns (draws, the step's result, the batch it changed). ``random.random`` is restored afterwards."""
    recorder = RecordDraws()
    python_random = random.random

    def recorded_python_random():  # into the same list, so its place among the torch draws shows
        recorder.draws.append(("random.random", ()))
        return python_random()

    with monkeypatch.context() as patch:
        patch.setattr(random, "random", recorded_python_random)
        torch.manual_seed(seed)
        random.seed(seed)
        batch = batch_maker()
        with recorder:
            result = engine.shared_step(batch)
    return recorder.draws, result, batch


@pytest.mark.parametrize("fires", [False, True])
def test_draws_happen_in_the_reference_order(tiny_i2v_models, monkeypatch, fires):
    engine = i2v_engine(tiny_i2v_models, dropout=0.5)
    seed = seeds_with_dropout(0.5)[fires]
    draws, _, batch = recorded_step(engine, seed, monkeypatch)
    latent = (BATCH, 16, 2, 8, 12)
    assert draws == [
        ("normal", (BATCH,)),  # 1. log sigma
        ("randn_like", (BATCH, 3, 1, HEIGHT, WIDTH)),  # 2. pixel noise of the first frame
        ("randn_like", (BATCH, 16, 1, 8, 12)),  # 3. the image's posterior sample
        ("randn_like", latent),  # 4. the video's posterior sample
        ("random.random", ()),  # 5. image dropout, one per step
        ("bernoulli", (BATCH,)),  # 6. text dropout
        ("randint", (BATCH,)),  # 7. timestep
        ("randn_like", (BATCH, 2, 16, 8, 12)),  # 8. diffusion noise
    ]
    assert bool(batch[CONCAT_BATCH_KEY].abs().sum() == 0) == fires
    assert batch[CONCAT_BATCH_KEY].shape == (BATCH, 2, 16, 8, 12)
    assert torch.equal(batch[CONCAT_BATCH_KEY][:, 1:], torch.zeros(BATCH, 1, 16, 8, 12))


def independent_loss(engine, seed: int, dropout: float) -> torch.Tensor:
    """The step's loss following the documented order, with the engine's VAE, conditioner and network only."""
    torch.manual_seed(seed)
    random.seed(seed)
    batch = make_batch()
    video = batch["mp4"].permute(0, 2, 1, 3, 4)  # (b, 3, T, H, W)
    vae, scale = engine.first_stage_model, engine.scale_factor
    with torch.no_grad():
        sigma = torch.exp(torch.normal(-3.0, 0.5, size=(BATCH,)))  # 1
        frame = video[:, :, :1] + torch.randn_like(video[:, :, :1]) * sigma.view(-1, 1, 1, 1, 1)  # 2
        image = scale * vae.encode(frame, sample=True)  # 3. (b, 16, 1, h, w)
        # 4. (b, t, 16, h, w), contiguous as the reference's: randn_like (8.) follows the memory layout
        x = (scale * vae.encode(video, sample=True)).permute(0, 2, 1, 3, 4).contiguous()
    condition = torch.zeros_like(x)
    condition[:, :1] = image.permute(0, 2, 1, 3, 4)
    if random.random() < dropout:  # 5
        condition = torch.zeros_like(x)
    cond = engine.conditioner(batch)  # 6
    idx = torch.randint(0, 1000, (BATCH,))  # 7
    noise = torch.randn_like(x)  # 8
    a = engine.denoiser.alphas_cumprod_sqrt[idx].view(-1, 1, 1, 1, 1)
    x_t = a * x + (1 - a**2).sqrt() * noise
    v = engine.model.diffusion_model(torch.cat([x_t, condition], dim=2), timesteps=idx, context=cond["crossattn"],
                                     y=cond.get("vector"))  # (b, t, 16, h, w)
    denoised = a * x_t - (1 - a**2).sqrt() * v
    return ((denoised - x) ** 2 / (1 - a**2)).mean()


@pytest.mark.parametrize("fires", [False, True])
def test_step_loss_equals_an_independent_computation(tiny_i2v_models, fires):
    engine = i2v_engine(tiny_i2v_models, dropout=0.5)
    seed = seeds_with_dropout(0.5)[fires]
    loss, _ = seeded_step(engine, seed)
    torch.testing.assert_close(loss, independent_loss(engine, seed, dropout=0.5), atol=1e-6, rtol=1e-6)


def test_image_channels_change_the_loss(tiny_i2v_models):
    """The image channels reach the network: the same draws with the dropout forced on give another loss."""
    seed = seeds_with_dropout(0.5)[False]
    kept, _ = seeded_step(i2v_engine(tiny_i2v_models, dropout=0.0), seed)
    dropped, _ = seeded_step(i2v_engine(tiny_i2v_models, dropout=1.0), seed)
    assert abs(float(kept.detach()) - float(dropped.detach())) > 1e-4


def test_image_input_config_is_checked(tiny_i2v_models):
    def from_model_config(config):
        return from_engine_config(read_engine_config(config, []), config)

    config = i2v_model_config(tiny_i2v_models, dropout=0.05)
    assert from_model_config(config).dropout == 0.05
    del config["noised_image_dropout"]
    assert from_model_config(config).dropout == 0.0  # the reference's default
    config.network_config.params.in_channels = 16
    with pytest.raises(ConfigError, match="in_channels = 2 x out_channels"):
        from_model_config(config)
    t2v = tiny_i2v_models.model_config(TINY_CONFIG)
    assert from_model_config(t2v) is None
    t2v.noised_image_dropout = 0.05
    with pytest.raises(ConfigError, match="noised_image_input is not true"):
        from_model_config(t2v)
