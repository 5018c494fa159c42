"""Video-to-video (SDEdit) for the text-to-video models (2B, 5B, 1.5-5B): `sample_video.py --video2video
--strength S` with prompt lines `text@@video_path`, as diffusers' CogVideoXVideoToVideoPipeline.

The video: the first frames at the output's frame rate (`--sampling-fps`; output frame k is the input frame shown at
k / fps), as many as the sampled video has (1.0: 4 (t - 1) + 1, 49 for t = 13; 1.5: 4 (t - 2) + 1, 81 for t = 22),
resized to cover the sampling size and center-cropped as the training data (`video_io.resize_center_crop`), mapped
to [-1, 1]. Its latent: diffusers' chunked VAE encode (`encode_chunked`), one posterior draw, times scale_factor;
CogVideoX1.5 puts a copy of latent frame 0 in front (the padding frame its decode drops, as fine-tuning pads). Then
one `randn` of the latent's shape noises it to the step `S` selects and the sampler runs the steps left
(sgm/modules/diffusionmodules/schedule_tail.py). Random draws, all from the sample's generator: the posterior
sample, the noise, the sampler's own (diffusers' order).
"""

import os

import torch

from image_to_video.conditioning import split_image_prompt
from input_errors import InputError
from model_family import model_family
from sgm.modules.diffusionmodules.schedule_tail import first_kept_step, noised_to, tail_sampler
from sgm.util import instantiate_from_config
from video_io import VideoDecodeError, probe_video, read_frames, resize_center_crop

DEFAULT_STRENGTH = 0.8  # diffusers' CogVideoXVideoToVideoPipeline default


def split_video_prompt(line: str) -> tuple[str, str]:
    """`text@@video_path` -> (text, video_path); InputError for any other form."""
    return split_image_prompt(line, source="video")


def frame_indices(video_frames: int, video_fps: float, fps: int, count: int) -> list[int] | None:
    """The `count` input frames shown at times k / `fps`, k = 0..count - 1 (frame int(k x video_fps / fps)); None
    when the video ends before the last one."""
    indices = [int(k * video_fps / fps) for k in range(count)]
    return indices if indices[-1] < video_frames else None


def selected_frames(path: str, count: int, fps: int) -> list[int]:
    """The frame indices `read_video` decodes; InputError for a missing, unreadable or too short video."""
    if not os.path.isfile(path):
        raise InputError(f"video {path!r} (from a video-to-video prompt line) does not exist")
    try:
        info = probe_video(path)
    except VideoDecodeError as err:
        raise InputError(f"video {path!r} cannot be read as a video: {err}") from None
    indices = frame_indices(info.num_frames, info.fps, fps, count)
    if indices is None:
        raise InputError(f"video {path!r} is too short: {info.num_frames} frames at {info.fps:.4g} fps "
                         f"({info.num_frames / info.fps:.2f} s); video-to-video needs {count} frames at the output's "
                         f"{fps} fps ({(count - 1) / fps:.2f} s of video; fewer --sampling-num-frames need less)")
    return indices


def decoded_frames(path: str, count: int, fps: int) -> torch.Tensor:
    """(count, H, W, 3) uint8 RGB frames of the video at `path`, selected by `frame_indices`; InputError for a
    missing, unreadable, undecodable or too short video."""
    try:
        return read_frames(path, selected_frames(path, count, fps))
    except VideoDecodeError as err:
        raise InputError(f"video {path!r} cannot be decoded: {err}") from None


def read_video(path: str, count: int, fps: int, size: tuple[int, int]) -> torch.Tensor:
    """(3, count, H, W) float32 in [-1, 1] for `size` = (H, W): the selected frames resized to cover the size
    (bicubic, antialiased, rounded to integers) and center-cropped, as the training data (data_video.py)."""
    frames = decoded_frames(path, count, fps).permute(0, 3, 1, 2)  # (T, 3, h, w)
    video = resize_center_crop(frames, size)  # (T, 3, H, W), integers in [0, 255]
    return ((video - 127.5) / 127.5).permute(1, 0, 2, 3)  # (3, T, H, W), the training data's [-1, 1]


def check_video_prompts(lines: list[str], count: int, fps: int) -> None:
    """Every line is `text@@video_path` with a video that decodes and holds `count` frames at `fps` (run before the
    model is built)."""
    for line in lines:
        decoded_frames(split_video_prompt(line)[1], count, fps)


def check_video2video(model_config, latent_channels: int, image2video: bool, strength: float | None) -> float:
    """The options of a video-to-video run, before the model is built; returns the strength (default 0.8)."""
    if image2video:
        raise InputError("--video2video and --image2video exclude each other: a prompt line holds one video or one "
                         "image; pick one")
    in_channels = int(model_config.network_config.params.in_channels)
    if in_channels == 2 * latent_channels:  # other mismatches: check_network_channels
        raise InputError(f"--video2video needs a text-to-video model (2B, 5B, 1.5-5B): this network's in_channels="
                         f"{in_channels} is 2 x latent_channels={latent_channels}, an image-to-video model's")
    strength = DEFAULT_STRENGTH if strength is None else strength
    sampler = instantiate_from_config(model_config.sampler_config)
    try:
        start_step = first_kept_step(sampler.num_steps, strength)
    except ValueError:
        steps = sampler.num_steps
        raise InputError(f"--strength {strength}: expected 0 < strength <= 1 keeping at least one of the sampler's "
                         f"{steps} steps (int({steps} x strength) >= 1, i.e. strength >= {1 / steps:.4g})") from None
    tail_sampler(sampler, start_step)  # the guider's own check of the kept steps (ConfigError)
    return strength


def check_strength_without_video2video(strength: float | None) -> None:
    if strength is not None:
        raise InputError(f"--strength {strength} is for video-to-video: add --video2video (prompt lines "
                         "'<prompt text>@@<video path>')")


@torch.no_grad()
def video_latent(engine, video: torch.Tensor, num_latent_frames: int, generator: torch.Generator) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1] -> the clean scaled latent (1, t, c, H/8, W/8), float32: one posterior draw from
    `generator`; CogVideoX1.5: latent frame 0 copied in front (the padding frame)."""
    pixels = video[None].to(device=engine.device, dtype=engine.first_stage_dtype)  # (1, 3, T, H, W)
    z = engine.first_stage_model.encode_chunked(pixels, generator)  # (1, c, t', h, w)
    latent = (engine.scale_factor * z).permute(0, 2, 1, 3, 4).to(torch.float32)  # (1, t', c, h, w)
    latent = engine.family.pad_training_latents(latent)  # (1, t, c, h, w)
    if latent.shape[1] != num_latent_frames:
        raise ValueError(f"a {video.shape[1]}-frame video gives {latent.shape[1]} latent frames, {num_latent_frames} "
                         "expected")
    return latent


@torch.no_grad()
def sample_from_video(engine, cond: dict, uc: dict, video: torch.Tensor, strength: float, num_latent_frames: int,
                      generator: torch.Generator, denoiser=None) -> torch.Tensor:
    """SDEdit: (3, T, H, W) video in [-1, 1] -> sampled latents (1, t, c, h, w) in the engine's dtype.

    `denoiser`: what the sampler calls instead of `engine.denoise` (the guidance-parallel split)."""
    x0 = video_latent(engine, video, num_latent_frames, generator)  # (1, t, c, h, w)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(engine.device)  # as engine.sample
    sampler = tail_sampler(engine.sampler, first_kept_step(engine.sampler.num_steps, strength))
    alphas, _ = sampler.schedule(engine.device)
    samples = sampler(denoiser or engine.denoise, noised_to(x0, noise, alphas[0]), cond, uc=uc, generator=generator)
    return samples.to(engine.dtype)


def video_frame_count(model_config, num_latent_frames: int) -> int:
    """Input frames a video-to-video run reads: those the sampled video has (1.5: without the padding frame)."""
    return model_family(model_config).video_frames(num_latent_frames)
