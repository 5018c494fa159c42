"""Fixed 3D sin-cos position table of CogVideoX-2B (video rows; text rows are zero)."""

import torch


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin | cos]`` of ``positions x omega`` with ``omega_i = 10000^(-i / (embed_dim / 2))``.

    positions: (m,) fp32 coordinates; returns (m, embed_dim) float64 (the reference computes in
    numpy float64 from float32 coordinates).
    """
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64, device=positions.device) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # (d/2,)
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None]  # (m, d/2)
    return torch.cat((torch.sin(angles), torch.cos(angles)), dim=1)  # (m, d)


def sincos_3d_table(
    embed_dim: int,
    frames: int,
    height: int,
    width: int,
    height_interpolation: float = 1.0,
    width_interpolation: float = 1.0,
    time_interpolation: float = 1.0,
) -> torch.Tensor:
    """Rows for every (t, h, w) patch in that order, each ``[temporal | w-coord | h-coord]``.

    Matches the reference: the temporal block has ``embed_dim / 4`` channels and the spatial
    ``3 * embed_dim / 4`` are split evenly, w-coordinate first; each block is ``[sin | cos]``;
    coordinates are ``arange(n) / interpolation`` in fp32.

    Returns (frames * height * width, embed_dim) fp32.
    """
    if embed_dim % 4:
        raise ValueError(f"the 3D sin-cos table needs hidden_size divisible by 4, got {embed_dim}")
    dim_temporal = embed_dim // 4
    dim_spatial_half = (embed_dim // 4 * 3) // 2
    grid_t = torch.arange(frames, dtype=torch.float32) / time_interpolation
    grid_h = torch.arange(height, dtype=torch.float32) / height_interpolation
    grid_w = torch.arange(width, dtype=torch.float32) / width_interpolation
    emb_t = sincos_1d(dim_temporal, grid_t)  # (t, d/4)
    emb_w = sincos_1d(dim_spatial_half, grid_w)  # (w, 3d/8)
    emb_h = sincos_1d(dim_spatial_half, grid_h)  # (h, 3d/8)
    table = torch.cat(
        (
            emb_t[:, None, None, :].expand(frames, height, width, dim_temporal),
            emb_w[None, None, :, :].expand(frames, height, width, dim_spatial_half),
            emb_h[None, :, None, :].expand(frames, height, width, dim_spatial_half),
        ),
        dim=-1,
    )  # (t, h, w, d)
    return table.reshape(frames * height * width, embed_dim).float()
