"""The discrete-time denoiser: wraps the network into an x_0 predictor on the 1000-step schedule."""

from typing import Callable

import torch

from sgm.util import instantiate_from_config

from .dims import append_dims


class DiscreteDenoiser:
    """``denoised = c_skip x + c_out net(c_in x, c_noise, cond)`` with the signal scale snapped to the table.

    Matches the reference: the ``sqrt(alphas_cumprod)`` a sampler passes in is replaced by the nearest entry of the
    ``num_idx``-entry table before the scalings are computed, while the network still receives the caller's DDPM
    index ``idx``; with the reference's sampling schedule the snapped entry can be a few indices away (e.g. 95 for
    step 99 at 10 steps). ``weighting`` (from ``weighting_config``) is built for config compatibility and unused.
    The table is a plain float32 tensor, not a buffer: no state-dict key, full precision when cast to half.
    """

    def __init__(
        self,
        num_idx: int,
        discretization_config: dict,
        weighting_config: dict,
        scaling_config: dict,
        quantize_c_noise: bool = False,
    ):
        if quantize_c_noise:
            raise ValueError(
                "quantize_c_noise=True is not supported: VideoScaling's c_noise is already the integer "
                "DDPM index (the reference's True branch would compare that index with the alpha table)"
            )
        discretization = instantiate_from_config(discretization_config)
        if num_idx != discretization.num_timesteps:
            raise ValueError(
                f"num_idx={num_idx} must equal the discretization's num_timesteps={discretization.num_timesteps}"
            )
        self.alphas_cumprod_sqrt = discretization.table()  # (num_idx,) indexed by DDPM step
        self.weighting = instantiate_from_config(weighting_config)
        self.scaling = instantiate_from_config(scaling_config)

    def nearest_index(self, alpha_cumprod_sqrt: torch.Tensor) -> torch.Tensor:
        """(b,) float -> (b,) int64 index of the closest table entry (first on ties)."""
        table = self.alphas_cumprod_sqrt.to(alpha_cumprod_sqrt.device)
        return (alpha_cumprod_sqrt[None, :] - table[:, None]).abs().argmin(dim=0)

    def snap(self, alpha_cumprod_sqrt: torch.Tensor) -> torch.Tensor:
        """(b,) -> (b,) the nearest table values."""
        return self.alphas_cumprod_sqrt.to(alpha_cumprod_sqrt.device)[self.nearest_index(alpha_cumprod_sqrt)]

    def __call__(
        self,
        network: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor],
        x: torch.Tensor,
        alpha_cumprod_sqrt: torch.Tensor,
        cond: dict,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """x: (b, t, c, h, w) noisy latents; alpha_cumprod_sqrt: (b,); idx: (b,) DDPM indices.

        ``network(x, t, c)`` is ``OpenAIWrapper.forward``. Returns the x_0 estimate, (b, t, c, h, w).
        """
        if alpha_cumprod_sqrt.shape != (x.shape[0],) or idx.shape != (x.shape[0],):
            raise ValueError(
                f"alpha_cumprod_sqrt {tuple(alpha_cumprod_sqrt.shape)} and idx {tuple(idx.shape)} must both be "
                f"(batch,) = ({x.shape[0]},)"
            )
        alpha_cumprod_sqrt = self.snap(alpha_cumprod_sqrt)
        c_skip, c_out, c_in, c_noise = self.scaling(alpha_cumprod_sqrt, idx)
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in (c_skip, c_out, c_in))  # (b, 1, 1, 1, 1)
        return network(x * c_in, c_noise, cond) * c_out + x * c_skip  # (b, t, c, h, w)
