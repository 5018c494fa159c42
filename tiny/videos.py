"""Tiny synthetic training videos in the data set layout (`<folder>/videos/<name>.mp4` with `<folder>/labels/<name>.txt`):
moving colour waves, for the tests, the benchmarks and the tiny CPU runs (`tools/make_tiny_data.py`)."""

from pathlib import Path

import imageio
import numpy as np

# (name, height, width, seconds at 8 fps): portrait, landscape and square clips of 2 to 6 s, as users have them.
MIXED = (("portrait_a", 96, 54, 2), ("portrait_b", 112, 64, 6), ("landscape_a", 54, 96, 3), ("landscape_b", 72, 128, 2),
         ("square_a", 64, 64, 4), ("square_b", 80, 80, 5))


def write_clip(folder: Path, name: str, caption: str, height: int = 64, width: int = 96, seconds: float = 2, fps: int = 8,
               phase: float = 0, period: float = 6, drift: float = 1) -> None:
    """One clip of `height` x `width` pixels lasting `seconds` at `fps`, and its caption; `phase`, `period` and
    `drift` set the red, green and blue waves' motion. The defaults: 16 frames of 64x96 at 8 fps."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    t, y, x = np.meshgrid(np.arange(round(seconds * fps)), np.arange(height), np.arange(width), indexing="ij")
    frames = np.stack([128 + 100 * np.sin((x + 3 * t + phase) / 8), 128 + 100 * np.cos((y - 2 * t) / period),
                       128 + 60 * np.sin((x + y + t * drift) / 10)], axis=-1).clip(0, 255).astype(np.uint8)  # (t, h, w, 3)
    with imageio.get_writer(folder / "videos" / f"{name}.mp4", fps=fps, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
    (folder / "labels" / f"{name}.txt").write_text(caption + "\n")


def write_video(folder: Path, name: str, caption: str) -> None:
    """The one-clip data set's video: waves drifting to the left."""
    write_clip(folder, name, caption)


def distinct_waves(shift: int) -> dict:
    """The waves' phase, period and drift of the `shift`-th clip of a data set, so that its clips differ."""
    return {"phase": 7 * shift, "period": 6 + shift, "drift": shift}


def write_dataset(folder: Path, count: int) -> Path:
    """`count` distinct 64x96 clips `clip<i>` in `folder`; returns `folder`."""
    for index in range(count):
        write_clip(folder, f"clip{index}", f"waves number {index} drifting", **distinct_waves(index))
    return folder


def write_mixed(folder: Path) -> Path:
    """The MIXED clips (mixed orientations and lengths, for buckets) in `folder`; returns `folder`."""
    for shift, (name, height, width, seconds) in enumerate(MIXED):
        write_clip(folder, name, f"{name} waves drifting", height, width, seconds, **distinct_waves(shift))
    return folder
