"""Image-to-video conditioning pieces: prompt lines, image reading, the reference's resize + crop, the image latent."""

import numpy as np
import pytest
import torch
from PIL import Image

from image_to_video.conditioning import (
    check_image_prompts,
    check_network_channels,
    image_condition_pixels,
    image_latent,
    read_image,
    resize_cover_center_crop,
    split_image_prompt,
)
from model_family import check_sampling_image_size, sampling_pixel_size
from input_errors import InputError
from tiny_models import build_engine
from vae_modules.regularizers import DiagonalGaussianDistribution


def write_png(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_split_image_prompt():
    assert split_image_prompt("a cat sleeps @@ img/cat.png") == ("a cat sleeps", "img/cat.png")
    for bad in ("a cat without an image", "a@@b@@c", "@@img.png", "a cat@@"):
        with pytest.raises(InputError, match="text>@@<image path"):
            split_image_prompt(bad)


def test_missing_or_unreadable_image_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.png.*does not exist"):
        check_image_prompts([f"a cat@@{tmp_path / 'nope.png'}"])
    text_file = tmp_path / "not_an_image.png"
    text_file.write_text("hello")
    with pytest.raises(InputError, match="not_an_image.png.*cannot be read as an image"):
        check_image_prompts([f"a cat@@{text_file}"])


def test_read_image_is_rgb_in_unit_range(tmp_path):
    pixels = write_png(tmp_path / "a.png", 5, 7)
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.png")  # a grey image becomes 3 equal channels
    image = read_image(str(tmp_path / "a.png"))
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    gray = read_image(str(tmp_path / "gray.png"))
    assert torch.equal(gray[0], gray[2]) and torch.equal(gray[0], image[0])


@pytest.mark.parametrize("source, covering", [((37, 53), (20, 28)), ((50, 30), (33, 20)), ((10, 15), (20, 30))])
def test_resize_matches_pil_bicubic_and_crops_the_center(source, covering):
    """torchvision's antialiased bicubic tensor resize is torch's interpolate; PIL's BICUBIC (same a=-0.5 filter,
    widened when shrinking) is an independent implementation of it."""
    image = torch.rand(3, *source, generator=torch.Generator().manual_seed(1))
    target = (20, 20)
    ours = resize_cover_center_crop(image, target)
    channels = [Image.fromarray(c.numpy(), mode="F").resize(covering[::-1], Image.BICUBIC) for c in image]
    pil = torch.stack([torch.from_numpy(np.array(c)) for c in channels])  # (3, covering)
    top, left = (covering[0] - 20) // 2, (covering[1] - 20) // 2
    assert ours.shape == (3, 20, 20)
    torch.testing.assert_close(ours, pil[:, top : top + 20, left : left + 20], rtol=0, atol=2e-5)


def test_bicubic_overshoot_is_not_clamped_and_maps_to_minus_one_one(tmp_path):
    """As the reference: a sharp edge overshoots [0, 1] after the bicubic resize and the values are kept."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    Image.fromarray(pixels).save(tmp_path / "edge.png")
    out = image_condition_pixels(str(tmp_path / "edge.png"), (24, 24))
    assert out.min() < -1.0 and out.max() > 1.0
    assert out[:, :, 0].max() == pytest.approx(-1.0, abs=1e-6) and out[:, :, -1].min() == pytest.approx(1.0, abs=1e-6)


def test_image_of_the_sampling_size_is_not_resampled(tmp_path):
    pixels = write_png(tmp_path / "exact.png", 64, 96)
    out = image_condition_pixels(str(tmp_path / "exact.png"), (64, 96))
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 * 2 - 1)


def test_sizes_and_channels_are_checked(tiny_i2v_models, tiny_models):
    i2v, t2v = tiny_i2v_models.model_config(), tiny_models.model_config()
    assert sampling_pixel_size(i2v) == (64, 96)
    check_sampling_image_size(i2v, [64, 96])
    check_sampling_image_size(i2v, None)
    with pytest.raises(InputError, match=r"sampling_image_size=\[480, 720\].*\[64, 96\]"):
        check_sampling_image_size(i2v, [480, 720])
    check_network_channels(i2v, 16, image2video=True)
    check_network_channels(t2v, 16, image2video=False)
    with pytest.raises(InputError, match="--image2video"):
        check_network_channels(i2v, 16, image2video=False)
    with pytest.raises(InputError, match="2 x latent_channels"):
        check_network_channels(t2v, 16, image2video=True)


def test_image_latent_is_a_scaled_posterior_sample_drawn_first_and_zero_padded(tiny_i2v_models):
    engine = build_engine(tiny_i2v_models)
    pixels = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1
    generator = torch.Generator().manual_seed(7)
    latent = image_latent(engine, pixels, 5, generator)
    after = torch.randn(4, generator=generator)  # what the sampler's initial noise would start from

    replay = torch.Generator().manual_seed(7)
    moments = engine.first_stage_model.encoder(pixels[None, :, None])
    expected = 0.7 * DiagonalGaussianDistribution(moments).sample(replay)  # (1, 16, 1, 8, 12)
    assert latent.shape == (1, 5, 16, 8, 12)
    torch.testing.assert_close(latent[:, :1], expected.permute(0, 2, 1, 3, 4), rtol=0, atol=1e-6)
    assert torch.count_nonzero(latent[:, 1:]) == 0
    assert torch.equal(after, torch.randn(4, generator=replay))  # exactly one draw of the latent's shape
    assert not torch.allclose(latent[:, :1], 0.7 * DiagonalGaussianDistribution(moments).mode().permute(0, 2, 1, 3, 4))
