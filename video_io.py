"""Video file access for the fine-tuning dataset: header probe, frame decode, resize + crop.

Decoding uses decord; resizing uses torch only (no torchvision), reproducing the
reference's ``torchvision.transforms.functional.resize`` on uint8 frames.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import decord
import numpy as np
import torch
import torch.nn.functional as F

# Containers listed as videos, matched case-insensitively: the common ones decord's ffmpeg demuxes.
VIDEO_EXTENSIONS = (
    ".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ogv", ".ts", ".webm", ".wmv",
)

# What decord raises for unreadable or undecodable input (ffmpeg errors surface as RuntimeError).
DECODE_ERRORS = (RuntimeError, decord.DECORDError)


class VideoDecodeError(RuntimeError):
    """A video that could not be opened or decoded; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """Header facts of one video file, read without decoding frames."""

    num_frames: int  # frames decord reports for the file
    fps: float  # average frame rate decord reports


def probe_video(path: str) -> VideoInfo:
    """Read the frame count and average fps of ``path`` from its header (no frame decode).

    Raises:
        VideoDecodeError: the file cannot be opened as a video or reports no frames / no fps.
    """
    try:
        reader = decord.VideoReader(path)
        info = VideoInfo(num_frames=len(reader), fps=float(reader.get_avg_fps()))
    except DECODE_ERRORS as err:
        raise VideoDecodeError(f"cannot open video {path}: {err}") from err
    if info.num_frames <= 0 or not info.fps > 0:
        raise VideoDecodeError(f"video {path} reports {info.num_frames} frames at {info.fps} fps")
    return info


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has one of ``VIDEO_EXTENSIONS`` (any case: ``.MP4`` and ``.mov`` are videos)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def read_frames(path: str, indices: Sequence[int]) -> torch.Tensor:
    """Decode the frames ``indices`` (repeats allowed; each distinct one decoded once, in increasing order) of
    ``path``: (len(indices), H, W, 3) uint8 RGB.

    Raises:
        VideoDecodeError: opening or decoding failed; the message names the file and the frames.
    """
    distinct, positions = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    try:
        reader = decord.VideoReader(path)
        frames = reader.get_batch(distinct.tolist()).asnumpy()  # (len(distinct), H, W, 3)
    except DECODE_ERRORS as err:
        raise VideoDecodeError(
            f"failed to decode frames {distinct.tolist()} of video {path}: {err}"
        ) from err
    return torch.from_numpy(frames)[torch.from_numpy(positions.reshape(-1))]  # (T, H, W, 3)


def resized_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """Size (h, w) that covers ``target`` = (H, W) keeping the aspect ratio.

    matches the reference (resize_for_rectangle_crop): a frame wider than the target
    gets height H and width int(w * H / h) (floored), otherwise width W and height
    int(h * W / w); the float expressions are evaluated in the reference's order.
    """
    target_h, target_w = target
    if width / height > target_w / target_h:
        return target_h, int(width * target_h / height)
    return int(height * target_w / width), target_w


def resize_center_crop(frames: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 frames (T, C, h, w) to cover ``target`` (H, W) and center-crop: (T, C, H, W) float32 integers.

    Matches the reference: torchvision 0.19 resizes a uint8 tensor in float32 with ``interpolate(mode="bicubic",
    align_corners=False, antialias=True)``, clamps to [0, 255] and rounds; the crop offsets are floor(delta / 2).
    Frames are resized one at a time (same result, bounded memory).
    """
    _, _, height, width = frames.shape
    new_h, new_w = resized_size(height, width, target)
    resized = []
    for frame in frames:
        pixels = frame.unsqueeze(0).to(torch.float32)  # (1, C, h, w)
        if (new_h, new_w) != (height, width):
            pixels = F.interpolate(
                pixels, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
            )
            pixels = pixels.clamp(0, 255).round()  # (1, C, new_h, new_w)
        resized.append(pixels)
    video = torch.cat(resized)  # (T, C, new_h, new_w)
    top = (new_h - target[0]) // 2
    left = (new_w - target[1]) // 2
    return video[:, :, top : top + target[0], left : left + target[1]]  # (T, C, H, W)
