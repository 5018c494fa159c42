"""The image-to-video training condition (`noised_image_input`): the clip's first frame, lightly noised, encoded
on its own, as 16 extra latent channels the network sees un-noised (CogVideoX-5B-I2V).

Matches the reference's `SATVideoDiffusionEngine.shared_step` with `noised_image_input: True`, in its RNG order:
1. per sample, sigma = exp(N(-3, 0.5^2)) (one `torch.normal` of shape (b,), on the CPU; median about 0.05);
2. the first frame plus sigma * `randn_like(frame)` (in the frame's dtype);
3. that frame encoded alone by the VAE (posterior sample x scale_factor) into latent frame 0, zeros after;
4. the video encoded; 5. one `random.random()` per step: below `noised_image_dropout` the image channels of the
   whole batch are zeroed; 6.-8. the loss's text dropout, timestep and noise.
The loss passes the condition as `cond[CONCAT_COND_KEY]` (from the batch's `CONCAT_BATCH_KEY`); `OpenAIWrapper`
concatenates it after the 16 noisy channels. Sampling's image condition: `image_to_video/conditioning.py`.
"""

import random
from dataclasses import dataclass
from typing import Callable

import torch

from sgm.util import ConfigError

LOG_SIGMA_MEAN, LOG_SIGMA_STD = -3.0, 0.5


@dataclass(frozen=True)
class NoisedImageInput:
    dropout: float  # probability, per step, that the image channels of the whole batch are zeroed


def from_engine_config(engine, model_config) -> NoisedImageInput | None:
    """The image input of `model:`, from the engine's typed config `engine` (`engine_config.EngineConfig`: its
    `noised_image_input` / `noised_image_dropout`, whose defaults live there); None when image input is off.

    `model_config` tells whether the dropout was set at all, and the network must take twice the latent channels
    (noisy latents, then the image latents).
    """
    if not engine.noised_image_input:
        if "noised_image_dropout" in model_config:
            raise ConfigError("model.noised_image_dropout is set but model.noised_image_input is not true")
        return None
    if not 0.0 <= engine.noised_image_dropout <= 1.0:
        raise ConfigError(f"model.noised_image_dropout must be in [0, 1], got {engine.noised_image_dropout}")
    params = model_config.network_config.params
    if int(params.in_channels) != 2 * int(params.out_channels):
        raise ConfigError(
            f"model.noised_image_input: true needs network_config.params.in_channels = 2 x out_channels (noisy and "
            f"image latents), got in_channels {params.in_channels}, out_channels {params.out_channels}"
        )
    return NoisedImageInput(engine.noised_image_dropout)


def noise_first_frame(frame: torch.Tensor) -> torch.Tensor:
    """(b, 3, 1, H, W) in [-1, 1] -> the same plus Gaussian noise of per-sample sigma = exp(N(-3, 0.5^2)).

    Draws, in order: `torch.normal` (b,) on the CPU, then `randn_like(frame)`.
    """
    log_sigma = torch.normal(mean=LOG_SIGMA_MEAN, std=LOG_SIGMA_STD, size=(frame.shape[0],)).to(frame.device)  # (b,)
    sigma = torch.exp(log_sigma).to(frame.dtype)
    return frame + torch.randn_like(frame) * sigma[:, None, None, None, None]


def encode_image_condition(
    video: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """video (b, 3, T, H, W) in [-1, 1] -> the noised first frame's scaled latent (b, 1, c, h, w).

    `encode` is the engine's `encode_first_stage` ((b, 3, T, H, W) -> (b, c, t, h, w), posterior sample).
    """
    latent = encode(noise_first_frame(video[:, :, :1]))  # (b, c, 1, h, w)
    return latent.permute(0, 2, 1, 3, 4).contiguous()  # (b, 1, c, h, w)


def image_condition(image_latent: torch.Tensor, num_frames: int, dropout: float) -> torch.Tensor:
    """(b, 1, c, h, w) -> (b, num_frames, c, h, w): the image latent in frame 0, zeros after; all zeros when this
    step's `random.random()` falls below `dropout` (one draw per step, for the whole batch)."""
    b, _, c, h, w = image_latent.shape
    condition = torch.cat([image_latent, image_latent.new_zeros(b, num_frames - 1, c, h, w)], dim=1)
    if random.random() < dropout:
        condition = torch.zeros_like(condition)
    return condition
