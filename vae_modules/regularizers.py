"""The VAE's diagonal Gaussian posterior over latents."""

import torch
from torch import nn


class DiagonalGaussianDistribution:
    """Gaussian with mean and log-variance taken from the two channel halves of the moments.

    matches the reference: the log-variance is clamped to [-30, 20].
    """

    def __init__(self, moments: torch.Tensor) -> None:
        self.mean, logvar = torch.chunk(moments, 2, dim=1)  # (b, z, t, h, w) each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std * eps`` with one draw of the mean's shape: ``randn_like(mean)`` from torch's global RNG, or
        from ``generator`` (on its device) when given."""
        if generator is None:
            return self.mean + self.std * torch.randn_like(self.mean)
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=generator.device)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to the standard normal, summed over all non-batch dimensions: (b,)."""
        terms = self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar
        return 0.5 * terms.flatten(1).sum(dim=1)


class DiagonalGaussianRegularizer(nn.Module):
    """Turns encoder moments (b, 2 z, t, h, w) into latents (b, z, t, h, w), sampled or the mean."""

    def forward(
        self, moments: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the latent and ``{"kl_loss": KL summed per video, averaged over the batch}``."""
        posterior = DiagonalGaussianDistribution(moments)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z, {"kl_loss": posterior.kl().mean()}
