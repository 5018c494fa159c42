"""The step-time posterior sample of a cached item, drawn exactly as the VAE's own encode draws it."""

import torch

from latent_cache.store import POSTERIOR_KEYS
from vae_modules.regularizers import DiagonalGaussianDistribution


def is_cached_batch(batch: dict) -> bool:
    return POSTERIOR_KEYS[0] in batch


def sample_cached_posterior(batch: dict) -> torch.Tensor:
    """(b, c, t, h, w) latents, unscaled: one `randn_like(mean)` draw from torch's RNG, the same tensor layout and
    arithmetic as `VideoAutoencoderInferenceWrapper.encode`, so the same generator state gives the same sample."""
    moments = torch.cat([batch[key] for key in POSTERIOR_KEYS], dim=1)  # (b, 2c, t, h, w) as the encoder returns
    return DiagonalGaussianDistribution(moments).sample()

