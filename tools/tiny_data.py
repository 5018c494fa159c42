"""Tiny synthetic training videos in the data set layout (`<folder>/videos/<name>.mp4` with
`<folder>/labels/<name>.txt`): 16 frames of 64x96 moving colour waves, for the tests, the benchmarks and the tiny CPU
runs."""

from pathlib import Path

import imageio
import numpy as np


def write_waves(folder: Path, name: str, caption: str, phase: float, period: float, drift: float) -> None:
    """One 16-frame 64x96 video of colour waves (8 fps) and its caption; `phase`, `period` and `drift` set the red,
    green and blue waves' motion."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    t, y, x = np.meshgrid(np.arange(16), np.arange(64), np.arange(96), indexing="ij")
    frames = np.stack([128 + 100 * np.sin((x + 3 * t + phase) / 8), 128 + 100 * np.cos((y - 2 * t) / period),
                       128 + 60 * np.sin((x + y + t * drift) / 10)], axis=-1).clip(0, 255).astype(np.uint8)  # (t, h, w, 3)
    with imageio.get_writer(folder / "videos" / f"{name}.mp4", fps=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    (folder / "labels" / f"{name}.txt").write_text(caption + "\n")


def write_video(folder: Path, name: str, caption: str) -> None:
    """The one-clip data set's video: waves drifting to the left."""
    write_waves(folder, name, caption, phase=0, period=6, drift=1)


def write_distinct_video(folder: Path, name: str, caption: str, shift: int) -> None:
    """A video whose waves' phase, period and drift depend on `shift`, so that clips of one data set differ."""
    write_waves(folder, name, caption, phase=7 * shift, period=6 + shift, drift=shift)


def write_dataset(folder: Path, count: int) -> Path:
    """`count` distinct clips `clip<i>` in `folder`; returns `folder`."""
    for index in range(count):
        write_distinct_video(folder, f"clip{index}", f"waves number {index} drifting", shift=index)
    return folder
