"""Whether a run's buckets fit its model, checked before the model is built (rules in one place each: the frame
count by `model_family.check_training_frames`, a 1.5 size by `model_family.check_size_fits`, the VAE's time
split by `check_encode_split`).

CogVideoX1.5 takes any bucket within its rotary table (2400 x 2400 pixels, 161 frames for the released models).
CogVideoX 1.0's position tables are sliced flat, which fixes the height and width: every bucket must have the
model's size; shorter frame counts are accepted where the DiT accepts them.
"""

from typing import Sequence

from buckets.spec import KEY, Bucket
from model_family import check_training_frames
from model_family import check_size_fits, sampling_pixel_size
from input_errors import InputError
from model_family import COGVIDEOX_1_0, model_family
from vae_modules.context_parallel import check_encode_split


def check_buckets_fit(model_config, buckets: Sequence[Bucket], world_size: int, sources: Sequence[str],
                      command: str = "train_video.py") -> None:
    """Before the model is built: each bucket's frames, size and (VAE context parallel) time split fit the model."""
    family = model_family(model_config)
    for index, bucket in enumerate(buckets):
        name = f"{KEY}[{index}]"
        check_training_frames(model_config, bucket.frames, sources, key=f"{name} frames")
        size = (bucket.height, bucket.width)
        if family is COGVIDEOX_1_0:
            table = sampling_pixel_size(model_config)
            if size != table:
                raise InputError(
                    f"{list(sources)}: {name}={list(bucket)}: a {family.name} model's position table fixes the size "
                    f"to {table[0]}x{table[1]} (8 x the network config's latent_height, latent_width); every bucket "
                    f"must be [frames, {table[0]}, {table[1]}] (CogVideoX1.5 models train other sizes)")
        else:
            check_size_fits(model_config, size, f"{list(sources)}: {name}={list(bucket)}")
        check_encode_split(model_config, bucket.frames, world_size, command)
