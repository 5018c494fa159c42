"""diffusers' `CogVideoXPipeline` on our converted weights: the peer the sampling benchmarks measure against.

The transformer and the VAE are converted in-process by tools/convert_weight_sat2hf.py and tools/convert_vae.py;
the scheduler is the config's sampler as diffusers' scheduler (interop/diffusers_scheduler.py: CogVideoX's DPM scheduler
for the released configs, zero-SNR, v-prediction, the config's shift). Without a T5 folder the pipeline has no text encoder and takes prompt embeddings.
"""

import warnings
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf

from checkpoints.sat_checkpoint import checkpoint_path, read_model_states
from interop import vae_keys
from interop.sat_to_diffusers import diffusers_config, extract_transformer_state_dict, sat_to_diffusers_state_dict
from interop.diffusers_scheduler import build_scheduler, scheduler_for_sampler


def build_on(device: torch.device, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """`build()` with `device` as the default device (a full-size model is initialised there in seconds rather
    than minutes on the CPU); should a constructor refuse that, built on the CPU and moved."""
    if device.type == "cpu":
        return build()
    try:
        with torch.device(device):
            module = build()
    except (RuntimeError, TypeError, ValueError) as err:
        warnings.warn(f"building on {device} failed ({err}); building on the CPU and moving it")
        module = build()
    return module.to(device)


def diffusers_pipeline(transformer_dir: Path, vae_path: Path, model_config, device: torch.device, dtype: torch.dtype,
                       t5_dir: Path | None = None):
    """The pipeline on `device` in `dtype` (T5 in fp32 on the CPU when `t5_dir` is given, as bench_sample runs it)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel

    path, _ = checkpoint_path(transformer_dir)
    hf_state = sat_to_diffusers_state_dict(extract_transformer_state_dict(read_model_states(path)))
    network_config = diffusers_config(OmegaConf.to_container(model_config.network_config))
    transformer = build_on(device, lambda: CogVideoXTransformer3DModel(**network_config))
    transformer.load_state_dict(hf_state)
    del hf_state
    vae_states = torch.load(vae_path, map_location="cpu", weights_only=True)["state_dict"]
    vae_config = vae_keys.diffusers_config(vae_states, scaling_factor=float(model_config.scale_factor))
    vae = build_on(device, lambda: AutoencoderKLCogVideoX(**vae_config))
    vae.load_state_dict(vae_keys.sat_to_diffusers(vae_states))
    del vae_states
    scheduler = build_scheduler(*scheduler_for_sampler(OmegaConf.to_container(model_config.sampler_config, resolve=True)))
    tokenizer = text_encoder = None
    if t5_dir is not None:
        from transformers import T5EncoderModel, T5Tokenizer

        tokenizer = T5Tokenizer.from_pretrained(str(t5_dir))
        text_encoder = T5EncoderModel.from_pretrained(str(t5_dir))
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae.to(dtype).eval(),
                             transformer=transformer.to(dtype).eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def record_first_block_cache(pipe, threshold: float) -> list[bool]:
    """Enable diffusers' first-block cache (``FirstBlockCacheConfig``) on the pipeline's transformer; the returned
    list fills, per transformer call, with whether the blocks after the first were skipped (its decision, recorded)."""
    from diffusers.hooks import FirstBlockCacheConfig

    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    head = pipe.transformer.transformer_blocks[0]._diffusers_hook.get_hook("fbc_leader_block_hook")
    decide, skipped = head._should_compute_remaining_blocks, []

    def recorded(residual: torch.Tensor) -> bool:
        compute = decide(residual)
        skipped.append(not compute)
        return compute

    head._should_compute_remaining_blocks = recorded
    return skipped
