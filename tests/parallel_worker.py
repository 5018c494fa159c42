"""Runs one video (and one DiT call) on several spawned gloo processes with a parallel layout; each rank saves its
results, which the tests compare with the one-process results."""

import socket
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from image_to_video.conditioning import image_condition_pixels
from model_family import sampling_pixel_size
from dit.first_block_cache import FirstBlockCacheSettings
from parallel.layout import ParallelLayout
from parallel.sampling import ParallelSampling
from tiny_models import TinyModelSet, build_engine
from video_sampling import Prompt, SamplingPlan, encode_prompt, generate_video, read_input_video, sample_seed

PROMPT = "a red fox trots across a snowy meadow"
I2V_IMAGE = "configs/tiny/i2v_image.png"
V2V_VIDEO = "configs/tiny/v2v_video.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latent_frames(models: TinyModelSet) -> int:
    """3 latent frames (9 video frames) keep the runs short; CogVideoX1.5 needs an even count (4: 9 frames)."""
    return 4 if "1.5" in models.config_path else 3


def dit_call(engine, num_latent_frames: int) -> torch.Tensor:
    """The DiT's output for a fixed input (with an ofs of 2 for a model that takes one, CogVideoX1.5-I2V)."""
    dit = engine.model.diffusion_model
    ofs = {} if getattr(dit, "ofs_embed", None) is None else {"ofs": torch.tensor([2.0])}
    with torch.no_grad():
        return dit(*dit_inputs(engine, num_latent_frames), **ofs)


def dit_inputs(engine, num_latent_frames: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed DiT input: latents (b, t, c, h, w), DDPM indices (b,), text context (b, n_text, d_text)."""
    dit = engine.model.diffusion_model
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(batch, num_latent_frames, dit.in_channels, dit.latent_height, dit.latent_width, generator=generator)
    text_length = dit.get_mixin("pos_embed").text_length
    context = torch.randn(batch, text_length, dit.get_mixin("patch_embed").text_hidden_size, generator=generator)
    return x, torch.tensor([999, 500][:batch]), context


def one_video(engine, plan: SamplingPlan) -> torch.Tensor:
    """The prompt's video (T, 3, H, W); an image-to-video model (32 input channels) is given the shipped tiny image,
    preprocessed as its family does (1.0: bicubic cover and crop; 1.5: LANCZOS); a video-to-video plan starts from
    the shipped tiny clip, which this process reads as sample_prompts does."""
    cond, uc = encode_prompt(engine, PROMPT)
    image, video = None, None
    if engine.model.diffusion_model.in_channels == 32:
        image = image_condition_pixels(I2V_IMAGE, sampling_pixel_size(engine.model_config), engine.model_config)
    if plan.video2video:
        video = read_input_video(engine, plan, V2V_VIDEO)  # (3, T, H, W)
    return generate_video(engine, cond, uc, plan, sample_seed(plan.seed, Prompt(0, PROMPT), 0), image, video)


def videos(engine, plan: SamplingPlan, strength: float | None) -> dict[str, torch.Tensor]:
    """{"video": the prompt's video} and, with a strength, {"v2v": its video-to-video video from the tiny clip}."""
    results = {"video": one_video(engine, plan)}
    if strength is not None:
        results["v2v"] = one_video(engine, replace(plan, strength=strength))
    return results


def _worker(rank: int, world: int, port: int, models: TinyModelSet, cfg: int, sequence: int, frames: int, out: str,
            first_block_cache: float, strength: float | None):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        engine = build_engine(models)
        engine.first_block_cache = FirstBlockCacheSettings(first_block_cache) if first_block_cache else None
        parallel = ParallelSampling(ParallelLayout(world, rank, cfg, sequence))
        parallel.prepare(engine)
        plan = SamplingPlan(frames, 16, fps=8, samples_per_prompt=1, seed=3, output_dir="unused", parallel=parallel)
        results = {"dit": dit_call(engine, frames), **videos(engine, plan, strength)}
        if first_block_cache:
            results["skipped"] = torch.tensor(engine.first_block_cache_record.skipped)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_parallel(models: TinyModelSet, world: int, cfg: int, sequence: int, frames: int, out: Path,
                 first_block_cache: float = 0.0, strength: float | None = None) -> list[dict]:
    """Spawn `world` processes; returns each rank's {"dit": ..., "video": ...} (with a first-block cache threshold,
    "skipped": per DiT call of the video, whether its layers after the first were skipped; with a strength, "v2v":
    the video-to-video video, `videos`)."""
    mp.start_processes(_worker, args=(world, free_port(), models, cfg, sequence, frames, str(out), first_block_cache,
                                      strength),
                       nprocs=world, join=True, start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(world)]
