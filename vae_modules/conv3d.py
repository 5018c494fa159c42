"""The VAE's 3D convolution: bf16 on the CPU is computed in fp32 and rounded once.

PyTorch has a fast bf16 convolution on the CPU only where the CPU has bf16 instructions (AVX-512 BF16 / AMX); on the
others (this project's AVX2 machines) a bf16 ``conv3d`` falls to ``aten::slow_conv3d_forward``, 20 to 100 times
slower than fp32: the tiny VAE's bf16 decode of 3 latent frames took 88 s. bf16 inputs and weights are exact in
fp32, so the fp32 convolution rounded to bf16 once is, within one bf16 rounding (summation orders differ between
kernels), the fp32-accumulated result a GPU's bf16 convolution gives (measured against a float64 convolution of
the same bf16 tensors: the same maximum error as the slow bf16 kernel, with 0.03% of the outputs one bf16 step
apart). Other dtypes and devices call ``F.conv3d`` unchanged.
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
