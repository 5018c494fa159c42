"""Helpers of the bucket tests (not a test module): synthetic clips of mixed orientation and length, written with
imageio as the other data tests write theirs."""

from pathlib import Path

import imageio
import numpy as np

# (name, height, width, seconds at 8 fps): portrait, landscape and square clips of 2 to 6 s, as users have them.
MIXED = (("portrait_a", 96, 54, 2), ("portrait_b", 112, 64, 6), ("landscape_a", 54, 96, 3), ("landscape_b", 72, 128, 2),
         ("square_a", 64, 64, 4), ("square_b", 80, 80, 5))


def write_clip(folder: Path, name: str, height: int, width: int, seconds: float, fps: int = 8, shift: int = 0,
               caption: str | None = None) -> None:
    """Moving colour waves of `height` x `width` pixels lasting `seconds` at `fps`, with its caption."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    frames = round(seconds * fps)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    pixels = np.stack([128 + 100 * np.sin((x + 3 * t + 7 * shift) / 8), 128 + 100 * np.cos((y - 2 * t) / (6 + shift)),
                       128 + 60 * np.sin((x + y + t * shift) / 10)], axis=-1).clip(0, 255).astype(np.uint8)
    with imageio.get_writer(folder / "videos" / f"{name}.mp4", fps=fps, macro_block_size=1) as writer:
        for frame in pixels:
            writer.append_data(frame)
    (folder / "labels" / f"{name}.txt").write_text((caption or f"{name} waves drifting") + "\n")


def write_mixed(folder: Path) -> Path:
    """The MIXED clips under `folder` (videos/ + labels/)."""
    for shift, (name, height, width, seconds) in enumerate(MIXED):
        write_clip(folder, name, height, width, seconds, shift=shift)
    return folder
