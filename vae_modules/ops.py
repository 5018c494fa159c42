"""Elementwise helpers that work in place when no gradient is recorded.

The VAE is frozen and normally runs under ``torch.no_grad()``; there, activations are overwritten
in place to keep peak memory low. With gradients enabled the same functions allocate, so autograd
stays correct.
"""

import torch
import torch.nn.functional as F


def silu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``, in place when gradients are off."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


def add(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``x + other``, written into ``x`` when gradients are off."""
    if torch.is_grad_enabled():
        return x + other
    return x.add_(other)


def scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` (broadcasting), written into ``x`` when gradients are off."""
    if torch.is_grad_enabled():
        return x * scale + shift
    return x.mul_(scale).add_(shift)
