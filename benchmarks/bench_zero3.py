"""ZeRO-3 vs ZeRO-2 memory of a full fine-tuning step, two CPU processes (torchrun, gloo), per process.

Both variants train the same mid-size model (the tiny config with a wider, deeper DiT) on the same one-video
dataset, fp32, torch AdamW: ZeRO-2 with configs/tiny/sft_tiny.yaml, ZeRO-3 with optimizer and parameter offload
with configs/tiny/sft_tiny_zero3.yaml, and the same without offload (on a CPU machine offloading moves nothing
to another memory; it shows what DeepSpeed's offload buffers cost). Per process it reports
- the peak RSS of one training step: the kernel's high-water mark (VmHWM) is reset to the current RSS right before
  the last step (`/proc/self/clear_refs`) and read after it (parameters, gradients, optimizer states and
  activations resident during the step);
- the peak RSS of the whole run (VmHWM before the reset and after the run; under ZeRO-3 this includes building and loading the whole engine on
  every rank before `deepspeed.initialize` partitions it, see training/zero3.py).
The allocator returns freed tensors to the system (`MALLOC_MMAP_THRESHOLD_`, the same for both variants), so the
memory ZeRO-3 frees when it partitions the loaded weights does not stay counted.

    python benchmarks/bench_zero3.py [--hidden 1024] [--layers 8] [--steps 3]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SFT = {"zero2": REPO / "configs/tiny/sft_tiny.yaml", "zero3": REPO / "configs/tiny/sft_tiny_zero3.yaml",
       "zero3-no-offload": REPO / "configs/tiny/sft_tiny_zero3.yaml"}
NO_OFFLOAD = {"offload_optimizer": None, "offload_param": None}
MMAP_THRESHOLD = str(128 * 1024)


def high_water_mark_mib() -> float:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_high_water_mark() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def mid_config(work: Path, hidden: int, layers: int) -> Path:
    from omegaconf import OmegaConf

    config = OmegaConf.load(REPO / "configs/tiny/cogvideox_tiny.yaml")
    params = config.model.network_config.params
    params.hidden_size, params.num_layers, params.num_attention_heads, params.time_embed_dim = hidden, layers, hidden // 64, 128
    path = work / "mid.yaml"
    OmegaConf.save(config, path)
    return path


def run_rank(variant: str, work: Path, steps: int) -> None:
    """torchrun worker: train `steps` full fine-tuning steps; write this rank's memory figures."""
    import torch
    from omegaconf import OmegaConf
    from sat.training import deepspeed_training

    import train_video
    from tiny.weights import weight_paths

    train_step = deepspeed_training.train_step
    measured = {}

    def measured_train_step(*args, **kwargs):
        last = len(measured.setdefault("steps", [])) == steps - 1
        if last:  # the reset also resets ru_maxrss: keep the peak so far
            measured["before_last"] = high_water_mark_mib()
            reset_high_water_mark()
        result = train_step(*args, **kwargs)
        measured["steps"].append(high_water_mark_mib())
        return result

    deepspeed_training.train_step = measured_train_step
    override = work / f"{variant}-run.yaml"
    OmegaConf.save(OmegaConf.create({
        "args": {"load": str(work / "weights/transformer"), "train_data": [str(work / "data")], "valid_data": None,
                 "save": None, "train_iters": steps, "log_interval": steps, "experiment_name": variant},
        "deepspeed": {"optimizer": {"params": {"lr": 1e-4}},
                      "zero_optimization": NO_OFFLOAD if variant == "zero3-no-offload" else {}},
        "data": {"params": {"max_num_frames": 5}},
        "model": weight_paths(work / "weights"),
    }), override)
    train_video.main(["--base", str(work / "mid.yaml"), str(SFT[variant]), str(override), "--seed", "1"])
    rank = torch.distributed.get_rank()
    step_peak = measured["steps"][-1]
    result = {"step_peak_mib": step_peak, "run_peak_mib": max(measured["before_last"], high_water_mark_mib())}
    (work / f"{variant}-rank{rank}.json").write_text(json.dumps(result))


def launch(variant: str, work: Path, steps: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
               "--variant", variant, "--work", str(work), "--steps", str(steps)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return [json.loads((work / f"{variant}-rank{rank}.json").read_text()) for rank in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="training steps; the last one is measured")
    parser.add_argument("--variant", choices=sorted(SFT), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_rank(args.variant, Path(args.work), args.steps)
        return

    from tiny.videos import write_video
    from tiny.weights import make_tiny_weights

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_tiny_weights(str(mid_config(work, args.hidden, args.layers)), str(work / "weights"), seed=0)
        write_video(work / "data", "wave", "colourful waves drifting to the left")
        results = {variant: launch(variant, work, args.steps) for variant in SFT}
    print(f"full fine-tune, DiT hidden {args.hidden}, {args.layers} layers, fp32, 2 processes (gloo), "
          f"step {args.steps} of {args.steps} measured")
    for rank in (0, 1):
        zero2 = results["zero2"][rank]
        print(f"rank {rank}: ZeRO-2 step peak RSS {zero2['step_peak_mib']:.0f} MiB, run peak {zero2['run_peak_mib']:.0f} MiB")
        for variant in ("zero3", "zero3-no-offload"):
            zero3 = results[variant][rank]
            print(f"rank {rank}: {variant} step peak RSS {zero3['step_peak_mib']:.0f} MiB, ratio to ZeRO-2 "
                  f"{zero3['step_peak_mib'] / zero2['step_peak_mib']:.2f} | run peak {zero3['run_peak_mib']:.0f} MiB, "
                  f"ratio {zero3['run_peak_mib'] / zero2['run_peak_mib']:.2f}")

if __name__ == "__main__":
    main()
