"""Fine-tuning dataset: a folder of videos with one caption file each (docs/fine-tuning.md).

Layout (as the reference documents)::

    <data_dir>/videos/<name>.mp4
    <data_dir>/labels/<name>.txt    # first line is the caption

Frame selection, resizing and scaling reproduce the reference ``SFTDataset`` (THUDM/CogVideo ``sat/data_video.py``);
it differs only on inputs where the reference crashes or misbehaves (docs/faithfulness.md, "Fine-tuning").
With `buckets` (docs/buckets.md) each video goes to one bucket of [frames, height, width] instead of one
`video_size` and `max_num_frames` (`buckets.assignment`).
"""

import argparse
import inspect
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset

from buckets.assignment import ClipHeader, assign_bucket
from buckets.spec import Bucket, read_buckets
from buckets.table import bucket_table, describe_clips, print_on_first_rank
from input_errors import InputError
from sgm.util import ConfigError, get_obj_from_str, unknown_key_error
from model_family import is_4k_plus_1, largest_4k_plus_1
from video_io import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    is_video_file,
    probe_video,
    read_frames,
    resize_center_crop,
)

logger = logging.getLogger(__name__)

EXPECTED_LAYOUT = "<data_dir>/videos/<name>.mp4 (or .mov, .mkv, ...) with captions in <data_dir>/labels/<name>.txt"


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of a video make one training item."""

    indices: tuple[int, ...]  # frame indices into the video, exactly max_num_frames of them
    num_frames: int  # the item's "num_frames" label (the reference's value)


@dataclass(frozen=True)
class VideoEntry:
    """One usable video found at listing time."""

    path: str
    caption: str
    selection: FrameSelection
    bucket: Optional[Bucket] = None  # with buckets: the item's [frames, height, width]


def long_at_fps(video_frames: int, video_fps: float, fps: int, max_num_frames: int) -> bool:
    """The first case of ``select_frames``: the clip lasts more than an item at the target fps; only its start is
    skipped (skip_frms_num), not its end."""
    return video_frames / video_fps * fps > max_num_frames


def skipped_ends(video_frames: int, video_fps: float, fps: int, max_num_frames: int, skip_frms_num: float) -> str:
    """What ``select_frames`` skips, for messages: ``3.0 at the start`` or ``3.0 at each end``."""
    ends = "the start" if long_at_fps(video_frames, video_fps, fps, max_num_frames) else "each end"
    return f"{skip_frms_num} at {ends}"


def select_frames(
    video_frames: int, video_fps: float, fps: int, max_num_frames: int, skip_frms_num: float
) -> Optional[FrameSelection]:
    """Choose the frame indices of one item, as the reference ``SFTDataset.__getitem__`` does.

    Three cases, with start = int(skip_frms_num):
      * long enough at the target fps (video_frames / video_fps * fps > max_num_frames): the first max_num_frames of
        range(start, end, step), end = int(start + max_num_frames / fps * video_fps), step = (end - start) //
        max_num_frames. Matches the reference: the step is floored (10 fps for a 30 fps source at fps 8) and the
        end is not trimmed by skip_frms_num.
      * more than max_num_frames frames but too short at the target fps: consecutive frames from start (step
        max((end - start) // max_num_frames, 1), end trimmed by skip_frms_num); label max_num_frames.
      * at most max_num_frames frames: the largest 4k+1 run of frames from start within the trimmed clip; label 4k+1.
    Matches the reference: the indices are padded to max_num_frames by repeating the last one (pad_last_frame), so a
    short clip's tensor holds max_num_frames frames while its label says 4k+1.

    Beyond the reference (which raises): indices past the end are dropped before padding, a zero step becomes 1,
    and None is returned when no frame is left after skipping. ``skip_frms_num`` is skipped at the start (and at
    the end, in the shorter cases); ``video_frames`` is decord's length, ``video_fps`` the average frame rate.
    """
    start = int(skip_frms_num)
    if long_at_fps(video_frames, video_fps, fps, max_num_frames):
        num_frames = max_num_frames
        end = int(start + num_frames / fps * video_fps)
        step = max((end - start) // num_frames, 1)
        indices = list(range(start, min(end, video_frames), step))
    elif video_frames > max_num_frames:
        num_frames = max_num_frames
        end = int(video_frames - skip_frms_num)
        indices = list(range(start, end, max((end - start) // num_frames, 1)))
    else:
        end = int(video_frames - skip_frms_num)
        if end - start < 1:
            return None
        num_frames = largest_4k_plus_1(end - start)
        indices = list(range(start, start + num_frames))
    if not indices:
        return None
    indices = indices[:max_num_frames]
    indices += [indices[-1]] * (max_num_frames - len(indices))
    return FrameSelection(indices=tuple(indices), num_frames=num_frames)


def read_caption(path: Path) -> Optional[str]:
    """First line of a caption file; None when it is missing, not UTF-8, or that line is blank."""
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return None
    if not lines or not lines[0].strip():
        return None
    return lines[0]


def describe_frames(indices: Sequence[int]) -> str:
    """``frame 3``, ``frames 3-8`` or ``frames [3, 5, 9]``: the distinct frames of an item, for messages."""
    distinct = sorted(set(indices))
    if len(distinct) == 1:
        return f"frame {distinct[0]}"
    if distinct == list(range(distinct[0], distinct[-1] + 1)):
        return f"frames {distinct[0]}-{distinct[-1]}"
    return f"frames {distinct}"


def probe_entry(
    path: Path, caption_path: Path, fps: int, max_num_frames: int, skip_frms_num: float
) -> tuple[Optional[VideoEntry], str]:
    """Check one video: caption, header, frame selection and one decoded frame.

    Returns:
        (entry, "") for a usable video, else (None, reason) after one warning naming the file.
        A usable video whose item repeats frames (a clip shorter than the item) is kept
        with a warning naming the frames it yields.
    """
    caption = read_caption(caption_path)
    if caption is None:
        logger.warning("skipping %s: no caption (%s is missing, blank or not UTF-8)", path, caption_path)
        return None, "without caption"
    try:
        info = probe_video(str(path))
    except VideoDecodeError as err:
        logger.warning("skipping unreadable video %s: %s", path, err)
        return None, "unreadable"
    selection = select_frames(info.num_frames, info.fps, fps, max_num_frames, skip_frms_num)
    if selection is None:
        logger.warning(
            "skipping %s: %d frames leave none after skipping %s",
            path, info.num_frames, skipped_ends(info.num_frames, info.fps, fps, max_num_frames, skip_frms_num),
        )
        return None, "too short"
    try:  # some files open but do not decode (decord's "Check failed: from_size == to_size")
        read_frames(str(path), selection.indices[:1])
    except VideoDecodeError as err:
        logger.warning("skipping undecodable video %s: %s", path, err)
        return None, "unreadable"
    if len(set(selection.indices)) < max_num_frames and info.fps < fps:  # the cause: the frame rate, not the length
        logger.warning(
            "low frame rate clip %s: %.4g fps is below the target fps %d, so its %d frames, skipping %s, yield %s; "
            "the item repeats the last one to fill %d frames (with data.params.buckets such a clip's frames are "
            "taken at its own rate instead, docs/buckets.md)",
            path, info.fps, fps, info.num_frames,
            skipped_ends(info.num_frames, info.fps, fps, max_num_frames, skip_frms_num),
            describe_frames(selection.indices), max_num_frames,
        )
    elif len(set(selection.indices)) < max_num_frames:
        logger.warning(
            "short clip %s: %d frames at %.4g fps, skipping %s, yield %s; "
            "the item repeats the last one to fill %d frames",
            path, info.num_frames, info.fps, skipped_ends(info.num_frames, info.fps, fps, max_num_frames, skip_frms_num),
            describe_frames(selection.indices),
            max_num_frames,
        )
    return VideoEntry(path=str(path), caption=caption, selection=selection), ""


def probe_bucketed_entry(
    path: Path, caption_path: Path, fps: int, buckets: Sequence[Bucket], skip_frms_num: float
) -> tuple[Optional[VideoEntry], str, Optional[ClipHeader], float]:
    """As `probe_entry`, with buckets: the header and first frame's size give the bucket and frames
    (`buckets.assignment`). Returns (entry, reason, header, kept share); a clip filling no bucket length has
    reason "fits no bucket" and its header, for the folder's error when no video fits."""
    caption = read_caption(caption_path)
    if caption is None:
        logger.warning("skipping %s: no caption (%s is missing, blank or not UTF-8)", path, caption_path)
        return None, "without caption", None, 0.0
    try:
        info = probe_video(str(path))
        first = read_frames(str(path), [0])  # (1, h, w, 3): the size, and whether the file decodes
    except VideoDecodeError as err:
        logger.warning("skipping unreadable video %s: %s", path, err)
        return None, "unreadable", None, 0.0
    clip = ClipHeader(num_frames=info.num_frames, fps=info.fps, height=first.shape[1], width=first.shape[2])
    assignment = assign_bucket(clip, fps, buckets, skip_frms_num, select_frames)
    slow = info.fps < fps
    rate = (f" at its own rate ({info.fps:.4g} fps is below the target fps {fps}: frames are taken one after "
            "another, none repeated)") if slow else f" at the target fps {fps}"
    if assignment is None:
        logger.warning(
            "skipping %s: %d frames at %.4g fps (%.2f s) fill no bucket length%s after skipping %s at the start; "
            "bucket lengths: %s frames",
            path, info.num_frames, info.fps, info.num_frames / info.fps, rate, skip_frms_num,
            sorted({bucket.frames for bucket in buckets}),
        )
        return None, "fits no bucket", clip, 0.0
    if slow:
        logger.warning(
            "slow clip %s: %.4g fps is below the target fps %d: its %d frames are taken one after another at its own "
            "rate (no frame repeated or held), so the item plays at %.2gx speed (slow motion)",
            path, info.fps, fps, assignment.bucket.frames, assignment.speed,
        )
    selection = FrameSelection(indices=assignment.indices, num_frames=assignment.bucket.frames)
    entry = VideoEntry(path=str(path), caption=caption, selection=selection, bucket=assignment.bucket)
    return entry, "", clip, assignment.kept


def list_videos(
    data_dir: str, fps: int, max_num_frames: int, skip_frms_num: float, buckets: Optional[Sequence[Bucket]] = None
) -> list[VideoEntry]:
    """Find the usable videos of ``data_dir``, sorted by path, probing each header and first frame.

    Videos under ``<data_dir>/videos`` (subfolders included, ``video_io.VIDEO_EXTENSIONS`` in any case) pair with
    the caption at the same relative path under ``<data_dir>/labels``. Anything unusable is skipped with one warning
    naming it, and a summary warning counts the skips. With ``buckets`` each video goes to its bucket
    (``probe_bucketed_entry``) and one table of the buckets is printed.

    Raises:
        InputError: the folder or its ``videos/`` is missing, or no video is usable (naming the folder and the
            expected layout; with buckets, the sizes and lengths found).
    """
    videos_dir = Path(data_dir) / "videos"
    labels_dir = Path(data_dir) / "labels"
    if not Path(data_dir).is_dir():
        raise InputError(f"data folder {data_dir} does not exist; expected {EXPECTED_LAYOUT}")
    if not videos_dir.is_dir():
        raise InputError(f"data folder {data_dir} has no videos/ folder; expected {EXPECTED_LAYOUT}")
    files = sorted(
        (p for p in videos_dir.rglob("*") if p.is_file()),
        key=lambda p: p.relative_to(videos_dir).as_posix(),
    )
    entries = []
    skipped = Counter()
    assigned, unfit = [], []  # with buckets: (bucket, kept share) per entry; headers of clips that fit none
    for path in files:
        if not is_video_file(path):
            logger.warning("skipping %s: not a video file (extensions read: %s)", path, " ".join(VIDEO_EXTENSIONS))
            skipped["not a video file"] += 1
            continue
        caption_path = (labels_dir / path.relative_to(videos_dir)).with_suffix(".txt")
        if buckets is None:
            entry, reason = probe_entry(path, caption_path, fps, max_num_frames, skip_frms_num)
        else:
            entry, reason, clip, kept = probe_bucketed_entry(path, caption_path, fps, buckets, skip_frms_num)
            if entry is not None:
                assigned.append((entry.bucket, kept))
            elif clip is not None:
                unfit.append(clip)
        if entry is None:
            skipped[reason] += 1
        else:
            entries.append(entry)
    if skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        logger.warning(
            "%s: skipped %d of %d files (%s)", data_dir, sum(skipped.values()), len(files), reasons
        )
    if not entries and unfit:
        raise InputError(
            f"no video in {data_dir} fits a bucket: found {describe_clips(unfit)}; the buckets "
            f"{[list(bucket) for bucket in buckets]} ([frames, height, width]) need clips lasting more than their "
            f"frames at {fps} fps (after {skip_frms_num} skipped at the start)"
        )
    if not entries:
        raise InputError(
            f"no usable video in {data_dir} ({len(files)} files in videos/); expected {EXPECTED_LAYOUT}"
        )
    if buckets is not None:
        print_on_first_rank(bucket_table(data_dir, fps, buckets, assigned))
    return entries


class SFTDataset(Dataset):
    """Captioned videos of one folder, decoded lazily; the reference's fine-tuning dataset.

    Items: {"mp4": (max_num_frames, 3, H, W) float32 in [-1, 1], "txt": str,
    "num_frames": int, "fps": int}, with (H, W) = video_size; with ``buckets``, (frames, 3, H, W) of the
    item's bucket, and ``item_buckets`` lists each item's bucket (None without buckets) for the batching.
    """

    def __init__(
        self,
        data_dir: str,
        video_size: Optional[Sequence[int]] = None,
        fps: Optional[int] = None,
        max_num_frames: Optional[int] = None,
        skip_frms_num: float = 3.0,
        buckets: Optional[Sequence[Sequence[int]]] = None,
    ) -> None:
        """List and probe the videos of ``data_dir`` (no frame is decoded here).

        Args:
            data_dir: folder with ``videos/`` and ``labels/``.
            video_size: output (H, W), e.g. [480, 720]; not with ``buckets``.
            fps: target frame rate of the sampled frames (required).
            max_num_frames: frames per item, 4k+1 (49 for CogVideoX); not with ``buckets``.
            skip_frms_num: frames skipped at the clip ends (transitions).
            buckets: [frames, height, width] lists (``buckets.spec``) instead of video_size and max_num_frames.
        """
        super().__init__()
        if fps is None or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.buckets = read_buckets({"buckets": buckets, "video_size": video_size, "max_num_frames": max_num_frames})
        self.video_size = None  # with buckets, each item's bucket gives its size
        if self.buckets is None:
            if video_size is None or max_num_frames is None:
                raise ValueError("data.params needs video_size and max_num_frames, or buckets")
            self.video_size = tuple(int(v) for v in video_size)
            if len(self.video_size) != 2 or min(self.video_size) <= 0:
                raise ValueError(f"video_size must be [height, width] > 0, got {list(video_size)}")
            if not is_4k_plus_1(max_num_frames):
                raise ValueError(f"max_num_frames must be 4k+1 (the 3D VAE needs it), got {max_num_frames}")
        self.fps = fps
        self.max_num_frames = max_num_frames
        self.skip_frms_num = skip_frms_num
        self.entries = list_videos(data_dir, fps, max_num_frames, skip_frms_num, self.buckets)
        self.item_buckets = None if self.buckets is None else [entry.bucket for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Decode, resize, crop and scale one video.

        A video that fails to decode here (it passed the listing probe) is replaced, with a warning naming it, by the
        next one in listing order that decodes: the choice depends on ``index`` only, so every rank and run draws the
        same items.

        Raises:
            VideoDecodeError: no video of the dataset decodes (the message names the last file).
        """
        attempts = len(self.entries)
        for offset in range(attempts):
            entry = self.entries[(index + offset) % attempts]
            try:
                return self.item(entry, read_frames(entry.path, entry.selection.indices))
            except VideoDecodeError as err:
                if offset == attempts - 1:
                    raise
                logger.warning("item %d: %s; using the next video instead", index, err)

    def item(self, entry: VideoEntry, frames: torch.Tensor) -> dict[str, Any]:
        """The training item of ``entry`` from its decoded (T, h, w, 3) uint8 frames."""
        frames = frames.permute(0, 3, 1, 2)  # (T, 3, h, w)
        size = self.video_size if entry.bucket is None else (entry.bucket.height, entry.bucket.width)
        video = resize_center_crop(frames, size)  # (T, 3, H, W), integers in [0, 255]
        video = (video - 127.5) / 127.5  # matches the reference: [-1, 1]
        return {
            "mp4": video,
            "txt": entry.caption,
            "num_frames": entry.selection.num_frames,
            "fps": self.fps,
        }

    @classmethod
    def create_dataset_function(
        cls, path: str, args: argparse.Namespace, **params: Any
    ) -> "SFTDataset":
        """Build the dataset of one ``train_data`` / ``valid_data`` path, as SAT's ``make_dataset_full`` calls it.

        The training script binds the config's ``data.params`` as keyword arguments; ``args`` is not needed.

        Raises:
            ValueError: a parameter this dataset does not take (names the allowed ones).
        """
        cls.check_params(params)
        return cls(data_dir=path, **params)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """ValueError naming the allowed parameters when ``params`` has one this dataset does not take."""
        allowed = dataset_parameters(cls)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"unknown data params {unknown} for {cls.__name__}; allowed: {allowed}")


def dataset_parameters(data_class: type) -> list[str]:
    """The `data.params` keys a dataset class takes: its constructor's, less the folder SAT passes."""
    return [name for name in inspect.signature(data_class.__init__).parameters if name not in ("self", "data_dir")]


def check_data_config(data_config, sources: Sequence[str]) -> None:
    """The `data:` section, before anything is built: `target` (a dataset class) and the `params` it takes; a typo is
    one line naming the file, the key and the close match."""
    unknown = sorted(set(data_config) - {"target", "params"})
    if unknown:
        raise unknown_key_error(sources, f"data.{unknown[0]}", ["target", "params"])
    if "target" not in data_config:
        raise ConfigError(f"{', '.join(sources)}: data.target is missing; expected the dataset class, "
                          "e.g. data_video.SFTDataset")
    allowed = dataset_parameters(get_obj_from_str(data_config["target"]))
    unknown = sorted(set(data_config.get("params") or {}) - set(allowed))
    if unknown:
        raise unknown_key_error(sources, f"data.params.{unknown[0]}", allowed,
                                f"is not a parameter of {data_config['target']}")
