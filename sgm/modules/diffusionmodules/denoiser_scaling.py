"""Preconditioning of the v-prediction video denoiser: denoised = c_skip x + c_out net(c_in x, c_noise)."""

import torch


class VideoScaling:
    """v-prediction in the VP (alpha) parameterisation (Salimans & Ho 2022, "Progressive Distillation").

    With ``a = sqrt(alphas_cumprod)``: ``x_0 = a x_t - sqrt(1 - a^2) v``, so ``c_skip = a``,
    ``c_out = -sqrt(1 - a^2)``, ``c_in = 1``, and the network is conditioned on the integer DDPM
    index ``idx`` itself (``c_noise = idx``).
    """

    def __call__(
        self, alpha_cumprod_sqrt: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """alpha_cumprod_sqrt: any shape; idx: (b,). Returns c_skip, c_out, c_in (shape of alpha), c_noise (b,)."""
        c_skip = alpha_cumprod_sqrt
        c_out = -((1 - alpha_cumprod_sqrt**2) ** 0.5)
        c_in = torch.ones_like(alpha_cumprod_sqrt)
        c_noise = idx.clone()
        return c_skip, c_out, c_in, c_noise
