"""Resize + center crop of the fine-tuning dataset (torch restating the reference's torchvision)."""

import pytest
import torch

from video_io import resize_center_crop, resized_size


@pytest.mark.parametrize(
    "height, width, target, expected",
    [
        (64, 96, (32, 48), (32, 48)),  # same aspect: width scaled to 48
        (96, 64, (32, 48), (72, 48)),  # portrait: width 48, height int(96 * 48 / 64)
        (64, 128, (32, 48), (32, 64)),  # wider: height 32, width int(128 * 32 / 64)
        (1080, 1920, (480, 720), (480, 853)),  # int(1920 * 480 / 1080) = int(853.33)
        (100, 150, (480, 720), (480, 720)),  # upscale, same aspect
        (720, 1280, (480, 720), (480, 853)),
    ],
)
def test_resized_size_covers_target(height, width, target, expected):
    assert resized_size(height, width, target) == expected


def test_uniform_frame_keeps_its_value():
    frames = torch.full((2, 3, 64, 96), 37, dtype=torch.uint8)
    out = resize_center_crop(frames, (32, 48))
    assert out.shape == (2, 3, 32, 48)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.full_like(out, 37.0))


def test_portrait_is_center_cropped_vertically():
    # Top half black, bottom half white; 96x64 -> 72x48, crop rows 20..51 around the boundary (row 36).
    frames = torch.zeros(1, 3, 96, 64, dtype=torch.uint8)
    frames[:, :, 48:] = 255
    out = resize_center_crop(frames, (32, 48))
    assert out.shape == (1, 3, 32, 48)
    assert torch.all(out[:, :, :12] == 0)
    assert torch.all(out[:, :, 20:] == 255)


def test_landscape_is_center_cropped_horizontally():
    # Left half black, right half white; 64x128 -> 32x64, crop columns 8..55 around column 32.
    frames = torch.zeros(1, 3, 64, 128, dtype=torch.uint8)
    frames[..., 64:] = 255
    out = resize_center_crop(frames, (32, 48))
    assert out.shape == (1, 3, 32, 48)
    assert torch.all(out[..., :20] == 0)
    assert torch.all(out[..., 28:] == 255)


def test_downscale_is_antialiased_and_rounded():
    # 1-pixel stripes, 96 -> 32: plain bicubic would hit single columns (0 or 255);
    # the antialiased kernel averages them to mid grey.
    frames = torch.zeros(1, 3, 96, 96, dtype=torch.uint8)
    frames[..., 1::2] = 255
    out = resize_center_crop(frames, (32, 32))
    interior = out[..., 4:-4, 4:-4]
    assert torch.all((interior - 127.5).abs() < 20)
    assert torch.equal(out, out.round())
    assert out.min() >= 0 and out.max() <= 255


def test_upscale_clamps_overshoot():
    # A sharp edge upscaled with bicubic overshoots; values are clamped to [0, 255].
    frames = torch.zeros(1, 1, 8, 12, dtype=torch.uint8)
    frames[..., 6:] = 255
    out = resize_center_crop(frames, (32, 48))
    assert out.min() == 0 and out.max() == 255
