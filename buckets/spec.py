"""`data.params.buckets`: the list of `[frames, height, width]` a run trains at, read and checked before any build.

Rules (each broken one is one InputError naming the key, the value and what was expected):
- a non-empty list of distinct `[frames, height, width]` of positive integers;
- `frames` is 4k + 1 (the 3D VAE's clips); `height` and `width` are multiples of 16 (the VAE's 8 pixels per latent
  times the DiT's 2 latents per patch, the same for every released model);
- `video_size` and `max_num_frames` are absent: the buckets give each item's size and length.
Against the model: `buckets.model_fit`.
"""

from typing import Any, Mapping, NamedTuple, Sequence

from model_family import SIZE_MULTIPLE
from input_errors import InputError
from sgm.util import plain

KEY = "data.params.buckets"
ONE_SIZE_KEYS = ("video_size", "max_num_frames")  # what buckets replace


class Bucket(NamedTuple):
    frames: int  # video frames per item, 4k + 1
    height: int  # pixels, a multiple of 16
    width: int  # pixels, a multiple of 16

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_buckets(params: Mapping[str, Any], sources: Sequence[str] = ()) -> tuple[Bucket, ...] | None:
    """The buckets of a `data.params` mapping, checked; None when it has no `buckets` key."""
    if params.get("buckets") is None:
        return None
    where = f"{list(sources)}: " if sources else ""
    given = [key for key in ONE_SIZE_KEYS if params.get(key) is not None]
    if given:
        raise InputError(f"{where}{KEY} is given together with data.params.{' and data.params.'.join(given)}; "
                         f"with buckets each item's size and length come from its bucket: remove {' and '.join(given)}")
    entries = plain(params["buckets"])  # a config node as plain lists
    if not isinstance(entries, (list, tuple)) or not entries:
        raise InputError(f"{where}{KEY}={entries!r}: expected a non-empty list of [frames, height, width], "
                         "e.g. [[81, 768, 1360], [81, 1360, 768]]")
    buckets = []
    for index, entry in enumerate(entries):
        name = f"{KEY}[{index}]={list(entry) if isinstance(entry, (list, tuple)) else entry!r}"
        if not isinstance(entry, (list, tuple)) or len(entry) != 3 or not all(is_positive_int(v) for v in entry):
            raise InputError(f"{where}{name}: expected [frames, height, width] of positive integers")
        bucket = Bucket(*entry)
        if (bucket.frames - 1) % 4:
            raise InputError(f"{where}{name}: frames must be 4k + 1 (the VAE encodes 4k + 1 frames), e.g. 49 or 81")
        if bucket.height % SIZE_MULTIPLE or bucket.width % SIZE_MULTIPLE:
            raise InputError(f"{where}{name}: height and width must be multiples of {SIZE_MULTIPLE} (the VAE's 8 "
                             "pixels per latent x the DiT's 2 latents per patch)")
        if bucket in buckets:
            raise InputError(f"{where}{name} is listed twice (also {KEY}[{buckets.index(bucket)}])")
        buckets.append(bucket)
    return tuple(buckets)
