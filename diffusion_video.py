"""The CogVideoX engine: DiT + denoiser + sampler + T5 conditioner + VAE + loss, built from `args.model_config`.

Key layout matches the reference (`model.diffusion_model.*`, `conditioner.*`, `first_stage_model.*`), so the
released checkpoints and SAT's loader work unchanged. Latents travel as (b, t, c, h, w) on the diffusion side and
(b, c, t, h, w) on the VAE side; the permutes happen here, in one place.
"""

import argparse
import gc
from typing import Callable

import torch
from omegaconf import OmegaConf
from sat.helpers import print_rank0
from torch import nn

from dit.first_block_cache import (FirstBlockCacheRecord, FirstBlockCacheSettings, first_block_cache,
                                  first_block_cache_threshold, report)
from dit_video_concat import DTYPES
from engine_config import read_engine_config
from model_family import model_family
from latent_cache import engine_parts
from latent_cache.posterior import is_cached_batch, sample_cached_posterior
from image_to_video.batch_keys import CONCAT_BATCH_KEY, OFS_BATCH_KEY, CONCAT_COND_KEY, OFS_COND_KEY
from image_to_video.noised_image import encode_image_condition, image_condition
from image_to_video.noised_image import from_engine_config as noised_image_settings
from sgm.util import get_obj_from_str, instantiate_from_config


def engine_dtype(args: argparse.Namespace) -> str:
    if getattr(args, "fp16", False):
        return "fp16"
    if getattr(args, "bf16", False):
        return "bf16"
    return "fp32"


class SATVideoDiffusionEngine(nn.Module):
    """Everything a CogVideoX run needs, built from the `model:` section of the merged YAML."""

    def __init__(self, args: argparse.Namespace, params_dtype: torch.dtype = torch.float32):
        """`params_dtype` is what SAT's `get_model` passes; it casts the built engine itself (`.half()` /
        `.bfloat16()`, VAE included, as the reference), so parameters are built in fp32 here."""
        super().__init__()
        config = args.model_config
        engine = read_engine_config(config, getattr(args, "base", []))  # checked: required keys, types, no unknown
        self.model_config = config
        self.log_keys = list(engine.log_keys)
        self.input_key = engine.input_key
        self.not_trainable_prefixes = list(engine.not_trainable_prefixes)
        self.scale_factor = float(engine.scale_factor)
        self.en_and_decode_n_samples_a_time = engine.en_and_decode_n_samples_a_time
        self.gc_every_step = bool(getattr(args, "gc_every_step", False))
        # --first-block-cache (sampling and the validation videos of training; 0 = off): dit/first_block_cache.py.
        # parallel/sampling.py adds the process groups of a multi-process run.
        threshold = first_block_cache_threshold(getattr(args, "first_block_cache", 0.0))
        self.first_block_cache = FirstBlockCacheSettings(threshold) if threshold else None
        self.first_block_cache_record: FirstBlockCacheRecord | None = None  # the last sample() call's skips
        self.dtype_str = engine_dtype(args)
        self.dtype = DTYPES[self.dtype_str]
        self.noised_image = noised_image_settings(engine, config)  # I2V training condition (image_to_video/noised_image.py); None for T2V
        self.family = model_family(config)  # CogVideoX 1.0 or 1.5: padding frames, decode plan (model_family.py)
        self.latent_input = engine.latent_input
        has_ofs = OmegaConf.select(config, "network_config.params.ofs_embed_dim", default=None) is not None
        self.ofs = engine.ofs if has_ofs else None  # CogVideoX1.5-I2V's ofs embedding input; None: no ofs embedding
        # The image latent as a multiple of the raw posterior sample z (engine_config.py, model_family.py).
        self.image_latent_training_scale = float(
            self.scale_factor if engine.image_latent_training_scale is None else engine.image_latent_training_scale)
        sampling_scale = engine.image_latent_sampling_scale
        sampling_scale = self.family.image_latent_sampling_scale if sampling_scale is None else sampling_scale
        self.image_latent_sampling_scale = float(self.scale_factor if sampling_scale is None else sampling_scale)

        network_config = OmegaConf.to_container(config.network_config, resolve=True)
        network_config.setdefault("params", {})["dtype"] = self.dtype_str
        network = instantiate_from_config(network_config)
        wrapper = get_obj_from_str(engine.network_wrapper)
        self.model = wrapper(network, compile_model=engine.compile_model, dtype=self.dtype)

        self.denoiser = instantiate_from_config(config.denoiser_config)
        self.sampler = instantiate_from_config(config.sampler_config) if "sampler_config" in config else None
        # Set by train_video.py when every dataset is a latent cache (latent_cache.run_inputs): no T5, no VAE encoder.
        precomputed = getattr(args, "precomputed_inputs", None)
        self.conditioner = instantiate_from_config(engine_parts.conditioner_config(config, precomputed))
        first_stage = engine_parts.first_stage_config(config, precomputed)
        self.first_stage_model = None if first_stage is None else instantiate_from_config(first_stage)
        self.loss_fn = instantiate_from_config(config.loss_fn_config) if "loss_fn_config" in config else None

    # ----- SAT training hooks -----------------------------------------------------------------

    def reinit(self, parent_model=None) -> None:
        """SAT's loader calls this for missing mixin keys in finetune mode; LoRA/new mixins keep their init."""

    def disable_untrainable_params(self) -> int:
        """Freeze parameters under `not_trainable_prefixes` ('all' freezes everything); LoRA matrices stay trainable."""
        total_trainable = 0
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            frozen = any(prefix == "all" or name.startswith(prefix) for prefix in self.not_trainable_prefixes)
            if "matrix_A" in name or "matrix_B" in name:
                frozen = False
            if frozen:
                param.requires_grad_(False)
            else:
                total_trainable += param.numel()
        print_rank0(f"***** Total trainable parameters: {total_trainable} *****")
        return total_trainable

    # ----- first stage (VAE) ------------------------------------------------------------------

    @torch.no_grad()
    def encode_first_stage(self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """(b, 3, T, H, W) video in [-1, 1] -> scaled latents (b, 16, t, H/8, W/8); samples the posterior (from
        `generator` when given, else the global RNG)."""
        z = self.first_stage_model.encode(x.to(self.first_stage_dtype), sample=sample, generator=generator)
        return self.scale_factor * z

    @torch.no_grad()
    def encode_image_latent(self, x: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """(b, 3, T, H, W) in [-1, 1] -> `scale` x the posterior sample (b, 16, t, H/8, W/8): the image-to-video
        condition, whose scale is a config value of its own (`image_latent_training_scale` / `_sampling_scale`)."""
        return scale * self.first_stage_model.encode(x.to(self.first_stage_dtype), sample=True, generator=generator)

    @torch.no_grad()
    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (b, 16, t, h, w) -> video (b, 3, 4(t-1)+1, 8h, 8w), decoded in one shot (the reference's
        `decode_first_stage`). CogVideoX1.5: matches its reference, whose `decode_first_stage` decodes in chunks
        (`decode_first_stage_chunked`)."""
        if self.family.padding_latent_frames:
            return self.decode_first_stage_chunked(z)
        z = z.to(self.first_stage_dtype) / self.scale_factor
        per_call = self.en_and_decode_n_samples_a_time or z.shape[0]
        return torch.cat([self.first_stage_model.decode(part) for part in z.split(per_call)], dim=0)

    @torch.no_grad()
    def decode_first_stage_chunked(self, z: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """As `decode_first_stage`, but in the reference sampling's latent-frame chunks (low memory; GroupNorm
        statistics are per chunk, so the result differs from the one-shot decode). `progress`: a tqdm bar over each
        video's chunks.

        CogVideoX1.5: latent frame 0 (the padding frame) is dropped, and the rest decoded in the 1.5 reference's chunks
        with the first-frame rule on, as 1.0: 22 latent frames give 81 video frames, as diffusers. Deliberate
        difference: the 1.5 reference at context-parallel size 1 writes 84 frames (docs/faithfulness.md).
        """
        z = z[:, :, self.family.padding_latent_frames :]  # (b, 16, t - padding, h, w)
        plan = self.family.decode_chunk_plan(z.shape[2])
        z = z.to(self.first_stage_dtype) / self.scale_factor
        return torch.cat(
            [self.first_stage_model.decode_chunked(part[None], chunk_plan=plan, progress=progress) for part in z], dim=0
        )

    @property
    def first_stage_dtype(self) -> torch.dtype:
        return next(self.first_stage_model.parameters()).dtype

    # ----- training -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """x: scaled latents (b, t, c, h, w); returns the mean loss and a log dict."""
        loss = self.loss_fn(self.model, self.denoiser, self.conditioner, x, batch).mean()
        return loss, {"loss": loss}

    def holds_given_latents(self, batch: dict) -> bool:
        """`latent_input: true` and batch["mp4"] holds VAE latents (b, 16, t, h, w), as the reference reads it, not
        pixels (b, T, 3, H, W): told apart by axis 1, which for pixels holds 4k + 1 frames, never 16."""
        video = batch.get(self.input_key)
        z_channels = int(self.model_config.first_stage_config.params.decoder_config.params.z_channels)
        return self.latent_input and video is not None and video.ndim == 5 and video.shape[1] == z_channels

    def batch_latents(self, batch: dict) -> torch.Tensor:
        """Scaled latents (b, t, c, h, w) of a batch, sampled from the posterior: encoded from batch["mp4"]
        (b, T, 3, H, W), or, for a batch from a latent cache, from its stored posterior (the same single draw), or,
        with `latent_input: true`, batch["mp4"]'s given unscaled latents (b, c, t, h, w) (no draw, as the reference).
        CogVideoX1.5: an odd latent frame count is padded in front to an even one (model_family.py)."""
        if is_cached_batch(batch):
            latents = self.scale_factor * sample_cached_posterior(batch)  # (b, c, t, h, w)
        elif self.holds_given_latents(batch):
            latents = self.scale_factor * batch[self.input_key]  # (b, c, t, h, w)
        else:
            video = batch[self.input_key].to(self.dtype)
            latents = self.encode_first_stage(video.permute(0, 2, 1, 3, 4).contiguous())  # (b, c, t, h, w)
        latents = latents.permute(0, 2, 1, 3, 4).contiguous().to(self.dtype)  # (b, t, c, h, w)
        return self.family.pad_training_latents(latents)  # (b, t', c, h, w)

    def with_ofs(self, cond: dict, batch_size: int) -> dict:
        """`cond` plus the ofs value (batch_size,) for a network with an ofs embedding (CogVideoX1.5-I2V)."""
        if self.ofs is None:
            return cond
        return {**cond, OFS_COND_KEY: torch.full((batch_size,), self.ofs, dtype=torch.float32, device=self.device)}

    def encode_training_image(self, batch: dict) -> torch.Tensor:
        """The noised first frame's latent (b, 1, c, h, w) at `image_latent_training_scale` (image_to_video/noised_image.py)."""
        video = batch[self.input_key].to(self.dtype).permute(0, 2, 1, 3, 4).contiguous()  # (b, 3, T, H, W)
        return encode_image_condition(video, lambda x: self.encode_image_latent(x, self.image_latent_training_scale))

    def shared_step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """batch["mp4"]: (b, T, 3, H, W) in [-1, 1] (or a cached posterior) -> loss. RNG order: VAE posterior
        sample, then the loss's draws; with `noised_image_input` the image condition's draws come first and its
        dropout draw after the encode (see noised_image)."""
        if self.noised_image is None:
            latents = self.batch_latents(batch)  # (b, t, c, h, w)
        else:  # never a cached batch: latent_cache refuses noised_image_input runs
            image_latent = self.encode_training_image(batch)  # (b, 1, c, h, w)
            latents = self.batch_latents(batch)  # (b, t, c, h, w)
            batch[CONCAT_BATCH_KEY] = image_condition(image_latent.to(self.dtype), latents.shape[1], self.noised_image.dropout)
        if self.ofs is not None:  # beyond the reference, whose 1.5 I2V training passes no ofs (KeyError); no draw
            batch[OFS_BATCH_KEY] = torch.full((latents.shape[0],), self.ofs, dtype=torch.float32, device=latents.device)
        if self.gc_every_step:  # matches the reference (it collects every step); off by default
            gc.collect()
        return self(latents, batch)

    # ----- sampling -----------------------------------------------------------------------------

    def denoise(self, x: torch.Tensor, alpha_cumprod_sqrt: torch.Tensor, cond: dict, **model_inputs) -> torch.Tensor:
        return self.denoiser(self.model, x, alpha_cumprod_sqrt, cond, **model_inputs)

    @torch.no_grad()
    def sample(
        self,
        cond: dict,
        uc: dict | None,
        batch_size: int,
        shape: tuple[int, int, int, int],
        generator: torch.Generator | None = None,
        denoiser: Callable[..., torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Draw latents (batch_size, t, c, h, w) for `shape` = (t, c, h, w).

        The initial noise is one unscaled `randn` (as the reference), drawn from `generator` on the CPU so a seed
        gives the same video on any device; the sampler draws its further noise from the same generator.
        `denoiser`: what the sampler calls instead of `self.denoise` (the guidance-parallel split, parallel/cfg.py).
        """
        noise = torch.randn(batch_size, *shape, generator=generator, dtype=torch.float32)
        noise = noise.to(self.device)
        with first_block_cache(self.model.diffusion_model, self.first_block_cache) as record:
            samples = self.sampler(denoiser or self.denoise, noise, cond, uc=uc, generator=generator)
        if record is not None:
            self.first_block_cache_record = record
            report(record, self.first_block_cache)
        return samples.to(self.dtype)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def log_video(self, batch: dict, only_log_video_latents: bool = False, generator: torch.Generator | None = None) -> dict:
        """Sample one video per batch item with the batch's prompts (as the reference's training-time logging).

        Returns {"inputs": video (absent for a batch of latents or from a latent cache), "latents": (b, t, c, h, w)} and,
        unless `only_log_video_latents`, {"samples": decoded video (b, T, 3, H, W) in [-1, 1]}.
        """
        # matches the reference: one posterior sample is drawn here (it encodes only to learn the latent shape); a
        # batch from a latent cache draws it from its stored posterior, without encode, so cached == uncached runs.
        given = is_cached_batch(batch) or self.holds_given_latents(batch)  # no video in the batch
        log = {} if given else {"inputs": batch[self.input_key].to(torch.float32)}
        shape = tuple(self.batch_latents(batch).shape[1:])  # (t, c, h, w)
        batch_size = len(batch["txt"])
        batch_uc = {key: ([""] * len(value) if isinstance(value, list) else value) for key, value in batch.items()}
        cond, uc = self.conditioner.get_unconditional_conditioning(batch, batch_uc=batch_uc, force_uc_zero_embeddings=["txt"])
        if self.noised_image is not None:  # matches the reference: the training condition, without its dropout
            image_latent = self.encode_training_image(batch).to(self.dtype)
            cond[CONCAT_COND_KEY] = uc[CONCAT_COND_KEY] = image_condition(image_latent, shape[0], dropout=0.0)
        cond, uc = self.with_ofs(cond, batch_size), self.with_ofs(uc, batch_size)  # as training (no draw)
        samples = self.sample(cond, uc=uc, batch_size=batch_size, shape=shape, generator=generator)
        log["latents"] = samples
        if not only_log_video_latents:
            decoded = self.decode_first_stage(samples.permute(0, 2, 1, 3, 4).contiguous())
            log["samples"] = decoded.permute(0, 2, 1, 3, 4).to(torch.float32)
        return log
