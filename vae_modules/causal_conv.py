"""Time-causal 3D convolution and the explicit cache that carries frames between decode chunks."""

import torch
from torch import nn


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
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, padding=(0, kernel_size // 2, kernel_size // 2)
        )

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """(b, c_in, t, h, w) -> (b, c_out, t, h, w); ``cache`` carries left context between chunks.

        Pass a temporary as ``x`` where possible: it is released once the padded copy exists, so
        only the padded input and the output are alive during the convolution.
        """
        if self.time_pad == 0:
            return self.conv(x)
        previous = cache.get(self) if cache is not None else None
        if previous is None:
            previous = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        padded = torch.cat([previous, x], dim=2)  # (b, c_in, t + k - 1, h, w)
        del x, previous
        if cache is not None:
            cache.put(self, padded[:, :, -self.time_pad :].clone())
        return self.conv(padded)
