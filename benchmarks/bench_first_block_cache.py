"""First-block cache: share of DiT blocks skipped and end-to-end time against the uncached run, ours and diffusers'.

    python benchmarks/bench_first_block_cache.py [--steps 10] [--repeats 2] [--thresholds 0.05 0.1 0.2 1.0]
                                                 [--latent-size 16 24] [--threads 2]

The mid-size random model set of bench_sample.py (DiT hidden 256, 4 layers, 13 latent frames of 16x24 -> 49 frames of
128x192, the tiny VAE and T5; `--latent-size 4 6`: latent frames of 4x6 -> 32x48, a quick check of the script), both
sides built once in this process on the same weights: our engine with `--first-block-cache T`
(dit/first_block_cache.py) and diffusers' CogVideoXPipeline with `transformer.enable_cache(FirstBlockCacheConfig(
threshold=T))`. Per repeat and threshold, each side runs one video uncached and then one with the cache, and the time
ratio is taken within that pair (a load change on a shared machine shifts both runs); each figure is the median over
the repeats. End to end = T5 encode + sampling + VAE decode, as bench_sample.py.

Random weights: the first block's residual changes by 0.7-1.8 between calls on this model, so the usual thresholds
skip nothing here; the 1.0 row shows what skipping saves. What a threshold does to a real model's videos is to be
judged on real weights.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sample import MID_SIZE, NUM_LATENT_FRAMES, PROMPT, THREADS, write_model_set


def build_ours(root: str, config_path: str):
    from omegaconf import OmegaConf

    from diffusion_video import SATVideoDiffusionEngine
    from checkpoints.sat_checkpoint import load_sat_checkpoint

    engine = SATVideoDiffusionEngine(argparse.Namespace(model_config=OmegaConf.load(config_path).model, fp16=False,
                                                        bf16=False))
    load_sat_checkpoint(engine, os.path.join(root, "transformer"))
    return engine.eval()


def run_ours(engine, threshold: float) -> tuple[float, float]:
    """(end-to-end seconds, share of DiT blocks skipped) for one video."""
    from dit.first_block_cache import FirstBlockCacheSettings
    from video_sampling import SamplingPlan, encode_prompt, generate_video

    engine.first_block_cache = FirstBlockCacheSettings(threshold) if threshold else None
    plan = SamplingPlan(NUM_LATENT_FRAMES, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused")
    start = time.perf_counter()
    cond, uc = encode_prompt(engine, PROMPT)
    video = generate_video(engine, cond, uc, plan, seed=1)
    total = time.perf_counter() - start
    assert video.shape[0] == 49
    return total, engine.first_block_cache_record.skipped_block_share if threshold else 0.0


def build_diffusers(root: str, config_path: str):
    import torch
    from omegaconf import OmegaConf

    from benchmarks.diffusers_peer import diffusers_pipeline

    return diffusers_pipeline(Path(root, "transformer"), Path(root, "vae", "3d-vae.pt"),
                              OmegaConf.load(config_path).model, torch.device("cpu"), torch.float32,
                              t5_dir=Path(root, "t5"))


def run_diffusers(pipe, threshold: float, steps: int, size: dict) -> tuple[float, float]:
    import torch

    from benchmarks.diffusers_peer import record_first_block_cache
    from dit.first_block_cache import FirstBlockCacheRecord

    skipped = record_first_block_cache(pipe, threshold) if threshold else []
    height, width = 8 * size["latent_height"], 8 * size["latent_width"]
    start = time.perf_counter()
    with torch.no_grad():
        frames = pipe(prompt=PROMPT, height=height, width=width, num_frames=49, num_inference_steps=steps,
                      guidance_scale=6, use_dynamic_cfg=True, generator=torch.Generator().manual_seed(1),
                      output_type="pt").frames[0]
    total = time.perf_counter() - start
    assert frames.shape[0] == 49
    if not threshold:
        return total, 0.0
    pipe.transformer.disable_cache()
    assert len(skipped) == steps
    return total, FirstBlockCacheRecord(MID_SIZE["num_layers"], skipped).skipped_block_share


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 1.0])
    parser.add_argument("--latent-size", type=int, nargs=2, metavar=("H", "W"), help="latent frame size (even)",
                        default=[MID_SIZE["latent_height"], MID_SIZE["latent_width"]])
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads of both sides")
    args = parser.parse_args()
    size = {**MID_SIZE, "latent_height": args.latent_size[0], "latent_width": args.latent_size[1]}
    torch.set_num_threads(args.threads)
    ratios = {(side, t): [] for side in ("ours", "diffusers") for t in args.thresholds}
    skipped, uncached = {}, {"ours": [], "diffusers": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.join(scratch, "weights")
        config_path = write_model_set(root, args.steps, size)
        engine, pipe = build_ours(root, config_path), build_diffusers(root, config_path)
        sides = {"ours": lambda t: run_ours(engine, t), "diffusers": lambda t: run_diffusers(pipe, t, args.steps, size)}
        for run in sides.values():
            run(0.0)  # warm-up, not counted
        for _ in range(args.repeats):
            for threshold in args.thresholds:
                for side, run in sides.items():  # each cached run right after an uncached one: a load change on a
                    plain, _ = run(0.0)  # shared machine shifts both
                    cached, skipped[side, threshold] = run(threshold)
                    uncached[side].append(plain)
                    ratios[side, threshold].append(cached / plain)
    print(f"mid-size model ({MID_SIZE['num_layers']} layers), {args.steps} steps, 49 frames "
          f"{8 * size['latent_height']}x{8 * size['latent_width']}, {args.threads} threads, end to end; time = "
          f"end-to-end time / the same side's uncached run just before, median of {args.repeats}")
    print(f"{'threshold':>10}{'ours skipped':>15}{'ours time':>12}{'diffusers skipped':>20}{'diffusers time':>17}")
    for t in args.thresholds:
        print(f"{t:>10g}{skipped['ours', t]:>15.1%}{statistics.median(ratios['ours', t]):>12.2f}"
              f"{skipped['diffusers', t]:>20.1%}{statistics.median(ratios['diffusers', t]):>17.2f}")
    print(f"uncached end to end, median: ours {statistics.median(uncached['ours']):.2f} s, diffusers "
          f"{statistics.median(uncached['diffusers']):.2f} s")


if __name__ == "__main__":
    main()
