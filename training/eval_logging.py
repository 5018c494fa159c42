"""What evaluation writes beside the loss: the batch's texts, and sampled latents or videos (as the reference).

Layout under the run's save folder:
    video_texts/<iteration, 8 digits>                  the batch's prompts, one a line
    video/latents/latents_gs-<iteration>/latent.pt     with only_log_video_latents: sampled latents (b, t, c, h, w)
    video/<key>_gs-<iteration>/<i, 6 digits>.mp4        otherwise: inputs and samples as mp4 at the batch's fps
"""

import os

import torch

from video_sampling import save_video_mp4

VIDEO_KEYS = ("inputs", "samples")  # (b, T, 3, H, W) in [-1, 1]; "latents" are not a video


def save_texts(texts: list[str], save_dir: str, iteration: int) -> str:
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, f"{iteration:08d}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(text + "\n" for text in texts)
    return path


def save_videos(videos: torch.Tensor, folder: str, fps: int) -> list[str]:
    """videos: (b, T, 3, H, W) in [-1, 1] -> `<folder>/<i:06d>.mp4`; returns the paths."""
    paths = []
    for index, video in enumerate((videos.float().clamp(-1.0, 1.0) + 1.0) / 2.0):  # (T, 3, H, W) in [0, 1]
        path = os.path.join(folder, f"{index:06d}.mp4")
        save_video_mp4(video, path, fps)
        paths.append(path)
    return paths


def write_eval_log(log: dict, batch: dict, save_dir: str, iteration: int, only_latents: bool) -> dict[str, list[str]]:
    """Write the texts and what `engine.log_video` returned; returns the written paths by kind: `video_texts`,
    then `latents`, or each of `VIDEO_KEYS` the log holds."""
    written = {"video_texts": [save_texts(list(batch["txt"]), os.path.join(save_dir, "video_texts"), iteration)]}
    root = os.path.join(save_dir, "video")
    if only_latents:
        folder = os.path.join(root, "latents", f"latents_gs-{iteration:06d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "latent.pt")
        torch.save(log["latents"].detach().cpu(), path)
        return written | {"latents": [path]}
    fps = int(batch["fps"][0])
    for key in VIDEO_KEYS:
        if key in log:
            written[key] = save_videos(log[key], os.path.join(root, f"{key}_gs-{iteration:06d}"), fps)
    return written
