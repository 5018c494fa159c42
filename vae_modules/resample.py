"""Down- and up-sampling of the VAE: 2x in space always, 2x in time on the time-compressing levels.

Both keep the reference's causal treatment of the first frame: with an odd frame count the first
frame is resampled on its own (space only) and the rest are pooled / repeated in time.
The 3x3 convolutions keep the reference's Conv2d weights (key shape [o, i, 3, 3]) but run as a
(1, 3, 3) Conv3d on the 5D tensor, which avoids the (b t) reshapes and their copies.
"""

import torch
import torch.nn.functional as F
from torch import nn

from vae_modules.conv3d import conv3d


def time_upsample_index(frames: int) -> list[int]:
    """Source frame of each output frame when an Upsample3D doubles time (nearest).

    matches the reference: an odd count t > 1 keeps frame 0 once and doubles the rest
    (t -> 2t - 1); an even count doubles every frame (t -> 2t); a single frame stays single.
    """
    if frames == 1:
        return [0]
    if frames % 2 == 1:
        return [0] + [1 + j // 2 for j in range(2 * (frames - 1))]
    return [j // 2 for j in range(2 * frames)]


def upsampled_frames(frames: int, compress_time: bool) -> int:
    """Frame count after an Upsample3D."""
    return len(time_upsample_index(frames)) if compress_time else frames


def _conv2d_per_frame(conv: nn.Conv2d, x: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """Apply a Conv2d's weights to every frame of (b, c, t, h, w) as a (1, k, k) Conv3d."""
    return conv3d(x, conv.weight[:, :, None], conv.bias, stride=(1, stride, stride), padding=(0, padding, padding))


def average_frame_pairs(x: torch.Tensor) -> torch.Tensor:
    """(b, c, 2n, h, w) -> (b, c, n, h, w), the mean of frames 2i and 2i + 1.

    Bit for bit the reference's ``avg_pool1d(kernel 2, stride 2)`` over time, in fp32 and bf16 (the sum is rounded
    once, halving is exact); unlike ``avg_pool3d``, it runs in bf16 on the CPU.
    """
    return (x[:, :, 0::2] + x[:, :, 1::2]).div_(2)


class DownSample3D(nn.Module):
    """Halve h and w with a stride-2 3x3 conv (zero pad right/bottom); with ``compress_time`` also
    average frame pairs after the first (t -> t // 2 + 1 for odd t, t // 2 for even t)."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, t, h, w) -> (b, c, t', h / 2, w / 2)."""
        frames = x.shape[2]
        if self.compress_time and frames > 1:
            if frames % 2 == 1:
                # matches the reference: the first frame is kept, the rest averaged in pairs
                x = torch.cat([x[:, :, :1], average_frame_pairs(x[:, :, 1:])], dim=2)
            else:
                x = average_frame_pairs(x)
        x = F.pad(x, (0, 1, 0, 1))  # (b, c, t', h + 1, w + 1)
        return _conv2d_per_frame(self.conv, x, stride=2, padding=0)


class Upsample3D(nn.Module):
    """Double h and w (nearest) then a 3x3 conv; with ``compress_time`` also double the frames
    (see ``time_upsample_index``). Nearest resizing is a copy, so resizing time and space in two
    steps gives the reference's numbers with one full-size allocation instead of three."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, t, h, w) -> (b, c, upsampled_frames(t), 2h, 2w)."""
        if self.compress_time:
            x = x[:, :, time_upsample_index(x.shape[2])]  # (b, c, t', h, w): time first, on the small tensor
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")  # (b, c, t', 2h, 2w)
        return _conv2d_per_frame(self.conv, x, stride=1, padding=1)
