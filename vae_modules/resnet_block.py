"""The VAE's 3D ResNet block: norm, SiLU, causal conv, twice, plus a (1x1x1-projected) skip."""

import torch
from torch import nn

from vae_modules import ops
from vae_modules.causal_conv import CausalCache, CausalConv3d
from vae_modules.conv3d import Conv3d
from vae_modules.spatial_norm import SpatialNorm3D, group_norm


class ResnetBlock3D(nn.Module):
    """``x + conv2(drop(silu(norm2(conv1(silu(norm1(x)))))))``; ``nin_shortcut`` when channels change.

    With ``zq_channels`` set (decoder), both norms are SpatialNorm3D conditioned on the latent;
    otherwise (encoder) they are plain GroupNorm. No time embedding (the reference's temb is None).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float, zq_channels: int | None = None) -> None:
        super().__init__()
        self.uses_latent = zq_channels is not None
        if self.uses_latent:
            self.norm1 = SpatialNorm3D(in_channels, zq_channels)
            self.norm2 = SpatialNorm3D(out_channels, zq_channels)
        else:
            self.norm1 = group_norm(in_channels)
            self.norm2 = group_norm(out_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.nin_shortcut = Conv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def _norm(self, norm: nn.Module, h: torch.Tensor, zq: torch.Tensor | None, cache: CausalCache | None) -> torch.Tensor:
        if self.uses_latent:
            return norm(h, zq, cache)
        return norm(h) if cache is None else cache.norm(norm, h)

    def forward(
        self, x: torch.Tensor, zq: torch.Tensor | None = None, cache: CausalCache | None = None
    ) -> torch.Tensor:
        """(b, c_in, t, h, w) -> (b, c_out, t, h, w); ``zq`` (b, z, t_z, h_z, w_z) for the decoder."""
        # temporaries go straight into the convs, which free them once padded (see CausalConv3d)
        h = self.conv1(ops.silu(self._norm(self.norm1, x, zq, cache)), cache)
        h = self.conv2(self.dropout(ops.silu(self._norm(self.norm2, h, zq, cache))), cache)
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return ops.add(h, skip)
