"""vae_modules/conv3d.py: bf16 3D convolution on the CPU is the fp32 convolution rounded once to bf16."""

import pytest
import torch
import torch.nn.functional as F

from vae_modules.conv3d import Conv3d, conv3d


def bf16_case(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 32, 5, 12, 16, generator=generator).bfloat16()  # (b, c_in, t, h, w)
    weight = (0.05 * torch.randn(24, 32, 3, 3, 3, generator=generator)).bfloat16()
    bias = torch.randn(24, generator=generator).bfloat16()
    return x, weight, bias


def test_bf16_on_the_cpu_is_the_fp32_convolution_rounded_once():
    x, weight, bias = bf16_case()
    ours = conv3d(x, weight, bias, padding=(0, 1, 1))
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, F.conv3d(x.float(), weight.float(), bias.float(), padding=(0, 1, 1)).bfloat16())
    exact = F.conv3d(x.double(), weight.double(), bias.double(), padding=(0, 1, 1))
    slow_kernel = F.conv3d(x, weight, bias, padding=(0, 1, 1))  # PyTorch's bf16 CPU kernel
    # one rounding of the fp32 sum: never further from the exact result than the bf16 kernel's
    assert (ours.double() - exact).abs().max() <= (slow_kernel.double() - exact).abs().max()
    assert (ours.double() - exact).abs().max() <= exact.abs().max() * 2**-8


def test_other_dtypes_are_plain_conv3d():
    x, weight, bias = (t.float() for t in bf16_case(1))
    assert torch.equal(conv3d(x, weight, bias, stride=(1, 2, 2)), F.conv3d(x, weight, bias, stride=(1, 2, 2)))


def test_module_keeps_the_conv3d_keys_and_computes_the_same():
    torch.manual_seed(0)
    ours, plain = Conv3d(8, 4, kernel_size=3, padding=1), torch.nn.Conv3d(8, 4, kernel_size=3, padding=1)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 8, 3, 6, 6)
    assert torch.equal(ours(x), plain(x))
    ours, plain = ours.bfloat16(), plain.bfloat16()
    assert torch.equal(ours(x.bfloat16()), plain.float()(x.bfloat16().float()).bfloat16())


def test_other_padding_modes_are_refused_at_build():
    with pytest.raises(ValueError, match="pads with zeros only, got padding_mode='replicate'"):
        Conv3d(4, 4, kernel_size=3, padding=1, padding_mode="replicate")
