"""3D rotary angles of the video tokens, and the two tables the rotary mixin takes them from: stored (1.0) or computed
per input grid (1.5). Both offer ``check(grid, patch)``, ``cos_sin(grid, device)`` and ``text_from_context``."""

import torch
from einops import rearrange, repeat
from torch import nn

from dit.patching import PatchSize, check_fixed_grid


def axis_angles(dim: int, length: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """Rotation angles of one axis, each frequency repeated for its (even, odd) pair: (length, dim) fp32."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim))  # (dim/2,)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * freqs[None]  # (length, dim/2)
    return repeat(angles, "n f -> n (f r)", r=2)  # (length, dim)


def rotary_angles(
    frames: int, height: int, width: int, head_dim: int, theta: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """Angles of every video token (t, h, w order), channels ``[t (head/4) | h (3 head/8) | w (3 head/8)]``:
    (frames * height * width, head_dim) fp32. Integer positions, no interpolation (as the reference)."""
    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    if dim_t + 2 * dim_hw != head_dim or dim_t % 2 or dim_hw % 2:
        raise ValueError(f"hidden_size_head must be a multiple of 16 for 3D rotary, got {head_dim}")
    angles_t = axis_angles(dim_t, frames, theta, device)  # (T, dim_t)
    angles_h = axis_angles(dim_hw, height, theta, device)  # (H, dim_hw)
    angles_w = axis_angles(dim_hw, width, theta, device)  # (W, dim_hw)
    shape = (frames, height, width)
    angles = torch.cat(
        (
            angles_t[:, None, None].expand(*shape, dim_t),
            angles_h[None, :, None].expand(*shape, dim_hw),
            angles_w[None, None, :].expand(*shape, dim_hw),
        ),
        dim=-1,
    )  # (T, H, W, head)
    return rearrange(angles, "t h w d -> (t h w) d").contiguous()  # (T*H*W, head)


class StoredRotaryTable:
    """CogVideoX 1.0's rotary table: persistent buffers ``freqs_sin`` / ``freqs_cos`` (T*H*W, head) registered on the
    owning mixin (so the keys are ``mixins.pos_embed.freqs_*``, as released), sliced flat to the first rows.

    Matches the reference v1.0: a released checkpoint carries the tables and a loaded model rotates with the file's
    values; the flat slice is the right rows only at the configured height and width, which ``check`` enforces.
    """

    text_from_context = False  # 1.0: the configured text length

    def __init__(self, owner: nn.Module, frames: int, height: int, width: int, head_dim: int, theta: float):
        angles = rotary_angles(frames, height, width, head_dim, theta)  # (T*H*W, head)
        owner.register_buffer("freqs_sin", angles.sin())
        owner.register_buffer("freqs_cos", angles.cos())
        self.owner = owner  # holds the buffers (moved and cast with it, loaded from checkpoints)
        self.grid = (frames, height, width)

    def check(self, grid: tuple[int, int, int], patch: PatchSize) -> None:
        check_fixed_grid(self.grid, grid, patch)

    def cos_sin(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The first T'*H'*W' rows of the owner's tables (their dtype and device): (n_video, head) each."""
        n_video = grid[0] * grid[1] * grid[2]
        return self.owner.freqs_cos[:n_video], self.owner.freqs_sin[:n_video]


class SlicedRotaryTable:
    """CogVideoX1.5's rotary table: (frames, height, width) token positions, never stored.

    Matches the reference e519ece: its table ``[T, H, W, head]`` is sliced in 3-D per input, ``freqs[:T', :H', :W']``
    flattened in (t, h, w) order; each entry depends on its own position only, so computing the angles of the
    (T', H', W') grid directly gives the same values. They are computed in fp32 on the activations' device at each
    call (the reference holds them in fp32 on the GPU, outside the state dict, so ``model.to(dtype)`` never casts
    them) and cast to the activation dtype by the caller.
    """

    text_from_context = True  # 1.5: no learned table; the DiT takes the text length from the context

    def __init__(self, owner: nn.Module, frames: int, height: int, width: int, head_dim: int, theta: float):
        rotary_angles(1, 1, 1, head_dim, theta)  # checks the head split once, at construction (owner: nothing to hold)
        self.grid = (frames, height, width)
        self.head_dim = head_dim
        self.theta = theta

    def check(self, grid: tuple[int, int, int], patch: PatchSize) -> None:
        """ValueError, in latent units, unless every axis of the (T', H', W') token grid is within the table."""
        names = ("latent frames", "latent height", "latent width")
        for name, size, limit, step in zip(names, grid, self.grid, (patch.t, patch.h, patch.w)):
            if size > limit:
                raise ValueError(
                    f"DiffusionTransformer: {name} at most {limit * step} (the rotary table's size), got {size * step}"
                )

    def cos_sin(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of the grid's tokens: (T'*H'*W', head) fp32 each, on ``device``."""
        angles = rotary_angles(*grid, self.head_dim, self.theta, device)  # (T'*H'*W', head)
        return angles.cos(), angles.sin()
