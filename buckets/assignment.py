"""Which bucket a video trains in, and which frames: a pure function of its header, the target fps and the buckets.

The rule, in order (docs/buckets.md):
1. length: the bucket frame counts the clip fills. At or above the target fps, F is filled when the clip lasts more
   than F frames at the target fps and the one-size rule (`data_video.select_frames`, the reference's, passed in)
   gives F distinct frames. Below the target fps (deliberate, for slow sources): frames one after another at the
   clip's own rate from frame int(skip_frms_num), none repeated (slow motion); F is filled when that many remain.
2. aspect ratio: among the buckets of a filled length, the nearest in |log(w / h) - log(W / H)|;
3. then the longest filled frame count of that ratio; remaining ties go to the bucket listed first;
4. size: resize to cover the bucket and center-crop (`video_io.resize_center_crop`, the one-size path's).
No filled length: None (the dataset skips the clip with one warning naming it).
"""

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Sequence

from buckets.spec import Bucket
from video_io import resized_size


@dataclass(frozen=True)
class ClipHeader:
    """What the assignment reads of a video: its header and first frame's size."""

    num_frames: int
    fps: float
    height: int
    width: int


@dataclass(frozen=True)
class Assignment:
    bucket: Bucket
    indices: tuple[int, ...]  # the item's frame indices into the video, bucket.frames distinct ones
    kept: float  # share of the source picture the center crop keeps, in (0, 1]
    speed: float  # the item's playback speed against the source: 1.0, or clip fps / target fps below it


# (video_frames, video_fps, fps, max_num_frames, skip_frms_num) -> FrameSelection | None: data_video.select_frames
FrameRule = Callable[[int, float, int, int, float], Optional[object]]


def filled_indices(clip: ClipHeader, fps: int, frames: int, skip_frms_num: float,
                   select: FrameRule) -> tuple[int, ...] | None:
    """The `frames` distinct frame indices of the clip for a bucket of that length, or None if it does not fill it."""
    start = int(skip_frms_num)
    if clip.fps < fps:  # own rate: consecutive frames, slow motion
        return tuple(range(start, start + frames)) if start + frames <= clip.num_frames else None
    if not clip.num_frames / clip.fps * fps > frames:  # shorter than the bucket at the target fps
        return None
    selection = select(clip.num_frames, clip.fps, fps, frames, skip_frms_num)
    if selection is None or len(set(selection.indices)) < frames:
        return None
    return tuple(selection.indices)


def kept_share(clip: ClipHeader, bucket: Bucket) -> float:
    """Share of the source picture left after resizing to cover the bucket and center-cropping to it."""
    new_h, new_w = resized_size(clip.height, clip.width, (bucket.height, bucket.width))
    return bucket.height * bucket.width / (new_h * new_w)


def ratio_distance(clip: ClipHeader, bucket: Bucket) -> Fraction:
    """|log(w / h) - log(W / H)| ordered exactly: exp of it, max(q, 1 / q) with q = (w / h) / (W / H) as a fraction,
    so mirrored ratios (2:3 and 3:2 from a square) tie exactly."""
    q = Fraction(clip.width * bucket.height, clip.height * bucket.width)
    return max(q, 1 / q)


def assign_bucket(clip: ClipHeader, fps: int, buckets: Sequence[Bucket], skip_frms_num: float,
                  select: FrameRule) -> Assignment | None:
    """The clip's bucket and frames by the module's rule; None when it fills no bucket's length."""
    filled = {frames: filled_indices(clip, fps, frames, skip_frms_num, select)
              for frames in sorted({bucket.frames for bucket in buckets})}
    candidates = [(ratio_distance(clip, bucket), -bucket.frames, index)
                  for index, bucket in enumerate(buckets) if filled[bucket.frames] is not None]
    if not candidates:
        return None
    *_, index = min(candidates)
    bucket = buckets[index]
    return Assignment(bucket=bucket, indices=filled[bucket.frames], kept=kept_share(clip, bucket),
                      speed=min(1.0, clip.fps / fps))
