"""Shared toy pieces for the diffusion tests: a deterministic v-network and diffusers' 2B schedulers."""

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from interop.diffusers_scheduler import scheduler_config

# diffusers' CogVideoX-2b scheduler_config.json (what its SAT->diffusers conversion writes): the shared mapping.
COGVIDEOX_2B_SCHEDULER = scheduler_config({"shift_scale": 3.0})

DISCRETIZATION_2B = {
    "target": "sgm.modules.diffusionmodules.discretizer.ZeroSNRDDPMDiscretization",
    "params": {"shift_scale": 3.0},
}


def diffusers_scheduler(kind: str, **overrides):
    cls = {"ddim": CogVideoXDDIMScheduler, "dpm": CogVideoXDPMScheduler}[kind]
    return cls(**{**COGVIDEOX_2B_SCHEDULER, **overrides})


class ToyVNetwork:
    """v = W x (channel mix) + sin(t / 150) b + mean(context) u: fixed, deterministic, depends on x, t and cond."""

    def __init__(self, channels: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.mix = torch.randn(channels, channels, generator=gen) / channels**0.5
        self.bias = torch.randn(channels, generator=gen)
        self.cond_dir = torch.randn(channels, generator=gen)
        self.calls = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        """x (b, f, c, h, w), t (b,), c["crossattn"] (b, n, d) -> (b, f, c, h, w)."""
        self.calls.append((x.clone(), t.clone()))
        v = torch.einsum("dc,bfchw->bfdhw", self.mix, x)
        v = v + torch.sin(t.float() / 150)[:, None, None, None, None] * self.bias[None, None, :, None, None]
        context = c["crossattn"].float().mean(dim=(1, 2))  # (b,)
        return v + context[:, None, None, None, None] * self.cond_dir[None, None, :, None, None]
