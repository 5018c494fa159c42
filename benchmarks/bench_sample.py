"""Sampling speed and memory: our engine vs diffusers' CogVideoXPipeline on the same converted weights.

    python benchmarks/bench_sample.py [--steps 10] [--repeats 2]

Writes a mid-size random model set (DiT hidden 256, 4 layers, 13 latent frames of 16x24 -> 49 frames of 128x192,
the tiny VAE and T5) once, then runs each side in its own fresh process, alternating, so peak RSS is per side.
Both use DPM-Solver++(2M) SDE with dynamic CFG (the 2B default) and decode the 49 frames in the same chunks.
Prints seconds per denoising step, end-to-end seconds (T5 encode + sampling + decode) and peak RSS, and the
ratios ours / diffusers (targets: time <= 1, memory <= 1).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPT = "a red fox trots across a snowy meadow at dawn"
NUM_LATENT_FRAMES = 13
MID_SIZE = {"hidden_size": 256, "num_layers": 4, "num_attention_heads": 4, "latent_height": 16, "latent_width": 24}
THREADS = 2


def write_model_set(root: str, steps: int, size: dict = MID_SIZE) -> str:
    """The model's weights (`size`: network sizes, the mid-size model's by default) in folder `root` (new), its
    config beside that folder; returns the config's path."""
    from omegaconf import OmegaConf

    from tiny.weights import make_tiny_weights

    config = OmegaConf.load(os.path.join(ROOT, "configs/tiny/cogvideox_tiny.yaml"))
    config.model.network_config.params.update(size)
    config.model.first_stage_config.params.ckpt_path = os.path.join(root, "vae", "3d-vae.pt")
    config.model.conditioner_config.params.emb_models[0].params.model_dir = os.path.join(root, "t5")
    config.model.sampler_config.params.num_steps = steps
    config.model.sampler_config.params.guider_config.params.num_steps = steps
    config.model.sampler_config.params.verbose = False
    config_path = os.path.join(os.path.dirname(root), "model.yaml")  # not inside the weights folder it names
    OmegaConf.save(config, config_path)
    make_tiny_weights(config_path, root, seed=0)
    return config_path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(root: str, config_path: str, steps: int) -> dict:
    from omegaconf import OmegaConf

    from diffusion_video import SATVideoDiffusionEngine
    from checkpoints.sat_checkpoint import load_sat_checkpoint
    from video_sampling import SamplingPlan, encode_prompt, generate_video

    args = argparse.Namespace(model_config=OmegaConf.load(config_path).model, fp16=False, bf16=False)
    engine = SATVideoDiffusionEngine(args)
    load_sat_checkpoint(engine, os.path.join(root, "transformer"))
    engine.eval()
    plan = SamplingPlan(NUM_LATENT_FRAMES, 16, fps=8, samples_per_prompt=1, seed=0, output_dir="unused")
    step_times = []
    sample = engine.sample

    def timed_sample(*args, **kwargs):
        start = time.perf_counter()
        out = sample(*args, **kwargs)
        step_times.append((time.perf_counter() - start) / steps)
        return out

    engine.sample = timed_sample
    start = time.perf_counter()
    cond, uc = encode_prompt(engine, PROMPT)
    video = generate_video(engine, cond, uc, plan, seed=1)
    total = time.perf_counter() - start
    assert video.shape[0] == 49
    return {"step_s": step_times[0], "total_s": total, "peak_rss_mib": peak_rss_mib()}


def run_diffusers(root: str, config_path: str, steps: int) -> dict:
    import torch
    from omegaconf import OmegaConf

    from benchmarks.diffusers_peer import diffusers_pipeline

    model_config = OmegaConf.load(config_path).model
    pipe = diffusers_pipeline(Path(root, "transformer"), Path(root, "vae", "3d-vae.pt"), model_config,
                              torch.device("cpu"), torch.float32, t5_dir=Path(root, "t5"))
    stamps = []

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        stamps.append(time.perf_counter())
        return callback_kwargs

    height, width = 8 * MID_SIZE["latent_height"], 8 * MID_SIZE["latent_width"]
    start = time.perf_counter()
    with torch.no_grad():
        frames = pipe(
            prompt=PROMPT, height=height, width=width, num_frames=49, num_inference_steps=steps, guidance_scale=6,
            use_dynamic_cfg=True, generator=torch.Generator().manual_seed(1), output_type="pt",
            callback_on_step_end=on_step_end,
        ).frames[0]
    total = time.perf_counter() - start
    assert frames.shape[0] == 49
    return {"step_s": (stamps[-1] - stamps[0]) / (len(stamps) - 1), "total_s": total, "peak_rss_mib": peak_rss_mib()}


def run_case(case: str, root: str, config_path: str, steps: int) -> None:
    import torch

    torch.set_num_threads(THREADS)
    result = {"ours": run_ours, "diffusers": run_diffusers}[case](root, config_path, steps)
    print("RESULT " + json.dumps(result))


def measure(case: str, root: str, config_path: str, steps: int) -> dict:
    command = [sys.executable, __file__, "--case", case, "--root", root, "--config", config_path, "--steps", str(steps)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--case", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:  # diffusers' step time is read between its step-end callbacks: it needs two
        parser.error(f"--steps is {args.steps}; expected an integer >= 2")
    if args.case:
        run_case(args.case, args.root, args.config, args.steps)
        return

    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.join(scratch, "weights")
        config_path = write_model_set(root, args.steps)
        runs = {"ours": [], "diffusers": []}
        for _ in range(args.repeats):
            for case in ("ours", "diffusers"):
                runs[case].append(measure(case, root, config_path, args.steps))
    summary = {case: {key: statistics.median(r[key] for r in results) for key in results[0]} for case, results in runs.items()}
    print(f"mid-size model, {args.steps} steps, {NUM_LATENT_FRAMES} latent frames -> 49 frames "
          f"{8 * MID_SIZE['latent_height']}x{8 * MID_SIZE['latent_width']}, {THREADS} threads, median of {args.repeats}")
    print(f"{'':12}{'s/step':>10}{'end-to-end s':>15}{'peak RSS MiB':>15}")
    for case, values in summary.items():
        print(f"{case:12}{values['step_s']:>10.3f}{values['total_s']:>15.2f}{values['peak_rss_mib']:>15.0f}")
    ours, theirs = summary["ours"], summary["diffusers"]
    print(f"ratio ours/diffusers: step time {ours['step_s'] / theirs['step_s']:.2f}, "
          f"end-to-end {ours['total_s'] / theirs['total_s']:.2f}, peak RSS {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
