"""GroupNorm of the VAE, and the decoder's SpatialNorm3D (GroupNorm modulated by the latent)."""

import torch
from torch import nn

from vae_modules import ops
from vae_modules.causal_conv import CausalCache, CausalConv3d


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm(32, eps 1e-6, affine), the reference's ``Normalize``.

    On one process the reference's ``gather_norm`` variant is this same GroupNorm: statistics
    span every frame of the tensor it is given.
    """
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def nearest_time_index(frames_out: int, frames_in: int) -> list[int]:
    """Source frame of each output frame under the reference's nearest time interpolation.

    matches the reference: an odd frame count > 1 keeps the first frame on its own
    (it maps to latent frame 0) and interpolates the rest from the remaining latent frames.
    """
    if frames_out > 1 and frames_out % 2 == 1:
        rest_out, rest_in = frames_out - 1, frames_in - 1
        if rest_in < 1:
            raise ValueError(f"cannot map {frames_out} frames onto {frames_in} latent frame(s)")
        return [0] + [1 + (i * rest_in) // rest_out for i in range(rest_out)]
    return [(i * frames_in) // frames_out for i in range(frames_out)]


class SpatialNorm3D(nn.Module):
    """``GroupNorm(f) * conv_y(zq) + conv_b(zq)`` with ``zq`` nearest-resized to ``f``'s shape.

    conv_y and conv_b are 1x1x1, so they commute with nearest resizing: they run on the small
    latent and the result is broadcast over each (time-index, s x s pixel) block instead of
    materialising two full-resolution tensors (same numbers as the reference, less memory).
    """

    def __init__(self, f_channels: int, zq_channels: int) -> None:
        super().__init__()
        self.norm_layer = group_norm(f_channels)
        self.conv_y = CausalConv3d(zq_channels, f_channels, kernel_size=1)
        self.conv_b = CausalConv3d(zq_channels, f_channels, kernel_size=1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """f: (b, c, t, H, W), zq: (b, z, t_z, h, w) with H, W multiples of h, w -> (b, c, t, H, W)."""
        b, c, t, height, width = f.shape
        h, w = zq.shape[-2:]
        if height % h or width % w:
            raise ValueError(f"feature size {height}x{width} is not a multiple of latent size {h}x{w}")
        index = nearest_time_index(t, zq.shape[2])
        zq = zq[:, :, index]  # (b, z, t, h, w)
        scale = self.conv_y(zq, cache)[:, :, :, :, None, :, None]  # (b, c, t, h, 1, w, 1)
        shift = self.conv_b(zq, cache)[:, :, :, :, None, :, None]
        normed = self.norm_layer(f) if cache is None else cache.norm(self.norm_layer, f)
        normed = normed.view(b, c, t, h, height // h, w, width // w)
        return ops.scale_shift(normed, scale, shift).view(b, c, t, height, width)
