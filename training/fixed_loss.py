"""A deterministic version of the training loss, to compare weights: fixed timesteps, fixed noise, no dropout.

The training loss draws a VAE posterior sample, a condition dropout, a timestep and noise every step, so its value
jumps from step to step. Here the latents are the posterior mean, the text is never dropped, and the same DDPM
indices and noise are used each call (the loss function itself is the training one, `engine.loss_fn`).
"""

from dataclasses import dataclass

import torch

DEFAULT_INDICES = (50, 200, 400, 600, 800, 950)


@dataclass(frozen=True)
class FixedLossProbe:
    """Clean latents, their conditioning and the fixed draws for one video batch."""

    latents: torch.Tensor  # (n, t, c, h, w): the batch's latents repeated once per index
    cond: dict
    idx: torch.Tensor  # (n,)
    noise: torch.Tensor  # (n, t, c, h, w)


@torch.no_grad()
def make_probe(engine, batch: dict, indices: tuple[int, ...] = DEFAULT_INDICES, seed: int = 0) -> FixedLossProbe:
    """batch: {"mp4": (b, T, 3, H, W) in [-1, 1], "txt": b strings}; noise from a generator seeded with `seed`."""
    video = batch["mp4"].to(engine.device, engine.dtype).permute(0, 2, 1, 3, 4).contiguous()  # (b, 3, T, H, W)
    latents = engine.encode_first_stage(video, sample=False).permute(0, 2, 1, 3, 4).contiguous()  # (b, t, c, h, w)
    cond, _ = engine.conditioner.get_unconditional_conditioning(batch)
    repeat = len(indices)
    latents = latents.repeat_interleave(repeat, dim=0).to(engine.dtype)  # (b * n_idx, t, c, h, w)
    cond = {key: value.repeat_interleave(repeat, dim=0) for key, value in cond.items()}
    idx = torch.tensor(indices, dtype=torch.int64).repeat(video.shape[0])
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
    return FixedLossProbe(latents, cond, idx, noise)


@torch.no_grad()
def fixed_loss(engine, probe: FixedLossProbe) -> float:
    """Mean of the training loss over the probe's fixed (index, noise) pairs."""
    per_sample = engine.loss_fn(engine.model, engine.denoiser, lambda _batch: probe.cond, probe.latents, {},
                                idx=probe.idx, noise=probe.noise)
    return float(per_sample.mean())
