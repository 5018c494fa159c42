"""The VAE's 3D convolution: bf16 on the CPU is computed in fp32 and rounded once.

A CPU without bf16 instructions (AVX-512 BF16 / AMX) runs a bf16 ``conv3d`` in ``aten::slow_conv3d_forward``, 20 to
100 times slower than fp32. bf16 inputs and weights are exact in fp32, so the fp32 convolution rounded once is,
within one bf16 rounding, the fp32-accumulated result a GPU's bf16 convolution gives (against a float64 reference:
the same maximum error as the slow bf16 kernel). Other dtypes and devices call ``F.conv3d`` unchanged.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> torch.Tensor:
    """``F.conv3d``: x (b, c_in, t, h, w) -> (b, c_out, t', h', w'), bf16 on the CPU via fp32."""
    if x.dtype != torch.bfloat16 or x.device.type != "cpu":
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    bias = None if bias is None else bias.float()
    return F.conv3d(x.float(), weight.float(), bias, stride, padding, dilation, groups).to(torch.bfloat16)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state-dict keys) running :func:`conv3d`; zero padding (the VAE's only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"vae_modules.conv3d.Conv3d pads with zeros only, got padding_mode={self.padding_mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
