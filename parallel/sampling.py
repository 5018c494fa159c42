"""The parallel layout of a sampling run, applied to a built engine: which denoiser the sampler calls and which
rank writes each video."""

from dataclasses import replace
from typing import Callable

import torch
from omegaconf import OmegaConf

from input_errors import InputError
from parallel.cfg import cfg_parallel_denoiser
from parallel.layout import ParallelLayout, ProcessGroups, check_layout
from parallel.ulysses import enable_sequence_parallel
from vae_modules.autoencoder import LATENT_SPLIT_STEP
from vae_modules.context_parallel import check_cp_processes, check_time_split, configured_cp_size


class ParallelSampling:
    """Built once per run, on every rank, after torch.distributed is initialised (its groups are created here)."""

    def __init__(self, layout: ParallelLayout):
        self.layout = layout
        self.groups = ProcessGroups(layout)

    def prepare(self, engine) -> None:
        """Add the sequence-parallel hooks to the engine's DiT (after its checkpoint is loaded); a first-block cache
        decides over the ranks of each DiT call (dit/first_block_cache.py)."""
        if self.layout.sequence > 1:
            dit = engine.model.diffusion_model
            enable_sequence_parallel(dit, self.groups.sequence, self.layout.sequence, self.layout.sequence_rank)
        if engine.first_block_cache is not None:
            groups = tuple(group for group in (self.groups.sequence, self.groups.cfg) if group is not None)
            engine.first_block_cache = replace(engine.first_block_cache, groups=groups)

    def denoiser(self, engine) -> Callable[..., torch.Tensor]:
        """What the sampler calls: the engine's denoiser, or its guidance-parallel split."""
        if self.layout.cfg == 1:
            return engine.denoise
        return cfg_parallel_denoiser(engine.denoise, self.groups.cfg, self.layout.cfg_rank, self.layout.cfg)


UNGUIDED = "sgm.modules.diffusionmodules.guiders.IdentityGuider"


def check_parallel_sampling(model_config, world_size: int, cfg: int, sequence: int) -> None:
    """--cfg-parallel / --sequence-parallel against the process count and the model config, before the model is built."""
    heads = int(model_config.network_config.params.num_attention_heads)
    guider = OmegaConf.select(model_config, "sampler_config.params.guider_config.target", default=None)
    check_layout(world_size, cfg, sequence, heads, guided=guider not in (None, UNGUIDED))


def check_decode_split(model_config, world_size: int, video_ranks: int, num_latent_frames: int) -> None:
    """first_stage_config cp_size > 1 in sampling: the decode's ranks must hold one video (cp_size divides the
    processes per video, cfg x sequence) and the latent frames must split over them."""
    cp_size = configured_cp_size(model_config)
    if cp_size == 1:
        return
    check_cp_processes(cp_size, world_size, "sample_video.py")
    if video_ranks % cp_size:
        raise InputError(f"first_stage_config cp_size {cp_size}: in sampling the decode is split over processes that "
                         f"hold the same video, but --cfg-parallel x --sequence-parallel = {video_ranks} is not a "
                         f"multiple of {cp_size}")
    check_time_split(num_latent_frames, cp_size, LATENT_SPLIT_STEP, "a latent")
