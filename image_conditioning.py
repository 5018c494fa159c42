"""Image-to-video conditioning for sampling CogVideoX-5B-I2V: prompt lines `text@@image_path`, the image's
preprocessing and its latent, as the reference's `sample_video.py --image2video`.

The image is read as RGB in [0, 1], resized (bicubic, antialiased) to cover the sampling size with its aspect ratio
kept, center-cropped, mapped to [-1, 1] (the bicubic overshoot is not clamped), encoded by the VAE (a posterior
sample times `scale_factor`, without the training-time pixel noise) and zero-padded to the sampled latent frame
count. The same image latent goes to both classifier-free-guidance branches (`cond["concat"]` and `uc["concat"]`).
"""

import os

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from input_errors import InputError
from video_io import resized_size

IMAGE_SEPARATOR = "@@"
EXPECTED_LINE = f"'<prompt text>{IMAGE_SEPARATOR}<image path>'"


def split_image_prompt(line: str) -> tuple[str, str]:
    """`text@@image_path` -> (text, image_path); InputError for any other form."""
    parts = line.split(IMAGE_SEPARATOR)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise InputError(f"image-to-video prompt line {line!r} is not of the form {EXPECTED_LINE}")
    return parts[0].strip(), parts[1].strip()


def read_image(path: str) -> torch.Tensor:
    """The image at `path` as RGB (3, H, W) float32 in [0, 1]; InputError if it is missing or unreadable."""
    if not os.path.isfile(path):
        raise InputError(f"image {path!r} (from an image-to-video prompt line) does not exist")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"image {path!r} cannot be read as an image: {err}") from None
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).reshape(rgb.height, rgb.width, 3)
    return pixels.permute(2, 0, 1).to(torch.float32) / 255.0  # (3, H, W)


def check_image_prompts(lines: list[str]) -> None:
    """Every line is `text@@image_path` with a readable image (run before the model is built)."""
    for line in lines:
        read_image(split_image_prompt(line)[1])


def check_text_prompts(lines: list[str]) -> None:
    """Text-to-video: a `text@@image_path` line would be sampled as a prompt holding the path (as the reference
    does); refused, saying how to sample it with its image."""
    for line in lines:
        if IMAGE_SEPARATOR in line:
            raise InputError(
                f"prompt line {line!r} is an image-to-video line (text{IMAGE_SEPARATOR}image_path), but this run samples "
                "text-to-video: use an image-to-video model with --image2video (e.g. --base configs/cogvideox_5b_i2v.yaml "
                f"configs/inference_5b.yaml --image2video), or remove '{IMAGE_SEPARATOR}' and the path"
            )


def resize_cover_center_crop(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, h, w) float in [0, 1] -> (3, H, W) for `size` = (H, W), not clamped.

    Matches the reference (torchvision's tensor `resize` with BICUBIC, antialias on, then a center crop): torch's
    `interpolate(mode="bicubic", align_corners=False, antialias=True)` in float32, skipped when the size already
    covers exactly; the covering size is `video_io.resized_size` (floored); crop offsets floor(delta / 2).
    """
    height, width = image.shape[1:]
    new_h, new_w = resized_size(height, width, size)
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)[0]
    top, left = (new_h - size[0]) // 2, (new_w - size[1]) // 2
    return image[:, top : top + size[0], left : left + size[1]]  # (3, H, W)


def image_condition_pixels(path: str, size: tuple[int, int]) -> torch.Tensor:
    """The reference's preprocessing of an I2V image: (3, H, W) float32 in about [-1, 1] (not clamped)."""
    return resize_cover_center_crop(read_image(path), size) * 2.0 - 1.0


def sampling_pixel_size(model_config) -> tuple[int, int]:
    """(H, W) in pixels of the videos this model samples: the latent size times the VAE's spatial compression."""
    params = model_config.network_config.params
    ch_mult = model_config.first_stage_config.params.encoder_config.params.ch_mult
    factor = 2 ** (len(ch_mult) - 1)
    return int(params.latent_height) * factor, int(params.latent_width) * factor


def check_sampling_image_size(model_config, sampling_image_size) -> None:
    """`sampling_image_size` (the released inference.yaml's [480, 720]) must be the model's sampling size."""
    if sampling_image_size is not None and tuple(sampling_image_size) != sampling_pixel_size(model_config):
        raise InputError(
            f"sampling_image_size={list(sampling_image_size)} but this model samples {list(sampling_pixel_size(model_config))} "
            "(8x the network config's latent_height, latent_width); remove the option or set it to that size"
        )


def check_network_channels(model_config, latent_channels: int, image2video: bool) -> None:
    """The network takes the latent channels, doubled (noisy latent + image latent) for image-to-video."""
    in_channels = int(model_config.network_config.params.in_channels)
    expected = 2 * latent_channels if image2video else latent_channels
    if in_channels != expected:
        mode = "image-to-video (--image2video) needs in_channels = 2 x latent_channels" if image2video else (
            "text-to-video needs in_channels = latent_channels (an image-to-video model needs --image2video)"
        )
        raise InputError(f"latent_channels={latent_channels} and the network's in_channels={in_channels}: {mode}")


@torch.no_grad()
def image_latent(engine, pixels: torch.Tensor, num_latent_frames: int, generator: torch.Generator) -> torch.Tensor:
    """(3, H, W) image in [-1, 1] -> (1, num_latent_frames, c, H/8, W/8) in the engine's dtype.

    One latent frame: a VAE posterior sample (one draw of the latent's shape from `generator`, before the sampler's
    initial noise, as the reference's order) times `scale_factor`, then zeros for the other frames.
    """
    video = pixels[None, :, None].to(device=engine.device, dtype=engine.first_stage_dtype)  # (1, 3, 1, H, W)
    latent = engine.encode_first_stage(video, generator=generator).to(engine.dtype)  # (1, c, 1, h, w)
    latent = latent.permute(0, 2, 1, 3, 4)  # (1, 1, c, h, w)
    padding = latent.new_zeros(1, num_latent_frames - 1, *latent.shape[2:])
    return torch.cat((latent, padding), dim=1)  # (1, t, c, h, w)
