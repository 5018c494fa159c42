"""Fine-tuning step benchmark (CPU): from the videos vs from a latent cache, LoRA and full fine-tune, mid-size config.

Each variant runs `train_video.main` in a fresh subprocess (so peak RSS is its own) on a synthetic dataset with
random weights made by tools/make_tiny_weights.py; the cached variants train from the cache `tools/precompute.py`
made of that dataset (timed, in its own subprocess: items per second, model loading included). Steps after the
first `--warmup` are timed (SAT's `train_step`), and within them the time spent in the VAE encode
(`encode_first_stage`) and in the T5 encode (`FrozenT5Embedder.forward`) is reported as a share of the step. The
per-step `gc.collect()` of the reference is off (see `--gc-every-step`). Prints, per LoRA / full, s/step and peak
RSS of each source and their ratio cached / uncached.

    python benchmarks/bench_train.py [--steps 8] [--warmup 2] [--hidden 256] [--layers 4] [--frames 9] [--videos 4]
                                    [--kinds lora full]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mid_config(out: Path, hidden: int, layers: int, lora: bool) -> Path:
    """The tiny config (or its LoRA variant) with a wider, deeper DiT, 128x192 video and a VAE of width 64."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(REPO / ("configs/tiny/cogvideox_tiny_lora.yaml" if lora else "configs/tiny/cogvideox_tiny.yaml"))
    params = config.model.network_config.params
    params.hidden_size, params.num_layers, params.num_attention_heads, params.time_embed_dim = hidden, layers, hidden // 64, 128
    params.latent_height, params.latent_width = 16, 24  # 128x192 video
    for part in ("encoder_config", "decoder_config"):
        config.model.first_stage_config.params[part].params.ch = 64
    path = out / ("mid_lora.yaml" if lora else "mid.yaml")
    OmegaConf.save(config, path)
    return path


def run_precompute(work: Path, frames: int, videos: int) -> dict:
    """In this process: precompute the dataset's cache; returns items/s and peak RSS."""
    from latent_cache.from_configs import precompute_from_configs

    start = time.perf_counter()
    precompute_from_configs([str(work / "mid_lora.yaml"), str(REPO / "configs/tiny/sft_tiny.yaml"),
                             str(paths_config(work, frames))], str(work / "cache"), [str(work / "data")], overwrite=False)
    seconds = time.perf_counter() - start
    return {"items_per_s": videos / seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def paths_config(work: Path, frames: int) -> Path:
    """The YAML pointing the mid-size configs at the weights and setting the video size and frame count."""
    from omegaconf import OmegaConf

    from tiny.weights import weight_paths

    path = work / "paths.yaml"
    OmegaConf.save(OmegaConf.create({
        "data": {"params": {"max_num_frames": frames, "video_size": [128, 192]}},
        "model": weight_paths(work / "weights"),
    }), path)
    return path


def run_variant(variant: str, source: str, work: Path, steps: int, warmup: int, frames: int) -> dict:
    """In this process: train `steps` steps, return timings (called in a subprocess per variant)."""
    from omegaconf import OmegaConf
    from sat.training import deepspeed_training

    import train_video
    from diffusion_video import SATVideoDiffusionEngine
    from sgm.modules.encoders.modules import FrozenT5Embedder

    totals = {"vae": 0.0, "t5": 0.0}
    step_times, parts = [], []

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - start
        return wrapper

    SATVideoDiffusionEngine.encode_first_stage = timed(SATVideoDiffusionEngine.encode_first_stage, "vae")
    FrozenT5Embedder.forward = timed(FrozenT5Embedder.forward, "t5")
    train_step = deepspeed_training.train_step

    def timed_train_step(*args, **kwargs):
        before, start = dict(totals), time.perf_counter()
        result = train_step(*args, **kwargs)
        step_times.append(time.perf_counter() - start)
        parts.append({key: totals[key] - before[key] for key in totals})
        return result

    deepspeed_training.train_step = timed_train_step
    override = work / f"{variant}-{source}-run.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(work / "weights/transformer"), "train_data": [str(work / source)], "valid_data": None,
                 "save": None, "train_iters": steps, "log_interval": steps, "experiment_name": variant},
    }), override)
    config = work / ("mid_lora.yaml" if variant == "lora" else "mid.yaml")
    train_video.main(["--base", str(config), str(REPO / "configs/tiny/sft_tiny.yaml"), str(paths_config(work, frames)),
                      str(override), "--seed", "1"])
    timed_steps, timed_parts = step_times[warmup:], parts[warmup:]
    step = sum(timed_steps) / len(timed_steps)
    return {
        "variant": variant,
        "s_per_step": step,
        "vae_share": sum(p["vae"] for p in timed_parts) / sum(timed_steps),
        "t5_share": sum(p["t5"] for p in timed_parts) / sum(timed_steps),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def prepare(work: Path, hidden: int, layers: int, videos: int) -> None:
    from tiny.videos import write_dataset
    from tiny.weights import make_tiny_weights

    mid_config(work, hidden, layers, lora=True)
    make_tiny_weights(str(mid_config(work, hidden, layers, lora=False)), str(work / "weights"), seed=0)
    write_dataset(work / "data", videos)


def subprocess_result(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stderr[-4000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=9, help="video frames per sample (4k+1)")
    parser.add_argument("--videos", type=int, default=4, help="videos in the synthetic dataset")
    parser.add_argument("--kinds", nargs="+", choices=["lora", "full"], default=["lora", "full"],
                        help="fine-tuning kinds to measure")
    parser.add_argument("--variant", choices=["lora", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=["data", "cache"], help=argparse.SUPPRESS)
    parser.add_argument("--precompute", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.precompute:
        print("RESULT " + json.dumps(run_precompute(Path(args.work), args.frames, args.videos)))
        return
    if args.variant:
        result = run_variant(args.variant, args.source, Path(args.work), args.steps, args.warmup, args.frames)
        print("RESULT " + json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, args.hidden, args.layers, args.videos)
        print(f"mid-size config: DiT hidden {args.hidden}, {args.layers} layers; VAE width 64; video {args.frames}x128x192;"
              f" {args.videos} videos; {args.steps} steps, first {args.warmup} not timed; {os.cpu_count()} cores")
        common = ["--work", str(work), "--frames", str(args.frames), "--videos", str(args.videos)]
        made = subprocess_result(["--precompute", *common])
        print(f"precompute: {made['items_per_s']:.2f} items/s (T5 + VAE passes, model loading included) | "
              f"peak RSS {made['peak_rss_mib']:.0f} MiB")
        for variant in args.kinds:
            results = {source: subprocess_result(["--variant", variant, "--source", source, "--steps", str(args.steps),
                                                  "--warmup", str(args.warmup), *common])
                       for source in ("data", "cache")}
            for source, result in results.items():
                print(f"{variant:>4} from {source:>5}: {result['s_per_step']:.3f} s/step | VAE encode "
                      f"{100 * result['vae_share']:.0f}% | T5 encode {100 * result['t5_share']:.0f}% | "
                      f"peak RSS {result['peak_rss_mib']:.0f} MiB")
            data, cache = results["data"], results["cache"]
            print(f"{variant:>4} cached / uncached: s/step {cache['s_per_step'] / data['s_per_step']:.3f} | "
                  f"peak RSS {cache['peak_rss_mib'] / data['peak_rss_mib']:.3f}")


if __name__ == "__main__":
    main()
