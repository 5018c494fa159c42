"""Time-causal 3D convolution and the explicit cache that carries frames between decode chunks."""

import torch
from torch import nn

from vae_modules.conv3d import Conv3d


class CausalCache:
    """Trailing input frames of each causal convolution, carried from one chunk to the next.

    One instance lives for one chunked decode of one batch of videos; the caller creates it and
    drops it afterwards, so no state survives inside the modules between videos.
    """

    def __init__(self) -> None:
        self._frames: dict[nn.Module, torch.Tensor] = {}

    def get(self, conv: nn.Module) -> torch.Tensor | None:
        """The frames ``conv`` stored on the previous chunk, or None on the first chunk."""
        return self._frames.get(conv)

    def put(self, conv: nn.Module, frames: torch.Tensor) -> None:
        """Store ``frames`` (b, c, k - 1, h, w) as the left context of ``conv``'s next chunk."""
        self._frames[conv] = frames

    def exchange(self, conv: nn.Module, x: torch.Tensor, pad: int) -> torch.Tensor | None:
        """The left context of ``conv`` for ``x`` (None on the first chunk); keeps ``x``'s for the next chunk."""
        previous = self.get(conv)
        if x.shape[2] >= pad:
            self.put(conv, x[:, :, -pad:].clone())
        else:  # a chunk shorter than the padding: its left context's last frames complete it
            left = x[:, :, :1].expand(-1, -1, pad, -1, -1) if previous is None else previous
            self.put(conv, torch.cat([left, x], dim=2)[:, :, -pad:].clone())
        return previous

    def norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A GroupNorm within one chunk: statistics of this chunk's frames (as the reference's chunked decode)."""
        return norm(x)


class CausalConv3d(nn.Module):
    """Conv3d, causal in time, 'same' in space.

    Time is padded on the left with ``k_t - 1`` frames: copies of the first frame (matches the
    reference's context-parallel conv on one rank), or, with a cache holding frames from the
    previous chunk, those frames. Space is zero-padded by ``k // 2`` inside the convolution, which
    equals the reference's explicit ``F.pad`` without copying the input.

    The weight lives at ``.conv`` so state-dict keys read ``<name>.conv.weight`` as released.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"CausalConv3d needs an odd kernel_size, got {kernel_size}")
        self.time_pad = kernel_size - 1
        self.conv = Conv3d(
            in_channels, out_channels, kernel_size, padding=(0, kernel_size // 2, kernel_size // 2)
        )

    def forward(self, x: torch.Tensor, cache: "CausalCache | RankContext | None" = None) -> torch.Tensor:
        """(b, c_in, t, h, w) -> (b, c_out, t, h, w); ``cache`` carries left context between chunks (``CausalCache``)
        or between ranks (``vae_modules.context_parallel.RankContext``).

        Pass a temporary as ``x`` where possible: it is released once the padded copy exists, so
        only the padded input and the output are alive during the convolution.
        """
        if self.time_pad == 0:
            return self.conv(x)
        previous = cache.exchange(self, x, self.time_pad) if cache is not None else None
        if previous is None:
            previous = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        padded = torch.cat([previous, x], dim=2)  # (b, c_in, t + k - 1, h, w)
        del x, previous
        return self.conv(padded)
