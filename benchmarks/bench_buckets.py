"""Buckets against one fixed size: the share of source pixels kept, and the cost of a step per bucket.

    python benchmarks/bench_buckets.py [--repeats 3] [--threads N]

1. Pixels kept: a synthetic folder of typical user clips (phone portrait and landscape, 4:3, square, 4K, 720p; every
   clip 6 s at 30 fps) assigned to the buckets of configs/sft_1.5_buckets.yaml (`buckets.assignment`) against the
   one size of configs/sft_1.5.yaml (768x1360, 81 frames): the share of each clip's picture the center crop keeps,
   averaged over the folder.
2. Seconds per step against tokens: one training step (forward + backward) of a small CogVideoX1.5-shaped DiT
   (2 layers, hidden 128, 16 text tokens, so that video tokens dominate) on random latents of each bucket of
   configs/sft_1.5_buckets.yaml at 1/8 of its height and width (rounded up to multiples of 16), repeats alternating
   between the buckets; printed as s/step, tokens, and both as ratios to the largest bucket, so a step's cost can be
   read against its token count.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from benchmarks.bench_dit import network_config
from buckets.assignment import ClipHeader, assign_bucket
from buckets.spec import Bucket
from data_video import select_frames
from sgm.util import instantiate_from_config

REPO = Path(__file__).resolve().parents[1]
TEXT_TOKENS = 16
# (name, height, width, count) of the synthetic folder
FOLDER = (("phone portrait 1080x1920", 1920, 1080, 4), ("landscape 1920x1080", 1080, 1920, 4),
          ("portrait 4:3 1080x1440", 1440, 1080, 2), ("landscape 4:3 1440x1080", 1080, 1440, 2),
          ("square 1080x1080", 1080, 1080, 2), ("4K 3840x2160", 2160, 3840, 1), ("720p portrait", 1280, 720, 1))


def buckets_of(path: str) -> list[Bucket]:
    return [Bucket(*b) for b in yaml.safe_load((REPO / path).read_text())["data"]["params"]["buckets"]]


def pixels_kept() -> None:
    bucketed, fixed = buckets_of("configs/sft_1.5_buckets.yaml"), [Bucket(81, 768, 1360)]
    print("| clip | videos | bucket | kept with buckets | kept at 768x1360 |\n|---|---:|---|---:|---:|")
    totals = [0.0, 0.0, 0]
    for name, height, width, count in FOLDER:
        clip = ClipHeader(num_frames=180, fps=30.0, height=height, width=width)
        ours, one = (assign_bucket(clip, 16, b, 3.0, select_frames) for b in (bucketed, fixed))
        print(f"| {name} | {count} | {ours.bucket} | {ours.kept:.1%} | {one.kept:.1%} |")
        totals[0] += count * ours.kept
        totals[1] += count * one.kept
        totals[2] += count
    print(f"| **folder** | {totals[2]} | | **{totals[0] / totals[2]:.1%}** | **{totals[1] / totals[2]:.1%}** |")


def scaled(bucket: Bucket) -> Bucket:
    """The bucket at 1/8 of its height and width, rounded up to multiples of 16."""
    return Bucket(bucket.frames, -(-bucket.height // 128) * 16, -(-bucket.width // 128) * 16)


def step_seconds(repeats: int) -> None:
    buckets = [scaled(b) for b in buckets_of("configs/sft_1.5_buckets.yaml")]
    table = max(max(b.height, b.width) for b in buckets) // 8  # latent rows and columns of the rotary table
    network = instantiate_from_config(network_config(2, 128, 2, TEXT_TOKENS, 32, 21, table, table, shape="1.5"))
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(1, TEXT_TOKENS, 32, generator=generator)  # (b, n_text, text_hidden)
    inputs = {}
    for bucket in buckets:
        latents = (bucket.frames - 1) // 4 + 1
        latents += latents % 2  # padded in front to even (model_family.py)
        inputs[bucket] = torch.randn(1, latents, 16, bucket.height // 8, bucket.width // 8, generator=generator)
    times: dict[Bucket, list[float]] = {bucket: [] for bucket in buckets}
    for _ in range(repeats + 1):  # the first round warms up
        for bucket, x in inputs.items():  # alternating: load from other processes hits every bucket alike
            start = time.perf_counter()
            out = network(x, torch.tensor([500]), context)  # (b, t, c, h, w)
            out.square().mean().backward()
            times[bucket].append(time.perf_counter() - start)
            network.zero_grad(set_to_none=True)
    tokens = {b: TEXT_TOKENS + x.shape[1] // 2 * (x.shape[3] // 2) * (x.shape[4] // 2) for b, x in inputs.items()}
    largest = max(buckets, key=lambda b: tokens[b])
    peer = statistics.median(times[largest][1:])
    print("| bucket (1/8 size) | tokens | s/step (median) | tokens / largest | s/step / largest |\n"
          "|---|---:|---:|---:|---:|")
    for bucket in buckets:
        seconds = statistics.median(times[bucket][1:])
        print(f"| {bucket} | {tokens[bucket]} | {seconds:.4f} | {tokens[bucket] / tokens[largest]:.2f} | "
              f"{seconds / peer:.2f} |")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    pixels_kept()
    print()
    step_seconds(options.repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
