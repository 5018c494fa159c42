"""Encoder and decoder of CogVideoX's 3D causal VAE (the reference's ``cp_enc_dec`` classes).

Module and parameter names follow the released ``3d-vae.pt`` (``down.{i}.block.{j}``,
``mid.block_1``, ``up.{i}.upsample`` with ``up.0`` the highest resolution, ...). Constructor
parameters are the reference's config keys. Context parallelism (``cp_size > 1``) passes a
``vae_modules.context_parallel.RankContext`` where a chunked decode passes a ``CausalCache``.
"""

import math

import torch
from torch import nn

from vae_modules import ops
from vae_modules.causal_conv import CausalCache, CausalConv3d
from vae_modules.context_parallel import RankContext
from vae_modules.resample import DownSample3D, Upsample3D, upsampled_frames
from vae_modules.resnet_block import ResnetBlock3D
from vae_modules.spatial_norm import SpatialNorm3D, group_norm


def _time_compress_levels(temporal_compress_times: int, num_levels: int) -> int:
    """log2 of the temporal compression: how many of the first levels also resample time."""
    levels = int(math.log2(temporal_compress_times))
    if 2**levels != temporal_compress_times or levels > num_levels - 1:
        raise ValueError(
            f"temporal_compress_times must be a power of two <= 2 ** {num_levels - 1}, got {temporal_compress_times}"
        )
    return levels


def _check_no_attention(attn_resolutions: list[int]) -> None:
    if len(attn_resolutions) > 0:
        raise ValueError(
            f"attn_resolutions must be empty: CogVideoX's VAE has no attention blocks, got {list(attn_resolutions)}"
        )


def _check_double_z(double_z: bool) -> None:
    if not double_z:
        raise ValueError(
            "double_z: false is not supported: the Gaussian regulariser (vae_modules.regularizers) splits the "
            "encoder output into mean and log-variance halves, so the encoder must output 2 * z_channels; expected true"
        )


class ContextParallelEncoder3D(nn.Module):
    """Video (b, in_channels, t, H, W) -> posterior moments (b, 2 z, (t - 1) / 4 + 1, H / 8, W / 8).

    Every GroupNorm normalises over all frames at once; split over ranks (context parallel),
    ``gather_norm`` makes the statistics span every rank's frames (else each rank's own).
    Accepted for config compatibility with no effect here: ``out_ch`` (the decoder's),
    ``resolution`` (the network is fully convolutional).
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        in_channels: int,
        out_ch: int,
        resolution: int,
        attn_resolutions: list[int],
        dropout: float = 0.0,
        double_z: bool = True,
        gather_norm: bool = False,
        temporal_compress_times: int = 4,
    ) -> None:
        super().__init__()
        _check_no_attention(attn_resolutions)
        _check_double_z(double_z)
        time_levels = _time_compress_levels(temporal_compress_times, len(ch_mult))
        self.in_channels = in_channels
        self.gather_norm = gather_norm
        self.time_compression = temporal_compress_times
        self.space_compression = 2 ** (len(ch_mult) - 1)
        self.conv_in = CausalConv3d(in_channels, ch, kernel_size=3)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(ch_mult):
            block_out = ch * mult
            down = nn.Module()
            down.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock3D(block_in, block_out, dropout))
                block_in = block_out
            if level != len(ch_mult) - 1:
                down.downsample = DownSample3D(block_in, compress_time=level < time_levels)
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock3D(block_in, block_in, dropout)
        self.mid.block_2 = ResnetBlock3D(block_in, block_in, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = CausalConv3d(block_in, 2 * z_channels, kernel_size=3)  # (mean, logvar)

    def forward(self, x: torch.Tensor, context: CausalCache | RankContext | None = None) -> torch.Tensor:
        """(b, c, t, H, W) -> (b, 2 z, t', H / 2^(L-1), W / 2^(L-1)); ``context``: this rank's time slice, or a
        ``CausalCache`` carrying frames from the previous chunk (``encode_chunked``)."""
        h = self.conv_in(x, context)
        for level, down in enumerate(self.down):
            for block in down.block:
                h = block(h, None, context)
            if level != len(self.down) - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.block_1(h, None, context), None, context)
        h = self.norm_out(h) if context is None else context.norm(self.norm_out, h)
        return self.conv_out(ops.silu(h), context)


class ContextParallelDecoder3D(nn.Module):
    """Latent (b, z, T, h, w) -> video (b, out_ch, 4 (T - 1) + 1, 8 h, 8 w) for odd T.

    Every norm is a SpatialNorm3D conditioned on the input latent. Decoding in chunks passes a
    ``CausalCache`` so each causal conv sees the previous chunk's trailing frames; GroupNorm
    statistics are per chunk (as in the reference). Split over ranks (context parallel), ``gather_norm``
    makes them span every rank's frames (else each rank's own, as the released decoder). Accepted for
    config compatibility with no effect here: ``in_channels`` (the encoder's), ``resolution``;
    ``double_z`` must be true.
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        out_ch: int,
        in_channels: int,
        resolution: int,
        attn_resolutions: list[int],
        dropout: float = 0.0,
        double_z: bool = True,
        gather_norm: bool = False,
        temporal_compress_times: int = 4,
    ) -> None:
        super().__init__()
        _check_no_attention(attn_resolutions)
        _check_double_z(double_z)
        num_levels = len(ch_mult)
        time_levels = _time_compress_levels(temporal_compress_times, num_levels)
        block_in = ch * ch_mult[-1]
        self.z_channels = z_channels
        self.gather_norm = gather_norm
        self.conv_in = CausalConv3d(z_channels, block_in, kernel_size=3)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock3D(block_in, block_in, dropout, zq_channels=z_channels)
        self.mid.block_2 = ResnetBlock3D(block_in, block_in, dropout, zq_channels=z_channels)
        levels = []
        for level in reversed(range(num_levels)):
            block_out = ch * ch_mult[level]
            up = nn.Module()
            up.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock3D(block_in, block_out, dropout, zq_channels=z_channels))
                block_in = block_out
            if level != 0:
                # the lowest-resolution levels expand time, mirroring the encoder
                up.upsample = Upsample3D(block_in, compress_time=level >= num_levels - time_levels)
            levels.insert(0, up)
        self.up = nn.ModuleList(levels)  # up[0] is the highest resolution
        self.norm_out = SpatialNorm3D(block_in, z_channels)
        self.conv_out = CausalConv3d(block_in, out_ch, kernel_size=3)

    def output_frames(self, latent_frames: int) -> int:
        """Video frames decoded from ``latent_frames`` latent frames in one call."""
        frames = latent_frames
        for level in range(1, len(self.up)):
            frames = upsampled_frames(frames, self.up[level].upsample.compress_time)
        return frames

    def forward(self, z: torch.Tensor, cache: CausalCache | RankContext | None = None) -> torch.Tensor:
        """(b, z, T, h, w) -> (b, out_ch, output_frames(T), h * 2^(L-1), w * 2^(L-1))."""
        h = self.conv_in(z, cache)
        h = self.mid.block_1(h, z, cache)
        h = self.mid.block_2(h, z, cache)
        for level in reversed(range(len(self.up))):
            for block in self.up[level].block:
                h = block(h, z, cache)
            if level != 0:
                h = self.up[level].upsample(h)
        return self.conv_out(ops.silu(self.norm_out(h, z, cache)), cache)
