"""Loss weightings a denoiser can carry (the released configs name one; the video loss ignores it)."""

import torch


class EpsWeighting:
    """``w(sigma) = sigma^-2``: weights an x_0 loss like the epsilon-prediction loss (EDM notation).

    The released configs attach it to the denoiser, but CogVideoX's ``VideoDiffusionLoss`` uses its
    own v-prediction weight ``1 / (1 - a^2)`` (matches the reference), so it is never evaluated there.
    """

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma**-2.0
