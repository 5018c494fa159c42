"""GPU check: full-size speed and memory on one CUDA device, side by side with diffusers, and the GPU-only paths.

    python benchmarks/gpu_check.py [--parts sample,lora,full,5b] [--out gpu_check.json] [--budget lora=150]
    python benchmarks/gpu_check.py --smoke      # every part on the CPU at tiny sizes (what the test runs)

Random weights of the full sizes in the released formats are drawn on the GPU (nothing is downloaded). Parts:
  build   compile sat.ops.FusedEmaAdam's CUDA extension (once per TORCH_EXTENSIONS_DIR; outside the 8 minutes)
  sample  2B, fp16, 49 frames at 480x720, the released sampler (DPM++ 2M SDE, dynamic CFG): s/step over a few
          steps extrapolated to 50, the VAE decode, peak memory overall and during the decode (T5 off the GPU
          after encoding), and the same for diffusers' CogVideoXPipeline on the same converted weights and prompt
          embedding; a T5-XXL of the real shape (random weights) is timed on its own; then both sides sample once
          more with their first-block cache at threshold 0.1 (no decode): time against their uncached sampling and
          the share of DiT blocks skipped.
  lora    2B LoRA fine-tune, fp16, ZeRO-2, sat.ops.FusedEmaAdam, batch 1, activation checkpointing: s/step, peak
          memory; the checkpoint (EMA included) saved, loaded back and sampled from; then s/step and peak memory
          training from a latent cache of the same clip (tools/precompute.py).
  full    2B full fine-tune: the same figures (optimizer states not saved: 20 GB of disk writes).
  5b      5B, bf16: one sampling step and one LoRA step.
  1.5     CogVideoX1.5-5B, bf16: one sampling step at 22 x 96 x 170 latents (81 frames at 768x1360, 45,104 tokens)
          side by side with diffusers' CogVideoXPipeline (no decode), and one LoRA step on an 81-frame clip.
  parallel  2 GPUs: benchmarks/bench_parallel.py with nccl (one guided step of an 8-layer full-width 1.5-shaped DiT,
          --cfg-parallel 2 and --sequence-parallel 2 against one GPU; the VAE decode with cp_size 2 against 1);
          on one GPU a row says it was skipped.
Each part runs in its own process under a time budget (a part that fails or overruns is reported in the table
and the next part runs); the defaults fit in 8 minutes of an H100-class GPU. Prints one table (what, ours,
diffusers, ratio) and writes it as JSON (--out). The smoke run takes fp32/bf16 instead of fp16, torch AdamW
instead of FusedEmaAdam and gloo instead of nccl (train_video.py's CPU fallbacks).
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from benchmarks.gpu_check_table import RowWriter, format_table, read_rows, write_json

PARTS = ("build", "sample", "lora", "full", "5b", "1.5", "parallel")
# Budgets split by estimate (no GPU run has set them yet; a part stopped at its budget keeps the rows it wrote);
# "build" compiles FusedEmaAdam's CUDA extension once (cached in TORCH_EXTENSIONS_DIR).
BUDGETS_S = {"build": 180, "sample": 160, "lora": 110, "full": 120, "5b": 120, "1.5": 150, "parallel": 120}
SMOKE_BUDGETS_S = {part: 300 for part in PARTS}
FIRST_BLOCK_CACHE = 0.1  # the sample part's first-block cache threshold (dit/first_block_cache.py)


# ---------------------------------------------------------------- the parts (run in a child process)

def made_weights(rows: RowWriter, model: str, size, dtype: str, work: Path) -> Path:
    """The model's random weights (made by the first part that needs them), timed when made here."""
    from benchmarks.gpu_check_setup import Meter, ensure_weights, model_config

    weights = work / f"weights-{model}"
    if (weights / "complete").is_file():
        return weights
    timing = {}
    with Meter(size.device).timed(timing, "make"):
        ensure_weights(model_config(model, False, size, weights), weights, size, dtype)
    rows.add(f"{model.upper()}: random weights drawn on the device and written in the released formats",
             timing["make"], "s", note="setup, not a benchmark")
    return weights


def part_sample(rows: RowWriter, size, work: Path) -> None:
    from benchmarks.gpu_check_sample import measure_t5, run_sampling
    from benchmarks.gpu_check_setup import Meter, model_config

    weights = made_weights(rows, "2b", size, size.dtype_2b, work)
    measure_t5(size, Meter(size.device), rows, size.dtype_2b)
    run_sampling(model_config("2b", False, size, weights), weights, size, rows, size.dtype_2b, with_diffusers=True,
                 decode=True, what=f"2B sampling, {size.dtype_2b}", first_block_cache=FIRST_BLOCK_CACHE)


def part_build(rows: RowWriter, smoke: bool) -> None:
    """SAT's fused EMA Adam is a CUDA extension compiled on first use (cached in TORCH_EXTENSIONS_DIR): built here,
    under its own budget, so the training parts time training. On the CPU there is nothing to build."""
    if smoke:
        rows.add("sat.ops.FusedEmaAdam: build/load of the CUDA extension", None, "s", note="GPU only")
        return
    from sat.ops.ops_builder.fused_ema_adam import FusedEmaAdamBuilder

    start = time.perf_counter()
    FusedEmaAdamBuilder().jit_load()
    rows.add("sat.ops.FusedEmaAdam: build/load of the CUDA extension", time.perf_counter() - start, "s",
             note="setup, once; cached in TORCH_EXTENSIONS_DIR")


def part_train(rows: RowWriter, size, work: Path, lora: bool) -> None:
    """From the video, then (same process, the first engine freed) from a latent cache of the same clip."""
    from benchmarks.gpu_check_sample import free
    from benchmarks.gpu_check_setup import Meter, model_config, write_training_video
    from benchmarks.gpu_check_train import (T5_STANDIN_NOTE, check_load_back, precompute_cache, report_training, train,
                                            write_run_config)

    meter = Meter(size.device)
    weights = made_weights(rows, "2b", size, size.dtype_2b, work)
    data = write_training_video(work / "data", size)
    name = "2b-lora" if lora else "2b-full"
    what = f"2B {'LoRA' if lora else 'full'} fine-tune, {size.dtype_2b}, ZeRO-2"
    config = model_config("2b", lora, size, weights)
    bases = write_run_config(work, name, config, weights, data, size, size.dtype_2b, save=True, save_optimizer=lora)
    found = train(work, name, bases, size, meter)
    report_training(rows, f"{what}, from videos", found, meter, size, note=T5_STANDIN_NOTE)
    check_load_back(rows, what, found, work, meter, size, optimizer_saved=lora)
    found.clear()
    free(meter)

    cache, seconds = precompute_cache(work, name, bases, data, meter)
    rows.add(f"{what}: tools/precompute.py on the clip (VAE posterior + T5 embedding)", seconds, "s",
             note="setup, once per dataset")
    left = f"; {meter.allocated_gib():.2f} GiB still allocated from the video run" if meter.cuda else ""
    cache_bases = write_run_config(work, f"{name}-cache", config, weights, cache, size, size.dtype_2b, save=False,
                                   save_optimizer=False)
    found = train(work, f"{name}-cache", cache_bases, size, meter)
    report_training(rows, f"{what}, from a precomputed cache", found, meter, size,
                    note=f"no T5, no VAE encoder; run after the video run in the same process{left}")


def part_one_step(rows: RowWriter, one, work: Path, model: str, label: str, with_diffusers: bool) -> None:
    """One sampling step (beside diffusers' pipeline when `with_diffusers`) and one LoRA step of `model`."""
    from benchmarks.gpu_check_sample import run_sampling
    from benchmarks.gpu_check_setup import Meter, model_config, write_training_video
    from benchmarks.gpu_check_train import T5_STANDIN_NOTE, report_training, train, write_run_config

    weights = made_weights(rows, model, one, one.dtype_5b, work)
    run_sampling(model_config(model, False, one, weights), weights, one, rows, one.dtype_5b,
                 with_diffusers=with_diffusers, decode=False, what=f"{label} sampling, {one.dtype_5b}")
    meter = Meter(one.device)
    data = write_training_video(work / f"data-{model}", one)
    bases = write_run_config(work, f"{model}-lora", model_config(model, True, one, weights), weights, data, one,
                             one.dtype_5b, save=False, save_optimizer=False)
    found = train(work, f"{model}-lora", bases, one, meter)
    report_training(rows, f"{label} LoRA fine-tune, {one.dtype_5b}, ZeRO-2", found, meter, one, note=T5_STANDIN_NOTE)


def part_5b(rows: RowWriter, size, work: Path) -> None:
    part_one_step(rows, replace(size, sample_steps=1, train_steps=1), work, "5b", "5B", with_diffusers=False)


def part_1_5(rows: RowWriter, size, work: Path) -> None:
    from benchmarks.gpu_check_setup import size_1_5

    one = replace(size_1_5(size), sample_steps=1, train_steps=1)
    part_one_step(rows, one, work, "1.5", "1.5-5B", with_diffusers=True)
    bucketed_lora_step(rows, one, work)


def bucketed_lora_step(rows: RowWriter, one, work: Path) -> None:
    """One 1.5 LoRA step through the bucketed data path (configs/sft_1.5_buckets.yaml's buckets, docs/buckets.md)."""
    from benchmarks.gpu_check_setup import Meter, model_config, write_training_video
    from benchmarks.gpu_check_train import T5_STANDIN_NOTE, bucket_list, report_training, train, write_run_config

    weights = made_weights(rows, "1.5", one, one.dtype_5b, work)
    meter = Meter(one.device)
    data = write_training_video(work / "data-1.5", one)
    bases = write_run_config(work, "1.5-lora-buckets", model_config("1.5", True, one, weights), weights, data, one,
                             one.dtype_5b, save=False, save_optimizer=False, buckets=bucket_list(one))
    found = train(work, "1.5-lora-buckets", bases, one, meter)
    report_training(rows, f"1.5-5B LoRA fine-tune with buckets, {one.dtype_5b}, ZeRO-2", found, meter, one,
                    note=f"{len(bucket_list(one))} buckets, the clip in the first; {T5_STANDIN_NOTE}")


def part_parallel(rows: RowWriter, smoke: bool, work: Path) -> None:
    """2 GPUs: one guided step with --cfg-parallel 2 and with --sequence-parallel 2 against one GPU, and the VAE
    decode with cp_size 2 against cp_size 1 (benchmarks/bench_parallel.py with nccl); on one GPU a row says so."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2 and not smoke:
        rows.add("multi-process sampling (cfg / sequence / cp_size 2 vs 1)", None, "",
                 note=f"skipped: needs 2 GPUs, this machine has {gpus}")
        return
    sizes = ["--layers", "2", "--hidden", "64", "--heads", "2", "--frames", "4", "--height", "8", "--width", "12",
             "--vae-ch", "32", "--vae-frames", "5", "--vae-height", "4", "--vae-width", "6"] if smoke else [
        "--layers", "8", "--hidden", "3072", "--heads", "48", "--frames", "22", "--height", "96", "--width", "170",
        "--vae-ch", "128", "--vae-frames", "13", "--vae-height", "60", "--vae-width", "90"]  # 1.5: 45,104 tokens (224 text)
    out = work / "bench_parallel.json"
    device = "cpu" if smoke else "cuda"
    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_parallel.py"), "--device", device, "--json", str(out),
                    *sizes], check=True, cwd=REPO)
    for what, ratio in json.loads(out.read_text()).items():
        rows.add(f"2 {'processes' if smoke else 'GPUs'} / 1: {what}", ratio, "x", note="ideal 0.5 for s/step")


def run_part(part: str, work: Path, rows_path: Path, smoke: bool, sample_steps: int, train_steps: int) -> int:
    """In the child process: run one part; a failure becomes a row and exit status 1. The parts without a model
    (build, parallel) do not import the model code."""
    rows = RowWriter(rows_path, part)
    try:
        if part == "build":
            part_build(rows, smoke)
        elif part == "parallel":
            part_parallel(rows, smoke, work)
        else:
            from benchmarks.gpu_check_setup import run_size

            size = run_size(smoke, sample_steps, train_steps)
            {"sample": lambda: part_sample(rows, size, work),
             "lora": lambda: part_train(rows, size, work, lora=True),
             "full": lambda: part_train(rows, size, work, lora=False),
             "5b": lambda: part_5b(rows, size, work),
             "1.5": lambda: part_1_5(rows, size, work)}[part]()
    except Exception as err:  # reported in the table; the parent goes on to the next part
        traceback.print_exc()
        rows.add("part failed", None, "", note=f"failed: {type(err).__name__}: {str(err)[:300]}")
        return 1
    return 0


# ---------------------------------------------------------------- the parent: one child per part, under a budget

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_child(part: str, args: argparse.Namespace, work: Path, rows_path: Path, budget_s: float) -> None:
    command = [sys.executable, __file__, "--child", part, "--work", str(work), "--rows", str(rows_path),
               "--sample-steps", str(args.sample_steps), "--train-steps", str(args.train_steps)]
    if args.smoke:
        command.append("--smoke")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    print(f"=== gpu_check part {part!r} (budget {budget_s:.0f} s)", flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    try:
        child.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        RowWriter(rows_path, part).add("part stopped", None, "", note=f"failed: over its budget of {budget_s:.0f} s")
        return
    if child.returncode != 0 and not any(r.part == part and r.note.startswith("failed") for r in read_rows(rows_path)):
        RowWriter(rows_path, part).add("part failed", None, "", note=f"failed: exit status {child.returncode}")
    print(f"=== gpu_check part {part!r} done in {time.perf_counter() - start:.0f} s", flush=True)


def device_name(smoke: bool) -> str:
    if smoke:
        return "CPU (smoke run)"
    if shutil.which("nvidia-smi") is None:
        return "unknown GPU (no nvidia-smi)"
    found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else "unknown GPU"


def parse_budgets(items: list[str], smoke: bool) -> dict[str, float]:
    budgets = dict(SMOKE_BUDGETS_S if smoke else BUDGETS_S)
    for item in items:
        part, _, seconds = item.partition("=")
        if part not in PARTS or not seconds.replace(".", "", 1).isdigit():
            raise SystemExit(f"error: --budget {item!r}: expected PART=SECONDS with PART one of {list(PARTS)}")
        budgets[part] = float(seconds)
    return budgets


def parse_parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise SystemExit(f"error: --parts {text!r}: unknown part(s) {unknown}; choose from {list(PARTS)}")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--out", default="gpu_check.json", help="where to write the table as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script, not speed)")
    parser.add_argument("--sample-steps", type=int, default=5, help="sampling steps run (extrapolated to 50)")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per run; the first is not timed")
    parser.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS", help="a part's time limit")
    parser.add_argument("--work", help="folder for weights, data and checkpoints (default: a temporary one, removed)")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_part(args.child, Path(args.work), Path(args.rows), args.smoke, args.sample_steps, args.train_steps)

    parts, budgets = parse_parts(args.parts), parse_budgets(args.budget, args.smoke)
    if args.sample_steps < 2 or args.train_steps < 2:
        raise SystemExit("error: --sample-steps and --train-steps must be at least 2 (the first step is a warm-up)")
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA device visible to torch; run with --smoke to check the script on a CPU")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        rows_path = work / "rows.jsonl"
        rows_path.unlink(missing_ok=True)
        for part in parts:
            run_child(part, args, work, rows_path, budgets[part])
        rows = read_rows(rows_path)
    header = {"device": device_name(args.smoke), "date": datetime.date.today().isoformat(), "smoke": args.smoke,
              "parts": parts, "sample_steps": args.sample_steps, "train_steps": args.train_steps, "budgets_s": budgets}
    print(f"\n{header['device']}, {header['date']}; sampling {args.sample_steps} steps, training {args.train_steps} "
          f"steps per run (first not timed); ratio = ours / diffusers\n")
    print(format_table(rows))
    write_json(Path(args.out), rows, header)
    print(f"\nwrote {args.out}")
    return 1 if any(row.note.startswith("failed") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
