"""What differs between the CogVideoX 1.0 family (2B, 5B, 5B-I2V) and CogVideoX1.5 (5B, 5B-I2V) outside the DiT,
in one named place; the family is read from the network config's `patch_size` (an int for 1.0, [t, h, w] for 1.5).

Each constant cites the reference file it comes from (v1.0: the CogVideoX 1.0 release's `sat/`; 1.5: the public
repository's current `sat/`, commit e519ece).
"""

from dataclasses import dataclass

import torch

from sgm.util import ConfigError
from model_family import latent_frame_count


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

        Beyond the reference, whose 1.5 training crashes in the DiT on the odd counts its own sft.yaml gives (49
        frames -> 13 latent frames, 81 -> 21). Padding in front with copies of the first latent frame is what the
        model authors' diffusers-based fine-tuning does for CogVideoX1.5 (THUDM/CogVideo `finetune/models/
        cogvideox_t2v/lora_trainer.py` and `cogvideox_i2v/lora_trainer.py`: `ncopy = T % patch_size_t` copies of
        `latent[:, :, :1]` concatenated in front), and it matches sampling's layout, where latent frame 0 is the
        padding frame decoding drops. (finetrainers instead appends copies of the last frame.) The padded frame
        is noised and counts in the loss, as there."""
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
