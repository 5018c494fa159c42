"""Image-to-video conditioning for sampling CogVideoX-5B-I2V and CogVideoX1.5-5B-I2V: prompt lines
`text@@image_path`, the image's preprocessing and its latent, as the reference's `sample_video.py --image2video`.

CogVideoX 1.0: the image is read as RGB in [0, 1], resized (bicubic, antialiased) to cover the sampling size with its
aspect ratio kept, center-cropped, mapped to [-1, 1] (the bicubic overshoot is not clamped).
CogVideoX1.5: the image decides the size: its short side becomes `image_short_side` pixels (768, the reference's)
and its long side the nearest multiple of 16 to long / short x that (ties up); the image is resized to exactly that
size with PIL's LANCZOS (no crop: the aspect ratio changes slightly), then mapped to [-1, 1].
Both: encoded by the VAE (one posterior sample z, drawn before the initial noise) times the engine's
`image_latent_sampling_scale` (0.7 for 1.0, 1.0 for 1.5, as the references), in latent frame 0, zeros after. The same
image latent goes to both classifier-free-guidance branches (`cond["concat"]` and `uc["concat"]`).
"""

import os

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from input_errors import InputError
from model_family import COGVIDEOX_1_0, SIZE_MULTIPLE, check_size_fits, model_family, sampling_pixel_size
from video_io import resized_size

IMAGE_SEPARATOR = "@@"
EXPECTED_LINE = f"'<prompt text>{IMAGE_SEPARATOR}<image path>'"


def split_image_prompt(line: str, source: str = "image") -> tuple[str, str]:
    """`text@@image_path` -> (text, image_path); InputError for any other form. `source` names the path's kind in
    the message ("video" for video-to-video lines, the same form)."""
    parts = line.split(IMAGE_SEPARATOR)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        expected = EXPECTED_LINE.replace("image path", f"{source} path")
        raise InputError(f"{source}-to-video prompt line {line!r} is not of the form {expected}")
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


def check_image_prompts(lines: list[str], model_config=None, short_side: int | None = None) -> None:
    """Every line is `text@@image_path` with a readable image (run before the model is built); for CogVideoX1.5
    (`model_config`), each image's video size fits the model."""
    for line in lines:
        path = split_image_prompt(line)[1]
        read_image(path)
        if model_config is not None and model_family(model_config).image_short_side is not None:
            size = conditioning_image_size(model_config, path, short_side)
            check_size_fits(model_config, size, f"image {path!r}")


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


def image_condition_pixels(path: str, size: tuple[int, int], model_config=None) -> torch.Tensor:
    """The reference's preprocessing of an I2V image to `size` = (H, W): (3, H, W) float32 in about [-1, 1].

    `model_config` (the `model:` section) picks the family: None or CogVideoX 1.0: cover + center crop, bicubic (not
    clamped); CogVideoX1.5: LANCZOS straight to `size` (its `image_sampling_size`)."""
    family = COGVIDEOX_1_0 if model_config is None else model_family(model_config)
    if family.image_short_side is None:
        return resize_cover_center_crop(read_image(path), size) * 2.0 - 1.0
    return resize_lanczos(path, size) * 2.0 - 1.0


def resize_lanczos(path: str, size: tuple[int, int]) -> torch.Tensor:
    """The image at `path` resized to `size` = (H, W) by PIL's LANCZOS, as RGB (3, H, W) in [0, 1].

    Matches the reference 1.5 (torchvision `Resize(size, interpolation=1)` on a PIL image, i.e. PIL's resize with
    LANCZOS, then `ToTensor`)."""
    read_image(path)  # InputError if missing or unreadable
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.LANCZOS)
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).reshape(size[0], size[1], 3)
    return pixels.permute(2, 0, 1).to(torch.float32) / 255.0  # (3, H, W)


def nearest_multiple(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    """The multiple of `multiple` nearest to `value`, ties up (the reference 1.5's nearest_multiple_of_16)."""
    lower = int(value // multiple) * multiple
    upper = lower + multiple
    return lower if abs(value - lower) < abs(value - upper) else upper


def image_sampling_size(path: str, short_side: int) -> tuple[int, int]:
    """CogVideoX1.5 I2V: (H, W) in pixels for the image at `path`: its short side `short_side`, its long side the
    nearest multiple of 16 to long / short x short_side (a square image: short_side x short_side).

    Matches the reference 1.5 sample_video.py (H = 96 latent rows when H < W, else W = 96 columns)."""
    with Image.open(path) as image:
        width, height = image.size
    if height < width:
        return short_side, nearest_multiple(width / height * short_side)
    return nearest_multiple(height / width * short_side), short_side


def conditioning_image_size(model_config, path: str, short_side: int | None = None) -> tuple[int, int]:
    """(H, W) an I2V image is resized to: the model's size (1.0), or from the image (1.5; `short_side` None: the
    family's 768)."""
    family = model_family(model_config)
    if family.image_short_side is None:
        return sampling_pixel_size(model_config)
    return image_sampling_size(path, family.image_short_side if short_side is None else short_side)


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
    initial noise, as the reference's order) times the engine's `image_latent_sampling_scale` (1.0: scale_factor;
    1.5: 1, the reference's encode x 0.7 / 0.7), then zeros for the other frames. In 1.5 latent frame 0 is the
    padding frame decoding drops: matches the reference, which puts the image there.
    """
    video = pixels[None, :, None].to(device=engine.device, dtype=engine.first_stage_dtype)  # (1, 3, 1, H, W)
    latent = engine.encode_image_latent(video, engine.image_latent_sampling_scale, generator).to(engine.dtype)  # (1, c, 1, h, w)
    latent = latent.permute(0, 2, 1, 3, 4)  # (1, 1, c, h, w)
    padding = latent.new_zeros(1, num_latent_frames - 1, *latent.shape[2:])
    return torch.cat((latent, padding), dim=1)  # (1, t, c, h, w)
