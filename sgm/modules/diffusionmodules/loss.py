"""The CogVideoX training loss: v-prediction, written as a weighted x_0 regression."""

from typing import Callable

import torch

from image_to_video.batch_keys import CONCAT_BATCH_KEY, CONCAT_COND_KEY, OFS_BATCH_KEY, OFS_COND_KEY
from sgm.util import instantiate_from_config

from .dims import append_dims
from .parallel_state import broadcast_in_model_parallel_group


class VideoDiffusionLoss:
    """Per-sample ``mean(w (D(x_t) - x_0)^2)`` with ``x_t = a x_0 + sqrt(1 - a^2) eps``, ``w = 1 / (1 - a^2)``.

    With ``D = a x_t - sqrt(1 - a^2) v_net`` this is exactly the unweighted v-prediction MSE
    ``mean((v_net - v)^2)``, ``v = a eps - sqrt(1 - a^2) x_0`` (Salimans & Ho 2022).

    RNG order (matches the reference): ``conditioner(batch)`` (its dropout draw), the step index (``torch.randint``),
    ``randn_like`` noise, then (only if ``offset_noise_level > 0``) one ``randn(b)`` offset; ``idx`` / ``noise``
    given skip their draw. A batch's ``CONCAT_BATCH_KEY`` latents (I2V) reach the network as ``cond["concat"]``
    (noise, loss and target involve ``x``'s channels only), its ``OFS_BATCH_KEY`` (1.5 I2V) as ``cond["ofs"]``.
    Under model parallelism idx, noise and alpha are broadcast from the group's first rank.
    """

    def __init__(self, sigma_sampler_config: dict, offset_noise_level: float = 0.0, fixed_frames: int = 0):
        """``fixed_frames``: set to 0 by the released I2V configs, where it has no effect; only 0 is accepted."""
        if fixed_frames != 0:
            raise ValueError(f"loss fixed_frames: only 0 is supported (the released I2V configs' value), got {fixed_frames}")
        self.sigma_sampler = instantiate_from_config(sigma_sampler_config)
        self.offset_noise_level = offset_noise_level

    def __call__(
        self,
        network: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor],
        denoiser: Callable[..., torch.Tensor],
        conditioner: Callable[[dict], dict],
        x: torch.Tensor,
        batch: dict,
        idx: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (b, t, c, h, w) clean latents; idx: optional (b,) DDPM indices; noise: optional like x.

        ``denoiser(network, x_t, alpha_cumprod_sqrt, cond, idx=idx)`` is ``DiscreteDenoiser``.
        Returns the per-sample loss (b,).
        """
        cond = conditioner(batch)
        if idx is None:
            alpha_cumprod_sqrt, idx = self.sigma_sampler(x.shape[0])
        else:
            if idx.shape != (x.shape[0],):
                raise ValueError(f"idx has shape {tuple(idx.shape)}, expected (batch,) = ({x.shape[0]},)")
            alpha_cumprod_sqrt = self.sigma_sampler.alphas_cumprod_sqrt[idx.cpu()]
        alpha_cumprod_sqrt, idx = alpha_cumprod_sqrt.to(x.device), idx.to(x.device)  # (b,), (b,)
        if noise is None:
            noise = torch.randn_like(x)
        elif noise.shape != x.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected the latents' {tuple(x.shape)}")
        broadcast_in_model_parallel_group(idx, noise, alpha_cumprod_sqrt)
        if self.offset_noise_level > 0.0:
            offset = torch.randn(x.shape[0]).to(x.device)  # (b,)
            noise = noise + append_dims(offset, x.ndim) * self.offset_noise_level

        a = append_dims(alpha_cumprod_sqrt, x.ndim)  # (b, 1, 1, 1, 1)
        noised = x.float() * a + noise * (1 - a**2) ** 0.5  # (b, t, c, h, w)
        if CONCAT_BATCH_KEY in batch:  # I2V: image latents, un-noised, concatenated on channels by the wrapper
            cond[CONCAT_COND_KEY] = batch[CONCAT_BATCH_KEY]  # (b, t, c_image, h, w)
        if OFS_BATCH_KEY in batch:  # CogVideoX1.5-I2V: the ofs embedding's input, (b,)
            cond[OFS_COND_KEY] = batch[OFS_BATCH_KEY]
        denoised = denoiser(network, noised, alpha_cumprod_sqrt, cond, idx=idx)  # (b, t, c, h, w)
        weight = 1 / (1 - a**2)  # v-prediction weight
        return torch.mean((weight * (denoised - x) ** 2).reshape(x.shape[0], -1), dim=1)  # (b,)
