"""Validation videos where users look: wandb (`--wandb`, as the reference) and TensorBoard, beside SAT's losses.

Each mp4 `eval_logging` writes (the batch's `inputs` and `samples`) is logged as `<key>_video_<i>`, the reference's
key (`save_video_as_grid_and_mp4` in its train_video.py):
- wandb: `wandb.Video(path, fps=fps, format="mp4")` at step iteration + 1, as the reference, captioned with the
  item's prompt;
- TensorBoard (SAT's summary writer): an animated GIF image summary (what `add_video` writes, without moviepy) at
  step `iteration`, where SAT logs that evaluation's `Train/valid_loss`; the prompts as text under `video_texts`.
With `only_log_video_latents` nothing is decoded and nothing is logged, as the reference.
"""

import io

import torch
from PIL import Image
from tensorboardX.proto.summary_pb2 import Summary

TEXT_TAG = "video_texts"


def video_key(key: str, index: int) -> str:
    """matches the reference: `key + f"_video_{i}"` (e.g. `samples_video_0`)."""
    return f"{key}_video_{index}"


def log_to_wandb(video_paths: dict[str, list[str]], texts: list[str], fps: int, iteration: int) -> None:
    """One `wandb.log` per mp4, at step iteration + 1 (matches the reference: SAT then logs this evaluation's
    loss at step `iteration`, which wandb drops as an earlier step)."""
    import wandb

    for key, paths in video_paths.items():
        for index, path in enumerate(paths):
            video = wandb.Video(path, fps=fps, format="mp4", caption=texts[index])
            wandb.log({video_key(key, index): video}, step=iteration + 1)


def gif_summary(tag: str, video: torch.Tensor, fps: int) -> Summary:
    """video: (T, 3, H, W) in [-1, 1] -> an image summary holding an animated GIF at `fps`."""
    frames = ((video.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)  # (T, 3, H, W) in [0, 255]
    images = [Image.fromarray(frame.permute(1, 2, 0).numpy()) for frame in frames]  # (H, W, 3) each
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    _, _, height, width = video.shape
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def log_to_tensorboard(writer, videos: dict[str, torch.Tensor], texts: list[str], fps: int, iteration: int) -> None:
    """videos: {key: (b, T, 3, H, W) in [-1, 1]} -> one GIF summary per item, and the prompts, at `iteration`."""
    file_writer = writer._get_file_writer()  # tensorboardX's own route for every add_* summary
    for key, batch in videos.items():
        for index, video in enumerate(batch.detach().cpu()):
            file_writer.add_summary(gif_summary(video_key(key, index), video, fps), iteration)
    writer.add_text(TEXT_TAG, "\n\n".join(f"{index}: {text}" for index, text in enumerate(texts)), iteration)
    writer.flush()
