"""What differs between the CogVideoX 1.0 family (2B, 5B, 5B-I2V) and CogVideoX1.5 (5B, 5B-I2V) outside the DiT,
in one named place; the family is read from the network config's `patch_size` (an int for 1.0, [t, h, w] for 1.5).
And the one home of the frame and size rules that sampling, training, precompute and the tools share: frame counts
(pixel <-> latent, allowed values, padding), the VAE's spatial factor, the sampling shape and the allowed image sizes.

Each constant cites the reference file it comes from (v1.0: the CogVideoX 1.0 release's `sat/`; 1.5: the public
repository's current `sat/`, commit e519ece).
"""

from dataclasses import dataclass

import torch

from input_errors import InputError
from sgm.util import ConfigError

TIME_COMPRESSION = 4  # video frames per latent frame of the 3D VAE (4k + 1 frames -> k + 1 latent frames)
SIZE_MULTIPLE = 16  # CogVideoX1.5 image sizes: 8 (VAE) x 2 (DiT patch) pixels


# ---- frame counts -------------------------------------------------------------------------------------------------

def latent_frame_count(num_frames: int, time_compression: int = TIME_COMPRESSION) -> int:
    """Latent frames of a ``time_compression * k + 1``-frame video: ``(num_frames - 1) // 4 + 1`` (49 -> 13).

    The one place this is computed: the DiT's position table and the sampler's frame check use it."""
    return (num_frames - 1) // time_compression + 1


def pixel_frame_count(num_latent_frames: int, time_compression: int = TIME_COMPRESSION) -> int:
    """Video frames a ``num_latent_frames``-frame latent decodes to: ``4 * (t - 1) + 1`` (13 -> 49)."""
    return time_compression * (num_latent_frames - 1) + 1


def is_4k_plus_1(num_frames: int) -> bool:
    """Whether the 3D VAE encodes `num_frames` video frames: 4k + 1, at least 1."""
    return num_frames >= 1 and (num_frames - 1) % TIME_COMPRESSION == 0


def largest_4k_plus_1(n: int) -> int:
    """Largest 4k+1 not above ``n`` (n >= 1): the 3D VAE needs 4k+1 frames."""
    return n - (n - 1) % TIME_COMPRESSION


@dataclass(frozen=True)
class ModelFamily:
    name: str
    temporal_patch: int  # latent frames per DiT token along time (1.5: patch_size[0] = 2)
    # Latent frames sampling generates in front of the video and decoding drops (1.5 sample_video.py samples 22 =
    # 21 + 1; diffusion_video.py 1.5 decode_first_stage drops frame 0). 0 for 1.0.
    padding_latent_frames: int
    # T2V pixel size when `sampling_image_size` is not given: 1.0 samples the network config's size (the 1.0
    # sample_video.py hard-codes [480, 720]); 1.5 samples `sampling_image_size` (1.5 inference.yaml: [768, 1360]).
    default_sampling_image_size: tuple[int, int] | None
    # The I2V sampling image latent as a multiple of the raw posterior sample z; None: scale_factor (v1.0
    # sample_video.py: encode_first_stage, 0.7 z); 1.5 sample_video.py: encode_first_stage, then / scale_factor: z.
    image_latent_sampling_scale: float | None
    # I2V sampling: the short side of the resized image in pixels (1.5 sample_video.py: latent H or W = 96);
    # None: the image is resized to the model's size (v1.0).
    image_short_side: int | None

    def allowed_sampling_frames(self, num_frames: int, time_compressed_rate: int) -> list[int]:
        """Latent frame counts sampling can take with a position table for `num_frames` video frames.

        1.0: odd counts 3..13 (the chunked decode plan covers odd counts only, as the reference). 1.5: even counts
        (temporal patches of 2) from 4 to 2 x the table's 21 temporal positions, so that the decoded frames (the
        count minus the padding frame) are odd and at least 3, as for 1.0: 22 (81 video frames) and 42 (161)."""
        table = latent_frame_count(num_frames, time_compressed_rate)
        most = table * self.temporal_patch
        parity = 1 if self.temporal_patch == 1 else 0
        return [t for t in range(3, most + 1) if t % 2 == parity and t - self.padding_latent_frames >= 3]

    def video_frames(self, num_latent_frames: int, time_compression: int = 4) -> int:
        """Video frames a sampled latent of `num_latent_frames` decodes to, the padding frame dropped: 1.0: 13 -> 49;
        1.5: 22 -> 81 (the decode's first-frame rule: 4 (t - 1) + 1 of the t frames decoded)."""
        return time_compression * (num_latent_frames - self.padding_latent_frames - 1) + 1

    def pad_training_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(b, t, c, h, w) -> (b, t', c, h, w) with t' a multiple of `temporal_patch`, copies of frame 0 in front.

        Beyond the reference, whose 1.5 training crashes on its own odd counts (docs/faithfulness.md). As the model
        authors' diffusers fine-tuning (THUDM/CogVideo `finetune/models/cogvideox_*/lora_trainer.py`: `T % patch_size_t`
        copies of `latent[:, :, :1]` in front), and sampling's layout, where latent frame 0 is the padding frame
        decoding drops. The padded frame is noised and counts in the loss, as there.
        """
        missing = latents.shape[1] % self.temporal_patch
        if missing == 0:
            return latents
        return torch.cat([latents[:, :1].expand(-1, missing, -1, -1, -1), latents], dim=1)  # (b, t + missing, ...)

    def decode_chunk_plan(self, num_latent_frames: int) -> list[tuple[int, int]] | None:
        """The chunks the reference decodes `num_latent_frames` (after dropping the padding) in; None: the v1.0
        sampling plan [0:3], [3:5], ... (`vae_modules.chunking.reference_chunk_plan`).

        1.5 (diffusion_video.py decode_first_stage): n = min(10, T // 2) chunks of T // n frames, the first T % n
        chunks one frame longer; for T = 21 this is the v1.0 plan, for T = 41 it is [0:5], [5:9], ..."""
        if self.padding_latent_frames == 0:
            return None
        chunks = max(1, min(10, num_latent_frames // 2))
        plan, start = [], 0
        for index in range(chunks):
            end = start + num_latent_frames // chunks + (1 if index < num_latent_frames % chunks else 0)
            plan.append((start, end))
            start = end
        return plan


COGVIDEOX_1_0 = ModelFamily(
    name="CogVideoX 1.0 (2B, 5B, 5B-I2V)",
    temporal_patch=1,
    padding_latent_frames=0,
    default_sampling_image_size=None,
    image_latent_sampling_scale=None,
    image_short_side=None,
)
COGVIDEOX_1_5 = ModelFamily(
    name="CogVideoX1.5 (5B, 5B-I2V)",
    temporal_patch=2,
    padding_latent_frames=1,
    default_sampling_image_size=(768, 1360),
    image_latent_sampling_scale=1.0,
    image_short_side=768,
)


def model_family(model_config) -> ModelFamily:
    """The family of `model:`'s network: `patch_size` 2 -> 1.0; [2, 2, 2] -> 1.5."""
    patch_size = model_config.network_config.params.patch_size
    if isinstance(patch_size, int):
        return COGVIDEOX_1_0
    patch = list(patch_size)
    if len(patch) == 3 and patch[0] == COGVIDEOX_1_5.temporal_patch:
        return COGVIDEOX_1_5
    raise ConfigError(f"network_config.params.patch_size={patch}: expected an int (CogVideoX 1.0) or "
                      f"[{COGVIDEOX_1_5.temporal_patch}, p, p] (CogVideoX1.5)")


# ---- rules of a `model:` config ----------------------------------------------------------------------------------

def vae_space_compression(model_config) -> int:
    """Pixels per latent row/column: 2 ** (len(ch_mult) - 1) of the VAE encoder (8)."""
    return 2 ** (len(model_config.first_stage_config.params.encoder_config.params.ch_mult) - 1)


def sampling_shape(
    model_config, num_latent_frames: int, latent_channels: int, pixel_size: tuple[int, int] | None = None
) -> tuple[int, int, int, int]:
    """(t, c, h, w) of the latents to sample: for `pixel_size` (H, W), or, when None, the network config's size
    (not hard-coded to 480x720)."""
    if pixel_size is None:
        params = model_config.network_config.params
        return (num_latent_frames, latent_channels, int(params.latent_height), int(params.latent_width))
    factor = vae_space_compression(model_config)
    return (num_latent_frames, latent_channels, int(pixel_size[0]) // factor, int(pixel_size[1]) // factor)


def allowed_sampling_frames(model_config) -> list[int]:
    """Latent frame counts the sampler+decoder can take (`ModelFamily.allowed_sampling_frames`): 1.0: odd (the chunked decode plan [0:3],
    [3:5], ... covers only odd counts, as the reference), at least 3, at most what the position table holds;
    1.5: even (temporal patches of 2), the padding frame 0 plus an odd count of at least 3, up to 2 x the table."""
    params = model_config.network_config.params
    return model_family(model_config).allowed_sampling_frames(int(params.num_frames), int(params.time_compressed_rate))


def check_sampling_frames(model_config, num_latent_frames: int) -> None:
    """Before the model is built (sample_video.py, once per run): ConfigError naming the allowed latent frame counts."""
    allowed = allowed_sampling_frames(model_config)
    if num_latent_frames not in allowed:
        family = model_family(model_config)
        rule = ("video frames = 4 * (t - 1) + 1, e.g. 13 -> 49" if family.padding_latent_frames == 0 else
                "latent frame 0 is a padding frame decoding drops: video frames = 4 * (t - 2) + 1, e.g. 22 -> 81")
        raise ConfigError(
            f"sampling_num_frames={num_latent_frames} latent frames cannot be sampled by this {family.name} model; "
            f"allowed: {allowed} ({rule})"
        )


def check_training_frames(model_config, max_num_frames: int, sources, key: str = "data.params.max_num_frames") -> None:
    """Before the model is built: the VAE encodes 4k + 1 frames, and their latent count (CogVideoX1.5: padded in
    front to even, `ModelFamily.pad_training_latents`) must fit the DiT's position table. `key` names the value in
    the message (a bucket's frame count)."""
    params = model_config.network_config.params
    family = model_family(model_config)
    table = latent_frame_count(int(params.num_frames), int(params.time_compressed_rate))
    most = pixel_frame_count(table * family.temporal_patch)
    latents = latent_frame_count(max_num_frames)
    padded = latents + (-latents) % family.temporal_patch
    if not is_4k_plus_1(max_num_frames) or not 0 < padded <= table * family.temporal_patch:
        raise ConfigError(
            f"{list(sources)}: {key}={max_num_frames} cannot be trained by this {family.name} model: "
            f"expected 4k + 1 frames (the VAE's), at most {most} (its position table), e.g. 49 or 81"
        )


# ---- image sizes ----------------------------------------------------------------------------------------------------

def sampling_pixel_size(model_config) -> tuple[int, int]:
    """(H, W) in pixels of the videos this model samples: the latent size times the VAE's spatial compression."""
    params = model_config.network_config.params
    factor = vae_space_compression(model_config)
    return int(params.latent_height) * factor, int(params.latent_width) * factor


def check_sampling_image_size(model_config, sampling_image_size) -> None:
    """`sampling_image_size` (the released 1.0 inference.yaml's [480, 720]) must be the model's sampling size (1.0)."""
    if sampling_image_size is not None and tuple(sampling_image_size) != sampling_pixel_size(model_config):
        raise InputError(
            f"sampling_image_size={list(sampling_image_size)} but this model samples {list(sampling_pixel_size(model_config))} "
            "(8x the network config's latent_height, latent_width); remove the option or set it to that size"
        )


def check_size_fits(model_config, size: tuple[int, int], what: str) -> None:
    """CogVideoX1.5: (H, W) pixels must be multiples of 16 and within the DiT's rotary table (8 x latent_height,
    8 x latent_width of the network config: 2400 x 2400 for the released models)."""
    most = sampling_pixel_size(model_config)
    if size[0] % SIZE_MULTIPLE or size[1] % SIZE_MULTIPLE or not (0 < size[0] <= most[0] and 0 < size[1] <= most[1]):
        raise InputError(f"{what} gives a {size[0]}x{size[1]} video; this model samples heights and widths that are "
                         f"multiples of {SIZE_MULTIPLE} up to {most[0]}x{most[1]} (8 x the network config's "
                         "latent_height, latent_width)")


def sampling_image_size_for(model_config, sampling_image_size, image2video: bool,
                            image_short_side: int | None) -> tuple[int, int] | None:
    """Check the size options before the model is built; returns the text-to-video size (H, W), or None for the
    model's own (1.0) or the images' (I2V).

    1.0: `sampling_image_size` must be the model's size (the reference ignores it); `image_short_side` is refused.
    1.5 text-to-video: `sampling_image_size`, else 768x1360 (the 1.5 inference.yaml's), checked by `check_size_fits`.
    1.5 image-to-video: each image decides the size (as the reference, which ignores `sampling_image_size` there:
    the released inference.yaml sets it, so it is accepted and said once); `image_short_side` a multiple of 16.
    """
    family = model_family(model_config)
    if family.image_short_side is None:
        if image_short_side is not None:
            raise InputError(f"--image-short-side {image_short_side}: {family.name} image-to-video samples the model's "
                             f"size {list(sampling_pixel_size(model_config))}; the option is for CogVideoX1.5 I2V")
        check_sampling_image_size(model_config, sampling_image_size)
        return None
    if not image2video:
        if image_short_side is not None:
            raise InputError(f"--image-short-side {image_short_side} is for image-to-video (--image2video)")
        size = family.default_sampling_image_size if sampling_image_size is None else tuple(sampling_image_size)
        check_size_fits(model_config, size, f"sampling_image_size={list(size)}")
        return size
    if image_short_side is not None and (image_short_side <= 0 or image_short_side % SIZE_MULTIPLE):
        raise InputError(f"--image-short-side {image_short_side}: expected a positive multiple of {SIZE_MULTIPLE}")
    if sampling_image_size is not None:
        print(f"image-to-video: each image decides its video's size (short side "
              f"{image_short_side or family.image_short_side} px); sampling_image_size={list(sampling_image_size)} "
              "is not used", flush=True)
    return None
