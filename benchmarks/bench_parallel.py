"""Multi-process sampling of one video against one process, on the CPU with gloo, one thread per process.

    python benchmarks/bench_parallel.py [--shape 1.5|5b] [--layers 4] [--hidden 512] [--heads 8] [--frames 12]
                                        [--height 24] [--width 36]

One guided sampling step of a mid-size DiT (``--shape 1.5``: CogVideoX1.5-shaped, temporal patches of 2 and rotary
tables per input, an even ``--frames``; ``5b``: CogVideoX-5B-shaped; the DiT call of batch 2 = [unconditional;
conditional]) is timed on 1 process, on 2 processes with guidance parallel (each runs one branch, batch 1, then the
halves are all-gathered) and on 2 processes with sequence parallel (Ulysses: each holds half of the tokens). It
prints seconds per step and the ratios 2 ranks / 1 rank (ideal 0.5). Every process runs one thread, so two processes
use two cores where one uses one: the ratio is the parallel efficiency, not a speed-up from more threads.

Then the VAE decode of one latent (the tiny VAE's layout, ``--vae-ch`` wide) with ``cp_size`` 2 (each of 2 processes
decodes half of the frames, then the video is all-gathered) against one process's one-shot decode: seconds and peak
RSS per process (the peak during the decode, above the process's RSS before it).
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]

from benchmarks.bench_dit import network_config
from parallel.cfg import cfg_parallel_denoiser
from parallel.layout import ParallelLayout, ProcessGroups
from sgm.util import instantiate_from_config

TEXT_LENGTHS = {"1.5": 224, "5b": 226}  # T5 tokens per prompt: CogVideoX1.5 takes 224, CogVideoX 1.0 226
TEXT_HIDDEN = 64


def build_dit(args) -> torch.nn.Module:
    config = network_config(args.layers, args.hidden, args.heads, TEXT_LENGTHS[args.shape], TEXT_HIDDEN, args.frames,
                            args.height, args.width, args.shape)
    torch.manual_seed(0)
    return instantiate_from_config(config).eval()


def step_inputs(args) -> tuple[torch.Tensor, torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, args.frames, 16, args.height, args.width, generator=generator)  # [uc; c]
    context = torch.randn(2, TEXT_LENGTHS[args.shape], TEXT_HIDDEN, generator=generator)
    return x, torch.tensor([500, 500]), {"crossattn": context}


def setup(rank: int, world: int, port: int, device: str) -> torch.device:
    """One thread per process; gloo on the CPU, nccl with one GPU per process."""
    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(rank)
    if world > 1:
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    return torch.device(f"cuda:{rank}" if device == "cuda" else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(rank: int, world: int, port: int, mode: str, args, results):
    device = setup(rank, world, port, args.device)
    dit = build_dit(args).to(device)
    call = lambda x, t, cond, idx: dit(x, idx, cond["crossattn"])  # noqa: E731  (the denoiser's signature)
    if mode == "sequence":
        from parallel.ulysses import enable_sequence_parallel  # imports sat (2 s), which the decode processes skip

        layout = ParallelLayout(world, rank, sequence=world)
        enable_sequence_parallel(dit, ProcessGroups(layout).sequence, world, rank)
    elif mode == "cfg":
        layout = ParallelLayout(world, rank, cfg=world)
        call = cfg_parallel_denoiser(call, ProcessGroups(layout).cfg, rank, world)
    x, t, cond = step_inputs(args)
    x, t, cond = x.to(device), t.to(device), {"crossattn": cond["crossattn"].to(device)}
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first call warms up
            if world > 1:
                dist.barrier()
            synchronize(device)
            start = time.perf_counter()
            out = call(x, t.float(), cond, idx=t)
            synchronize(device)
            times.append(time.perf_counter() - start)
    if rank == 0:
        results[mode] = (statistics.median(times[1:]), out.cpu())
    if world > 1:
        dist.destroy_process_group()


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _decode_worker(rank: int, world: int, port: int, mode: str, args, results):
    device = setup(rank, world, port, args.device)
    config = OmegaConf.to_container(OmegaConf.load(REPO / "configs/tiny/cogvideox_tiny.yaml").model.first_stage_config)
    config["params"].update(ckpt_path=None, cp_size=world)
    for part in ("encoder_config", "decoder_config"):
        config["params"][part]["params"]["ch"] = args.vae_ch
    torch.manual_seed(0)
    vae = instantiate_from_config(config).to(device)
    latent = torch.randn(1, 16, args.vae_frames, args.vae_height, args.vae_width, generator=torch.Generator().manual_seed(2))
    latent = latent.to(device)
    before = rss_mib() if device.type == "cpu" else torch.cuda.memory_allocated(device) / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if world > 1:
        dist.barrier()
    synchronize(device)
    start = time.perf_counter()
    video = vae.decode(latent)
    synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    else:
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - before
    results[f"{mode}{rank}"] = (seconds, peak, video.cpu() if rank == 0 else None)
    if world > 1:
        dist.destroy_process_group()


def run(mode: str, world: int, args, results, worker=_worker) -> None:
    port = 29000 + torch.randint(0, 2000, ()).item()
    mp.start_processes(worker, args=(world, port, mode, args, results), nprocs=world, join=True, start_method="spawn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("1.5", "5b"), default="1.5", help="model family of the DiT")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--frames", type=int, default=12, help="latent frames (even for --shape 1.5)")
    parser.add_argument("--height", type=int, default=24, help="latent height")
    parser.add_argument("--width", type=int, default=36, help="latent width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: one GPU per process, nccl")
    parser.add_argument("--json", default=None, help="also write the ratios here (benchmarks/gpu_check.py reads them)")
    parser.add_argument("--vae-ch", type=int, default=64, help="VAE base width (the released VAE: 128)")
    parser.add_argument("--vae-frames", type=int, default=9, help="latent frames to decode")
    parser.add_argument("--vae-height", type=int, default=16)
    parser.add_argument("--vae-width", type=int, default=24)
    args = parser.parse_args()
    temporal_patch = 2 if args.shape == "1.5" else 1
    if args.frames % temporal_patch:
        parser.error(f"--shape 1.5 takes an even --frames (temporal patches of 2), got {args.frames}")
    tokens = TEXT_LENGTHS[args.shape] + args.frames // temporal_patch * (args.height // 2) * (args.width // 2)
    print(f"{args.shape}-shaped DiT: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, {tokens} tokens per call; "
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

    print(f"VAE decode of (1, 16, {args.vae_frames}, {args.vae_height}, {args.vae_width}), width {args.vae_ch}", flush=True)
    run("decode_one", 1, args, results, _decode_worker)
    run("decode_cp", 2, args, results, _decode_worker)
    one_seconds, one_peak, one_video = results["decode_one0"]
    print("| decode | s | ratio | peak RSS above start, MiB | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| cp_size 1, 1 process | {one_seconds:.2f} | 1.000 | {one_peak:.0f} | 1.000 |")
    for rank in range(2):
        seconds, peak, _ = results[f"decode_cp{rank}"]
        print(f"| cp_size 2, rank {rank} | {seconds:.2f} | {seconds / one_seconds:.3f} | {peak:.0f} | {peak / one_peak:.3f} |")
    cp_video = results["decode_cp0"][2]
    print(f"cp_size 2 video vs one process (one-shot decode; the tiny decoder keeps per-rank norms): max abs diff "
          f"{float((cp_video - one_video).abs().max()):.1e}")
    if args.json:
        ratios = {f"{mode} s/step ratio": results[mode][0] / one_time for mode in ("cfg", "sequence")}
        for rank in range(2):
            seconds, peak, _ = results[f"decode_cp{rank}"]
            ratios[f"cp2 rank {rank} decode time ratio"] = seconds / one_seconds
            ratios[f"cp2 rank {rank} decode peak memory ratio"] = peak / one_peak
        Path(args.json).write_text(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
