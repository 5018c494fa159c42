"""VideoDiffusionLoss: v-prediction values against diffusers' add_noise / get_velocity, RNG order, rank ranges."""

import pytest
import torch
import torch.distributed
from sat import mpu

from diffusion_toys import DISCRETIZATION_2B, ToyVNetwork, diffusers_scheduler
from sgm.modules.diffusionmodules.denoiser import DiscreteDenoiser
from sgm.modules.diffusionmodules.loss import VideoDiffusionLoss
from sgm.modules.diffusionmodules.sigma_sampling import DiscreteSampling, rank_index_range

SAMPLER = {
    "target": "sgm.modules.diffusionmodules.sigma_sampling.DiscreteSampling",
    "params": {"uniform_sampling": True, "num_idx": 1000, "discretization_config": DISCRETIZATION_2B},
}
SHAPE = (3, 2, 4, 3, 3)


def make_denoiser() -> DiscreteDenoiser:
    return DiscreteDenoiser(
        1000,
        DISCRETIZATION_2B,
        {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"},
        {"target": "sgm.modules.diffusionmodules.denoiser_scaling.VideoScaling"},
    )


class DroppingConditioner:
    """Stands in for GeneralConditioner: one bernoulli draw (its ucg dropout), then the embedding."""

    def __call__(self, batch: dict) -> dict:
        keep = torch.bernoulli(torch.full((len(batch["txt"]),), 0.9))
        return {"crossattn": batch["emb"] * keep[:, None, None]}


def test_loss_is_the_v_prediction_mse():
    net = ToyVNetwork(4)
    x = torch.randn(SHAPE)
    noise = torch.randn(SHAPE)
    idx = torch.tensor([0, 517, 999])
    batch = {"txt": ["a", "b", "c"], "emb": torch.randn(3, 2, 5)}
    loss = VideoDiffusionLoss(SAMPLER, offset_noise_level=0)(
        net, make_denoiser(), lambda b: {"crossattn": b["emb"]}, x, batch, idx=idx, noise=noise
    )
    scheduler = diffusers_scheduler("ddim")
    noised = scheduler.add_noise(x, noise, idx)
    v_target = scheduler.get_velocity(x, noise, idx)
    expected = ((net(noised, idx, {"crossattn": batch["emb"]}) - v_target) ** 2).flatten(1).mean(1)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, expected.float(), rtol=1e-4, atol=1e-5)


def test_known_value_with_a_zero_network():
    """At DDPM index 999 (a = 0) x_t is pure noise and D = -net = 0, so the loss is mean(w x^2) = 1 (w = 1)."""
    x, noise = torch.ones(1, 1, 1, 1, 2), torch.tensor([[[[[1.0, -1.0]]]]])
    loss_fn = VideoDiffusionLoss(SAMPLER)
    a = loss_fn.sigma_sampler.alphas_cumprod_sqrt[999]  # exactly 0: x_t is pure noise, D = 0
    assert a == 0
    loss = loss_fn(lambda x_, t, c: torch.zeros_like(x_), make_denoiser(), lambda b: {}, x, {}, idx=torch.tensor([999]), noise=noise)
    torch.testing.assert_close(loss, torch.tensor([1.0]))


def test_rng_order_is_conditioner_then_index_then_noise():
    seen = {}

    def denoiser(network, noised, alpha, cond, idx):
        seen.update(noised=noised, alpha=alpha, idx=idx, cond=cond)
        return noised

    x = torch.randn(SHAPE)
    batch = {"txt": ["a", "b", "c"], "emb": torch.ones(3, 2, 5)}
    loss_fn = VideoDiffusionLoss(SAMPLER)
    torch.manual_seed(123)
    loss_fn(None, denoiser, DroppingConditioner(), x, batch)

    torch.manual_seed(123)
    keep = torch.bernoulli(torch.full((3,), 0.9))
    idx = torch.randint(0, 1000, (3,))
    noise = torch.randn_like(x)
    a = loss_fn.sigma_sampler.alphas_cumprod_sqrt[idx][:, None, None, None, None]
    assert torch.equal(seen["idx"], idx)
    assert torch.equal(seen["cond"]["crossattn"], batch["emb"] * keep[:, None, None])
    torch.testing.assert_close(seen["noised"], a * x + (1 - a**2) ** 0.5 * noise, atol=0, rtol=0)


def test_explicit_index_and_noise_draw_nothing():
    loss_fn = VideoDiffusionLoss(SAMPLER)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    loss_fn(ToyVNetwork(4), make_denoiser(), lambda b: {"crossattn": torch.zeros(3, 1, 1)}, torch.ones(SHAPE), {}, idx=torch.tensor([1, 2, 3]), noise=torch.zeros(SHAPE))
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match=r"idx has shape \(2,\), expected \(batch,\) = \(3,\)"):
        loss_fn(None, make_denoiser(), lambda b: {}, torch.ones(SHAPE), {}, idx=torch.tensor([1, 2]))


@pytest.mark.parametrize("world_size", [2, 4])
def test_uniform_sampling_gives_each_data_parallel_rank_its_own_range(monkeypatch, world_size):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(mpu, "model_parallel_is_initialized", lambda: True)
    monkeypatch.setattr(mpu, "get_data_parallel_world_size", lambda: world_size)
    sampling = DiscreteSampling(DISCRETIZATION_2B, 1000, uniform_sampling=True)
    width = 1000 // world_size
    for rank in range(world_size):
        monkeypatch.setattr(mpu, "get_data_parallel_rank", lambda: rank)
        alpha, idx = sampling(4000, generator=torch.Generator().manual_seed(rank))
        assert idx.min() == rank * width and idx.max() == (rank + 1) * width - 1  # whole range hit, nothing outside
        assert torch.equal(alpha, sampling.alphas_cumprod_sqrt[idx])


def test_single_process_draws_from_the_whole_range():
    _, idx = DiscreteSampling(DISCRETIZATION_2B, 1000, uniform_sampling=True)(4000, generator=torch.Generator().manual_seed(0))
    assert idx.min() == 0 and idx.max() == 999


def test_rank_ranges_partition_all_indices():
    for world_size in (1, 2, 3, 7, 16):
        ranges = [rank_index_range(r, world_size, 1000) for r in range(world_size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == 1000
        assert all(hi == lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError, match="rank 2 of world size 2"):
        rank_index_range(2, 2, 1000)
