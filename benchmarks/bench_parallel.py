"""Multi-process sampling of one video against one process, on the CPU with gloo, one thread per process.

    python benchmarks/bench_parallel.py [--layers 4] [--hidden 512] [--heads 8] [--frames 7] [--height 24] [--width 36]

One guided sampling step of a mid-size 5B-shaped DiT (3D rotary; the DiT call of batch 2 = [unconditional;
conditional]) is timed on 1 process, on 2 processes with guidance parallel (each runs one branch, batch 1, then the
halves are all-gathered) and on 2 processes with sequence parallel (Ulysses: each holds half of the tokens). It
prints seconds per step and the ratios 2 ranks / 1 rank (ideal 0.5). Every process runs one thread, so two processes
use two cores where one uses one: the ratio is the parallel efficiency, not a speed-up from more threads.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_dit import network_config  # noqa: E402
from parallel.cfg import cfg_parallel_denoiser  # noqa: E402
from parallel.layout import ParallelLayout, ProcessGroups  # noqa: E402
from parallel.ulysses import enable_sequence_parallel  # noqa: E402
from sgm.util import instantiate_from_config  # noqa: E402

TEXT_LENGTH, TEXT_HIDDEN = 226, 64


def build_dit(args) -> torch.nn.Module:
    config = network_config(args.layers, args.hidden, args.heads, TEXT_LENGTH, TEXT_HIDDEN, args.frames, args.height, args.width, "5b")
    torch.manual_seed(0)
    return instantiate_from_config(config).eval()


def step_inputs(args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, args.frames, 16, args.height, args.width, generator=generator)  # [uc; c]
    context = torch.randn(2, TEXT_LENGTH, TEXT_HIDDEN, generator=generator)
    return x, torch.tensor([500, 500]), {"crossattn": context}


def _worker(rank: int, world: int, port: int, mode: str, args, results):
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    dit = build_dit(args)
    call = lambda x, t, cond, idx: dit(x, idx, cond["crossattn"])  # noqa: E731  (the denoiser's signature)
    if mode == "sequence":
        layout = ParallelLayout(world, rank, sequence=world)
        enable_sequence_parallel(dit, ProcessGroups(layout).sequence, world, rank)
    elif mode == "cfg":
        layout = ParallelLayout(world, rank, cfg=world)
        call = cfg_parallel_denoiser(call, ProcessGroups(layout).cfg, rank, world)
    x, t, cond = step_inputs(args)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first call warms up
            if world > 1:
                dist.barrier()
            start = time.perf_counter()
            out = call(x, t.float(), cond, idx=t)
            times.append(time.perf_counter() - start)
    if rank == 0:
        results[mode] = (statistics.median(times[1:]), out)
    if world > 1:
        dist.destroy_process_group()


def run(mode: str, world: int, args, results) -> None:
    port = 29000 + torch.randint(0, 2000, ()).item()
    mp.start_processes(_worker, args=(world, port, mode, args, results), nprocs=world, join=True, start_method="spawn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--frames", type=int, default=7, help="latent frames")
    parser.add_argument("--height", type=int, default=24, help="latent height")
    parser.add_argument("--width", type=int, default=36, help="latent width")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tokens = TEXT_LENGTH + args.frames * (args.height // 2) * (args.width // 2)
    print(f"5B-shaped DiT: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, {tokens} tokens per call; "
          f"one guided step = one call of batch 2; {args.repeats} timed steps (median), 1 thread per process", flush=True)
    results = mp.Manager().dict()
    for mode, world in (("one", 1), ("cfg", 2), ("sequence", 2)):
        run(mode, world, args, results)
        print(f"  {mode:>8}: {world} process(es), {results[mode][0]:.3f} s/step", flush=True)
    one_time, one_out = results["one"]
    print("| layout | s/step | ratio to 1 rank (ideal 0.5) | max abs diff to 1 rank |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| 1 rank | {one_time:.3f} | 1.000 | 0 |")
    for mode, name in (("cfg", "2 ranks, --cfg-parallel 2"), ("sequence", "2 ranks, --sequence-parallel 2")):
        seconds, out = results[mode]
        print(f"| {name} | {seconds:.3f} | {seconds / one_time:.3f} | {float((out - one_out).abs().max()):.1e} |")


if __name__ == "__main__":
    main()
