"""Sinusoidal timestep embedding (the input of the DiT's ``time_embed`` MLP)."""

import math

import torch


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed integer DDPM indices as ``[cos | sin]`` features.

    Matches the reference: the cos half comes first (diffusers' ``flip_sin_to_cos=True``), the
    frequencies are ``exp(-ln(max_period) * i / (dim // 2))`` computed in fp32.

    timesteps: (b,) step indices (long or float); returns (b, dim) fp32.
    """
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * steps / half)  # (half,), the reference's operation order
    args = timesteps[:, None].float() * freqs[None]  # (b, half)
    embedding = torch.cat((torch.cos(args), torch.sin(args)), dim=-1)  # (b, 2 * half)
    if dim % 2:
        embedding = torch.cat((embedding, torch.zeros_like(embedding[:, :1])), dim=-1)  # (b, dim)
    return embedding
