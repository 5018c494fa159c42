"""CogVideoX1.5's run-side rules (model_family.py, image_to_video/conditioning.py, sigma_sampling.py, engine_config.py),
without the DiT: frame counts, the training padding, the decode plan, the I2V image size and resize, the grouped
timestep draw, and the engine keys the released 1.5 configs carry."""

import numpy as np
import pytest
import torch
from diffusers.video_processor import VideoProcessor
from omegaconf import OmegaConf
from PIL import Image

from engine_config import check_sigma_sampler_groups, read_engine_config
from image_to_video.conditioning import image_condition_pixels, image_sampling_size, nearest_multiple
from input_errors import InputError
from model_family import COGVIDEOX_1_0, COGVIDEOX_1_5, model_family, sampling_image_size_for
from sgm.modules.diffusionmodules.sigma_sampling import grouped_index_range
from sgm.util import ConfigError
from vae_modules.chunking import reference_chunk_plan

RELEASED_1_5 = "tests/data/v1.5_cogvideox1.5_5b.yaml"
RELEASED_1_5_I2V = "tests/data/v1.5_cogvideox1.5_5b_i2v.yaml"


def test_family_is_read_from_patch_size():
    assert model_family(OmegaConf.load(RELEASED_1_5).model) is COGVIDEOX_1_5
    assert model_family(OmegaConf.load("configs/cogvideox_5b.yaml").model) is COGVIDEOX_1_0
    config = OmegaConf.load(RELEASED_1_5).model
    config.network_config.params.patch_size = [1, 2, 2]
    with pytest.raises(ConfigError, match=r"patch_size=\[1, 2, 2\]: expected an int .* or \[2, p, p\]"):
        model_family(config)


def test_sampling_frame_counts_per_family():
    assert COGVIDEOX_1_0.allowed_sampling_frames(49, 4) == [3, 5, 7, 9, 11, 13]
    allowed = COGVIDEOX_1_5.allowed_sampling_frames(81, 4)  # the released 1.5 table: 21 temporal positions
    assert allowed == list(range(4, 43, 2)) and 22 in allowed and 42 in allowed


def test_released_1_5_frame_checks_name_the_allowed_values():
    from model_family import check_sampling_frames

    config = OmegaConf.load(RELEASED_1_5).model
    check_sampling_frames(config, 22)
    check_sampling_frames(config, 42)
    with pytest.raises(ConfigError, match=r"sampling_num_frames=21 .* CogVideoX1.5 .* allowed: \[4, 6, .*, 42\] .*22 -> 81"):
        check_sampling_frames(config, 21)
    with pytest.raises(ConfigError, match=r"sampling_num_frames=22 .* allowed: \[3, 5, 7, 9, 11, 13\]"):
        check_sampling_frames(OmegaConf.load("configs/cogvideox_5b.yaml").model, 22)


def test_training_padding_copies_the_first_latent_frame_in_front():
    latents = torch.randn(2, 13, 16, 4, 6)  # (b, t, c, h, w): 49 frames
    padded = COGVIDEOX_1_5.pad_training_latents(latents)
    assert padded.shape == (2, 14, 16, 4, 6)
    assert torch.equal(padded[:, 0], latents[:, 0]) and torch.equal(padded[:, 1:], latents)
    even = torch.randn(1, 22, 16, 2, 2)
    assert COGVIDEOX_1_5.pad_training_latents(even) is even
    assert COGVIDEOX_1_0.pad_training_latents(latents) is latents


def test_decode_plan_is_the_1_5_references():
    assert COGVIDEOX_1_5.decode_chunk_plan(21) == reference_chunk_plan(21)  # 5 s: the 1.0 plan
    plan = COGVIDEOX_1_5.decode_chunk_plan(41)  # 10 s: 10 chunks of 4, the first one 5
    assert plan[:3] == [(0, 5), (5, 9), (9, 13)] and plan[-1] == (37, 41) and len(plan) == 10
    assert COGVIDEOX_1_5.decode_chunk_plan(3) == [(0, 3)]
    assert COGVIDEOX_1_0.decode_chunk_plan(13) is None


def write_image(path, width, height):
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.mark.parametrize("width, height, short_side, expected", [
    (1360, 768, 768, (768, 1360)),  # the README's example: 96x170 latents
    (720, 480, 768, (768, 1152)),   # 96x144 latents
    (480, 720, 768, (1152, 768)),   # portrait: width is the short side
    (500, 500, 768, (768, 768)),    # square
    (520, 512, 512, (512, 528)),    # 520 / 512 x 512 = 520 = 32.5 x 16: a tie goes up
    (48, 80, 64, (112, 64)),        # the tiny demo image at short side 64: 106.7 -> 112
])
def test_image_decides_the_1_5_size(tmp_path, width, height, short_side, expected):
    assert image_sampling_size(write_image(tmp_path / "i.png", width, height), short_side) == expected


def test_nearest_multiple_of_16():
    assert [nearest_multiple(v) for v in (1359.9, 1352.0, 1343.9, 1344.0, 8.0)] == [1360, 1360, 1344, 1344, 16]


def test_1_5_resize_is_diffusers_lanczos_without_crop(tmp_path):
    """diffusers' VideoProcessor (the 1.5 I2V pipeline's preprocessing: PIL LANCZOS straight to the size, then
    [-1, 1]) is an independent implementation of the reference 1.5's Resize(interpolation=1) + ToTensor * 2 - 1."""
    path = write_image(tmp_path / "i.png", 90, 50)
    ours = image_condition_pixels(path, (48, 80), OmegaConf.load(RELEASED_1_5_I2V).model)
    with Image.open(path) as image:
        theirs = VideoProcessor(vae_scale_factor=8).preprocess(image.convert("RGB"), 48, 80)[0]
    assert ours.shape == (3, 48, 80)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    one_oh = image_condition_pixels(path, (48, 80))  # default: the 1.0 cover + crop
    assert (one_oh - ours).abs().max() > 0.05


def test_size_options_per_family(capsys):
    t2v, i2v = OmegaConf.load(RELEASED_1_5).model, OmegaConf.load(RELEASED_1_5_I2V).model
    assert sampling_image_size_for(t2v, None, False, None) == (768, 1360)
    assert sampling_image_size_for(t2v, [480, 848], False, None) == (480, 848)
    with pytest.raises(InputError, match=r"sampling_image_size=\[480, 850\] gives a 480x850 video; .* multiples of 16 "
                                         r"up to 2400x2400"):
        sampling_image_size_for(t2v, [480, 850], False, None)
    assert sampling_image_size_for(i2v, [768, 1360], True, None) is None
    assert "each image decides its video's size (short side 768 px); sampling_image_size=[768, 1360] is not used" \
        in capsys.readouterr().out
    with pytest.raises(InputError, match="--image-short-side 500: expected a positive multiple of 16"):
        sampling_image_size_for(i2v, None, True, 500)
    with pytest.raises(InputError, match="--image-short-side 512: CogVideoX 1.0 .* the option is for CogVideoX1.5 I2V"):
        sampling_image_size_for(OmegaConf.load("configs/cogvideox_5b_i2v.yaml").model, None, True, 512)


@pytest.mark.parametrize("world_size, rank, expected", [
    (1, 0, (0, 1000)), (8, 7, (0, 1000)),  # at most 8 ranks: the plain draw
    (40, 0, (0, 25)), (40, 39, (975, 1000)),  # one rank per group of 25 indices
    (80, 1, (0, 25)), (80, 2, (25, 50)), (80, 79, (975, 1000)),  # two ranks per group
])
def test_grouped_timestep_ranges_follow_the_1_5_reference(world_size, rank, expected):
    assert grouped_index_range(rank, world_size, 1000, 40) == expected


def test_a_world_size_the_groups_cannot_split_is_refused_before_the_build():
    config = OmegaConf.load(RELEASED_1_5).model
    for world_size in (1, 2, 8, 40, 120):
        check_sigma_sampler_groups(config, world_size, ["c.yaml"])
    with pytest.raises(ConfigError, match=r"\['c.yaml'\]: .*sigma_sampler_config.params: uniform_sampling with "
                                          r"group_num 40 needs a data-parallel world size of at most 8 or a multiple "
                                          r"of 40, got 16"):
        check_sigma_sampler_groups(config, 16, ["c.yaml"])


def test_released_1_5_engine_keys_load_as_the_reference_reads_them():
    t2v = read_engine_config(OmegaConf.load(RELEASED_1_5).model, [RELEASED_1_5])
    assert t2v.latent_input and t2v.scale_factor == 0.7 and not t2v.noised_image_input
    i2v = read_engine_config(OmegaConf.load(RELEASED_1_5_I2V).model, [RELEASED_1_5_I2V])
    assert (i2v.noised_image_input, i2v.noised_image_dropout, i2v.ofs) == (True, 0.05, 2.0)
    assert i2v.augmentation_dropout == 0.15 and i2v.noised_image_all_concat is False  # read by no code


@pytest.mark.parametrize("key, value, message", [
    ("ofs", None, "model.ofs is null but the network has an ofs embedding"),
    ("latent_input", True, "latent_input: true with noised_image_input: true"),
    ("noised_image_all_concat", True, "noised_image_all_concat: true"),
])
def test_bad_1_5_i2v_engine_keys_are_named(key, value, message):
    config = OmegaConf.load(RELEASED_1_5_I2V).model
    config[key] = value
    with pytest.raises(ConfigError, match=message):
        read_engine_config(config, ["mine.yaml"])


def test_training_frame_counts_are_checked_before_the_build():
    from model_family import check_training_frames

    config = OmegaConf.load(RELEASED_1_5).model
    for frames in (49, 81, 161, 165):  # 13, 21, 41, 42 latent frames: padded to 14, 22, 42, 42
        check_training_frames(config, frames, ["sft.yaml"])
    with pytest.raises(ConfigError, match=r"max_num_frames=169 cannot be trained by this CogVideoX1.5 .* at most 165"):
        check_training_frames(config, 169, ["sft.yaml"])
    with pytest.raises(ConfigError, match=r"\['sft.yaml'\]: data.params.max_num_frames=80 .* expected 4k \+ 1 frames"):
        check_training_frames(config, 80, ["sft.yaml"])
    with pytest.raises(ConfigError, match="max_num_frames=81 .* CogVideoX 1.0 .* at most 49"):
        check_training_frames(OmegaConf.load("configs/cogvideox_5b.yaml").model, 81, ["sft.yaml"])
